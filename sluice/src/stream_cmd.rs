//! `sluice fingergw` and `sluice web`: the finger gateway and the console web server of
//! sluice-stream, finding builds through the scheduler's store (`--config`, the `sluice serve`
//! file) or a static executors file (`--executors`); plus the shutdown signal every server
//! shares (the first SIGINT/SIGTERM drains, a second one exits).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sluice_scheduler::{FingerTlsSection, ServeConfig};
use sluice_stream::{
    ClientTls, ConsoleState, ExecutorsFile, FingerGateway, GatewayConfig, GatewayRegistration,
    ServerTls, StoreLocator, StreamRouter, TlsSettings, DEFAULT_GATEWAY_PORT,
};

/// Finger over TLS (Zuul's `tls_cert`, `tls_key`, `tls_ca`, `tls_verify_hostnames`): this
/// process's certificate and key, and the CA that signs every finger certificate. A finger
/// server with them speaks only TLS and requires client certificates signed by the CA; a
/// gateway or web with them reaches executors and gateways over TLS, checking their names.
/// The options take precedence over the configuration file's `finger-tls` section.
#[derive(Debug, Clone, Args)]
pub struct FingerTlsArgs {
    /// This process's finger certificate (PEM); needs --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) finger servers and clients are checked against.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// Whether an executor's or gateway's certificate must name the host dialled
    /// (default: true, or the file's `verify-hostnames`).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    tls_verify_hostnames: Option<bool>,
}

impl FingerTlsArgs {
    fn settings(&self, file: Option<&FingerTlsSection>) -> Option<TlsSettings> {
        let verify = |default: bool| self.tls_verify_hostnames.unwrap_or(default);
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsSettings {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
                verify_hostnames: verify(true),
            }),
            _ => file.map(|f| TlsSettings {
                cert: f.cert.clone(),
                key: f.key.clone(),
                ca: f.ca.clone(),
                verify_hostnames: verify(f.verify_hostnames),
            }),
        }
    }

    /// The server side, when TLS is configured (options, else `file`).
    pub fn server(&self, file: Option<&FingerTlsSection>) -> anyhow::Result<Option<ServerTls>> {
        self.settings(file)
            .map(|s| ServerTls::load(&s))
            .transpose()
            .map_err(Into::into)
    }

    /// The client side, when TLS is configured (options, else `file`).
    pub fn client(&self, file: Option<&FingerTlsSection>) -> anyhow::Result<Option<ClientTls>> {
        self.settings(file)
            .map(|s| ClientTls::load(&s))
            .transpose()
            .map_err(Into::into)
    }
}

/// Arguments of `sluice fingergw`.
#[derive(Debug, Args)]
pub struct FingergwArgs {
    /// Address to listen on.
    #[arg(long, default_value_t = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, DEFAULT_GATEWAY_PORT)))]
    listen: SocketAddr,
    #[command(flatten)]
    builds: BuildSource,
    /// This gateway's zone (unzoned when absent).
    #[arg(long)]
    zone: Option<String>,
    /// The most connections relayed at once.
    #[arg(long, default_value_t = 8192)]
    max_connections: usize,
    /// Host name other zones' gateways and webs reach this one at (registered in the store
    /// with `--zone`); default: the listen address, or the host name if that is unspecified.
    #[arg(long)]
    public_host: Option<String>,
    /// Port they reach it at; default: the listen port.
    #[arg(long)]
    public_port: Option<u16>,
    /// When started as root (to listen on port 79), run as this user once listening and the
    /// store is open, as Zuul's `user`.
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    tls: FingerTlsArgs,
    /// With TLS configured: TLS towards executors and other gateways only, plaintext finger
    /// for this gateway's own clients (Zuul's `tls_client_only`).
    #[arg(long)]
    tls_client_only: bool,
}

