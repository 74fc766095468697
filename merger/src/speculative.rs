//! Speculative branch tips without a workspace, for the scheduler: whether the changes of a
//! queue item and the items ahead merge, and the commits their configuration is read from.
//!
//! Each project's source repository is opened as it is, with an in-memory object backend put
//! in front of its own: the changes are merged in queue order with the same merge modes as
//! [`crate::prepare_workspace`], and the commits the merges create live in memory only, gone
//! with the [`SpeculativeRepo`]. Nothing is cloned, checked out, written to the source or left
//! to delete, so the cost is that of the merges themselves (a workspace per buildset cost a
//! clone, a checkout and a recursive delete of every project involved).

use std::collections::BTreeMap;
use std::path::PathBuf;

use git2::{Oid, Repository, Signature, Time};

use crate::errors::{Cx, MergeError};
use crate::git;
use crate::merge::{self, MergeInput};
use crate::workspace::{now, Change, MergeIdentity};

/// Above the source's own backends (loose objects 1, packs 2): every object written goes to
/// memory.
const IN_MEMORY_PRIORITY: i32 = 1_000;

/// A project the changes may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeculativeProject {
    /// `<hostname>/<project name>`.
    pub canonical_name: String,
    /// Its git repository on disk (bare or not); read, never written.
    pub source: PathBuf,
}

/// A project's source with changes merged onto its branches in memory.
pub struct SpeculativeRepo {
    /// `<hostname>/<project name>`.
    pub canonical_name: String,
    /// The source repository; the merged commits are readable through it (and only it).
    pub repo: Repository,
    /// The branches changes were merged onto and their speculative tips.
    merged: BTreeMap<String, Oid>,
}

impl SpeculativeRepo {
    /// The tip of `branch` with the changes merged onto it, or the source's tip for a branch
    /// no change targets; `None` when the branch does not exist.
    pub fn tip(&self, branch: &str) -> Option<Oid> {
        self.merged
            .get(branch)
            .copied()
            .or_else(|| git::branch_tip(&self.repo, branch))
    }

    /// The branches changes were merged onto, with their speculative tips.
    pub fn merged_branches(&self) -> &BTreeMap<String, Oid> {
        &self.merged
    }
}

impl std::fmt::Debug for SpeculativeRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeculativeRepo")
            .field("canonical_name", &self.canonical_name)
            .field("repo", &self.repo.path())
            .field("merged", &self.merged)
            .finish()
    }
}

