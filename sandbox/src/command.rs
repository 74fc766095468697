//! What to run: [`ChildCommand`] owns the argv, the explicit environment, the working directory
//! and the in-memory files that reach the child through pipes (never through the disk).

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt,
    os::fd::{AsRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

use crate::{
    errors::{pipe_error, Result, SandboxError},
    linux,
};

/// A command ready for [`run`](crate::run): argv, environment (the child gets exactly this map,
/// nothing of Sluice's own environment), working directory, and any pipes whose read ends the
/// child inherits.
///
/// Build one with [`ChildCommand::new`] for an unsandboxed child, or with
/// [`Bwrap::command`](crate::Bwrap::command) for a sandboxed one. Dropping it closes the pipes.
pub struct ChildCommand {
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: BTreeMap<OsString, OsString>,
    pub(crate) cwd: PathBuf,
    pub(crate) feeds: Vec<FileFeed>,
    /// Written to the child's `/proc/self/oom_score_adj` before `exec`.
    pub(crate) oom_score_adj: Option<i32>,
    /// `cgroup.procs` files the child moves itself into before `exec` (resource limits).
    pub(crate) cgroup_procs: Vec<PathBuf>,
}

impl ChildCommand {
    /// An unsandboxed command. `argv[0]` is looked up in the `PATH` of `env` when it has no
    /// slash; `cwd` must be absolute.
    pub fn new(
        argv: Vec<OsString>,
        env: BTreeMap<OsString, OsString>,
        cwd: PathBuf,
    ) -> Result<Self> {
        if argv.is_empty() {
            return Err(SandboxError::EmptyArgv);
        }
        require_absolute(&cwd)?;
        Ok(ChildCommand {
            argv,
            env,
            cwd,
            feeds: Vec::new(),
            oom_score_adj: None,
            cgroup_procs: Vec::new(),
        })
    }

    /// Makes the child join these cgroups (their `cgroup.procs` files) before `exec`, so it and
    /// everything it starts count against their limits from the first instruction. Spawning
    /// fails if a file cannot be written.
    pub fn join_cgroups(&mut self, procs_files: Vec<PathBuf>) {
        self.cgroup_procs = procs_files;
    }

    /// The full command line, program first.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// The complete environment of the child.
    pub fn env(&self) -> &BTreeMap<OsString, OsString> {
        &self.env
    }

    /// The working directory the child starts in (on the host side).
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }
}

impl fmt::Debug for ChildCommand {
    // Hand-written so that file contents (secrets) never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildCommand")
            .field("argv", &self.argv)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("oom_score_adj", &self.oom_score_adj)
            .field(
                "files",
                &self.feeds.iter().map(|feed| &feed.path).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One in-memory file on its way into the child: the child reads `read`, the runner writes
/// `content` into `write` once the child is spawned.
pub(crate) struct FileFeed {
    pub(crate) path: PathBuf,
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    pub(crate) content: Vec<u8>,
}

impl FileFeed {
    pub(crate) fn new(path: PathBuf, content: Vec<u8>) -> Result<Self> {
        let (read, write) =
            linux::cloexec_pipe_above_stdio().map_err(pipe_error("an in-memory file"))?;
        Ok(FileFeed {
            path,
            read,
            write,
            content,
        })
    }

    /// The fd number the child reads from (the same number in parent and child).
    pub(crate) fn child_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

pub(crate) fn require_absolute(path: &Path) -> Result<()> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(SandboxError::InvalidPath {
            path: path.to_owned(),
            reason: "must be absolute",
        })
    }
}