/// Drops root privileges to `name` (its group, no supplementary groups); a no-op unless the
/// process runs as root. Called once the privileged port is bound (`sluice fingergw`, and the
/// executor's finger server in `sluice serve|executor`).
pub fn drop_privileges(name: &str) -> anyhow::Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, Uid, User};
    if !Uid::effective().is_root() {
        tracing::info!(
            user = name,
            "not running as root: --user has nothing to drop"
        );
        return Ok(());
    }
    let user = User::from_name(name)
        .with_context(|| format!("cannot look up user {name}"))?
        .with_context(|| format!("no user {name}"))?;
    // Groups first: once the uid changes, the process may no longer change them.
    setgroups(&[user.gid])
        .with_context(|| format!("cannot drop supplementary groups for {name}"))?;
    setgid(user.gid).with_context(|| format!("cannot switch to group {}", user.gid))?;
    setuid(user.uid).with_context(|| format!("cannot switch to user {name}"))?;
    tracing::info!(user = name, uid = %user.uid, "dropped root privileges");
    Ok(())
}

/// Where builds are found: the store or a static file.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BuildSource {
    /// The `sluice serve` configuration file: builds are found in its store.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The executors (and other zones' gateways), YAML: see sluice_stream::ExecutorsFile.
    #[arg(long, value_name = "FILE")]
    executors: Option<PathBuf>,
}

impl BuildSource {
    /// The `sluice serve` file, with `--config`.
    fn serve_config(&self) -> anyhow::Result<Option<ServeConfig>> {
        Ok(self.config.as_deref().map(ServeConfig::load).transpose()?)
    }

    /// The router over the store or the file, and the store if there is one.
    async fn router(
        &self,
        serve_config: Option<&ServeConfig>,
        zone: Option<String>,
        tls: Option<ClientTls>,
    ) -> anyhow::Result<(StreamRouter, Option<sluice_store::Store>)> {
        if let (Some(path), Some(cfg)) = (&self.config, serve_config) {
            let store = sluice_scheduler::serve::open_store(cfg)
                .await
                .with_context(|| format!("cannot open the store of {}", path.display()))?;
            let locator = std::sync::Arc::new(StoreLocator::new(store.clone()));
            let router = StreamRouter::new(locator, zone, Vec::new()).with_tls(tls);
            return Ok((router, Some(store)));
        }
        let Some(path) = &self.executors else {
            anyhow::bail!("give --config or --executors");
        };
        let file = ExecutorsFile::load(path)?;
        Ok((StreamRouter::from_file(file, zone, tls), None))
    }
}

/// The host others reach a server listening on `listen` at.
pub fn public_host(listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into())
    } else {
        listen.ip().to_string()
    }
}

