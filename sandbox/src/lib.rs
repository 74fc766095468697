//! Child processes of a build: the bubblewrap command line that confines `ansible-playbook`, the
//! process-group runner with its SIGTERM → grace → SIGKILL termination, and the per-build
//! ssh-agent.
//!
//! Main types: [`Bwrap`] (a probed bubblewrap) and [`SandboxSpec`] (what a build may see) make
//! a [`ChildCommand`]; [`run`] supervises it under a [`RunConfig`] and an [`AbortHandle`] and
//! returns an [`Outcome`]; [`SshAgent`] holds the build's keys.
//!
//! Why a crate of its own: everything here talks to the kernel (namespaces, process groups,
//! signals, inherited fds) and has to be right under races — a build that times out while its
//! grandchildren ignore SIGTERM, a secret that must never touch the disk. Keeping it apart
//! from the executor's phase logic keeps those invariants testable with real processes.
//!
//! ```no_run
//! # async fn example() -> Result<(), sluice_sandbox::SandboxError> {
//! use std::{collections::BTreeMap, path::PathBuf, time::Duration};
//! use sluice_sandbox::{run, AbortHandle, Bwrap, RunConfig, SandboxSpec, SshAgent};
//!
//! let bwrap = Bwrap::detect().await?; // once, at startup
//! let agent = SshAgent::start(&PathBuf::from("/var/lib/sluice/builds/b1")).await?;
//! agent.add_key(&PathBuf::from("/etc/sluice/id_rsa")).await?;
//!
//! let mut spec = SandboxSpec::new("/var/lib/sluice/builds/b1/work".into(), "/var/lib/sluice/builds/b1/home".into());
//! spec.ro_paths.push("/opt/venv".into());
//! spec.ssh_auth_sock = Some(agent.auth_sock().to_owned());
//! let mut env: BTreeMap<_, _> = agent.env().into_iter().collect();
//! env.insert("PATH".into(), "/opt/venv/bin:/usr/bin:/bin".into());
//! let command = bwrap.command(&spec, vec!["ansible-playbook".into(), "pb.yaml".into()], env)?;
//!
//! let config = RunConfig { timeout: Some(Duration::from_secs(3600)), ..RunConfig::default() };
//! let abort = AbortHandle::new(); // keep a clone to abort the build
//! let outcome = run(command, &config, &abort, |line| println!("{}", String::from_utf8_lossy(line))).await?;
//! println!("{:?} after {:?}", outcome.exit, outcome.duration);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod bwrap;
mod command;
mod errors;
mod linux;
mod runner;
mod ssh_agent;

pub use bwrap::{Bwrap, InMemoryFile, SandboxSpec};
pub use command::ChildCommand;
pub use errors::{Result, SandboxError};
pub use runner::{run, AbortHandle, Exit, Outcome, RunConfig, MAX_LINE_BYTES};
pub use ssh_agent::SshAgent;
