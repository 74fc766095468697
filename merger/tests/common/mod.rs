//! Test fixtures: bare "source" repositories built commit by commit with git2, and helpers to
//! build workspace requests and inspect the result.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature, Time};
use sluice_merger::{
    Change, MergeIdentity, MergeMode, ProjectRepo, WorkspaceRequest, WorkspaceScheme,
};

pub const MERGE_NAME: &str = "Sluice Merger";
pub const MERGE_EMAIL: &str = "merger@sluice.example";
pub const MERGE_TIME: i64 = 1_700_000_000;

/// A bare source repository whose commits are written straight into the object database.
pub struct Source {
    pub path: PathBuf,
    pub repo: Repository,
}

pub fn author() -> Signature<'static> {
    Signature::new(
        "Alice Author",
        "alice@example.org",
        &Time::new(1_600_000_000, 0),
    )
    .expect("static signature")
}

impl Source {
    /// A bare repository at `dir/name.git` with one commit on `branch` holding `a.txt`.
    pub fn new(dir: &Path, name: &str, branch: &str) -> Source {
        let path = dir.join(format!("{name}.git"));
        let repo = Repository::init_bare(&path).expect("init bare");
        repo.set_head(&format!("refs/heads/{branch}"))
            .expect("set head");
        let s = Source { path, repo };
        let root = s.commit_files(&[], &[("a.txt", "line 1\nline 2\nline 3\n")], "initial");
        s.set_branch(branch, root);
        s
    }

    /// Creates a commit with `parents`, whose tree is the first parent's tree (or empty) with
    /// `files` written (top-level files only; empty content deletes the file).
    pub fn commit_files(&self, parents: &[Oid], files: &[(&str, &str)], msg: &str) -> Oid {
        let parent_commits: Vec<_> = parents
            .iter()
            .map(|p| self.repo.find_commit(*p).expect("parent"))
            .collect();
        let base_tree = parent_commits.first().map(|c| c.tree().expect("tree"));
        let mut tb = self
            .repo
            .treebuilder(base_tree.as_ref())
            .expect("treebuilder");
        for (name, content) in files {
            if content.is_empty() {
                tb.remove(name).expect("remove");
            } else {
                let blob = self.repo.blob(content.as_bytes()).expect("blob");
                tb.insert(name, blob, 0o100644).expect("insert");
            }
        }
        let tree = self
            .repo
            .find_tree(tb.write().expect("write tree"))
            .expect("tree");
        let refs: Vec<_> = parent_commits.iter().collect();
        self.repo
            .commit(None, &author(), &author(), msg, &tree, &refs)
            .expect("commit")
    }

    /// Commits `files` on top of `branch` and moves the branch.
    pub fn commit_on(&self, branch: &str, files: &[(&str, &str)], msg: &str) -> Oid {
        let tip = self.tip(branch);
        let id = self.commit_files(&[tip], files, msg);
        self.set_branch(branch, id);
        id
    }

    pub fn tip(&self, branch: &str) -> Oid {
        self.repo
            .refname_to_id(&format!("refs/heads/{branch}"))
            .expect("branch tip")
    }

    pub fn set_branch(&self, branch: &str, id: Oid) {
        self.set_ref(&format!("refs/heads/{branch}"), id);
    }

    pub fn set_ref(&self, name: &str, id: Oid) {
        self.repo
            .reference(name, id, true, "test")
            .expect("set ref");
    }

    pub fn tag(&self, name: &str, id: Oid) {
        let obj = self.repo.find_object(id, None).expect("object");
        self.repo
            .tag(name, &obj, &author(), "a tag", true)
            .expect("annotated tag");
    }
}

pub fn project(source: &Source, canonical_name: &str, default_branch: &str) -> ProjectRepo {
    ProjectRepo {
        canonical_name: canonical_name.to_string(),
        source: source.path.clone(),
        default_branch: default_branch.to_string(),
        override_branch: None,
        override_checkout: None,
        repo_state: Default::default(),
        exclude_branches: Vec::new(),
    }
}

pub fn change(project: &str, branch: &str, commit: impl ToString, mode: MergeMode) -> Change {
    Change {
        project: project.to_string(),
        branch: branch.to_string(),
        commit: commit.to_string(),
        merge_mode: mode,
    }
}

pub fn request(
    src_root: &Path,
    projects: Vec<ProjectRepo>,
    changes: Vec<Change>,
) -> WorkspaceRequest {
    WorkspaceRequest {
        src_root: src_root.to_path_buf(),
        scheme: WorkspaceScheme::Golang,
        projects,
        changes,
        job_override_checkout: None,
        job_override_branch: None,
        zuul_branch: None,
        zuul_ref: None,
        merge_identity: MergeIdentity {
            name: MERGE_NAME.to_string(),
            email: MERGE_EMAIL.to_string(),
        },
        merge_time: Some(MERGE_TIME),
    }
}

/// Top-level files of a commit's tree: name → content.
pub fn tree_files(repo: &Repository, commit: Oid) -> BTreeMap<String, String> {
    let tree = repo
        .find_commit(commit)
        .expect("commit")
        .tree()
        .expect("tree");
    tree.iter()
        .map(|e| {
            let blob = repo.find_blob(e.id()).expect("blob");
            (
                e.name().expect("utf-8 name").to_string(),
                String::from_utf8_lossy(blob.content()).into_owned(),
            )
        })
        .collect()
}

/// Top-level regular files in a working tree (skipping `.git`): name → content.
pub fn worktree_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("read worktree")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != ".git") && p.is_file())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("read file"),
            )
        })
        .collect()
}

pub fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Asserts HEAD is the local branch `branch` and the working tree and index are clean.
pub fn assert_on_branch_clean(repo: &Repository, branch: &str) {
    let head = repo.head().expect("head");
    assert!(head.is_branch(), "HEAD is detached");
    assert_eq!(head.name(), Some(format!("refs/heads/{branch}").as_str()));
    let statuses = repo.statuses(None).expect("statuses");
    let dirty: Vec<_> = statuses
        .iter()
        .filter_map(|s| s.path().map(String::from))
        .collect();
    assert!(dirty.is_empty(), "dirty working tree: {dirty:?}");
}

/// Messages of the first-parent history from `tip`, newest first, stopping before `stop`.
pub fn first_parent_messages(repo: &Repository, tip: Oid, stop: Oid) -> Vec<String> {
    let mut out = Vec::new();
    let mut id = tip;
    while id != stop {
        let c = repo.find_commit(id).expect("commit");
        out.push(c.message().unwrap_or("").trim_end().to_string());
        match c.parent_id(0) {
            Ok(p) => id = p,
            Err(_) => break,
        }
    }
    out
}
