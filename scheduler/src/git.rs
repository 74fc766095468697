//! The git driver: projects are repositories on disk under a connection's root, and the local
//! review flow makes check and gate work without a code-review server.
//!
//! - A change is a branch pushed as `review/<target-branch>/<topic>`; each new commit on it is
//!   a new patchset (the tip sha). Changes are numbered per project on first sight.
//! - [`GitDriver::poll`] compares the refs on disk with the snapshot in the store and, in one
//!   transaction per project, records `patchset-created` (review branch created or moved),
//!   `change-abandoned` (review branch deleted) and `ref-updated` (any other branch or tag
//!   created, moved or deleted; Zuul's `oldrev`/`newrev` with forty zeros for the missing
//!   side) events. [`RepoWatcher`] wakes the scheduler when a local repository's refs change,
//!   so a push is seen at once; the scan interval stays as the fallback.
//! - `Depends-On: <url>` footers name other changes by URL: `[scheme://]<canonical-hostname>/
//!   <org>/<repo>/review/<branch>/<topic>` (the form [`change_url`] produces).
//! - Reports are git notes on the patchset commit under `refs/notes/sluice-<pipeline>`; a
//!   successful gate item is merged by updating the target branch (compare-and-set on the
//!   old tip) to the commit the scheduler's merger produced with the project's merge mode.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;
use sluice_store::{ChangeRow, Store};

use crate::config::ConnectionConfig;
use crate::errors::SchedulerError;

/// Prefix of review branches under `refs/heads/`.
pub const REVIEW_PREFIX: &str = "review/";

/// One git connection.
#[derive(Debug, Clone)]
pub struct GitDriver {
    /// Connection name.
    pub name: String,
    /// Directory holding the repositories.
    pub root: PathBuf,
    /// Canonical hostname.
    pub hostname: String,
}

/// The error of a git operation `what` on `project`.
pub(crate) fn git_err(project: &str, what: &str) -> impl FnOnce(git2::Error) -> SchedulerError {
    let project = project.to_string();
    let what = what.to_string();
    move |source| SchedulerError::Git {
        project,
        what,
        source,
    }
}

/// `(target branch, topic)` of a review ref (`refs/heads/review/<branch>/<topic>`).
pub fn parse_review_ref(refname: &str) -> Option<(String, String)> {
    let rest = refname
        .strip_prefix("refs/heads/")?
        .strip_prefix(REVIEW_PREFIX)?;
    let (branch, topic) = rest.rsplit_once('/')?;
    if branch.is_empty() || topic.is_empty() {
        return None;
    }
    Some((branch.to_string(), topic.to_string()))
}

/// The values of `Depends-On:` footers, trimmed, duplicates dropped, in order.
pub fn depends_on(message: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in message.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.eq_ignore_ascii_case("depends-on") {
            let value = value.trim().to_string();
            if !value.is_empty() && !out.contains(&value) {
                out.push(value);
            }
        }
    }
    out
}

/// The URL of a change: `git://<hostname>/<project>/<review branch>`.
pub fn change_url(hostname: &str, project_short: &str, refname: &str) -> String {
    let branch = refname.strip_prefix("refs/heads/").unwrap_or(refname);
    format!("git://{hostname}/{project_short}/{branch}")
}

/// `(hostname, project, refname)` named by a change URL.
pub fn parse_change_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (host, path) = rest.split_once('/')?;
    let idx = path.find("/review/")?;
    let project = &path[..idx];
    let review = &path[idx + 1..];
    let refname = format!("refs/heads/{}", review.trim_end_matches('/'));
    parse_review_ref(&refname)?;
    Some((host.to_string(), project.to_string(), refname))
}

impl GitDriver {
    /// The driver for a configured connection.
    pub fn new(cfg: &ConnectionConfig) -> Self {
        GitDriver {
            name: cfg.name.clone(),
            root: cfg.root.clone(),
            hostname: cfg.canonical_hostname.clone(),
        }
    }

    /// Where project `org/repo` lives: `<root>/org/repo.git` if it exists, else `<root>/org/repo`.
    pub fn repo_path(&self, project: &str) -> PathBuf {
        let bare = self.root.join(format!("{project}.git"));
        if bare.exists() {
            bare
        } else {
            self.root.join(project)
        }
    }

