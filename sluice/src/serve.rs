//! `sluice serve`: the store, the scheduler and executor workers in one process
//! (`sluice-scheduler`), until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_executor::build::ExecutorConfig;
use sluice_scheduler::serve::ServeOptions;
use sluice_scheduler::ServeConfig;

use crate::GlobalArgs;

/// Arguments of `sluice serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (docs/serve.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Runs until a signal arrives.
pub fn run(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let cfg = ServeConfig::load(&args.config)?;
    let executor = ExecutorConfig {
        state_dir: global.state_dir(),
        work_root: cfg.state_dir.join("builds"),
        plugin_sources: global.plugin_sources(),
        ssh_key: None,
        nodes: Vec::new(),
        default_ansible_version: None,
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
        keep_jobdir: false,
        console_port: None,
        setup_timeout: Duration::from_secs(60),
        verbose: false,
        keys_dir: global.state_dir().join("keys"),
    };
    let opts = ServeOptions {
        executor,
        ansible_state_dir: global.state_dir(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        sluice_scheduler::serve(cfg, opts, shutdown_signal())
            .await
            .context("sluice serve")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
