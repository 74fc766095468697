//! The crate's errors: what went wrong, with the file, address or build it concerns.

use std::io;
use std::path::PathBuf;

use crate::request::{MAX_REQUEST, REQUEST_TIMEOUT};

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
    /// A log could not be opened.
    #[error("cannot open {path}")]
    OpenLog {
        /// The log.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A TLS certificate, key or CA could not be loaded or used.
    #[error("finger TLS: {path}: {detail}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
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

/// Why no request could be read from a connection.
#[derive(Debug, thiserror::Error)]
pub enum ReadRequestError {
    /// The client sent nothing whole within [`REQUEST_TIMEOUT`].
    #[error("no request line within {REQUEST_TIMEOUT:?}")]
    Timeout,
    /// The client closed before ending its line.
    #[error("connection closed before the request line ended")]
    Eof,
    /// The line is longer than [`MAX_REQUEST`].
    #[error("request line longer than {MAX_REQUEST} bytes")]
    TooLong,
    /// Reading failed.
    #[error("cannot read the request line")]
    Io(#[source] std::io::Error),
}

/// Why a log could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The log could not be opened.
    #[error("cannot open {path}")]
    Open {
        /// The log.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading the log failed.
    #[error("cannot read {path}")]
    Read {
        /// The log.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The watcher's connection failed.
    #[error("cannot send to the watcher")]
    Write(#[source] io::Error),
    /// The log could not be watched.
    #[error(transparent)]
    Watch(std::sync::Arc<StreamError>),
    /// The log's follower failed (it logged why).
    #[error("the follower of {0} failed")]
    Follower(PathBuf),
}

impl FollowError {
    /// Whether nothing could be sent because of Sluice's side (as opposed to the watcher).
    pub fn is_internal(&self) -> bool {
        !matches!(self, FollowError::Write(_))
    }
}
