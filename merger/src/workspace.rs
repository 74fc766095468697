//! Building a job's `work/src`: the request and result types, and [`prepare_workspace`], which
//! clones every project, merges the changes in queue order, picks and checks out the branch each
//! project shows (Zuul's first-match-wins order) and points every `origin` at
//! `file:///dev/null`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use git2::{Repository, Signature, Time};
use serde::{Deserialize, Serialize};

use crate::errors::{io, Cx, MergeError};
use crate::git;
use crate::layout::{check_collisions, workspace_project_path, WorkspaceScheme};
use crate::merge::{self, MergeInput};
use crate::state::{MergeOp, WorkspaceRepos};
use crate::MergeMode;

/// A project the job needs in its workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRepo {
    /// `<hostname>/<project name>`, e.g. `localhost/org/repo`.
    pub canonical_name: String,
    /// A git repository on disk (bare or not) to clone from, e.g. the merger cache.
    pub source: PathBuf,
    /// The project's `default-branch`.
    pub default_branch: String,
    /// The required-project `override-branch`.
    #[serde(default)]
    pub override_branch: Option<String>,
    /// The required-project `override-checkout` (a branch or a tag).
    #[serde(default)]
    pub override_checkout: Option<String>,
    /// A repo state to restore before merging (`{full ref: sha}`, e.g. from the scheduler's
    /// merge), so every executor starts from the same branch tips. Empty: use the source's
    /// refs as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repo_state: BTreeMap<String, String>,
    /// Branch-name prefixes left out of the clone, e.g. `review/` for the git driver's review
    /// branches: they are changes, not branches (as Gerrit's `refs/changes/`), and cloning
    /// hundreds of them made every workspace cost as much as the queue is long. A change's
    /// commit is still merged (copied by sha).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_branches: Vec<String>,
}

/// A change to merge: one queue item's commit on one project branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Canonical name of the change's project; must be in [`WorkspaceRequest::projects`].
    pub project: String,
    /// The target branch.
    pub branch: String,
    /// What to merge: a sha, or a ref in the project's source (e.g. `refs/changes/34/1234/2`,
    /// `refs/pull/7/head`). Also used verbatim in merge commit messages (`Merge '<commit>'`).
    pub commit: String,
    /// The project's merge mode.
    pub merge_mode: MergeMode,
}

/// The item's ref, for items without a branch (tag and branch pushes): checkout step "zuul ref".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRef {
    /// Canonical name of the item's project; the rule applies to that project only.
    pub project: String,
    /// `refs/heads/<branch>` or `refs/tags/<tag>`; other refs are ignored.
    #[serde(rename = "ref")]
    pub reference: String,
}

/// Name and email on merge commits (and committer of rebased or cherry-picked commits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeIdentity {
    /// `user.name`.
    pub name: String,
    /// `user.email`.
    pub email: String,
}

/// Everything [`prepare_workspace`] needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRequest {
    /// `<jobdir>/work/src`; created if missing. Relative paths are taken from the current
    /// directory.
    pub src_root: PathBuf,
    /// Where projects go under `src_root`.
    #[serde(default)]
    pub scheme: WorkspaceScheme,
    /// Every project the job uses.
    pub projects: Vec<ProjectRepo>,
    /// Changes in queue order: the changes ahead first, the change under test last. Changes on
    /// the same project and branch stack.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// The job's `override-checkout`.
    #[serde(default)]
    pub job_override_checkout: Option<String>,
    /// The job's `override-branch`.
    #[serde(default)]
    pub job_override_branch: Option<String>,
    /// The item's branch (`zuul.branch`), if it has one.
    #[serde(default)]
    pub zuul_branch: Option<String>,
    /// The item's ref, consulted only when `zuul_branch` is `None`.
    #[serde(default)]
    pub zuul_ref: Option<ItemRef>,
    /// Identity for merge commits.
    pub merge_identity: MergeIdentity,
    /// Author and committer date of every commit the merger creates, in seconds since the
    /// epoch (Zuul uses the buildset's configured time so every executor computes the same
    /// shas). `None` means now.
    #[serde(default)]
    pub merge_time: Option<i64>,
}

/// One prepared workspace repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoState {
    /// `<hostname>/<project name>`.
    pub canonical_name: String,
    /// Absolute path of the repository, e.g. `<src_root>/localhost/org/repo`.
    pub path: PathBuf,
    /// Path relative to `src_root` (Zuul's `src_dir` without the `src/` prefix).
    pub relative_path: PathBuf,
    /// What is checked out: a branch name (HEAD is that local branch) or `refs/tags/<tag>`
    /// (HEAD detached at the tag's commit).
    pub checkout: String,
    /// The sha HEAD points at.
    pub commit: String,
    /// Every local branch and its tip (speculative states included).
    pub branches: BTreeMap<String, String>,
}

