//! The executor's finger streamer: a request line holding a build uuid gets that build's
//! `job-output.txt` from its first byte, followed live until the build ends; then the
//! connection closes. Errors are Zuul's texts, sent without a newline before closing.
//!
//! Running builds come from the executor's [`BuildRegistry`]; a uuid that is not running but
//! has a build dir under the work root is a finished build, whose log is sent whole; so is one
//! whose log was followed and ended less than [`crate::follow::RECENT_LINGER`] ago, from the
//! handle still open on it even if its directory is gone (watchers of the gateway and the web
//! that fell behind catch up from it).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_executor::registry::BuildRegistry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::follow::{send_log, FollowEnd, LogFeeds};
use crate::request::{read_request, Request};
use crate::shutdown::Token;
use crate::tls::{FingerStream, ServerTls};
use crate::watcher::LogWatcher;

/// Zuul's executor finger port.
pub const DEFAULT_FINGER_PORT: u16 = 7900;

/// What the finger streamer serves.
#[derive(Debug, Clone)]
pub struct FingerConfig {
    /// The executor's work root: `<work_root>/<uuid>/work/logs/job-output.txt`.
    pub work_root: PathBuf,
    /// The most connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// TLS with client certificates (Zuul's executor with `tls_cert`/`tls_key`/`tls_ca`);
    /// plain finger when `None`.
    pub tls: Option<ServerTls>,
}

/// A build's state as the status query reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    /// Registered and its log exists.
    Running,
    /// Registered, no log yet.
    Pending,
    /// Not running, but its build dir exists.
    Finished,
    /// Neither.
    Unknown,
}

impl BuildStatus {
    /// The word sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Running => "running",
            BuildStatus::Pending => "pending",
            BuildStatus::Finished => "finished",
            BuildStatus::Unknown => "unknown",
        }
    }

    /// Reads the word sent on the wire; anything else (a Zuul executor's error) is unknown.
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "running" => BuildStatus::Running,
            "pending" => BuildStatus::Pending,
            "finished" => BuildStatus::Finished,
            _ => BuildStatus::Unknown,
        }
    }
}

/// The finger streamer's shared state: a cheap clone per connection.
#[derive(Debug, Clone)]
pub struct FingerServer {
    config: FingerConfig,
    registry: BuildRegistry,
    feeds: LogFeeds,
    /// Open connections.
    active: Arc<watch::Sender<usize>>,
}

/// Counts one connection for as long as it lives.
struct Active(Arc<watch::Sender<usize>>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl FingerServer {
    /// A streamer for the builds of `registry`.
    pub fn new(config: FingerConfig, registry: BuildRegistry, watcher: LogWatcher) -> Self {
        Self {
            config,
            registry,
            feeds: LogFeeds::new(watcher),
            active: Arc::new(watch::channel(0).0),
        }
    }

    /// How many connections are open.
    pub fn n_connections(&self) -> usize {
        *self.active.borrow()
    }

    /// Resolves when no connection is open, e.g. once every watcher of an ended build has its
    /// whole log, before shutting the server down.
    pub async fn idle(&self) {
        let mut active = self.active.subscribe();
        let _ = active.wait_for(|n| *n == 0).await;
    }

    /// Serves finger on `listener` until `shutdown` resolves, then ends every stream at a line
    /// boundary and returns once all connections are closed.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future) {
        let max = self.config.max_connections;
        let tls = self.config.tls.clone();
        crate::server::serve(listener, max, tls, shutdown, move |stream, token| {
            let server = self.clone();
            async move { server.handle(stream, token).await }
        })
        .await;
    }

    /// What the status query answers for `uuid`.
    pub fn status(&self, uuid: &str) -> BuildStatus {
        if let Some(build) = self.registry.get(uuid) {
            return if build.log.is_file() {
                BuildStatus::Running
            } else {
                BuildStatus::Pending
            };
        }
        if self.config.work_root.join(uuid).is_dir()
            || self.feeds.recent(&self.finished_log(uuid)).is_some()
        {
            BuildStatus::Finished
        } else {
            BuildStatus::Unknown
        }
    }

    async fn handle(self, mut stream: FingerStream, mut token: Token) {
        self.active.send_modify(|n| *n += 1);
        let _active = Active(self.active.clone());
        let request = tokio::select! {
            res = read_request(&mut stream) => res,
            () = token.requested() => return,
        };
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!(error = %e, "finger request");
                return;
            }
        };
        let (mut reader, mut writer) = tokio::io::split(stream);
        let reply = match request {
            Request::Invalid(text) => format!("Build ID {text} is not valid"),
            Request::Status(uuid) => format!("{}\n", self.status(&uuid).as_str()),
            Request::Stream(uuid) => {
                let (log, running) = match self.registry.get(&uuid) {
                    Some(build) => (build.log, Some(build.running)),
                    None => (self.finished_log(&uuid), None),
                };
                // A followed build that ended lately is still served from its open log.
                let recent = running.is_none() && self.feeds.recent(&log).is_some();
                if running.is_none() && !recent && !self.config.work_root.join(&uuid).is_dir() {
                    format!("Build ID {uuid} not found")
                } else if !recent && !log.is_file() {
                    format!("Log not found for build ID {uuid}")
                } else {
                    self.stream(&uuid, &log, running, &mut reader, &mut writer, token)
                        .await
                }
            }
        };
        if !reply.is_empty() {
            let _ = writer.write_all(reply.as_bytes()).await;
        }
        let _ = writer.shutdown().await;
    }

    /// Streams the log; returns the error text to send, if nothing was sent.
    async fn stream<R, W>(
        &self,
        uuid: &str,
        log: &std::path::Path,
        running: Option<watch::Receiver<bool>>,
        reader: &mut R,
        writer: &mut W,
        mut token: Token,
    ) -> String
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let stop = async {
            tokio::select! {
                () = discard_input(reader) => {}
                () = token.requested() => {}
            }
        };
        tokio::pin!(stop);
        match send_log(log, running, &self.feeds, writer, stop).await {
            Ok(FollowEnd::Complete | FollowEnd::Stopped) => String::new(),
            Err(e) if e.is_internal() => {
                tracing::error!(build = uuid, error = %e, "finger stream");
                "Internal streaming error".into()
            }
            Err(e) => {
                tracing::debug!(build = uuid, error = %e, "finger watcher left");
                String::new()
            }
        }
    }

    fn finished_log(&self, uuid: &str) -> PathBuf {
        self.config
            .work_root
            .join(uuid)
            .join("work/logs/job-output.txt")
    }
}

/// Reads and drops whatever the client sends; resolves when it closes or fails.
pub(crate) async fn discard_input<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut sink = [0u8; 256];
    loop {
        match reader.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
