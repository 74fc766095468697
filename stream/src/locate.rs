//! Finding which executor runs a build, and connecting to its stream with Zuul's zone routing.
//!
//! With the scheduler's store, [`crate::StoreLocator`] reads where the claiming executor streams
//! the build and the zones' registered gateways. Without one (`sluice fingergw --executors`),
//! executors come from a static file ([`ExecutorsFile`]) and [`StaticExecutors`] asks each of
//! them with the finger status query (`?<uuid>`). [`BuildLocator`] is the seam between them.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::{ClientTls, FingerStream};

use crate::errors::{LocateError, StreamError};
use crate::finger::{BuildStatus, DEFAULT_FINGER_PORT};

/// Connect timeout towards executors and gateways, as Zuul.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time an executor has to answer the status query.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The static map of executors and zone gateways (`--executors FILE`), YAML:
///
/// ```yaml
/// executors:
///   - name: ze01
///     host: 10.0.0.5
///     finger_port: 7900   # default 7900
///     zone: east          # optional
/// gateways:               # finger gateways of other zones (optional)
///   - name: fg-east
///     host: 10.0.0.6
///     port: 79            # default 79
///     zone: east
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorsFile {
    /// The executors.
    #[serde(default)]
    pub executors: Vec<Executor>,
    /// Finger gateways serving zones.
    #[serde(default)]
    pub gateways: Vec<Gateway>,
}

/// One executor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Executor {
    /// Its name.
    pub name: String,
    /// Host name or address of its finger streamer.
    pub host: String,
    /// Its finger port.
    #[serde(default = "default_finger_port")]
    pub finger_port: u16,
    /// Its zone (unzoned when absent).
    #[serde(default)]
    pub zone: Option<String>,
}

/// A finger gateway serving a zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Its name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// Its public port.
    #[serde(default = "default_gateway_port")]
    pub port: u16,
    /// The zone it serves.
    pub zone: String,
}

fn default_finger_port() -> u16 {
    DEFAULT_FINGER_PORT
}

fn default_gateway_port() -> u16 {
    79
}

impl ExecutorsFile {
    /// Reads the file.
    pub fn load(path: &Path) -> Result<Self, StreamError> {
        let text = std::fs::read_to_string(path).map_err(|source| StreamError::ReadExecutors {
            path: path.to_path_buf(),
            source,
        })?;
        serde_yaml_ng::from_str(&text).map_err(|source| StreamError::ParseExecutors {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Where a build runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildLocation {
    /// The executor.
    pub executor: Executor,
    /// Whether it still runs (else it has finished and its log is whole).
    pub running: bool,
    /// Gateways serving the executor's zone, known to the locator (besides the router's own).
    pub zone_gateways: Vec<Gateway>,
}

/// A boxed future, so that [`BuildLocator`] stays object safe.
pub type LocateFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BuildLocation, LocateError>> + Send + 'a>>;

/// Finds the executor of a build: the store implements it; [`StaticExecutors`] stands in.
pub trait BuildLocator: Send + Sync + 'static {
    /// The build's executor, or why there is none. With `tenant`, a build of another tenant is
    /// not found (as Zuul's web).
    fn locate<'a>(&'a self, uuid: &'a str, tenant: Option<&'a str>) -> LocateFuture<'a>;
}

/// Asks every executor of a static list, concurrently, with the status query.
#[derive(Debug, Clone)]
pub struct StaticExecutors {
    executors: Vec<Executor>,
    tls: Option<ClientTls>,
}

impl StaticExecutors {
    /// A locator over these executors, reached over TLS with `tls`.
    pub fn new(executors: Vec<Executor>, tls: Option<ClientTls>) -> Self {
        Self { executors, tls }
    }
}

impl BuildLocator for StaticExecutors {
    fn locate<'a>(&'a self, uuid: &'a str, _tenant: Option<&'a str>) -> LocateFuture<'a> {
        // The executors' status query knows no tenants.
        Box::pin(async move {
            let answers = futures_util::future::join_all(
                self.executors
                    .iter()
                    .map(|executor| query_status(executor, uuid, self.tls.as_ref())),
            )
            .await;
            let mut pending = false;
            let mut n_failed = 0;
            for (executor, answer) in self.executors.iter().zip(answers) {
                match answer {
                    Ok(BuildStatus::Running) => {
                        return Ok(BuildLocation {
                            executor: executor.clone(),
                            running: true,
                            zone_gateways: Vec::new(),
                        })
                    }
                    Ok(BuildStatus::Finished) => {
                        return Ok(BuildLocation {
                            executor: executor.clone(),
                            running: false,
                            zone_gateways: Vec::new(),
                        })
                    }
                    Ok(BuildStatus::Pending) => pending = true,
                    Ok(BuildStatus::Unknown) => {}
                    Err(e) => {
                        tracing::warn!(executor = %executor.name, error = %e, "status query");
                        n_failed += 1;
                    }
                }
            }
            if pending {
                Err(LocateError::NotStarted)
            } else if n_failed > 0 && n_failed == self.executors.len() {
                Err(LocateError::Internal("no executor answered".into()))
            } else {
                Err(LocateError::NotFound)
            }
        })
    }
}

async fn query_status(
    executor: &Executor,
    uuid: &str,
    tls: Option<&ClientTls>,
) -> std::io::Result<BuildStatus> {
    let query = async {
        let mut stream = connect(&executor.host, executor.finger_port, tls).await?;
        stream.write_all(format!("?{uuid}\n").as_bytes()).await?;
        let mut answer = Vec::with_capacity(16);
        (&mut stream).take(1024).read_to_end(&mut answer).await?;
        Ok(BuildStatus::parse(&String::from_utf8_lossy(&answer)))
    };
    tokio::time::timeout(STATUS_TIMEOUT, query)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "status query timed out"))?
}