    /// What the repository's `HEAD` file says (`ref: refs/heads/main`), read without opening
    /// the repository; `None` when it cannot be read.
    pub fn head_file(&self, project: &str) -> Option<String> {
        let path = self.repo_path(project);
        let git_dir = if path.join(".git").is_dir() {
            path.join(".git")
        } else {
            path
        };
        std::fs::read_to_string(git_dir.join("HEAD"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// `<hostname>/<project>`.
    pub fn canonical(&self, project: &str) -> String {
        format!("{}/{}", self.hostname, project)
    }

    fn open(&self, project: &str) -> Result<git2::Repository, SchedulerError> {
        git2::Repository::open(self.repo_path(project)).map_err(git_err(project, "open repository"))
    }

    /// Every branch (`refs/heads/...`) and its tip.
    pub fn refs(&self, project: &str) -> Result<BTreeMap<String, String>, SchedulerError> {
        branch_tips(&self.open(project)?, project)
    }

    /// Every branch with its tip and the default branch, from one repository open.
    pub fn tips(
        &self,
        project: &str,
    ) -> Result<(BTreeMap<String, String>, String), SchedulerError> {
        let repo = self.open(project)?;
        Ok((branch_tips(&repo, project)?, head_branch(&repo)))
    }

    /// The repository's default branch (what HEAD points at), else `master`.
    pub fn default_branch(&self, project: &str) -> String {
        self.open(project)
            .map(|repo| head_branch(&repo))
            .unwrap_or_else(|_| "master".into())
    }

    /// Branches that hold configuration (every branch but review branches).
    pub fn branches(&self, project: &str) -> Result<Vec<String>, SchedulerError> {
        Ok(self
            .refs(project)?
            .keys()
            .filter_map(|r| r.strip_prefix("refs/heads/"))
            .filter(|b| !b.starts_with(REVIEW_PREFIX))
            .map(str::to_string)
            .collect())
    }

    /// The messages of the change's commits not yet on `branch`, newest first.
    pub fn change_message(
        &self,
        project: &str,
        branch: &str,
        sha: &str,
    ) -> Result<String, SchedulerError> {
        let repo = self.open(project)?;
        let oid = git2::Oid::from_str(sha).map_err(git_err(project, "parse sha"))?;
        let mut walk = repo.revwalk().map_err(git_err(project, "revwalk"))?;
        walk.push(oid).map_err(git_err(project, "revwalk push"))?;
        if let Ok(base) = repo.revparse_single(&format!("refs/heads/{branch}")) {
            let _ = walk.hide(base.id());
        }
        let mut messages = Vec::new();
        for id in walk.flatten().take(100) {
            if let Ok(c) = repo.find_commit(id) {
                messages.push(c.message().unwrap_or_default().to_string());
            }
        }
        Ok(messages.join("\n"))
    }

    /// Files the change touches: the diff between its merge base with `branch` and `sha`
    /// (old and new paths of renames).
    pub fn changed_files(
        &self,
        project: &str,
        branch: &str,
        sha: &str,
    ) -> Result<Vec<String>, SchedulerError> {
        let repo = self.open(project)?;
        let oid = git2::Oid::from_str(sha).map_err(git_err(project, "parse sha"))?;
        let commit = repo
            .find_commit(oid)
            .map_err(git_err(project, "find commit"))?;
        let new_tree = commit.tree().map_err(git_err(project, "read tree"))?;
        let base_tree = match repo.revparse_single(&format!("refs/heads/{branch}")) {
            Ok(tip) => repo
                .merge_base(tip.id(), oid)
                .ok()
                .and_then(|b| repo.find_commit(b).ok())
                .and_then(|c| c.tree().ok()),
            Err(_) => None,
        };
        let diff = repo
            .diff_tree_to_tree(base_tree.as_ref(), Some(&new_tree), None)
            .map_err(git_err(project, "diff"))?;
        Ok(diff_paths(&diff))
    }

    /// Whether `sha` is already contained in `branch`.
    pub fn is_merged(&self, project: &str, branch: &str, sha: &str) -> bool {
        let Ok(repo) = self.open(project) else {
            return false;
        };
        let (Ok(oid), Ok(tip)) = (
            git2::Oid::from_str(sha),
            repo.revparse_single(&format!("refs/heads/{branch}")),
        ) else {
            return false;
        };
        tip.id() == oid || repo.graph_descendant_of(tip.id(), oid).unwrap_or(false)
    }

    /// Moves `branch` to `new_sha` taken from `from` (a merger workspace repository), only if
    /// the branch is still at `old_sha`.
    pub fn update_branch(
        &self,
        project: &str,
        branch: &str,
        from: &Path,
        new_sha: &str,
        old_sha: &str,
    ) -> Result<(), SchedulerError> {
        let repo = self.open(project)?;
        let from_str = from.display().to_string();
        let mut remote = repo
            .remote_anonymous(&from_str)
            .map_err(git_err(project, "open merger repository"))?;
        let tmp = format!("refs/sluice/merging/{branch}");
        remote
            .fetch(&[format!("+refs/heads/{branch}:{tmp}")], None, None)
            .map_err(git_err(project, "fetch merged commit"))?;
        let new = git2::Oid::from_str(new_sha).map_err(git_err(project, "parse sha"))?;
        let old = git2::Oid::from_str(old_sha).map_err(git_err(project, "parse sha"))?;
        repo.find_commit(new)
            .map_err(git_err(project, "find merged commit"))?;
        repo.reference_matching(
            &format!("refs/heads/{branch}"),
            new,
            true,
            old,
            "sluice: merge change",
        )
        .map_err(git_err(project, "update target branch"))?;
        if let Ok(mut r) = repo.find_reference(&tmp) {
            let _ = r.delete();
        }
        Ok(())
    }

    /// Writes a report as a git note on `sha` under `refs/notes/sluice-<pipeline>`.
    pub fn note(
        &self,
        project: &str,
        pipeline: &str,
        sha: &str,
        text: &str,
    ) -> Result<(), SchedulerError> {
        let repo = self.open(project)?;
        let oid = git2::Oid::from_str(sha).map_err(git_err(project, "parse sha"))?;
        let sig = git2::Signature::now("Sluice", "sluice@localhost")
            .map_err(git_err(project, "signature"))?;
        repo.note(
            &sig,
            &sig,
            Some(&format!("refs/notes/sluice-{pipeline}")),
            oid,
            text,
            true,
        )
        .map_err(git_err(project, "write report note"))?;
        Ok(())
    }

    /// Every tag (`refs/tags/...`) and the commit it points at.
    pub fn tags(&self, project: &str) -> Result<BTreeMap<String, String>, SchedulerError> {
        ref_tips(&self.open(project)?, project, "refs/tags/*")
    }

    /// Files changed between two commits (a ref update's `oldrev..newrev`).
    pub fn changed_files_between(
        &self,
        project: &str,
        old: &str,
        new: &str,
    ) -> Result<Vec<String>, SchedulerError> {
        let repo = self.open(project)?;
        let tree = |sha: &str| -> Result<git2::Tree<'_>, SchedulerError> {
            let oid = git2::Oid::from_str(sha).map_err(git_err(project, "parse sha"))?;
            repo.find_commit(oid)
                .and_then(|c| c.tree())
                .map_err(git_err(project, "read tree"))
        };
        let (old_tree, new_tree) = (tree(old)?, tree(new)?);
        let diff = repo
            .diff_tree_to_tree(Some(&old_tree), Some(&new_tree), None)
            .map_err(git_err(project, "diff"))?;
        Ok(diff_paths(&diff))
    }

    /// Scans `project` and records what changed since the last scan as events, in one
    /// transaction. A project seen for the first time records its branches and tags without
    /// events (review branches still make `patchset-created`).
    pub async fn poll(&self, store: &Store, project: &str) -> Result<PollOutcome, SchedulerError> {
        let mut current = self.refs(project)?;
        let tags = self.tags(project)?;
        let stored: BTreeMap<String, String> = store
            .git_refs(&self.name, project)
            .await?
            .into_iter()
            .collect();
        let first = stored.is_empty();
        // Tags were not scanned before this marker existed: seed them quietly once.
        let first_tags = !stored.contains_key(TAGS_SEEDED);
        current.extend(tags);
        current.insert(TAGS_SEEDED.into(), NULL_SHA.into());
        let mut n_events = 0;
        let is_branch = |refname: &str| {
            refname
                .strip_prefix("refs/heads/")
                .is_some_and(|b| !b.starts_with(REVIEW_PREFIX))
        };
        let mut branches_moved = false;
        let mut tx = store.begin().await?;
        for (refname, sha) in &current {
            let old = stored.get(refname);
            if old == Some(sha) {
                continue;
            }
            branches_moved |= is_branch(refname);
            tx.set_git_ref(&self.name, project, refname, Some(sha))
                .await?;
            if refname == TAGS_SEEDED {
                continue;
            }
            if let Some((branch, topic)) = parse_review_ref(refname) {
                let message = self.change_message(project, &branch, sha)?;
                let change: ChangeRow = tx
                    .upsert_change(&self.name, project, refname, &branch, &topic, sha, &message)
                    .await?;
                tx.insert_event(
                    &self.name,
                    "patchset-created",
                    &json!({"project": project, "ref": refname, "number": change.number, "patchset": sha, "branch": branch}),
                )
                .await?;
                n_events += 1;
            } else {
                // A first scan (of the project, or of its tags) only records what is there.
                let seeding = first || (first_tags && refname.starts_with("refs/tags/"));
                if seeding {
                    continue;
                }
                tx.insert_event(
                    &self.name,
                    "ref-updated",
                    &ref_event(project, refname, old.map_or(NULL_SHA, String::as_str), sha),
                )
                .await?;
                n_events += 1;
            }
        }
        for (refname, sha) in &stored {
            if current.contains_key(refname) {
                continue;
            }
            branches_moved |= is_branch(refname);
            tx.set_git_ref(&self.name, project, refname, None).await?;
            if let Some(change) = tx.change_by_ref(&self.name, project, refname).await? {
                if change.status == "open" {
                    tx.set_change_status(&self.name, project, change.number, "abandoned")
                        .await?;
                    tx.insert_event(
                        &self.name,
                        "change-abandoned",
                        &json!({"project": project, "ref": refname, "number": change.number}),
                    )
                    .await?;
                    n_events += 1;
                }
            } else {
                tx.insert_event(
                    &self.name,
                    "ref-updated",
                    &ref_event(project, refname, sha, NULL_SHA),
                )
                .await?;
                n_events += 1;
            }
        }
        tx.commit().await?;
        Ok(PollOutcome {
            events: n_events,
            branches_moved,
        })
    }
}

/// What one scan of a project found.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollOutcome {
    /// Events recorded.
    pub events: usize,
    /// A branch other than a review branch was created, moved or deleted (configuration may
    /// have changed), or the project was scanned for the first time.
    pub branches_moved: bool,
}

/// Watches local repositories' refs with inotify (the `notify` crate) and remembers which
/// projects changed, so the scheduler scans them at once instead of at the next interval.
/// A repository that cannot be watched (no inotify, too many watches, a filesystem that does
/// not report changes) is simply left to the interval scan.
pub struct RepoWatcher {
    // Kept alive for its watches; `None` when inotify could not be started.
    _watcher: Option<notify::RecommendedWatcher>,
    /// `(connection, project)` pairs whose refs are watched.
    watched: BTreeSet<(String, String)>,
    dirty: Arc<Mutex<BTreeSet<(String, String)>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for RepoWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoWatcher").finish_non_exhaustive()
    }
}

