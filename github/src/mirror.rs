//! Local mirrors of a connection's repositories (`<state>/github/<connection>/<org>/<repo>.git`,
//! bare): what the scheduler loads configuration from, merges speculatively and hands to
//! executors. They are fetched with the real `git` from the repository's `clone_url` (HTTPS
//! with the installation token in an `Authorization` header passed through the environment,
//! never on the command line), including pull request heads (`refs/pull/<N>/head`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::client::Client;
use crate::errors::GithubError;

/// Longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// The mirrors of one connection.
#[derive(Debug)]
pub struct Mirrors {
    root: PathBuf,
    /// `(clone_url, default_branch)` per project.
    remotes: Mutex<HashMap<String, (String, String)>>,
}

fn git_error(project: &str, what: &str, message: String) -> GithubError {
    GithubError::Git {
        project: project.into(),
        what: what.into(),
        message,
    }
}

impl Mirrors {
    /// Mirrors under `root`.
    pub fn new(root: PathBuf) -> Mirrors {
        Mirrors {
            root,
            remotes: Mutex::new(HashMap::new()),
        }
    }

    /// Where they live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bare mirror of `project`.
    pub fn path(&self, project: &str) -> PathBuf {
        self.root.join(format!("{project}.git"))
    }

    async fn remote(
        &self,
        client: &Client,
        project: &str,
    ) -> Result<(String, String), GithubError> {
        if let Some(r) = self
            .remotes
            .lock()
            .ok()
            .and_then(|m| m.get(project).cloned())
        {
            return Ok(r);
        }
        let repo = client.get(project, &format!("/repos/{project}")).await?;
        let url = repo
            .get("clone_url")
            .and_then(Value::as_str)
            .ok_or_else(|| GithubError::Decode {
                path: format!("/repos/{project}"),
                message: "no clone_url".into(),
            })?
            .to_string();
        let branch = repo
            .get("default_branch")
            .and_then(Value::as_str)
            .unwrap_or("main")
            .to_string();
        if let Ok(mut m) = self.remotes.lock() {
            m.insert(project.to_string(), (url.clone(), branch.clone()));
        }
        Ok((url, branch))
    }

    /// Fetches every branch (pruning deleted ones) and the given extra refspecs (e.g.
    /// `+refs/pull/3/head:refs/pull/3/head`), creating the mirror on first use.
    pub async fn fetch(
        &self,
        client: &Client,
        project: &str,
        extra: &[String],
    ) -> Result<(), GithubError> {
        let (url, default_branch) = self.remote(client, project).await?;
        let path = self.path(project);
        if !path.join("HEAD").is_file() {
            std::fs::create_dir_all(&path).map_err(|e| {
                git_error(project, "create mirror", format!("{}: {e}", path.display()))
            })?;
            self.git(project, &path, &["init", "-q", "--bare"], None)
                .await?;
        }
        let token = if url.starts_with("https://") || url.starts_with("http://") {
            client.git_token(project).await?
        } else {
            None
        };
        let mut args: Vec<String> = vec![
            "fetch".into(),
            "-q".into(),
            "--prune".into(),
            "--no-tags".into(),
            url.clone(),
            "+refs/heads/*:refs/heads/*".into(),
        ];
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.git(project, &path, &args, token.as_deref()).await?;
        let head = format!("refs/heads/{default_branch}");
        self.git(project, &path, &["symbolic-ref", "HEAD", &head], None)
            .await?;
        Ok(())
    }

    async fn git(
        &self,
        project: &str,
        dir: &Path,
        args: &[&str],
        token: Option<&str>,
    ) -> Result<(), GithubError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = token {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {basic}"),
                );
        }
        let what = args.first().copied().unwrap_or("git");
        let out = tokio::time::timeout(FETCH_TIMEOUT, cmd.output())
            .await
            .map_err(|_| git_error(project, what, "timed out".into()))?
            .map_err(|e| git_error(project, what, format!("cannot run git: {e}")))?;
        if !out.status.success() {
            return Err(git_error(
                project,
                what,
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }
}
