//! Serializable records of what the merger did: [`MergeOp`] (one git operation, as Zuul logs
//! them) and [`WorkspaceRepos`], the content of `work/logs/workspace-repos.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::errors::{io, MergeError};

/// One step of the speculative merge, enough for a user to reproduce it by hand: a git command
/// run in a workspace repository (`cmd` + `path`), or a note (`comment`), e.g. that a change was
/// already applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeOp {
    /// The git command line, e.g. `["git", "merge", "-m", "Merge 'abc'", "FETCH_HEAD"]`.
    pub cmd: Option<Vec<String>>,
    /// The repository it ran in, relative to `work/src` (e.g. `localhost/org/repo`).
    pub path: Option<String>,
    /// Author/committer date (seconds since the epoch, UTC) given to commits it created.
    pub timestamp: Option<i64>,
    /// A note instead of a command.
    pub comment: Option<String>,
}

impl MergeOp {
    /// A command run in the repository at `path`.
    pub fn cmd<I, S>(cmd: I, path: &str, timestamp: Option<i64>) -> MergeOp
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MergeOp {
            cmd: Some(cmd.into_iter().map(Into::into).collect()),
            path: Some(path.to_string()),
            timestamp,
            comment: None,
        }
    }

    /// A note.
    pub fn comment(comment: impl Into<String>) -> MergeOp {
        MergeOp {
            cmd: None,
            path: None,
            timestamp: None,
            comment: Some(comment.into()),
        }
    }
}

/// `work/logs/workspace-repos.json`: the speculative state the job saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRepos {
    /// `{canonical_name: {branch: sha}}` for every local branch of every workspace repository.
    pub repo_state: BTreeMap<String, BTreeMap<String, String>>,
    /// The merge operations, in the order they ran.
    pub merge_ops: Vec<MergeOp>,
    /// Name used for merge commits.
    pub merge_name: String,
    /// Email used for merge commits.
    pub merge_email: String,
}

impl WorkspaceRepos {
    /// Writes the record as pretty JSON to `path`.
    pub fn write(&self, path: &Path) -> Result<(), MergeError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| MergeError::Io {
            op: "serialize workspace repos for",
            path: path.to_path_buf(),
            cause: std::io::Error::other(e),
        })?;
        std::fs::write(path, json).map_err(io("write", path))
    }
}