/// Connects with [`CONNECT_TIMEOUT`] (TCP and the TLS handshake), `TCP_NODELAY` set (log
/// lines are small and late lines are the one thing a console must not have); over TLS when
/// `tls` is given.
pub async fn connect(
    host: &str,
    port: u16,
    tls: Option<&ClientTls>,
) -> std::io::Result<FingerStream> {
    let connect = async {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        match tls {
            Some(tls) => tls.connect(host, stream).await,
            None => Ok(FingerStream::Plain(stream)),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Connects watchers to a build's finger stream: locates the build, then goes to its executor,
/// or to a gateway of the executor's zone when that differs from this one's (as Zuul).
#[derive(Clone)]
pub struct StreamRouter {
    locator: Arc<dyn BuildLocator>,
    zone: Option<String>,
    gateways: Vec<Gateway>,
    tls: Option<ClientTls>,
}

impl std::fmt::Debug for StreamRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRouter")
            .field("zone", &self.zone)
            .field("gateways", &self.gateways)
            .finish_non_exhaustive()
    }
}

impl StreamRouter {
    /// A router in `zone` (unzoned when `None`) with the gateways of other zones.
    pub fn new(
        locator: Arc<dyn BuildLocator>,
        zone: Option<String>,
        gateways: Vec<Gateway>,
    ) -> Self {
        Self {
            locator,
            zone,
            gateways,
            tls: None,
        }
    }

    /// The same router reaching executors and gateways over TLS (with `Some`).
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// A router over a static executors file, reaching them over TLS with `tls`.
    pub fn from_file(file: ExecutorsFile, zone: Option<String>, tls: Option<ClientTls>) -> Self {
        Self::new(
            Arc::new(StaticExecutors::new(file.executors, tls.clone())),
            zone,
            file.gateways,
        )
        .with_tls(tls)
    }

    /// Where the build runs (`tenant`: only a build of that tenant).
    pub async fn locate(
        &self,
        uuid: &str,
        tenant: Option<&str>,
    ) -> Result<BuildLocation, LocateError> {
        self.locator.locate(uuid, tenant).await
    }

    /// The host and port a stream of a build at `location` is read from.
    pub fn target(&self, uuid: &str, location: &BuildLocation) -> (String, u16) {
        if let Some(zone) = &location.executor.zone {
            if self.zone.as_ref() != Some(zone) {
                let in_zone: Vec<&Gateway> = self
                    .gateways
                    .iter()
                    .chain(&location.zone_gateways)
                    .filter(|g| &g.zone == zone)
                    .collect();
                if !in_zone.is_empty() {
                    // Zuul picks a random gateway of the zone; a hash of the uuid spreads builds
                    // the same way without a random number generator.
                    let pick = uuid
                        .bytes()
                        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
                    let gateway = in_zone[pick % in_zone.len()];
                    return (gateway.host.clone(), gateway.port);
                }
            }
        }
        (
            location.executor.host.clone(),
            location.executor.finger_port,
        )
    }

    /// Locates the build (of `tenant`, if given) and opens its stream (the request line
    /// already sent).
    pub async fn open(
        &self,
        uuid: &str,
        tenant: Option<&str>,
    ) -> Result<(FingerStream, BuildLocation), LocateError> {
        let location = self.locate(uuid, tenant).await?;
        let (host, port) = self.target(uuid, &location);
        let mut stream = connect(&host, port, self.tls.as_ref())
            .await
            .map_err(|e| LocateError::Internal(format!("connect to {host}:{port}: {e}")))?;
        stream
            .write_all(format!("{uuid}\n").as_bytes())
            .await
            .map_err(|e| LocateError::Internal(format!("send to {host}:{port}: {e}")))?;
        Ok((stream, location))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executors_file_defaults_and_zone_routing() {
        let file: ExecutorsFile = serde_yaml_ng::from_str(
            "executors:\n  - {name: a, host: h1}\n  - {name: b, host: h2, finger_port: 7901, zone: east}\ngateways:\n  - {name: g, host: gw-east, zone: east}\n",
        )
        .unwrap();
        assert_eq!(file.executors[0].finger_port, 7900);
        assert_eq!(file.gateways[0].port, 79);
        let location = |i: usize| BuildLocation {
            executor: file.executors[i].clone(),
            running: true,
            zone_gateways: Vec::new(),
        };
        let unzoned = StreamRouter::from_file(file.clone(), None, None);
        assert_eq!(unzoned.target("ab", &location(0)), ("h1".into(), 7900));
        assert_eq!(unzoned.target("ab", &location(1)), ("gw-east".into(), 79));
        let east = StreamRouter::from_file(file.clone(), Some("east".into()), None);
        assert_eq!(east.target("ab", &location(1)), ("h2".into(), 7901));
        // Gateways the locator knows (registered in the store) count as the file's.
        let mut west = location(1);
        west.executor.zone = Some("west".into());
        assert_eq!(east.target("ab", &west), ("h2".into(), 7901));
        west.zone_gateways.push(Gateway {
            name: "fg-west".into(),
            host: "gw-west".into(),
            port: 7979,
            zone: "west".into(),
        });
        assert_eq!(east.target("ab", &west), ("gw-west".into(), 7979));
        assert!(serde_yaml_ng::from_str::<ExecutorsFile>("executors: [{name: a}]").is_err());
    }
}
