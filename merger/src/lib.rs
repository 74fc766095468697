//! Speculative repository state: clones every project a build needs into its workspace with
//! git2, merges the change (and the changes ahead of it) onto its branch with the project's merge
//! mode, and checks out the branch each project should show.
//!
//! Used by the executor to build `<jobdir>/work/src` and the playbook checkouts, and by the
//! scheduler to compute speculative states ([`merge_in_memory`]). Sources are git repositories
//! on local disk (bare or not); git2 is built without network transports.
//!
//! # API
//!
//! - [`prepare_workspace`]`(&WorkspaceRequest) -> Result<WorkspaceState, MergeError>`: clone,
//!   merge in queue order, check out, null the `origin` URLs. See its docs for the exact steps
//!   and the checkout order.
//! - [`checkout_playbook_repo`]`(source, dest, branch_or_commit) -> Result<PlaybookCheckout,
//!   MergeError>`: one fresh checkout for trusted/untrusted playbook and role directories.
//! - [`WorkspaceState::workspace_repos`] gives the [`WorkspaceRepos`] record written to
//!   `work/logs/workspace-repos.json` ([`WorkspaceRepos::write`]).
//! - [`merge_in_memory`]`(projects, changes, identity, time) -> Result<Vec<SpeculativeRepo>,
//!   MergeError>`: the scheduler's merge: the same merges over the sources' branch tips, the
//!   merged commits kept in memory (no clone, no checkout, nothing written).
//! - [`workspace_project_path`] maps a canonical name to its path under `src/` for a
//!   [`WorkspaceScheme`].
//! - [`MergeMode`] is the configuration's (`sluice_config::MergeMode`), re-exported.
//! - [`MergeError`]: [`MergeError::Conflict`] means `MERGE_CONFLICT`
//!   ([`MergeError::is_conflict`]); [`MergeError::MissingDefaultBranch`] carries Zuul's
//!   "Project X does not have the default branch Y" text.
//!
//! # Merge semantics
//!
//! Each change is applied to the current tip of its local branch in the workspace clone, so
//! changes on the same project and branch stack. Merge commits and squash commits are authored
//! and committed by [`MergeIdentity`] at [`WorkspaceRequest::merge_time`] with Zuul's message
//! `Merge '<commit>'`; rebased and cherry-picked commits keep their author and message. Modes
//! behave like the git commands Zuul runs, with git's defaults (see [`MergeMode`]): `merge*`
//! fast-forward when possible and are no-ops when the branch already contains the change;
//! `squash-merge` always makes exactly one commit. All merging happens in the object database;
//! the working tree is written once, at checkout.
//!
//! One deliberate extension: Zuul's `cherry-pick` picks only the change's tip commit; here every
//! commit of the change that the branch lacks is picked, oldest first, and commits that turn out
//! to be already applied are skipped. For single-commit changes (Gerrit) the result is the same.
//!
//! Everything here is blocking file and git I/O: call it from `spawn_blocking` in async code.

#![warn(missing_docs)]

mod errors;
mod git;
mod layout;
mod merge;
mod playbook;
mod speculative;
mod state;
mod workspace;

pub use errors::MergeError;
pub use git::NULL_ORIGIN;
pub use layout::{split_canonical_name, workspace_project_path, WorkspaceScheme};
pub use playbook::{checkout_playbook_repo, PlaybookCheckout};
pub use sluice_config::MergeMode;
pub use speculative::{merge_in_memory, SpeculativeProject, SpeculativeRepo};
pub use state::{MergeOp, WorkspaceRepos};
pub use workspace::{
    prepare_workspace, Change, ItemRef, MergeIdentity, ProjectRepo, RepoState, WorkspaceRequest,
    WorkspaceState,
};
