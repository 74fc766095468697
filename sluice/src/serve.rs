//! `sluice serve` (the store, the scheduler and executor workers in one process),
//! `sluice scheduler` and `sluice executor` (one side each, sharing the store), all from
//! `sluice-scheduler`, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_executor::build::ExecutorConfig;
use sluice_scheduler::serve::ServeOptions;
use sluice_scheduler::{ServeConfig, SharedLayouts};

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
    /// Serve the web server (Zuul's REST API and console stream, docs/web.md) on this address;
    /// ignored by `sluice executor`.
    #[arg(long, value_name = "ADDR")]
    web_listen: Option<std::net::SocketAddr>,
    /// When started as root (to listen on a privileged finger or web port), run as this user
    /// once the listeners are bound, as Zuul's executor `user`: the store, the state dir and
    /// the build dirs must then be this user's.
    #[arg(long)]
    user: Option<String>,
    /// Finger over TLS: the executor's finger server requires client certificates, and the
    /// web (--web-listen) reaches executors and gateways with this certificate.
    #[command(flatten)]
    tls: crate::stream_cmd::FingerTlsArgs,
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
    let keys_dir = executor.keys_dir.clone();
    let layouts = SharedLayouts::default();
    let zone = cfg.executor.zone.clone();
    let opts = ServeOptions {
        executor,
        ansible_state_dir: global.state_dir(),
        registry: registry.clone(),
        // Set below, once the finger server is bound.
        finger: None,
        layouts: layouts.clone(),
    };
    let mut opts = opts;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let runs_builds = !matches!(role, Role::Scheduler);
        // The web's console stream reaches running builds through their executor's finger
        // server (recorded with each claim): with --web-listen and no --finger-listen, this
        // process serves its builds on a loopback port.
        let tls = args.tls.server(cfg.finger_tls.as_ref())?;
        let finger = match (args.finger_listen, args.web_listen, runs_builds) {
            (Some(addr), _, true) => {
                Some((addr, start_finger(addr, work_root, registry, tls).await?))
            }
            (None, Some(_), true) => {
                let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                Some((
                    loopback,
                    start_finger(loopback, work_root, registry, tls).await?,
                ))
            }
            _ => None,
        };
        opts.finger = finger.map(|(asked, bound)| sluice_store::WorkerInfo {
            hostname: crate::stream_cmd::public_host(asked),
            finger_port: bound.port(),
            zone,
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let web = match (args.web_listen, role) {
            (Some(addr), Role::All | Role::Scheduler) => {
                let tls = args.tls.client(cfg.finger_tls.as_ref())?;
                Some(bind_web(addr, &cfg, layouts, keys_dir, tls).await?)
            }
            _ => None,
        };
        // Statsd output from the process that runs the scheduler (one sender per store).
        let statsd = match (&cfg.statsd, role) {
            (Some(statsd), Role::All | Role::Scheduler) => {
                let store = sluice_scheduler::serve::open_store(&cfg).await?;
                Some(tokio::spawn(sluice_web::statsd::run(
                    store,
                    statsd.clone(),
                    stop_rx.clone(),
                )))
            }
            _ => None,
        };
        // Every listener is bound: the rest runs unprivileged.
        if let Some(user) = &args.user {
            crate::stream_cmd::drop_privileges(user)?;
        }
        let web = web.map(|web| web.start(stop_rx));
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        };
        let outcome = match role {
            Role::All => sluice_scheduler::serve(cfg, opts, shutdown)
                .await
                .context("sluice serve"),
            Role::Scheduler => sluice_scheduler::serve::run_scheduler(cfg, opts.layouts, shutdown)
                .await
                .context("sluice scheduler"),
            Role::Executor => sluice_scheduler::serve::run_executor(cfg, opts, shutdown)
                .await
                .context("sluice executor"),
        };
        if let Some(statsd) = statsd {
            let _ = tokio::time::timeout(Duration::from_secs(5), statsd).await;
        }
        if let Some(web) = web {
            // Websocket watchers get a moment to receive their close frames.
            let _ = tokio::time::timeout(Duration::from_secs(5), web).await;
        }
        outcome
    })
}

/// The web server, bound and ready to start.
struct BoundWeb {
    listener: tokio::net::TcpListener,
    state: sluice_web::WebState,
    console: sluice_stream::ConsoleState,
}

/// Binds the web server on `addr` over the configured store, reading the layouts the
/// scheduler publishes; builds stream from where their claims say (the store locator).
async fn bind_web(
    addr: std::net::SocketAddr,
    cfg: &ServeConfig,
    layouts: SharedLayouts,
    keys_dir: PathBuf,
    tls: Option<sluice_stream::ClientTls>,
) -> anyhow::Result<BoundWeb> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the web server"))?;
    // Its own connection: the web only reads (and records approvals as events).
    let store = sluice_scheduler::serve::open_store(cfg).await?;
    let config = sluice_web::WebConfig::from_serve_config(cfg, keys_dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let locator = std::sync::Arc::new(sluice_stream::StoreLocator::new(store.clone()));
    let console = sluice_stream::ConsoleState::new(
        sluice_stream::StreamRouter::new(locator, None, Vec::new()).with_tls(tls),
    );
    let state = sluice_web::WebState::new(store, layouts, config);
    tracing::info!(%addr, "web server listening");
    Ok(BoundWeb {
        listener,
        state,
        console,
    })
}

impl BoundWeb {
    /// Serves until `stop` turns true.
    fn start(self, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) =
                sluice_web::serve(self.listener, Some(self.state), self.console, shutdown).await
            {
                tracing::error!(error = %e, "web server failed");
            }
        })
    }
}

/// Serves the registered builds' logs over finger for as long as the process runs; returns
/// the address it listens on.
async fn start_finger(
    addr: std::net::SocketAddr,
    work_root: PathBuf,
    registry: sluice_executor::registry::BuildRegistry,
    tls: Option<sluice_stream::ServerTls>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for finger"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("finger listener on {addr}"))?;
    let server = sluice_stream::FingerServer::new(
        sluice_stream::FingerConfig {
            work_root,
            max_connections: 8192,
            tls,
        },
        registry,
        sluice_stream::LogWatcher::new()?,
    );
    tokio::spawn(server.run(listener, std::future::pending::<()>()));
    Ok(bound)
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
