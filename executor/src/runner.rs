//! The executor's use of `sluice-sandbox`: turning a playbook invocation into a (sandboxed)
//! child, and the per-build ssh-agent.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_sandbox::{
    run as run_child, AbortHandle, Bwrap, ChildCommand, Exit, InMemoryFile, RunConfig, SandboxSpec,
    SshAgent,
};

use crate::jobdir::JobDir;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    /// Exit code.
    Exited(i32),
    /// Killed by a signal the executor did not send.
    Signaled(i32),
    /// Killed for running out of time.
    TimedOut,
    /// Killed by an abort.
    Aborted,
}

/// What the sandbox binds for a playbook.
#[derive(Debug, Clone)]
pub struct Sandboxing {
    /// `work/`: read-write, the working directory.
    pub work_dir: PathBuf,
    /// `home/`: read-write.
    pub home_dir: PathBuf,
    /// Read-only paths.
    pub ro_paths: Vec<PathBuf>,
    /// Read-write paths.
    pub rw_paths: Vec<PathBuf>,
    /// The ssh-agent socket.
    pub ssh_auth_sock: Option<PathBuf>,
    /// Directories replaced by an empty tmpfs inside (they must exist on the host, empty).
    pub tmpfs: Vec<PathBuf>,
    /// Files that exist only inside, on those tmpfs (secrets): fed through pipes.
    pub files: Vec<InMemoryFile>,
    /// `cgroup.procs` files the child joins before `exec` (pids/memory limits).
    pub cgroup_procs: Vec<PathBuf>,
}

/// One child to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: HashMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Time limit.
    pub timeout: Option<Duration>,
    /// `None` runs it unconfined.
    pub sandbox: Option<Sandboxing>,
}

/// How a child ran.
#[derive(Debug, Clone)]
pub struct ChildRun {
    /// How it ended.
    pub end: ChildEnd,
    /// Its last output lines.
    pub last_lines: Vec<String>,
}

/// Runs a child, calling `on_line` for each output line as it arrives.
pub async fn run(
    bwrap: &Bwrap,
    spec: ChildSpec,
    abort: &AbortHandle,
    mut on_line: impl FnMut(&str),
) -> Result<ChildRun, sluice_sandbox::SandboxError> {
    let argv: Vec<OsString> = spec.argv.into_iter().map(OsString::from).collect();
    let env: BTreeMap<OsString, OsString> = spec
        .env
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    let command = match spec.sandbox {
        None => ChildCommand::new(argv, env, spec.cwd)?,
        Some(s) => {
            let mut sandbox = SandboxSpec::new(s.work_dir, s.home_dir);
            sandbox.ro_paths = s.ro_paths.into_iter().filter(|p| p.exists()).collect();
            sandbox.rw_paths = s.rw_paths;
            sandbox.ssh_auth_sock = s.ssh_auth_sock;
            sandbox.tmpfs = s.tmpfs;
            sandbox.files = s.files;
            let mut command = bwrap.command(&sandbox, argv, env)?;
            command.join_cgroups(s.cgroup_procs);
            command
        }
    };
    let config = RunConfig {
        timeout: spec.timeout,
        ..RunConfig::default()
    };
    let outcome = run_child(command, &config, abort, |line| {
        on_line(&String::from_utf8_lossy(line));
    })
    .await?;
    let end = match outcome.exit {
        Exit::Exited(code) => ChildEnd::Exited(code),
        Exit::Signaled(sig) => ChildEnd::Signaled(sig),
        Exit::TimedOut => ChildEnd::TimedOut,
        Exit::Aborted => ChildEnd::Aborted,
    };
    Ok(ChildRun {
        end,
        last_lines: outcome.last_lines,
    })
}

/// The user's usual SSH key: the first of `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
pub fn default_ssh_key() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| home.join(".ssh").join(name))
        .find(|p| p.is_file())
}

/// Starts the build's ssh-agent (its socket outside the sandbox-visible dirs) holding `key`.
pub async fn start_agent(jobdir: &JobDir, key: Option<&Path>) -> Result<SshAgent, String> {
    let key = key
        .map(Path::to_path_buf)
        .or_else(default_ssh_key)
        .ok_or_else(|| "no SSH key for the nodes: pass --ssh-key".to_string())?;
    let agent = SshAgent::start(&jobdir.root)
        .await
        .map_err(|e| format!("cannot start ssh-agent: {e}"))?;
    agent
        .add_key(&key)
        .await
        .map_err(|e| format!("cannot add {} to the ssh-agent: {e}", key.display()))?;
    Ok(agent)
}
