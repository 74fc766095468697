//! The per-build ssh-agent: [`SshAgent`] starts `ssh-agent -D` on a socket in a private
//! directory, loads keys with `ssh-add`, and kills the agent when dropped.
//!
//! Why one agent per build: playbooks reach nodes through `SSH_AUTH_SOCK` (the socket is bound
//! into the sandbox) without ever seeing a key file, and a build's keys vanish with its agent.

use std::{
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::unix::pipe,
    process::Child,
};

use crate::{
    bwrap::find_on_path,
    errors::{pipe_error, Result, SandboxError},
    linux,
};

/// How long ssh-agent may take to announce its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest socket path `sun_path` can hold (108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

const HINT: &str = "install openssh-client";

/// A running ssh-agent, killed (and its private directory removed) on drop.
#[derive(Debug)]
pub struct SshAgent {
    // Field order is drop order: the agent dies before its directory is removed.
    child: Child,
    pid: u32,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    /// Starts an agent listening on `<new private dir>/agent.sock`, the private directory
    /// (mode 0700) being created under `parent` (for example the build's job dir).
    pub async fn start(parent: &Path) -> Result<Self> {
        let program = find_tool("ssh-agent")?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-agent-")
            .tempdir_in(parent)
            .map_err(|source| SandboxError::Io {
                action: "creating a private directory in",
                path: parent.to_owned(),
                source: Arc::new(source),
            })?;
        let socket = dir.path().join("agent.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(SandboxError::InvalidPath {
                path: socket,
                reason: "too long for a unix socket",
            });
        }

        let (out_read, out_write) =
            linux::cloexec_pipe().map_err(pipe_error("ssh-agent output"))?;
        let out_write_err = out_write
            .try_clone()
            .map_err(pipe_error("ssh-agent output"))?;
        let reader =
            pipe::Receiver::from_owned_fd(out_read).map_err(pipe_error("ssh-agent output"))?;
        let mut command = tokio::process::Command::new(&program);
        command
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_write))
            .stderr(Stdio::from(out_write_err))
            .process_group(0)
            .kill_on_drop(true);
        let spawned = command.spawn();
        drop(command);
        let mut child = spawned.map_err(|source| SandboxError::Spawn {
            argv0: program.into_os_string(),
            source: Arc::new(source),
        })?;
        let Some(pid) = child.id() else {
            return Err(start_error(&socket, "exited at once".to_owned()));
        };

        // ssh-agent prints `SSH_AUTH_SOCK=...` once the socket listens, then `echo Agent pid N;`.
        let mut lines = BufReader::new(reader).lines();
        let mut seen = Vec::new();
        let announced = tokio::time::timeout(START_TIMEOUT, async {
            let mut announced_socket = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("SSH_AUTH_SOCK=") {
                    announced_socket = true;
                } else if line.starts_with("echo Agent pid") {
                    return announced_socket;
                } else {
                    seen.push(line);
                }
            }
            false
        })
        .await;
        if announced != Ok(true) {
            let _ = child.start_kill();
            let detail = match announced {
                Err(_) => format!("no announcement within {START_TIMEOUT:?}"),
                Ok(_) => format!("output: {:?}", seen.join("\n")),
            };
            return Err(start_error(&socket, detail));
        }
        // Keep draining so that later messages never block the agent on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(pid, line, "ssh-agent");
            }
        });
        Ok(SshAgent {
            child,
            pid,
            socket,
            _dir: dir,
        })
    }

    /// Adds the private key in `key` (no passphrase) with `ssh-add`.
    pub async fn add_key(&self, key: &Path) -> Result<()> {
        let program = find_tool("ssh-add")?;
        let output = tokio::process::Command::new(&program)
            .arg(key)
            .env_clear()
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS_REQUIRE", "never")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| SandboxError::Spawn {
                argv0: program.into_os_string(),
                source: Arc::new(source),
            })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        Err(SandboxError::SshAdd {
            key: key.to_owned(),
            status: output.status.to_string(),
            output: text.trim().to_owned(),
        })
    }

    /// The agent's socket: the value of `SSH_AUTH_SOCK`, and the path to bind into sandboxes
    /// ([`SandboxSpec::ssh_auth_sock`](crate::SandboxSpec::ssh_auth_sock)).
    pub fn auth_sock(&self) -> &Path {
        &self.socket
    }

    /// The agent's pid: the value of `SSH_AGENT_PID`.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `SSH_AUTH_SOCK` and `SSH_AGENT_PID`, for a child's environment.
    pub fn env(&self) -> [(OsString, OsString); 2] {
        [
            ("SSH_AUTH_SOCK".into(), self.socket.clone().into_os_string()),
            ("SSH_AGENT_PID".into(), self.pid.to_string().into()),
        ]
    }

    /// Kills the agent and waits until it is gone (dropping does the same without waiting).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn find_tool(name: &str) -> Result<PathBuf> {
    find_on_path(OsStr::new(name)).ok_or_else(|| SandboxError::ToolMissing {
        argv0: OsStr::from_bytes(name.as_bytes()).to_owned(),
        hint: HINT,
    })
}

fn start_error(socket: &Path, detail: String) -> SandboxError {
    SandboxError::SshAgentStart {
        socket: socket.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_name_the_package() {
        let err = find_tool("sluice-test-no-such-tool").expect_err("not installed");
        assert_eq!(
            err.to_string(),
            "`sluice-test-no-such-tool` not found: install openssh-client"
        );
    }
}
