//! The per-build ssh-agent: [`SshAgent`] starts `ssh-agent -D` on a socket in a private
//! directory, loads keys with `ssh-add`, and stops the agent when dropped.
//!
//! The agent runs under a small `sh` that stops it on SIGTERM. The shell, not the agent,
//! carries `PR_SET_PDEATHSIG`: Debian installs ssh-agent setgid, and exec of a setgid program
//! clears the parent-death signal. So an executor killed without dropping its agents (SIGKILL,
//! a crash) still takes them with it instead of leaving one running per build.
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

/// Runs the agent (`$0`, socket `$1`) in the background and, on SIGTERM (a drop, or the
/// executor's death), stops it and waits for it: the shell exits once the agent is gone.
const WRAPPER: &str = r#"trap 'kill "$agent" 2>/dev/null; wait "$agent"; exit 0' TERM HUP INT
"$0" -D -a "$1" &
agent=$!
wait "$agent""#;

/// A running ssh-agent, stopped (and its private directory removed) on drop.
#[derive(Debug)]
pub struct SshAgent {
    /// The `sh` running [`WRAPPER`].
    wrapper: Child,
    pid: u32,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        terminate(&self.wrapper);
    }
}

/// Asks the wrapper to stop the agent. SIGKILL would leave the agent running.
fn terminate(wrapper: &Child) {
    // `id` is `None` once the wrapper was reaped: its pid may belong to someone else by then.
    if let Some(pid) = wrapper.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
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
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg(&program)
            .arg(&socket)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_write))
            .stderr(Stdio::from(out_write_err))
            .process_group(0);
        linux::die_with_parent_in_child(&mut command);
        let spawned = command.spawn();
        drop(command);
        let wrapper = spawned.map_err(|source| SandboxError::Spawn {
            argv0: "/bin/sh".into(),
            source: Arc::new(source),
        })?;

        // ssh-agent prints `SSH_AUTH_SOCK=...` once the socket listens, then `echo Agent pid N;`.
        let mut lines = BufReader::new(reader).lines();
        let mut seen = Vec::new();
        let announced = tokio::time::timeout(START_TIMEOUT, async {
            let mut announced_socket = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("SSH_AUTH_SOCK=") {
                    announced_socket = true;
                } else if let Some(rest) = line.strip_prefix("echo Agent pid ") {
                    let pid = rest.trim_end_matches(';').parse::<u32>().ok();
                    return pid.filter(|_| announced_socket);
                } else {
                    seen.push(line);
                }
            }
            None
        })
        .await;
        let pid = match announced {
            Ok(Some(pid)) => pid,
            failed => {
                terminate(&wrapper);
                let detail = match failed {
                    Err(_) => format!("no announcement within {START_TIMEOUT:?}"),
                    Ok(_) => format!("output: {:?}", seen.join("\n")),
                };
                return Err(start_error(&socket, detail));
            }
        };
        // Keep draining so that later messages never block the agent on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(pid, line, "ssh-agent");
            }
        });
        Ok(SshAgent {
            wrapper,
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

    /// Stops the agent and waits until it is gone (dropping does the same without waiting).
    pub async fn stop(mut self) {
        terminate(&self.wrapper);
        let _ = self.wrapper.wait().await;
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
