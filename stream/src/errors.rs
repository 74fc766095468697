//! The crate's errors: what went wrong, with the file, address or build it concerns.

use std::io;
use std::path::PathBuf;

/// An error of Sluice's log streaming that the caller may report or branch on.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The executors file could not be read.
    #[error("cannot read executors file {path}")]
    ReadExecutors {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The executors file is not valid YAML of the documented shape.
    #[error("invalid executors file {path}")]
    ParseExecutors {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The file watcher (inotify) could not be set up.
    #[error("cannot watch {path}")]
    Watch {
        /// The watched file.
        path: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

/// Why a build's stream cannot be had: each maps to Zuul's text or close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// No executor knows the build.
    #[error("Build not found")]
    NotFound,
    /// The build is known but its log does not exist yet.
    #[error("Build did not start yet")]
    NotStarted,
    /// Every executor failed to answer, or the connection to the stream failed.
    #[error("Internal streaming error")]
    Internal(
        /// What failed (logged, never shown to clients).
        String,
    ),
}
