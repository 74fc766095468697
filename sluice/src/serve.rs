//! `sluice serve` (the store, the scheduler and executor workers in one process),
//! `sluice scheduler` and `sluice executor` (one side each, sharing the store), all from
//! `sluice-scheduler`, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_executor::build::ExecutorConfig;
use sluice_scheduler::serve::ServeOptions;
use sluice_scheduler::ServeConfig;

use crate::GlobalArgs;

/// Arguments of `sluice serve`, `sluice scheduler` and `sluice executor`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (docs/serve.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Serve running builds' live logs over finger on this address (Zuul's port is 7900);
    /// ignored by `sluice scheduler`.
    #[arg(long, value_name = "ADDR")]
    finger_listen: Option<std::net::SocketAddr>,
}

/// Which side(s) to run.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// Everything.
    All,
    /// The scheduler only.
    Scheduler,
    /// Executor workers only.
    Executor,
}

/// Runs until a signal arrives.
pub fn run(global: &GlobalArgs, args: &ServeArgs, role: Role) -> anyhow::Result<()> {
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
        limits: Default::default(),
    };
    let registry = sluice_executor::registry::BuildRegistry::new();
    let work_root = executor.work_root.clone();
    // Recorded with each claim, so that gateways and the web find the build's stream.
    let finger = args.finger_listen.map(|addr| sluice_store::WorkerInfo {
        hostname: crate::stream_cmd::public_host(addr),
        finger_port: addr.port(),
        zone: cfg.executor.zone.clone(),
    });
    let opts = ServeOptions {
        executor,
        ansible_state_dir: global.state_dir(),
        registry: registry.clone(),
        finger,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        if let (Some(addr), false) = (args.finger_listen, matches!(role, Role::Scheduler)) {
            start_finger(addr, work_root, registry).await?;
        }
        match role {
            Role::All => sluice_scheduler::serve(cfg, opts, shutdown_signal())
                .await
                .context("sluice serve"),
            Role::Scheduler => sluice_scheduler::serve::run_scheduler(cfg, shutdown_signal())
                .await
                .context("sluice scheduler"),
            Role::Executor => sluice_scheduler::serve::run_executor(cfg, opts, shutdown_signal())
                .await
                .context("sluice executor"),
        }
    })
}

/// Serves the registered builds' logs over finger for as long as the process runs.
async fn start_finger(
    addr: std::net::SocketAddr,
    work_root: PathBuf,
    registry: sluice_executor::registry::BuildRegistry,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for finger"))?;
    let server = sluice_stream::FingerServer::new(
        sluice_stream::FingerConfig {
            work_root,
            max_connections: 8192,
        },
        registry,
        sluice_stream::LogWatcher::new()?,
    );
    tokio::spawn(server.run(listener, std::future::pending::<()>()));
    Ok(())
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