impl RepoWatcher {
    /// Watches every `(driver, project)` repository; `wake` is notified on each change.
    pub fn start(repos: &[(&GitDriver, &str)], wake: Arc<tokio::sync::Notify>) -> RepoWatcher {
        let dirty: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
        // (git dir, connection, project)
        let mut dirs: Vec<(PathBuf, String, String)> = Vec::new();
        for (driver, project) in repos {
            let path = driver.repo_path(project);
            let git_dir = if path.join(".git").is_dir() {
                path.join(".git")
            } else {
                path
            };
            let git_dir = std::fs::canonicalize(&git_dir).unwrap_or(git_dir);
            dirs.push((git_dir, driver.name.clone(), project.to_string()));
        }
        let handler_dirs = dirs.clone();
        let handler_dirty = dirty.clone();
        let handler_wake = wake.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let mut changed = false;
            if let Ok(mut set) = handler_dirty.lock() {
                match event {
                    // Reads (our own scans open the refs) change nothing: only writes count,
                    // else every scan would wake the next one.
                    Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
                    Ok(event) => {
                        for path in &event.paths {
                            for (dir, connection, project) in &handler_dirs {
                                if path.starts_with(dir) {
                                    changed |= set.insert((connection.clone(), project.clone()));
                                }
                            }
                        }
                    }
                    // Events were lost: scan everything.
                    Err(_) => {
                        for (_, connection, project) in &handler_dirs {
                            changed |= set.insert((connection.clone(), project.clone()));
                        }
                    }
                }
            }
            if changed {
                handler_wake.notify_one();
            }
        });
        let mut watched = BTreeSet::new();
        let watcher = match watcher {
            Ok(mut w) => {
                use notify::Watcher;
                for (dir, connection, project) in &dirs {
                    // The directory itself (packed-refs, HEAD) and every ref below refs/.
                    let watched_dir =
                        w.watch(dir, notify::RecursiveMode::NonRecursive)
                            .and_then(|()| {
                                w.watch(&dir.join("refs"), notify::RecursiveMode::Recursive)
                            });
                    match watched_dir {
                        Ok(()) => {
                            watched.insert((connection.clone(), project.clone()));
                        }
                        Err(e) => {
                            tracing::warn!(project = %project, error = %e, "cannot watch the repository; its refs are scanned at the interval only");
                        }
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the repository watcher; refs are scanned at the interval only");
                None
            }
        };
        RepoWatcher {
            _watcher: watcher,
            watched,
            dirty,
            wake,
        }
    }

    /// The `(connection, project)` pairs changed since the last call.
    pub fn take_changed(&self) -> BTreeSet<(String, String)> {
        self.dirty
            .lock()
            .map(|mut set| std::mem::take(&mut *set))
            .unwrap_or_default()
    }

    /// Whether the refs of `project` on `connection` are watched (a push is reported).
    pub fn is_watched(&self, connection: &str, project: &str) -> bool {
        self.watched
            .contains(&(connection.to_string(), project.to_string()))
    }

    /// What is notified when a repository changes.
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }
}

