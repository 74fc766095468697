//! Playbook and role checkouts (`<jobdir>/trusted/project_<n>/...` and
//! `<jobdir>/untrusted/project_<n>/...`): a fresh clone of one repository with one branch, tag
//! or commit checked out. For an untrusted project in the buildset, pass the prepared workspace
//! repository as the source so the checkout shows its speculative state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::errors::{Cx, MergeError};
use crate::git;

/// What [`checkout_playbook_repo`] checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookCheckout {
    /// The checkout directory (`dest`).
    pub path: PathBuf,
    /// A branch name (HEAD is that local branch), `refs/tags/<tag>`, or the sha HEAD is
    /// detached at.
    pub checkout: String,
    /// The sha HEAD points at.
    pub commit: String,
}

/// Clones `source` (bare or not) into `dest` (absent or an empty directory) and checks out
/// `branch_or_commit`: a branch of `source` (HEAD on that local branch), else a tag, else
/// any commit or ref `source` can resolve (detached HEAD), even one no branch contains.
/// `origin` is then set to `file:///dev/null`. Branches starting with one of `exclude_branches`
/// are not cloned (see [`crate::ProjectRepo::exclude_branches`]); a commit of one is still
/// checked out by sha.
pub fn checkout_playbook_repo(
    source: &Path,
    dest: &Path,
    branch_or_commit: &str,
    exclude_branches: &[String],
) -> Result<PlaybookCheckout, MergeError> {
    let label = source.display().to_string();
    let repo = git::clone_local(source, dest, &label, exclude_branches)?;
    let cx = Cx::new(&label, dest);
    let (checkout, commit) = if git::branch_tip(&repo, branch_or_commit).is_some() {
        let oid = git::checkout_branch(&repo, branch_or_commit, cx)?;
        (branch_or_commit.to_string(), oid)
    } else if let Some(oid) = git::tag_commit(&repo, branch_or_commit) {
        git::checkout_detached(&repo, oid, cx)?;
        (format!("refs/tags/{branch_or_commit}"), oid)
    } else {
        let src = git::open_source(source, &label)?;
        let oid = git::resolve_commit(&src, branch_or_commit, &label)?;
        git::copy_commit(&src, &repo, oid, &label)?;
        git::checkout_detached(&repo, oid, cx)?;
        (oid.to_string(), oid)
    };
    git::null_origin(&repo, cx)?;
    Ok(PlaybookCheckout {
        path: dest.to_path_buf(),
        checkout,
        commit: commit.to_string(),
    })
}