/// The result of [`prepare_workspace`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceState {
    /// One entry per requested project, in request order.
    pub repos: Vec<RepoState>,
    /// The merge operations, in the order they ran.
    pub merge_ops: Vec<MergeOp>,
    /// The identity used for merge commits.
    pub merge_identity: MergeIdentity,
}

impl WorkspaceState {
    /// The repository of a project, by canonical name.
    pub fn repo(&self, canonical_name: &str) -> Option<&RepoState> {
        self.repos
            .iter()
            .find(|r| r.canonical_name == canonical_name)
    }

    /// The content of `work/logs/workspace-repos.json`.
    pub fn workspace_repos(&self) -> WorkspaceRepos {
        WorkspaceRepos {
            repo_state: self
                .repos
                .iter()
                .map(|r| (r.canonical_name.clone(), r.branches.clone()))
                .collect(),
            merge_ops: self.merge_ops.clone(),
            merge_name: self.merge_identity.name.clone(),
            merge_email: self.merge_identity.email.clone(),
        }
    }
}

struct Prepared {
    project: ProjectRepo,
    abs: PathBuf,
    rel: PathBuf,
    rel_str: String,
    repo: Repository,
}

/// Clones, merges and checks out every project of `req` under `req.src_root`.
///
/// Steps: (1) compute each project's path for the scheme and reject duplicates and collisions;
/// (2) clone each source (all branches as local branches, all tags), then restore
/// [`ProjectRepo::repo_state`] when given (refs become exactly that state); (3) for each change in
/// order, copy its commit from the project's source and apply it to the current tip of its
/// branch with its merge mode, moving the local branch to the result (so later changes on the
/// same branch stack on it) and `refs/remotes/origin/<branch>` to the tip it was applied on
/// (`git log origin/<branch>..<branch>` shows the change under test); (4) check out per project,
/// first match wins: project override-checkout, project override-branch, job override-checkout,
/// job override-branch, the item's `refs/heads/X`/`refs/tags/X` ref (item project, no branch),
/// the zuul branch, the default branch — else [`MergeError::MissingDefaultBranch`];
/// (5) set every `origin` URL to `file:///dev/null`.
///
/// A conflict returns [`MergeError::Conflict`]; the workspace is then left as it was at that
/// point (the build ends anyway).
pub fn prepare_workspace(req: &WorkspaceRequest) -> Result<WorkspaceState, MergeError> {
    let src_root = absolute(&req.src_root)?;
    let timestamp = req.merge_time.unwrap_or_else(now);
    let signature = Signature::new(
        &req.merge_identity.name,
        &req.merge_identity.email,
        &Time::new(timestamp, 0),
    )
    .map_err(Cx::new("<merge identity>", &src_root).git(|| {
        format!(
            "build signature for {} <{}>",
            req.merge_identity.name, req.merge_identity.email
        )
    }))?;

    // (1) paths
    let mut seen = HashSet::new();
    let mut rels = Vec::with_capacity(req.projects.len());
    for p in &req.projects {
        if !seen.insert(p.canonical_name.as_str()) {
            return Err(MergeError::DuplicateProject {
                project: p.canonical_name.clone(),
            });
        }
        rels.push(workspace_project_path(&p.canonical_name, req.scheme)?);
    }
    let pairs: Vec<(&str, &Path)> = req
        .projects
        .iter()
        .zip(&rels)
        .map(|(p, r)| (p.canonical_name.as_str(), r.as_path()))
        .collect();
    check_collisions(&pairs)?;
    for c in &req.changes {
        if !seen.contains(c.project.as_str()) {
            return Err(MergeError::UnknownProject {
                project: c.project.clone(),
                commit: c.commit.clone(),
            });
        }
    }

    // (2) clones
    std::fs::create_dir_all(&src_root).map_err(io("create directory", &src_root))?;
    let mut prepared = Vec::with_capacity(req.projects.len());
    for (p, rel) in req.projects.iter().zip(rels) {
        let abs = src_root.join(&rel);
        tracing::debug!(project = %p.canonical_name, path = %abs.display(), "cloning into workspace");
        let repo = git::clone_local(&p.source, &abs, &p.canonical_name, &p.exclude_branches)?;
        git::set_identity(
            &repo,
            &req.merge_identity.name,
            &req.merge_identity.email,
            Cx::new(&p.canonical_name, &abs),
        )?;
        if !p.repo_state.is_empty() {
            let source = git::open_source(&p.source, &p.canonical_name)?;
            git::restore_refs(&source, &repo, &p.repo_state, &p.canonical_name)?;
        }
        prepared.push(Prepared {
            project: p.clone(),
            rel_str: rel.to_string_lossy().into_owned(),
            abs,
            rel,
            repo,
        });
    }

    // (3) merges
    let mut ops = Vec::new();
    for change in &req.changes {
        let Some(target) = prepared
            .iter()
            .find(|t| t.project.canonical_name == change.project)
        else {
            // Checked above; kept as an error rather than a panic.
            return Err(MergeError::UnknownProject {
                project: change.project.clone(),
                commit: change.commit.clone(),
            });
        };
        ops.extend(merge_change(target, change, &signature, timestamp)?);
    }

    // (4) checkouts, (5) origin
    let mut repos = Vec::with_capacity(prepared.len());
    for t in &prepared {
        let name = &t.project.canonical_name;
        let cx = Cx::new(name, &t.abs);
        let (checkout, commit) = match choose_checkout(&t.repo, &t.project, req)? {
            Target::Branch(b) => {
                let oid = git::checkout_branch(&t.repo, &b, cx)?;
                (b, oid)
            }
            Target::Tag(tag, oid) => {
                git::checkout_detached(&t.repo, oid, cx)?;
                (format!("refs/tags/{tag}"), oid)
            }
        };
        tracing::debug!(project = %name, %checkout, %commit, "checked out");
        git::null_origin(&t.repo, cx)?;
        repos.push(RepoState {
            canonical_name: name.clone(),
            path: t.abs.clone(),
            relative_path: t.rel.clone(),
            checkout,
            commit: commit.to_string(),
            branches: git::local_branches(&t.repo, cx)?,
        });
    }
    Ok(WorkspaceState {
        repos,
        merge_ops: ops,
        merge_identity: req.merge_identity.clone(),
    })
}