/// Every path a diff touches (old and new paths of renames), each once, in diff order.
fn diff_paths(diff: &git2::Diff<'_>) -> Vec<String> {
    let mut files = Vec::new();
    for delta in diff.deltas() {
        for path in [delta.old_file().path(), delta.new_file().path()]
            .into_iter()
            .flatten()
        {
            let path = path.display().to_string();
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    files
}

/// Every `refs/heads/...` of `repo` and the commit it points at.
fn branch_tips(
    repo: &git2::Repository,
    project: &str,
) -> Result<BTreeMap<String, String>, SchedulerError> {
    ref_tips(repo, project, "refs/heads/*")
}

/// Every ref of `repo` matching `glob` and the commit it points at (refs that do not lead to
/// a commit are left out).
fn ref_tips(
    repo: &git2::Repository,
    project: &str,
    glob: &str,
) -> Result<BTreeMap<String, String>, SchedulerError> {
    let mut out = BTreeMap::new();
    let refs = repo
        .references_glob(glob)
        .map_err(git_err(project, &format!("list {glob}")))?;
    for r in refs.flatten() {
        if let (Some(name), Ok(commit)) = (r.name(), r.peel_to_commit()) {
            out.insert(name.to_string(), commit.id().to_string());
        }
    }
    Ok(out)
}

/// The branch HEAD points at, else `master`.
fn head_branch(repo: &git2::Repository) -> String {
    repo.find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().map(str::to_string))
        .and_then(|t| t.strip_prefix("refs/heads/").map(str::to_string))
        .unwrap_or_else(|| "master".into())
}

/// Git's forty zeros: the missing side of a created or deleted ref.
pub const NULL_SHA: &str = "0000000000000000000000000000000000000000";

/// A `git_refs` row saying the project's tags have been scanned once.
const TAGS_SEEDED: &str = "refs/sluice/tags-seeded";

/// A `ref-updated` event payload, Zuul's way: `oldrev` zeros for a created ref, `newrev`
/// zeros for a deleted one; `branch` for `refs/heads/` refs.
fn ref_event(project: &str, refname: &str, oldrev: &str, newrev: &str) -> serde_json::Value {
    let mut payload =
        json!({"project": project, "ref": refname, "oldrev": oldrev, "newrev": newrev});
    if let Some(branch) = refname.strip_prefix("refs/heads/") {
        payload["branch"] = json!(branch);
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_refs() {
        assert_eq!(
            parse_review_ref("refs/heads/review/main/fix-it"),
            Some(("main".into(), "fix-it".into()))
        );
        assert_eq!(
            parse_review_ref("refs/heads/review/stable/1.0/x"),
            Some(("stable/1.0".into(), "x".into()))
        );
        assert_eq!(parse_review_ref("refs/heads/main"), None);
        assert_eq!(parse_review_ref("refs/heads/review/main"), None);
    }

    #[test]
    fn depends_on_footers() {
        let msg = "Fix\n\nDepends-On: git://localhost/org/a/review/main/x\ndepends-on:  git://localhost/org/a/review/main/x \nDepends-On: other\n";
        assert_eq!(
            depends_on(msg),
            ["git://localhost/org/a/review/main/x", "other"]
        );
    }

    #[test]
    fn change_urls_round_trip() {
        let url = change_url("localhost", "org/a", "refs/heads/review/main/x");
        assert_eq!(url, "git://localhost/org/a/review/main/x");
        assert_eq!(
            parse_change_url(&url),
            Some((
                "localhost".into(),
                "org/a".into(),
                "refs/heads/review/main/x".into()
            ))
        );
        assert_eq!(parse_change_url("https://example.com/org/a/pull/1"), None);
    }
}