/// Arguments of `sluice web`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(true).args(["config", "executors"]))]
pub struct WebArgs {
    /// Address to listen on.
    #[arg(long, default_value = "[::]:9000")]
    listen: SocketAddr,
    #[command(flatten)]
    builds: BuildSource,
    /// The web server's zone (unzoned when absent).
    #[arg(long)]
    zone: Option<String>,
    /// TLS towards executors and gateways (Zuul's web `finger_tls_*`).
    #[command(flatten)]
    tls: FingerTlsArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the finger gateway until SIGINT/SIGTERM.
pub fn fingergw(args: &FingergwArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let serve_config = args.builds.serve_config()?;
        let tls_file = serve_config.as_ref().and_then(|c| c.finger_tls.as_ref());
        let client_tls = args.tls.client(tls_file)?;
        if args.tls_client_only && client_tls.is_none() {
            anyhow::bail!(
                "--tls-client-only needs TLS: give --tls-cert, --tls-key and --tls-ca, or a \
                 `finger-tls` section in the --config file"
            );
        }
        let server_tls = if args.tls_client_only {
            None
        } else {
            args.tls.server(tls_file)?
        };
        let (router, store) = args
            .builds
            .router(serve_config.as_ref(), args.zone.clone(), client_tls)
            .await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(addr = %args.listen, tls = server_tls.is_some(), "finger gateway listening");
        // A zoned gateway tells the others, through the store, that it serves its zone.
        let registration = match (store, &args.zone) {
            (Some(store), Some(zone)) => {
                let row = sluice_store::GatewayRow {
                    id: format!("{}:{}", public_host(args.listen), std::process::id()),
                    host: args
                        .public_host
                        .clone()
                        .unwrap_or_else(|| public_host(args.listen)),
                    port: args.public_port.unwrap_or(args.listen.port()),
                    zone: zone.clone(),
                };
                Some(
                    GatewayRegistration::register(store, row)
                        .await
                        .context("cannot register the gateway in the store")?,
                )
            }
            _ => None,
        };
        if let Some(user) = &args.user {
            drop_privileges(user)?;
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let keeper = registration.map(|r| {
            let mut stop_rx = stop_rx.clone();
            tokio::spawn(r.keep_until(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            }))
        });
        let gateway = FingerGateway::new(
            GatewayConfig {
                max_connections: args.max_connections,
                tls: server_tls,
            },
            router,
        );
        gateway
            .run(listener, async {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            })
            .await;
        let _ = stop_tx.send(true);
        if let Some(keeper) = keeper {
            let _ = keeper.await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs the web server until SIGINT/SIGTERM: the console stream, and with `--config` Zuul's
/// REST API over the store and the tenants of that file (docs/web.md).
pub fn web(global: &crate::GlobalArgs, args: &WebArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let serve_config = args.builds.serve_config()?;
        let tls_file = serve_config.as_ref().and_then(|c| c.finger_tls.as_ref());
        let (router, store) = args
            .builds
            .router(
                serve_config.as_ref(),
                args.zone.clone(),
                args.tls.client(tls_file)?,
            )
            .await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let state = match (serve_config, store) {
            (Some(cfg), Some(store)) => {
                let config =
                    sluice_web::WebConfig::from_serve_config(&cfg, global.state_dir().join("keys"))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                let layouts = sluice_scheduler::SharedLayouts::default();
                tokio::spawn(sluice_web::follow_layouts(cfg, layouts.clone()));
                Some(sluice_web::WebState::new(store, layouts, config))
            }
            _ => None,
        };
        tracing::info!(addr = %args.listen, "web listening");
        let console = ConsoleState::new(router);
        sluice_web::serve(listener, state, console, shutdown_signal())
            .await
            .context("web server")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves at the first SIGINT or SIGTERM; a second one exits the process at once.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the server runs until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: draining connections (a second signal exits)");
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
}

/// The finger streamer of `sluice job run --finger-listen`: serves the builds this process runs.
pub struct LocalFinger {
    registry: sluice_executor::registry::BuildRegistry,
    server: sluice_stream::FingerServer,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// How long watchers of an ended build get to receive the rest of its log before exit.
const FINGER_LINGER: std::time::Duration = std::time::Duration::from_secs(10);

impl LocalFinger {
    /// Binds `addr` and starts serving builds under `work_root` (over TLS with `tls`).
    pub async fn start(
        addr: SocketAddr,
        work_root: &std::path::Path,
        tls: Option<ServerTls>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for finger"))?;
        let registry = sluice_executor::registry::BuildRegistry::new();
        let watcher = sluice_stream::LogWatcher::new()?;
        let server = sluice_stream::FingerServer::new(
            sluice_stream::FingerConfig {
                work_root: work_root.to_path_buf(),
                max_connections: 8192,
                tls,
            },
            registry.clone(),
            watcher,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().run(listener, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            registry,
            server,
            stop,
            task,
        })
    }

    /// Registers a build about to run; it ends for watchers when the guard is dropped.
    pub fn register(&self, uuid: &str, log: PathBuf) -> sluice_executor::registry::BuildGuard {
        self.registry.register(uuid, log)
    }

    /// Lets watchers receive the rest of the logs (at most [`FINGER_LINGER`]), then stops.
    pub async fn finish(self) {
        if tokio::time::timeout(FINGER_LINGER, self.server.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                n_connections = self.server.n_connections(),
                "finger watchers still open after the build; closing them"
            );
        }
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
