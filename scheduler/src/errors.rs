//! The scheduler's error type.

use std::path::PathBuf;

/// Why the scheduler could not do its work (a failed build or a broken change is not an error:
/// those are results).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A configuration file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not valid.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A configuration value is not valid.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    /// A git operation on a project repository failed.
    #[error("git: {project}: {what}")]
    Git {
        /// Canonical project name.
        project: String,
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: git2::Error,
    },
    /// The GitHub driver failed.
    #[error(transparent)]
    Github(#[from] sluice_github::GithubError),
    /// A blocking task died.
    #[error("internal task failed: {0}")]
    Join(String),
}

impl SchedulerError {
    /// Worth trying again later: GitHub's server errors, rate limits and unanswered requests,
    /// the store, a blocking task that died. Bad input and configuration are not.
    pub fn is_transient(&self) -> bool {
        match self {
            SchedulerError::Github(sluice_github::GithubError::Store(_)) => true,
            SchedulerError::Github(e) => e.is_transient(),
            SchedulerError::Store(_) | SchedulerError::Join(_) => true,
            _ => false,
        }
    }

    /// When GitHub said a rate limit lifts (ms since the epoch).
    pub fn retry_at(&self) -> Option<i64> {
        match self {
            SchedulerError::Github(e) => e.retry_at(),
            _ => None,
        }
    }
}

/// Reads a YAML document with the position of the first error.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    text: &str,
) -> Result<T, SchedulerError> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        SchedulerError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.to_string(),
        }
    })
}
