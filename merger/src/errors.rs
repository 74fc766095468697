//! Every error the merger returns: one enum, [`MergeError`], whose variants carry the project,
//! branch, commit and path they concern, with the underlying git or I/O cause as `#[source]`.
//!
//! The executor maps [`MergeError::Conflict`] to `MERGE_CONFLICT`,
//! [`MergeError::UnknownRef`] to `ABORTED` (a ref that cannot be fetched) and everything else to
//! `ERROR`; [`MergeError::is_conflict`] is the one test it needs.

use std::path::PathBuf;

use crate::MergeMode;

/// Any failure while preparing a workspace or checking out a repository.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A change does not apply to its branch with its merge mode (the build result is
    /// `MERGE_CONFLICT`).
    #[error(
        "merge conflict in project {project}: {commit} does not apply to branch {branch} \
         with merge mode {mode} (conflicting paths: {})",
        if paths.is_empty() { "none reported".to_string() } else { paths.join(", ") }
    )]
    Conflict {
        /// Canonical project name.
        project: String,
        /// Target branch of the change.
        branch: String,
        /// The change's commit or ref, as given in the request.
        commit: String,
        /// The merge mode that failed.
        mode: MergeMode,
        /// Paths with conflicts, when git reported them.
        paths: Vec<String>,
    },

    /// No checkout candidate matched and the project's default branch does not exist. The
    /// message is Zuul's `error_detail` text, word for word, hence its capital letter.
    #[error("Project {project} does not have the default branch {branch}")]
    MissingDefaultBranch {
        /// Canonical project name.
        project: String,
        /// The configured default branch.
        branch: String,
    },

    /// A change targets a branch its project does not have.
    #[error("project {project} has no branch {branch} to merge {commit} onto")]
    MissingBranch {
        /// Canonical project name.
        project: String,
        /// The change's target branch.
        branch: String,
        /// The change's commit or ref.
        commit: String,
    },

    /// A commit or ref cannot be found in the project's source repository.
    #[error("cannot resolve {reference} in project {project} (source {})", source_repo.display())]
    UnknownRef {
        /// Canonical project name (or the source path for playbook checkouts).
        project: String,
        /// The commit sha or ref that was asked for.
        reference: String,
        /// The repository searched.
        source_repo: PathBuf,
        /// What git said.
        #[source]
        cause: git2::Error,
    },

    /// A change names a project that is not in the request's project list.
    #[error("change {commit} names project {project}, which is not in the workspace request")]
    UnknownProject {
        /// The project the change names.
        project: String,
        /// The change's commit or ref.
        commit: String,
    },

    /// The same canonical project name appears twice in the request.
    #[error("project {project} is listed twice in the workspace request")]
    DuplicateProject {
        /// Canonical project name.
        project: String,
    },

    /// A canonical project name cannot be turned into a workspace path.
    #[error("invalid canonical project name {name:?}: {reason}")]
    InvalidProjectName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// Two projects map to the same workspace path, or one's path contains the other's.
    #[error("workspace path {} of project {project} collides with project {other}", path.display())]
    PathCollision {
        /// Project whose path collides.
        project: String,
        /// The project it collides with.
        other: String,
        /// The colliding path.
        path: PathBuf,
    },

    /// A clone destination already exists and is not an empty directory.
    #[error("destination {} already exists and is not empty", path.display())]
    DestinationExists {
        /// The destination path.
        path: PathBuf,
    },

    /// A workspace scheme name is not one Zuul knows.
    #[error("unknown workspace scheme {0:?} (expected golang, flat or unique)")]
    UnknownScheme(String),

    /// Any other git operation failed.
    #[error("git {op} failed for project {project} in {}", path.display())]
    Git {
        /// Canonical project name (or the source path for playbook checkouts).
        project: String,
        /// What was being done, e.g. `fetch from /srv/git/org/repo`.
        op: String,
        /// The repository the operation ran in.
        path: PathBuf,
        /// What git said.
        #[source]
        cause: git2::Error,
    },

    /// A filesystem operation failed.
    #[error("{op} {} failed", path.display())]
    Io {
        /// What was being done, e.g. `create directory`.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// What the OS said.
        #[source]
        cause: std::io::Error,
    },
}

impl MergeError {
    /// True when the build result should be `MERGE_CONFLICT`.
    pub fn is_conflict(&self) -> bool {
        matches!(self, MergeError::Conflict { .. })
    }
}

/// Context (project and repository path) for turning `git2::Error`s into [`MergeError::Git`].
#[derive(Clone, Copy)]
pub(crate) struct Cx<'a> {
    pub(crate) project: &'a str,
    pub(crate) path: &'a std::path::Path,
}

impl<'a> Cx<'a> {
    pub(crate) fn new(project: &'a str, path: &'a std::path::Path) -> Self {
        Cx { project, path }
    }

    /// A `map_err` adapter: `.map_err(cx.git(|| format!("find branch {b}")))`.
    pub(crate) fn git<F: FnOnce() -> String + 'a>(
        self,
        op: F,
    ) -> impl FnOnce(git2::Error) -> MergeError + 'a {
        move |cause| MergeError::Git {
            project: self.project.to_string(),
            op: op(),
            path: self.path.to_path_buf(),
            cause,
        }
    }
}

/// A `map_err` adapter for I/O errors.
pub(crate) fn io(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> MergeError {
    let path = path.to_path_buf();
    move |cause| MergeError::Io { op, path, cause }
}