/// Merges `changes` in queue order over the current branch tips of their projects' sources,
/// in memory: changes on the same project and branch stack, each applied with its merge mode
/// (as in [`crate::prepare_workspace`], step 3). Returns one [`SpeculativeRepo`] per project
/// that has a change, in the order of `projects`.
///
/// A change that does not apply returns [`MergeError::Conflict`]; a change whose branch does
/// not exist [`MergeError::MissingBranch`].
pub fn merge_in_memory(
    projects: &[SpeculativeProject],
    changes: &[Change],
    identity: &MergeIdentity,
    merge_time: Option<i64>,
) -> Result<Vec<SpeculativeRepo>, MergeError> {
    let timestamp = merge_time.unwrap_or_else(now);
    let signature = Signature::new(&identity.name, &identity.email, &Time::new(timestamp, 0))
        .map_err(
            Cx::new("<merge identity>", std::path::Path::new(""))
                .git(|| format!("build signature for {} <{}>", identity.name, identity.email)),
        )?;
    for c in changes {
        if !projects.iter().any(|p| p.canonical_name == c.project) {
            return Err(MergeError::UnknownProject {
                project: c.project.clone(),
                commit: c.commit.clone(),
            });
        }
    }
    let mut repos = Vec::new();
    for p in projects {
        if !changes.iter().any(|c| c.project == p.canonical_name) {
            continue;
        }
        let repo = git::open_source(&p.source, &p.canonical_name)?;
        {
            let cx = Cx::new(&p.canonical_name, &p.source);
            let odb = repo
                .odb()
                .map_err(cx.git(|| "open object database".into()))?;
            odb.add_new_mempack_backend(IN_MEMORY_PRIORITY)
                .map_err(cx.git(|| "add an in-memory object backend".into()))?;
        }
        repos.push(SpeculativeRepo {
            canonical_name: p.canonical_name.clone(),
            repo,
            merged: BTreeMap::new(),
        });
    }
    for change in changes {
        let Some(target) = repos
            .iter_mut()
            .find(|r| r.canonical_name == change.project)
        else {
            continue;
        };
        let name = target.canonical_name.clone();
        let change_oid = git::resolve_commit(&target.repo, &change.commit, &name)?;
        let base = target
            .tip(&change.branch)
            .ok_or_else(|| MergeError::MissingBranch {
                project: name.clone(),
                branch: change.branch.clone(),
                commit: change.commit.clone(),
            })?;
        let outcome = merge::apply(&MergeInput {
            repo: &target.repo,
            project: &name,
            branch: &change.branch,
            reference: &change.commit,
            path: &name,
            base,
            change: change_oid,
            mode: change.merge_mode,
            signature: &signature,
            timestamp,
        })?;
        target.merged.insert(change.branch.clone(), outcome.head);
    }
    Ok(repos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MergeMode;
    use std::path::Path;

    fn commit(repo: &Repository, branch: &str, file: &str, text: &str, parent: Option<Oid>) -> Oid {
        let sig = Signature::new("t", "t@example.com", &Time::new(1_700_000_000, 0)).unwrap();
        let mut index = git2::Index::new().unwrap();
        if let Some(p) = parent {
            let tree = repo.find_commit(p).unwrap().tree().unwrap();
            index.read_tree(&tree).unwrap();
        }
        let blob = repo.blob(text.as_bytes()).unwrap();
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: text.len() as u32,
                id: blob,
                flags: file.len() as u16,
                flags_extended: 0,
                path: file.as_bytes().to_vec(),
            })
            .unwrap();
        let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
        let parents: Vec<git2::Commit> = parent
            .into_iter()
            .map(|p| repo.find_commit(p).unwrap())
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        let oid = repo.commit(None, &sig, &sig, "c", &tree, &parents).unwrap();
        repo.reference(&format!("refs/heads/{branch}"), oid, true, "t")
            .unwrap();
        oid
    }

    fn objects(dir: &Path) -> usize {
        walk(&dir.join("objects"))
    }

    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            walk(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Every ref of `repo` with its target, to compare before and after.
    fn ref_targets(repo: &Repository) -> Vec<String> {
        repo.references()
            .unwrap()
            .flatten()
            .map(|r| format!("{:?} {:?}", r.name(), r.target()))
            .collect()
    }

    fn identity() -> MergeIdentity {
        MergeIdentity {
            name: "Sluice Merger".into(),
            email: "merger@example.com".into(),
        }
    }

    #[test]
    fn changes_stack_in_memory_and_the_source_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let base = commit(&repo, "main", "a.txt", "a\n", None);
        let one = commit(&repo, "review/main/one", "b.txt", "b\n", Some(base));
        let two = commit(&repo, "review/main/two", "c.txt", "c\n", Some(base));
        let refs_before = ref_targets(&repo);
        let files_before = objects(dir.path());
        let projects = [SpeculativeProject {
            canonical_name: "localhost/org/app".into(),
            source: dir.path().to_path_buf(),
        }];
        let change = |oid: Oid| Change {
            project: "localhost/org/app".into(),
            branch: "main".into(),
            commit: oid.to_string(),
            merge_mode: MergeMode::Merge,
        };
        let repos = merge_in_memory(&projects, &[change(one), change(two)], &identity(), None)
            .expect("the changes merge");
        assert_eq!(repos.len(), 1);
        let tip = repos[0].tip("main").expect("main has a speculative tip");
        let tree = repos[0].repo.find_commit(tip).unwrap().tree().unwrap();
        for f in ["a.txt", "b.txt", "c.txt"] {
            assert!(
                tree.get_path(Path::new(f)).is_ok(),
                "{f} is in the merged tree"
            );
        }
        drop(tree);
        drop(repos);
        let reopened = Repository::open(dir.path()).unwrap();
        assert!(
            reopened.find_commit(tip).is_err(),
            "the merge commit stayed in memory"
        );
        let refs_after = ref_targets(&reopened);
        assert_eq!(refs_before, refs_after);
        assert_eq!(files_before, objects(dir.path()));
    }

    #[test]
    fn a_conflict_and_a_missing_branch_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let base = commit(&repo, "main", "a.txt", "a\n", None);
        let one = commit(&repo, "review/main/one", "a.txt", "one\n", Some(base));
        let two = commit(&repo, "review/main/two", "a.txt", "two\n", Some(base));
        let projects = [SpeculativeProject {
            canonical_name: "localhost/org/app".into(),
            source: dir.path().to_path_buf(),
        }];
        let change = |oid: Oid, branch: &str| Change {
            project: "localhost/org/app".into(),
            branch: branch.into(),
            commit: oid.to_string(),
            merge_mode: MergeMode::Merge,
        };
        let err = merge_in_memory(
            &projects,
            &[change(one, "main"), change(two, "main")],
            &identity(),
            None,
        )
        .expect_err("the second change conflicts with the first");
        assert!(err.is_conflict(), "{err}");
        let err = merge_in_memory(&projects, &[change(one, "stable")], &identity(), None)
            .expect_err("no branch stable");
        assert!(
            matches!(err, MergeError::MissingBranch { ref branch, .. } if branch == "stable"),
            "{err}"
        );
    }
}
