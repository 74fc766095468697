//! The `sluice serve` configuration file (YAML), documented in `docs/serve.md`. Relative paths
//! are relative to the file's directory; [`ServeConfig::load`] resolves them once, so nothing
//! downstream depends on the current directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::errors::{parse_yaml, SchedulerError};
use crate::governor::GovernorConfig;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeConfig {
    /// Zuul's `main.yaml`.
    pub tenant_config: PathBuf,
    /// Sluice's own state: the database, scheduler merges, build dirs.
    pub state_dir: PathBuf,
    /// Database URL; default `sqlite://<state-dir>/sluice.db`.
    #[serde(default)]
    pub database: Option<String>,
    /// Source connections.
    pub connections: Vec<ConnectionConfig>,
    /// The in-process executor.
    #[serde(default)]
    pub executor: ExecutorSection,
    /// Seconds between scheduler passes when nothing happens.
    #[serde(default = "default_tick")]
    pub tick_seconds: f64,
    /// The web server (`sluice serve --web-listen`, `sluice web`).
    #[serde(default)]
    pub web: WebSection,
    /// Optional statsd output (Zuul's `[statsd]`), sent by the process running the scheduler.
    #[serde(default)]
    pub statsd: Option<StatsdSection>,
    /// Finger over TLS for every process reading this file (executors' finger servers,
    /// gateways, the web's connections to them); `--tls-*` options take precedence.
    #[serde(default)]
    pub finger_tls: Option<FingerTlsSection>,
}

/// Where to send statsd metrics (Zuul's `[statsd] server, port, prefix`; docs/web.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StatsdSection {
    /// Host name or address of the statsd server.
    pub server: String,
    /// Its UDP port.
    #[serde(default = "default_statsd_port")]
    pub port: u16,
    /// Put before every key (`<prefix>.zuul.…`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Seconds between two readings of the store (counters are sent as the increase since the
    /// last reading, gauges as their value).
    #[serde(default = "default_statsd_interval")]
    pub interval_seconds: f64,
}

fn default_statsd_port() -> u16 {
    8125
}

fn default_statsd_interval() -> f64 {
    10.0
}

/// Finger over TLS (Zuul's `tls_cert`, `tls_key`, `tls_ca`, `tls_verify_hostnames`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FingerTlsSection {
    /// This process's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs every finger certificate (PEM).
    pub ca: PathBuf,
    /// Whether a server's certificate must name the host dialled.
    #[serde(default = "yes")]
    pub verify_hostnames: bool,
}

fn yes() -> bool {
    true
}

/// The web server's settings (docs/web.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WebSection {
    /// Bearer-token authenticators for admin routes (Zuul's `[auth <name>]` sections).
    #[serde(default)]
    pub authenticators: Vec<AuthenticatorConfig>,
    /// Accept admin calls without a token from loopback clients when no authenticator is
    /// configured.
    #[serde(default)]
    pub local_admin: bool,
    /// Public URL of the web server (Zuul's `[web] root`): reports to code-review systems
    /// link to `<root>t/<tenant>/buildset/<uuid>`.
    #[serde(default)]
    pub root: Option<String>,
}

/// One JWT authenticator (Zuul's `[auth <name>]`: `driver=HS256|RS256`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuthenticatorConfig {
    /// Its name (the realm when `realm` is not set).
    pub name: String,
    /// `HS256` or `RS256`.
    pub driver: String,
    /// HS256: the shared secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// RS256: the PEM public key file.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// The `iss` claim tokens must carry.
    pub issuer_id: String,
    /// The `aud` claim tokens must carry.
    pub client_id: String,
    /// The realm (default: the name).
    #[serde(default)]
    pub realm: Option<String>,
    /// The claim naming the user (default `sub`).
    #[serde(default)]
    pub uid_claim: Option<String>,
    /// Longest accepted token life in seconds (`exp - iat`), if set.
    #[serde(default)]
    pub max_validity_time: Option<u64>,
    /// The realm `zuul-client` is pointed at.
    #[serde(default)]
    pub default: bool,
}

fn default_tick() -> f64 {
    0.5
}

/// One connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Name used in `main.yaml` and pipeline triggers/reporters.
    pub name: String,
    /// `git` (local repositories) or `github`.
    pub driver: String,
    /// git: directory of repositories: project `org/repo` is `<root>/org/repo.git` or
    /// `<root>/org/repo`. github: where the mirrors go (default `<state-dir>/github/<name>`).
    #[serde(default)]
    pub root: PathBuf,
    /// Host part of canonical project names.
    #[serde(default = "default_hostname")]
    pub canonical_hostname: String,
    /// Seconds between ref scans.
    #[serde(default = "default_poll")]
    pub poll_seconds: f64,
    /// github: web host (default `github.com`).
    #[serde(default)]
    pub server: Option<String>,
    /// github: REST API URL (default `https://api.github.com`, or `https://<server>/api/v3`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// github: the GitHub App's id.
    #[serde(default)]
    pub app_id: Option<u64>,
    /// github: the GitHub App's private key (PEM file).
    #[serde(default)]
    pub app_key: Option<PathBuf>,
    /// github: a personal access token (or the App's fallback for repos without an installation).
    #[serde(default)]
    pub api_token: Option<String>,
    /// github: the webhook secret.
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

