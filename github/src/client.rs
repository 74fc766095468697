//! REST calls to GitHub, all through `octocrab` with its base URI pointed at the configured API
//! URL: authentication (App JWT → installation token per installation, refreshed five
//! minutes before it expires; or a personal token), conditional GETs (ETag) with a bounded
//! cache, and rate limits and server errors classified so callers can back off.
//!
//! Octocrab's own retry layer is not used: a GET here is retried with back-off (server errors,
//! rate limits until their reset), while writes are tried once and retried by the report queue
//! (`reports.rs`), which persists them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::{HeaderMap, Method};
use octocrab::models::{AppId, InstallationId};
use octocrab::Octocrab;
use serde_json::Value;

use crate::config::{Auth, GithubConfig};
use crate::errors::GithubError;

/// ETag entries kept before the cache starts over.
const ETAG_CAPACITY: usize = 2000;
/// Tries of a GET before giving up on server errors. Kept short: a GET runs inside the
/// scheduler's loop, and its callers retry later with their own back-off (events stay
/// pending, pipeline checks run again on the next pass).
const GET_ATTEMPTS: u32 = 3;
/// First wait between tries of a GET (doubling).
const GET_FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest wait for a rate limit inside one GET (longer ones fail and are retried later).
const MAX_RATE_WAIT_MS: i64 = 5 * 1000;

/// A GitHub API client for one connection.
pub struct Client {
    cfg: GithubConfig,
    /// App JWT client (App auth), token client or anonymous client.
    base: Octocrab,
    /// For repositories without an installation (App auth with a fallback token).
    fallback: Option<Octocrab>,
    installations: Mutex<HashMap<String, u64>>,
    crabs: Mutex<HashMap<u64, Octocrab>>,
    etags: Mutex<HashMap<String, (String, Value)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connection", &self.cfg.name)
            .field("api_url", &self.cfg.api_url)
            .finish()
    }
}

fn now_ms() -> i64 {
    sluice_store::now_ms()
}

fn builder(
    cfg: &GithubConfig,
) -> Result<
    octocrab::OctocrabBuilder<
        octocrab::NoSvc,
        octocrab::DefaultOctocrabBuilderConfig,
        octocrab::NoAuth,
        octocrab::NotLayerReady,
    >,
    GithubError,
> {
    Octocrab::builder()
        .base_uri(cfg.api_url.as_str())
        .map(|b| {
            b.set_connect_timeout(Some(Duration::from_secs(10)))
                .set_read_timeout(Some(Duration::from_secs(60)))
                .set_write_timeout(Some(Duration::from_secs(60)))
        })
        .map_err(|e| GithubError::Config {
            connection: cfg.name.clone(),
            message: format!("api-url {:?}: {e}", cfg.api_url),
        })
}

fn built(
    cfg: &GithubConfig,
    b: Result<Octocrab, octocrab::Error>,
) -> Result<Octocrab, GithubError> {
    b.map_err(|e| GithubError::Config {
        connection: cfg.name.clone(),
        message: format!("cannot make the HTTP client: {e}"),
    })
}

