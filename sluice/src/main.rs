//! The `sluice` binary: parses the command line, installs logging and hands over to one crate per
//! subcommand. Logic lives in the crates; this file only wires them.

mod change;
mod encrypt;
mod job_run;
mod quickstart;
mod serve;
mod stream_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sluice_executor::ansible::{Installations, PluginSources, SUPPORTED_VERSIONS};

/// Sluice: a CI system that runs Zuul jobs.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Sluice's state dir (Ansible installations, keys, builds).
    #[arg(long, global = true, env = "SLUICE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Sluice's Ansible plugin tree (default: the one in the source tree this binary was built from).
    #[arg(long, global = true, env = "SLUICE_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// The native callback module (default: libsluice_native.so next to this binary).
    #[arg(long, global = true, env = "SLUICE_NATIVE_LIB")]
    pub native_lib: Option<PathBuf>,
}

impl GlobalArgs {
    /// The state dir: `--state-dir`, else `$XDG_STATE_HOME/sluice`, else `~/.local/state/sluice`.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("sluice");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/".into());
        home.join(".local/state/sluice")
    }

    /// Where the plugin tree and native module come from.
    pub fn plugin_sources(&self) -> PluginSources {
        let plugins_dir = self.plugins_dir.clone().unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../ansible-plugins"))
        });
        let native_lib = self.native_lib.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join("libsluice_native.so")))
                .unwrap_or_else(|| PathBuf::from("libsluice_native.so"))
        });
        PluginSources {
            plugins_dir,
            native_lib,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Install the supported ansible-core versions, each in its own venv with Sluice's plugins.
    ManageAnsible(ManageAnsibleArgs),
    /// Finger gateway: relays a build's live log from the executor running it.
    Fingergw(stream_cmd::FingergwArgs),
    /// Web server: Zuul's REST API over a `sluice serve` store, and the console stream.
    Web(stream_cmd::WebArgs),
    /// Run the scheduler, executor workers and store in one process.
    Serve(serve::ServeArgs),
    /// Run only the scheduler (builds are left to `sluice executor` processes).
    Scheduler(serve::ServeArgs),
    /// Run only executor workers, claiming builds from the store.
    Executor(serve::ServeArgs),
    /// Write a complete working setup (config, tenant, repositories, a local node) into DIR.
    Quickstart(quickstart::QuickstartArgs),
    /// Encrypt a secret for a project and print the `secret` item to paste.
    Encrypt(encrypt::EncryptArgs),
    /// The local review flow: approve and list changes.
    #[command(subcommand)]
    Change(change::ChangeCommand),
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Run one job of a repository, as Zuul's executor would, and print its job-output.txt.
    Run(Box<job_run::JobRunArgs>),
}

#[derive(Debug, Args)]
struct ManageAnsibleArgs {
    /// Versions to install (default: every supported one).
    #[arg(long = "version", value_name = "V")]
    versions: Vec<String>,
    /// Reinstall/upgrade the venvs even if present.
    #[arg(long, short)]
    upgrade: bool,
    /// List installed versions and exit.
    #[arg(long, short)]
    list: bool,
    /// Python used to create the venvs.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
}

fn manage_ansible(global: &GlobalArgs, args: &ManageAnsibleArgs) -> anyhow::Result<()> {
    let installations = Installations::new(global.state_dir());
    if args.list {
        let installed = installations.installed();
        for v in SUPPORTED_VERSIONS {
            let mark = if installed.iter().any(|i| i == v.version) {
                "installed"
            } else {
                "not installed"
            };
            let default = if v.version == sluice_executor::ansible::DEFAULT_VERSION {
                " (default)"
            } else {
                ""
            };
            println!("{}{default}: {mark}", v.version);
        }
        return Ok(());
    }
    let versions: Vec<&str> = if args.versions.is_empty() {
        SUPPORTED_VERSIONS.iter().map(|v| v.version).collect()
    } else {
        args.versions.iter().map(String::as_str).collect()
    };
    let done = installations.install(
        &versions,
        &global.plugin_sources(),
        args.upgrade,
        &args.python,
    )?;
    for inst in done {
        println!("ansible-core {}: {}", inst.version, inst.venv.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match &cli.command {
        Command::ManageAnsible(args) => {
            manage_ansible(&cli.global, args).map(|()| ExitCode::SUCCESS)
        }
        Command::Job(JobCommand::Run(args)) => job_run::run(&cli.global, args),
        Command::Serve(args) => {
            serve::run(&cli.global, args, serve::Role::All).map(|()| ExitCode::SUCCESS)
        }
        Command::Scheduler(args) => {
            serve::run(&cli.global, args, serve::Role::Scheduler).map(|()| ExitCode::SUCCESS)
        }
        Command::Executor(args) => {
            serve::run(&cli.global, args, serve::Role::Executor).map(|()| ExitCode::SUCCESS)
        }
        Command::Quickstart(args) => quickstart::run(args).map(|()| ExitCode::SUCCESS),
        Command::Change(cmd) => change::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Encrypt(args) => encrypt::run(&cli.global, args).map(|()| ExitCode::SUCCESS),
        Command::Fingergw(args) => stream_cmd::fingergw(args),
        Command::Web(args) => stream_cmd::web(&cli.global, args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
