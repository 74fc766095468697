//! A GitHub connection's settings, as the `sluice serve` file gives them (`docs/github.md`),
//! and the URLs derived from them.

use std::path::PathBuf;

use crate::errors::GithubError;

/// How Sluice authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A GitHub App: its id and private key (PEM); API calls use installation tokens.
    App {
        /// The App's id.
        app_id: u64,
        /// Its private key file.
        key_path: PathBuf,
        /// Token for repositories without an installation (optional).
        fallback_token: Option<String>,
    },
    /// A personal (or fine-grained) access token.
    Token(String),
    /// No credentials (public repositories, read-only).
    Anonymous,
}

/// One GitHub connection.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// Connection name.
    pub name: String,
    /// Web host of GitHub (`github.com` or the GitHub Enterprise host).
    pub server: String,
    /// REST API base URL.
    pub api_url: String,
    /// Host part of canonical project names.
    pub canonical_hostname: String,
    /// Authentication.
    pub auth: Auth,
    /// Shared secret of the webhook (HMAC key).
    pub webhook_secret: Option<String>,
}

impl GithubConfig {
    /// Settings from the config file's fields; `api_url` defaults to `https://api.github.com`
    /// for github.com and `https://<server>/api/v3` for GitHub Enterprise.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        server: Option<&str>,
        api_url: Option<&str>,
        canonical_hostname: Option<&str>,
        app_id: Option<u64>,
        app_key: Option<PathBuf>,
        api_token: Option<String>,
        webhook_secret: Option<String>,
    ) -> Result<GithubConfig, GithubError> {
        let server = server
            .unwrap_or("github.com")
            .trim_end_matches('/')
            .to_string();
        let api_url = match api_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if server == "github.com" => "https://api.github.com".into(),
            None => format!("https://{server}/api/v3"),
        };
        if !api_url.starts_with("http://") && !api_url.starts_with("https://") {
            return Err(GithubError::Config {
                connection: name.into(),
                message: format!("api-url {api_url:?} is not an http(s) URL"),
            });
        }
        let auth = match (app_id, app_key) {
            (Some(app_id), Some(key_path)) => Auth::App {
                app_id,
                key_path,
                fallback_token: api_token,
            },
            (Some(_), None) | (None, Some(_)) => {
                return Err(GithubError::Config {
                    connection: name.into(),
                    message: "app-id and app-key go together".into(),
                })
            }
            (None, None) => match api_token {
                Some(t) => Auth::Token(t),
                None => Auth::Anonymous,
            },
        };
        Ok(GithubConfig {
            name: name.into(),
            canonical_hostname: canonical_hostname.unwrap_or(&server).to_string(),
            server,
            api_url,
            auth,
            webhook_secret,
        })
    }

    /// `https://<server>/<project>/pull/<number>`: how a pull request is named in
    /// `Depends-On` footers and reports.
    pub fn pull_url(&self, project: &str, number: i64) -> String {
        format!("https://{}/{project}/pull/{number}", self.server)
    }

    /// Whether a URL's host belongs to this connection.
    pub fn owns_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host == self.server.to_ascii_lowercase()
            || host == self.canonical_hostname.to_ascii_lowercase()
    }
}

/// `(host, org/repo, number)` of a pull request URL (`https://host/org/repo/pull/N[/...]`).
pub fn parse_pull_url(url: &str) -> Option<(String, String, i64)> {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let mut parts = rest.split('/');
    let host = parts.next()?.to_string();
    let org = parts.next()?;
    let repo = parts.next()?;
    if parts.next()? != "pull" {
        return None;
    }
    let number: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let number = number.parse().ok()?;
    if org.is_empty() || repo.is_empty() {
        return None;
    }
    Some((host, format!("{org}/{repo}"), number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_defaults() {
        let c = GithubConfig::new("gh", None, None, None, None, None, None, None).unwrap();
        assert_eq!(c.api_url, "https://api.github.com");
        let c = GithubConfig::new(
            "gh",
            Some("ghe.example"),
            None,
            None,
            None,
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(c.api_url, "https://ghe.example/api/v3");
        assert_eq!(c.canonical_hostname, "ghe.example");
        assert!(GithubConfig::new("gh", None, None, None, Some(1), None, None, None).is_err());
    }

    #[test]
    fn pull_urls() {
        assert_eq!(
            parse_pull_url("https://github.com/org/repo/pull/12/files"),
            Some(("github.com".into(), "org/repo".into(), 12))
        );
        assert_eq!(
            parse_pull_url("https://github.com/org/repo/pull/7"),
            Some(("github.com".into(), "org/repo".into(), 7))
        );
        assert_eq!(parse_pull_url("https://github.com/org/repo/issues/7"), None);
        assert_eq!(parse_pull_url("https://github.com/org/repo/pull/x"), None);
    }
}
