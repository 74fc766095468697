//! Errors of the executor crate. A build that fails is a result, not an error: these are for
//! when Sluice itself cannot do its work (bad nodes file, missing installation, I/O).

use std::io;
use std::path::{Path, PathBuf};

/// Ansible installation errors.
#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    /// A job asked for a version that is not installed.
    #[error("ansible version {requested} is not installed (installed: {})", if installed.is_empty() { "none; run `sluice manage-ansible`".to_string() } else { installed.join(", ") })]
    UnknownVersion {
        /// What the job asked for.
        requested: String,
        /// What is installed.
        installed: Vec<String>,
    },
    /// `manage-ansible` was asked for a version Sluice does not support.
    #[error("ansible version {requested} is not supported (supported: {})", supported.join(", "))]
    Unsupported {
        /// What was asked for.
        requested: String,
        /// What Sluice supports.
        supported: Vec<String>,
    },
    /// The venv holds another ansible-core than its name says.
    #[error("{} holds ansible-core {found}, expected {expected}.x", venv.display())]
    WrongCore {
        /// The venv.
        venv: PathBuf,
        /// The expected minor version.
        expected: String,
        /// What `ansible.release` says.
        found: String,
    },
    /// The built native module is missing.
    #[error("native module {} not found: build it with `cargo build -p sluice-native`", path.display())]
    NativeModuleMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A command could not start.
    #[error("cannot run {argv}")]
    Spawn {
        /// The command.
        argv: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command failed.
    #[error("{argv} failed ({status}): {stderr}")]
    CommandFailed {
        /// The command.
        argv: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// File system error.
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl AnsibleError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Errors reading a static nodes file.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// The file cannot be read.
    #[error("cannot read nodes file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid node list.
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
}
