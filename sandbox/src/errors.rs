//! Every error of this crate: the reasons Sluice itself could not build, start or supervise a
//! child. A child that fails, times out or is aborted is not an error but an
//! [`Outcome`](crate::Outcome).

use std::{ffi::OsString, io, path::PathBuf, sync::Arc};

/// Why the sandbox crate could not do its work.
///
/// I/O causes are kept in `Arc` so that the error is `Clone` and can travel inside events.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// No `bwrap` executable was found.
    #[error("bubblewrap not found: apt-get install bubblewrap (looked for `{}`)", path.display())]
    BwrapNotFound {
        /// The path or name that was looked up.
        path: PathBuf,
    },

    /// `bwrap --version` did not run or printed something unexpected.
    #[error("unusable bubblewrap at `{}`: {detail}", path.display())]
    BwrapUnusable {
        /// The bwrap executable.
        path: PathBuf,
        /// What went wrong, in a few words.
        detail: String,
    },

    /// A helper program (ssh-agent, ssh-add) is not installed.
    #[error("`{}` not found: {hint}", argv0.to_string_lossy())]
    ToolMissing {
        /// The program that was looked up.
        argv0: OsString,
        /// What to install.
        hint: &'static str,
    },

    /// A path handed to the sandbox is unusable (relative, or not representable in
    /// `/etc/passwd`).
    #[error("invalid sandbox path `{}`: {reason}", path.display())]
    InvalidPath {
        /// The offending path.
        path: PathBuf,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// A command line with no program.
    #[error("empty command line")]
    EmptyArgv,

    /// Creating a pipe (output or in-memory file) failed.
    #[error("error creating a pipe for {purpose}")]
    Pipe {
        /// What the pipe was for.
        purpose: &'static str,
        /// The cause.
        #[source]
        source: Arc<io::Error>,
    },

    /// Spawning the child failed.
    #[error("error spawning `{}`", argv0.to_string_lossy())]
    Spawn {
        /// The program.
        argv0: OsString,
        /// The cause.
        #[source]
        source: Arc<io::Error>,
    },

    /// Waiting for the child failed.
    #[error("error waiting for `{}`", argv0.to_string_lossy())]
    Wait {
        /// The program.
        argv0: OsString,
        /// The cause.
        #[source]
        source: Arc<io::Error>,
    },

    /// A filesystem operation of the crate itself failed (for example the ssh-agent's private
    /// directory).
    #[error("error {action} `{}`", path.display())]
    Io {
        /// What was being done, as a gerund ("creating", "reading").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<io::Error>,
    },

    /// ssh-agent exited or closed its output before announcing its socket.
    #[error("ssh-agent did not start (socket `{}`): {detail}", socket.display())]
    SshAgentStart {
        /// The socket path it was asked to listen on.
        socket: PathBuf,
        /// What was seen instead of the announcement.
        detail: String,
    },

    /// ssh-add refused the key.
    #[error("ssh-add failed for `{}` ({status}): {output}", key.display())]
    SshAdd {
        /// The private key file.
        key: PathBuf,
        /// The exit status, as printed by the standard library.
        status: String,
        /// ssh-add's combined output, trimmed.
        output: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

pub(crate) fn pipe_error(purpose: &'static str) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Pipe {
        purpose,
        source: Arc::new(source),
    }
}