fn merge_change(
    t: &Prepared,
    change: &Change,
    signature: &Signature<'static>,
    timestamp: i64,
) -> Result<Vec<MergeOp>, MergeError> {
    let name = &t.project.canonical_name;
    let cx = Cx::new(name, &t.abs);
    let source = git::open_source(&t.project.source, name)?;
    let change_oid = git::resolve_commit(&source, &change.commit, name)?;
    git::copy_commit(&source, &t.repo, change_oid, name)?;
    let base =
        git::branch_tip(&t.repo, &change.branch).ok_or_else(|| MergeError::MissingBranch {
            project: name.clone(),
            branch: change.branch.clone(),
            commit: change.commit.clone(),
        })?;
    t.repo
        .reference(
            &format!("refs/remotes/origin/{}", change.branch),
            base,
            true,
            "sluice: speculative base",
        )
        .map_err(cx.git(|| format!("set origin/{} to {base}", change.branch)))?;
    tracing::debug!(project = %name, branch = %change.branch, commit = %change.commit,
        mode = %change.merge_mode, %base, "merging change");
    let outcome = merge::apply(&MergeInput {
        repo: &t.repo,
        project: name,
        branch: &change.branch,
        reference: &change.commit,
        path: &t.rel_str,
        base,
        change: change_oid,
        mode: change.merge_mode,
        signature,
        timestamp,
    })?;
    t.repo
        .reference(
            &format!("refs/heads/{}", change.branch),
            outcome.head,
            true,
            &format!("sluice: {} {}", change.merge_mode, change.commit),
        )
        .map_err(cx.git(|| format!("move {} to {}", change.branch, outcome.head)))?;
    Ok(outcome.ops)
}

enum Target {
    Branch(String),
    Tag(String, git2::Oid),
}

/// Zuul's checkout order (executor §2 step 4), first match wins.
fn choose_checkout(
    repo: &Repository,
    project: &ProjectRepo,
    req: &WorkspaceRequest,
) -> Result<Target, MergeError> {
    let branch = |b: &str| git::branch_tip(repo, b).map(|_| Target::Branch(b.to_string()));
    let tag = |t: &str| git::tag_commit(repo, t).map(|oid| Target::Tag(t.to_string(), oid));
    let any_ref = |r: &str| branch(r).or_else(|| tag(r));

    let candidates = [
        project.override_checkout.as_deref().and_then(any_ref),
        project.override_branch.as_deref().and_then(branch),
        req.job_override_checkout.as_deref().and_then(any_ref),
        req.job_override_branch.as_deref().and_then(branch),
        match (&req.zuul_branch, &req.zuul_ref) {
            (None, Some(item)) if item.project == project.canonical_name => {
                if let Some(b) = item.reference.strip_prefix("refs/heads/") {
                    branch(b)
                } else if let Some(t) = item.reference.strip_prefix("refs/tags/") {
                    tag(t)
                } else {
                    None
                }
            }
            _ => None,
        },
        req.zuul_branch.as_deref().and_then(branch),
        branch(&project.default_branch),
    ];
    candidates
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| MergeError::MissingDefaultBranch {
            project: project.canonical_name.clone(),
            branch: project.default_branch.clone(),
        })
}

fn absolute(path: &Path) -> Result<PathBuf, MergeError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(io("read current directory for", path))?;
    Ok(cwd.join(path))
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