/// When a rate limit on this answer lifts, if it is one (ms since the epoch).
fn rate_limit_until(status: u16, headers: &HeaderMap, body: &str) -> Option<i64> {
    if status != 403 && status != 429 {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let Some(after) = header("retry-after") {
        return Some(now_ms() + after * 1000 + 1000);
    }
    if header("x-ratelimit-remaining") == Some(0) {
        if let Some(reset) = header("x-ratelimit-reset") {
            return Some((reset * 1000 + 1000).max(now_ms() + 1000));
        }
    }
    let lower = body.to_ascii_lowercase();
    if status == 429 || lower.contains("rate limit") || lower.contains("abuse detection") {
        return Some(now_ms() + 60_000);
    }
    None
}

fn message_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

impl Client {
    /// A client for `cfg` (reads the App key now, so a bad key fails at start).
    pub fn new(cfg: &GithubConfig) -> Result<Client, GithubError> {
        let (base, fallback) = match &cfg.auth {
            Auth::App {
                app_id,
                key_path,
                fallback_token,
            } => {
                let pem = std::fs::read(key_path).map_err(|source| GithubError::ReadKey {
                    connection: cfg.name.clone(),
                    path: key_path.clone(),
                    source,
                })?;
                let key =
                    octocrab::EncodingKey::from_rsa_pem(&pem).map_err(|e| GithubError::Config {
                        connection: cfg.name.clone(),
                        message: format!(
                            "app-key {}: not an RSA private key in PEM: {e}",
                            key_path.display()
                        ),
                    })?;
                let base = built(cfg, builder(cfg)?.app(AppId(*app_id), key).build())?;
                let fallback = match fallback_token {
                    Some(t) => Some(built(cfg, builder(cfg)?.personal_token(t.clone()).build())?),
                    None => None,
                };
                (base, fallback)
            }
            Auth::Token(t) => (
                built(cfg, builder(cfg)?.personal_token(t.clone()).build())?,
                None,
            ),
            Auth::Anonymous => (built(cfg, builder(cfg)?.build())?, None),
        };
        Ok(Client {
            cfg: cfg.clone(),
            base,
            fallback,
            installations: Mutex::new(HashMap::new()),
            crabs: Mutex::new(HashMap::new()),
            etags: Mutex::new(HashMap::new()),
        })
    }

    /// The connection's settings.
    pub fn config(&self) -> &GithubConfig {
        &self.cfg
    }

    fn is_app(&self) -> bool {
        matches!(self.cfg.auth, Auth::App { .. })
    }

    /// Remembers which installation serves `repo` (webhook payloads say so).
    pub fn note_installation(&self, repo: &str, installation: u64) {
        if let Ok(mut map) = self.installations.lock() {
            map.insert(repo.to_string(), installation);
        }
    }

    async fn installation_of(&self, repo: &str) -> Result<Option<u64>, GithubError> {
        if let Some(id) = self
            .installations
            .lock()
            .ok()
            .and_then(|m| m.get(repo).copied())
        {
            return Ok(Some(id));
        }
        let path = format!("/repos/{repo}/installation");
        match self.send(&self.base, Method::GET, &path, None, None).await {
            Ok((_, _, body)) => {
                let v: Value = serde_json::from_str(&body).map_err(|e| GithubError::Decode {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let id = v
                    .get("id")
                    .and_then(Value::as_u64)
                    .ok_or(GithubError::Decode {
                        path,
                        message: "no installation id".into(),
                    })?;
                self.note_installation(repo, id);
                Ok(Some(id))
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The client to call the API for `repo` with, and the token git may use for it.
    async fn crab_for(&self, repo: &str) -> Result<(Octocrab, Option<String>), GithubError> {
        match &self.cfg.auth {
            Auth::App { .. } => {
                let Some(id) = self.installation_of(repo).await? else {
                    return match &self.fallback {
                        Some(f) => Ok((f.clone(), self.fallback_token())),
                        None => Err(GithubError::Config {
                            connection: self.cfg.name.clone(),
                            message: format!(
                                "the GitHub App is not installed on {repo} and no api-token is configured"
                            ),
                        }),
                    };
                };
                let crab = {
                    let mut crabs = self.crabs.lock().map_err(|_| GithubError::Config {
                        connection: self.cfg.name.clone(),
                        message: "client state poisoned".into(),
                    })?;
                    match crabs.get(&id) {
                        Some(c) => c.clone(),
                        None => {
                            let c = self.base.installation(InstallationId(id)).map_err(|e| {
                                GithubError::Config {
                                    connection: self.cfg.name.clone(),
                                    message: format!("installation {id}: {e}"),
                                }
                            })?;
                            crabs.insert(id, c.clone());
                            c
                        }
                    }
                };
                // Cached per installation; renewed when it would expire within 5 minutes.
                let token = crab
                    .installation_token_with_buffer(chrono::Duration::minutes(5))
                    .await
                    .map_err(|e| {
                        self.octo_error(
                            "POST",
                            &format!("/app/installations/{id}/access_tokens"),
                            e,
                        )
                    })?;
                use octocrab::secrecy::ExposeSecret;
                Ok((crab, Some(token.expose_secret().to_string())))
            }
            Auth::Token(t) => Ok((self.base.clone(), Some(t.clone()))),
            Auth::Anonymous => Ok((self.base.clone(), None)),
        }
    }

    fn fallback_token(&self) -> Option<String> {
        match &self.cfg.auth {
            Auth::App { fallback_token, .. } => fallback_token.clone(),
            _ => None,
        }
    }

    /// The token `git` uses to fetch `repo` over HTTPS (`None`: anonymous).
    pub async fn git_token(&self, repo: &str) -> Result<Option<String>, GithubError> {
        Ok(self.crab_for(repo).await?.1)
    }

    fn octo_error(&self, method: &str, path: &str, e: octocrab::Error) -> GithubError {
        match e {
            octocrab::Error::GitHub { source, .. } => GithubError::Status {
                method: method.into(),
                path: path.into(),
                status: source.status_code.as_u16(),
                message: source.message.clone(),
                retry_at: None,
            },
            other => GithubError::Transport {
                method: method.into(),
                path: path.into(),
                message: other.to_string(),
            },
        }
    }

    /// One request; `Ok` only for 2xx (and 304), with status, headers and body.
    async fn send(
        &self,
        crab: &Octocrab,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: Option<HeaderMap>,
    ) -> Result<(u16, HeaderMap, String), GithubError> {
        let m = method.as_str().to_string();
        let response = match method {
            Method::GET => crab._get_with_headers(path, headers).await,
            Method::POST => crab._post(path, body).await,
            Method::PUT => crab._put(path, body).await,
            Method::PATCH => crab._patch(path, body).await,
            Method::DELETE => crab._delete(path, body).await,
            other => {
                return Err(GithubError::Transport {
                    method: other.to_string(),
                    path: path.into(),
                    message: "unsupported method".into(),
                })
            }
        };
        let response = response.map_err(|e| self.octo_error(&m, path, e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(remaining) = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
        {
            tracing::debug!(connection = %self.cfg.name, %remaining, path, "GitHub rate limit");
        }
        let text = crab
            .body_to_string(response)
            .await
            .map_err(|e| self.octo_error(&m, path, e))?;
        if (200..300).contains(&status) || status == 304 {
            return Ok((status, headers, text));
        }
        let retry_at = rate_limit_until(status, &headers, &text);
        Err(GithubError::Status {
            method: m,
            path: path.into(),
            status,
            message: message_of(&text),
            retry_at,
        })
    }

    /// A write (POST, PUT, PATCH, DELETE) on `repo`, tried once; the answer's JSON (or null).
    pub async fn write(
        &self,
        repo: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, GithubError> {
        let (crab, _) = self.crab_for(repo).await?;
        let (_, _, text) = self.send(&crab, method, path, body, None).await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| GithubError::Decode {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// A GET on `repo` with a conditional request; server errors are retried briefly
    /// (0.5 s doubling, 3 tries) and rate limits lifting within 5 s waited out; longer ones
    /// fail with the time they lift, for the caller to retry then.
    pub async fn get(&self, repo: &str, path: &str) -> Result<Value, GithubError> {
        let mut delay = GET_FIRST_DELAY;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.get_once(repo, path).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < GET_ATTEMPTS => {
                    let wait = match e.retry_at() {
                        Some(at) if at - now_ms() > MAX_RATE_WAIT_MS => return Err(e),
                        Some(at) => Duration::from_millis((at - now_ms()).max(0) as u64),
                        None => {
                            let d = delay;
                            delay = (delay * 2).min(Duration::from_secs(30));
                            d
                        }
                    };
                    tracing::warn!(connection = %self.cfg.name, path, error = %e, wait_ms = wait.as_millis() as u64, "GitHub GET failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_once(&self, repo: &str, path: &str) -> Result<Value, GithubError> {
        let (crab, _) = self.crab_for(repo).await?;
        let cached = self.etags.lock().ok().and_then(|m| m.get(path).cloned());
        let mut headers = HeaderMap::new();
        if let Some((etag, _)) = &cached {
            if let Ok(v) = etag.parse() {
                headers.insert(http::header::IF_NONE_MATCH, v);
            }
        }
        let (status, response_headers, text) = self
            .send(&crab, Method::GET, path, None, Some(headers))
            .await?;
        if status == 304 {
            if let Some((_, value)) = cached {
                return Ok(value);
            }
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| GithubError::Decode {
            path: path.into(),
            message: e.to_string(),
        })?;
        if let Some(etag) = response_headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
        {
            if let Ok(mut map) = self.etags.lock() {
                if map.len() >= ETAG_CAPACITY {
                    map.clear();
                }
                map.insert(path.to_string(), (etag.to_string(), value.clone()));
            }
        }
        Ok(value)
    }

    /// Every item of a paged list (`per_page=100`), up to `max_pages` pages.
    pub async fn get_list(
        &self,
        repo: &str,
        path: &str,
        max_pages: u32,
    ) -> Result<Vec<Value>, GithubError> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        for page in 1..=max_pages {
            let v = self
                .get(repo, &format!("{path}{sep}per_page=100&page={page}"))
                .await?;
            let items = match v {
                Value::Array(a) => a,
                other => {
                    return Err(GithubError::Decode {
                        path: path.into(),
                        message: format!("expected a list, got {}", short(&other)),
                    })
                }
            };
            let n = items.len();
            out.extend(items);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// Whether this client can use the Checks API (GitHub Apps only).
    pub fn can_check(&self) -> bool {
        self.is_app()
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset", "4000000000".parse().unwrap());
        assert_eq!(rate_limit_until(403, &h, "{}"), Some(4_000_000_001_000));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert!(rate_limit_until(403, &h, "").is_some_and(|t| t > now_ms()));
        assert!(rate_limit_until(
            403,
            &HeaderMap::new(),
            "{\"message\":\"Resource not accessible\"}"
        )
        .is_none());
        assert!(rate_limit_until(500, &h, "").is_none());
    }
}