impl ConnectionConfig {
    /// The GitHub settings of a `github` connection (`None` for other drivers).
    pub fn github(
        &self,
    ) -> Option<Result<sluice_github::GithubConfig, sluice_github::GithubError>> {
        (self.driver == "github").then(|| {
            sluice_github::GithubConfig::new(
                &self.name,
                self.server.as_deref(),
                self.api_url.as_deref(),
                (self.canonical_hostname != default_hostname())
                    .then_some(self.canonical_hostname.as_str()),
                self.app_id,
                self.app_key.clone(),
                self.api_token.clone(),
                self.webhook_secret.clone(),
            )
        })
    }
}

fn default_hostname() -> String {
    "localhost".into()
}

fn default_poll() -> f64 {
    1.0
}

/// The in-process executor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExecutorSection {
    /// Builds run at the same time.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Static nodes file (Nodepool static-driver format).
    #[serde(default)]
    pub nodes: Option<PathBuf>,
    /// The executor's SSH private key for the nodes.
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    /// Where Ansible installations live (`sluice manage-ansible`'s state dir); default
    /// `$SLUICE_STATE_DIR` or `~/.local/state/sluice`.
    #[serde(default)]
    pub ansible_state_dir: Option<PathBuf>,
    /// Ansible version for jobs that name none.
    #[serde(default)]
    pub default_ansible_version: Option<String>,
    /// Seconds a claimed build stays ours without a heartbeat.
    #[serde(default = "default_lease")]
    pub lease_seconds: u64,
    /// Keep build dirs after builds.
    #[serde(default)]
    pub keep_jobdir: bool,
    /// Node console port when not 19885.
    #[serde(default)]
    pub console_port: Option<u16>,
    /// The executor's zone (Zuul's `executor.zone`): gateways of other zones reach its log
    /// streams through a gateway of this zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// When to stop taking work (`governor.rs`).
    #[serde(default)]
    pub governor: GovernorConfig,
}

fn default_workers() -> usize {
    2
}

fn default_lease() -> u64 {
    30
}

impl Default for ExecutorSection {
    fn default() -> Self {
        ExecutorSection {
            workers: default_workers(),
            nodes: None,
            ssh_key: None,
            ansible_state_dir: None,
            default_ansible_version: None,
            lease_seconds: default_lease(),
            keep_jobdir: false,
            console_port: None,
            zone: None,
            governor: GovernorConfig::default(),
        }
    }
}

impl ServeConfig {
    /// Reads the file and makes every path absolute.
    pub fn load(path: &Path) -> Result<ServeConfig, SchedulerError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchedulerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: ServeConfig = parse_yaml(path, &text)?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.tenant_config);
        abs(&mut cfg.state_dir);
        for c in &mut cfg.connections {
            let name = c.name.clone();
            let invalid = |message: String| SchedulerError::Invalid {
                path: path.to_path_buf(),
                message: format!("connection {name}: {message}"),
            };
            match c.driver.as_str() {
                "git" if c.root.as_os_str().is_empty() => {
                    return Err(invalid("a git connection needs `root`".into()))
                }
                "git" => {}
                "github" => {
                    if c.root.as_os_str().is_empty() {
                        c.root = cfg.state_dir.join("github").join(&c.name);
                    }
                    if let Some(key) = &mut c.app_key {
                        abs(key);
                    }
                    if let Some(Err(e)) = c.github() {
                        return Err(invalid(e.to_string()));
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "unknown driver {other:?} (supported: git, github)"
                    )))
                }
            }
            abs(&mut c.root);
        }
        if let Some(statsd) = &cfg.statsd {
            if !(statsd.interval_seconds.is_finite() && statsd.interval_seconds > 0.0) {
                return Err(SchedulerError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "statsd.interval-seconds must be a positive number of seconds, not {}",
                        statsd.interval_seconds
                    ),
                });
            }
        }
        for a in &mut cfg.web.authenticators {
            if let Some(p) = &mut a.public_key {
                abs(p);
            }
        }
        if let Some(tls) = &mut cfg.finger_tls {
            abs(&mut tls.cert);
            abs(&mut tls.key);
            abs(&mut tls.ca);
        }
        for p in [
            &mut cfg.executor.nodes,
            &mut cfg.executor.ssh_key,
            &mut cfg.executor.ansible_state_dir,
        ]
        .into_iter()
        .flatten()
        {
            abs(p);
        }
        Ok(cfg)
    }

    /// The database URL.
    pub fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.state_dir.join("sluice.db").display()
            )
        })
    }

    /// A connection by name.
    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }
}
