//! The GitHub driver's error type.

use std::path::PathBuf;

/// Why a GitHub operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// The connection configuration is not usable.
    #[error("connection {connection}: {message}")]
    Config {
        /// Connection name.
        connection: String,
        /// What is wrong.
        message: String,
    },
    /// A key file could not be read.
    #[error("connection {connection}: cannot read {}", path.display())]
    ReadKey {
        /// Connection name.
        connection: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// GitHub answered with an error status.
    #[error("GitHub {method} {path}: HTTP {status}: {message}")]
    Status {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// HTTP status.
        status: u16,
        /// GitHub's message (or the start of the body).
        message: String,
        /// When a rate limit lifts (ms since the epoch), if GitHub said so.
        retry_at: Option<i64>,
    },
    /// The request did not get an answer.
    #[error("GitHub {method} {path}: {message}")]
    Transport {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// What happened.
        message: String,
    },
    /// An answer was not the JSON expected.
    #[error("GitHub {path}: unexpected answer: {message}")]
    Decode {
        /// API path.
        path: String,
        /// What did not fit.
        message: String,
    },
    /// `git` failed on a mirror.
    #[error("git {what} for {project}: {message}")]
    Git {
        /// Project (`org/repo`).
        project: String,
        /// What was being done.
        what: String,
        /// Its stderr or the spawn error.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
}

impl GithubError {
    /// Worth trying again later: rate limits, server errors, no answer.
    pub fn is_transient(&self) -> bool {
        match self {
            GithubError::Status {
                status, retry_at, ..
            } => *status >= 500 || *status == 429 || *status == 408 || retry_at.is_some(),
            GithubError::Transport { .. } | GithubError::Git { .. } => true,
            _ => false,
        }
    }

    /// When GitHub said a rate limit lifts (ms since the epoch).
    pub fn retry_at(&self) -> Option<i64> {
        match self {
            GithubError::Status { retry_at, .. } => *retry_at,
            _ => None,
        }
    }

    /// The HTTP status, if GitHub answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
