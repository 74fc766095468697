//! Errors of the callback core.

use std::path::PathBuf;

/// Everything that can go wrong in the callback core.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// A job-output file could not be opened or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document handed to the core was not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A JSON document had the wrong shape.
    #[error("unexpected JSON: {0}")]
    Shape(String),
    /// A `failure-output` regex did not compile.
    #[error("invalid failure-output regex {regex:?}: {source}")]
    Regex {
        /// The regex as configured.
        regex: String,
        /// The compile error.
        #[source]
        source: regex::Error,
    },
    /// A console stream thread could not be started.
    #[error("cannot start log stream thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl CallbackError {
    /// Wraps an I/O error on `path`.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CallbackError::File {
            path: path.into(),
            source,
        }
    }
}
