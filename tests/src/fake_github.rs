//! A fake GitHub on loopback for the GitHub driver's tests: an HTTP server speaking the REST
//! endpoints Sluice calls through octocrab (the wire format of GitHub's API), backed by real
//! bare git repositories that Sluice fetches over the `file` protocol (`clone_url`), with pull
//! requests as real `refs/pull/<N>/head` refs and merges done with git (merge, squash, rebase).
//!
//! It checks what GitHub checks that matters here: App JWTs are verified with the App's public
//! key (RS256), installation tokens must be ones it issued, a merge must name the current head.
//! Every call is recorded for assertions, and faults (a 502, a rate limit) can be queued.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde_json::{json, Value};

/// The installation every repository belongs to.
pub const INSTALLATION: u64 = 4242;

/// One recorded API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path (without query).
    pub path: String,
    /// JSON body (null when none).
    pub body: Value,
    /// The answer's status.
    pub status: u16,
}

/// A fault answered instead of the real response.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Method it applies to.
    pub method: String,
    /// Substring of the path it applies to.
    pub path_contains: String,
    /// 502, or 403 with rate-limit headers when `rate_limit`.
    pub status: u16,
    /// Send `x-ratelimit-remaining: 0` and a reset one second ahead.
    pub rate_limit: bool,
}

/// A pull request.
#[derive(Debug, Clone)]
pub struct Pull {
    /// `org/repo`.
    pub repo: String,
    /// Number.
    pub number: i64,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Head commit.
    pub head: String,
    /// Target branch.
    pub base: String,
    /// Merged.
    pub merged: bool,
    /// Closed.
    pub closed: bool,
    /// Label names.
    pub labels: Vec<String>,
    /// `(user, state)` reviews in order (submitted as long ago as [`FakeGithub::set_user`]
    /// says for the user; now by default).
    pub reviews: Vec<(String, String)>,
    /// A draft.
    pub draft: bool,
}

#[derive(Default)]
struct FakeState {
    repos_root: PathBuf,
    app_key: Option<RsaPublicKey>,
    tokens: Vec<String>,
    pulls: Vec<Pull>,
    statuses: Vec<(String, String, Value)>,
    check_runs: Vec<(String, Value)>,
    comments: Vec<(String, i64, String)>,
    calls: Vec<Call>,
    faults: Vec<Fault>,
    /// `(login, repository permission, age of their reviews in seconds)`.
    users: Vec<(String, String, u64)>,
}

/// The running fake.
pub struct FakeGithub {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    _runtime: tokio::runtime::Runtime,
}

fn json_response(status: StatusCode, v: Value) -> Response {
    let body = v.to_string();
    let etag = format!("\"{:x}\"", fxhash(&body));
    (
        status,
        [
            ("content-type", "application/json"),
            ("etag", etag.as_str()),
        ],
        body,
    )
        .into_response()
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

impl FakeGithub {
    /// Serves repositories under `repos_root` (`<org>/<repo>.git`, bare), with the App whose
    /// public key is `app_key`.
    pub fn start(repos_root: &Path, app_key: RsaPublicKey) -> FakeGithub {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let state = Arc::new(Mutex::new(FakeState {
            repos_root: repos_root.to_path_buf(),
            app_key: Some(app_key),
            ..Default::default()
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind fake GitHub");
        let addr = listener.local_addr().expect("fake GitHub address");
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub {
            addr,
            state,
            _runtime: runtime,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().expect("fake GitHub state"))
    }

    /// Opens a pull request whose head is `head` (already pushed as `refs/pull/<N>/head`).
    pub fn add_pull(&self, pull: Pull) {
        self.with(|s| s.pulls.push(pull));
    }

    /// Changes a pull request.
    pub fn update_pull(&self, repo: &str, number: i64, f: impl FnOnce(&mut Pull)) {
        self.with(|s| {
            if let Some(p) = s
                .pulls
                .iter_mut()
                .find(|p| p.repo == repo && p.number == number)
            {
                f(p);
            }
        });
    }

    /// A pull request as it is now.
    pub fn pull(&self, repo: &str, number: i64) -> Option<Pull> {
        self.with(|s| {
            s.pulls
                .iter()
                .find(|p| p.repo == repo && p.number == number)
                .cloned()
        })
    }

    /// Answers the next matching call with a fault.
    pub fn add_fault(&self, fault: Fault) {
        self.with(|s| s.faults.push(fault));
    }

    /// Answers the next `times` matching calls with a fault.
    pub fn add_faults(&self, fault: Fault, times: usize) {
        self.with(|s| s.faults.extend(std::iter::repeat_n(fault, times)));
    }

    /// Forgets the faults not answered yet.
    pub fn clear_faults(&self) {
        self.with(|s| s.faults.clear());
    }

    /// A user's permission on every repository (default `write`) and how long ago their
    /// reviews were submitted (default: now).
    pub fn set_user(&self, login: &str, permission: &str, review_age_secs: u64) {
        self.with(|s| {
            s.users.retain(|(l, _, _)| l != login);
            s.users
                .push((login.to_string(), permission.to_string(), review_age_secs));
        });
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// Comments on a pull request.
    pub fn comments(&self, repo: &str, number: i64) -> Vec<String> {
        self.with(|s| {
            s.comments
                .iter()
                .filter(|(r, n, _)| r == repo && *n == number)
                .map(|(_, _, b)| b.clone())
                .collect()
        })
    }

    /// Commit statuses set on `sha` (in order).
    pub fn statuses(&self, sha: &str) -> Vec<Value> {
        self.with(|s| {
            s.statuses
                .iter()
                .filter(|(_, c, _)| c == sha)
                .map(|(_, _, v)| v.clone())
                .collect()
        })
    }

    /// Check runs of `repo` as they are now.
    pub fn check_runs(&self, repo: &str) -> Vec<Value> {
        self.with(|s| {
            s.check_runs
                .iter()
                .filter(|(r, _)| r == repo)
                .map(|(_, v)| v.clone())
                .collect()
        })
    }
}

fn pull_json(base_url: &str, p: &Pull) -> Value {
    json!({
        "number": p.number,
        "state": if p.closed || p.merged { "closed" } else { "open" },
        "title": p.title,
        "body": p.body,
        "draft": p.draft,
        "merged": p.merged,
        "mergeable": true,
        "user": {"login": "author"},
        "labels": p.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "head": {"sha": p.head, "ref": format!("pr-{}", p.number)},
        "base": {"ref": p.base, "repo": {"full_name": p.repo}},
        "html_url": format!("{base_url}/{}/pull/{}", p.repo, p.number),
    })
}

fn verify_jwt(key: &RsaPublicKey, token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Ok(sig) = engine.decode(sig) else {
        return false;
    };
    let Ok(sig) = Signature::try_from(sig.as_slice()) else {
        return false;
    };
    let verifier = VerifyingKey::<sha2::Sha256>::new(key.clone());
    let signed = format!("{h}.{p}");
    if verifier.verify(signed.as_bytes(), &sig).is_err() {
        return false;
    }
    engine
        .decode(p)
        .ok()
        .and_then(|c| serde_json::from_slice::<Value>(&c).ok())
        .is_some_and(|claims| claims.get("iss").is_some() && claims.get("exp").is_some())
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let mut s = state.lock().expect("fake GitHub state");
    let response = route(&mut s, &method, &path, &headers, &body, &host);
    let status = response.status().as_u16();
    s.calls.push(Call {
        method: method.to_string(),
        path,
        body,
        status,
    });
    response
}

fn route(
    s: &mut FakeState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Value,
    host: &str,
) -> Response {
    if let Some(i) = s
        .faults
        .iter()
        .position(|f| f.method == method.as_str() && path.contains(&f.path_contains))
    {
        let f = s.faults.remove(i);
        if f.rate_limit {
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() + 1)
                .unwrap_or(0);
            return (
                StatusCode::FORBIDDEN,
                [
                    ("x-ratelimit-remaining", "0".to_string()),
                    ("x-ratelimit-reset", reset.to_string()),
                    ("content-type", "application/json".to_string()),
                ],
                json!({"message": "API rate limit exceeded for installation."}).to_string(),
            )
                .into_response();
        }
        // GitHub's answers to a merge it refuses; a proxy's page for the rest.
        let message = match f.status {
            405 => "Required status check \"ci/protect\" is expected.",
            409 => "Head branch was modified. Review and try the merge again.",
            404 => "Not Found",
            _ => {
                return (
                    StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY),
                    "<html>502 Bad Gateway</html>",
                )
                    .into_response()
            }
        };
        return json_response(
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY),
            json!({"message": message}),
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bearer = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))
        .unwrap_or("")
        .to_string();
    let app_ok = s.app_key.as_ref().is_some_and(|k| verify_jwt(k, &bearer));
    let token_ok = s.tokens.contains(&bearer);
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let unauthorized = || {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials"}),
        )
    };
    // App endpoints: the JWT.
    if let ["app", "installations", id, "access_tokens"] = segs.as_slice() {
        if !app_ok || *id != INSTALLATION.to_string() || method != Method::POST {
            return unauthorized();
        }
        let token = format!("ghs_fake{}", s.tokens.len() + 1);
        s.tokens.push(token.clone());
        let expires = (chrono_like_now() + 3600).to_string();
        return json_response(
            StatusCode::CREATED,
            json!({
                "token": token,
                "expires_at": iso(expires.parse().unwrap_or(0)),
                "permissions": {"checks": "write", "contents": "write", "issues": "write", "pull_requests": "write", "statuses": "write"},
                "repository_selection": "all",
            }),
        );
    }
    let ["repos", org, name, rest @ ..] = segs.as_slice() else {
        return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
    };
    let repo = format!("{org}/{name}");
    let git_dir = s.repos_root.join(format!("{repo}.git"));
    if !git_dir.is_dir() {
        return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
    }
    if rest == ["installation"] {
        return if app_ok {
            json_response(StatusCode::OK, json!({"id": INSTALLATION}))
        } else {
            unauthorized()
        };
    }
    if !token_ok {
        return unauthorized();
    }
    let base_url = format!("http://{host}");
    let find = |s: &FakeState, n: &str| -> Option<usize> {
        let n: i64 = n.parse().ok()?;
        s.pulls.iter().position(|p| p.repo == repo && p.number == n)
    };
    match (method.as_str(), rest) {
        ("GET", []) => json_response(
            StatusCode::OK,
            json!({"full_name": repo, "default_branch": "main", "clone_url": format!("file://{}", git_dir.display())}),
        ),
        ("GET", ["pulls", n]) => match find(s, n) {
            Some(i) => {
                let v = pull_json(&base_url, &s.pulls[i]);
                json_response(StatusCode::OK, v)
            }
            None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        },
        ("GET", ["pulls", n, "files"]) => match find(s, n) {
            Some(i) => {
                let files = changed_files(&git_dir, &s.pulls[i]);
                json_response(StatusCode::OK, json!(files.iter().map(|f| json!({"filename": f})).collect::<Vec<_>>()))
            }
            None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        },
        ("GET", ["pulls", n, "reviews"]) => match find(s, n) {
            Some(i) => json_response(
                StatusCode::OK,
                json!(s.pulls[i]
                    .reviews
                    .iter()
                    .enumerate()
                    .map(|(k, (user, state))| {
                        let age = s.users.iter().find(|(l, _, _)| l == user).map_or(0, |u| u.2);
                        json!({"id": k + 1, "user": {"login": user}, "state": state, "submitted_at": iso(chrono_like_now().saturating_sub(age))})
                    })
                    .collect::<Vec<_>>()),
            ),
            None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        },
        ("GET", ["commits", sha, "status"]) => {
            let list: Vec<Value> = s.statuses.iter().filter(|(r, c, _)| *r == repo && c == sha).map(|(_, _, v)| v.clone()).collect();
            json_response(StatusCode::OK, json!({"state": "pending", "statuses": list}))
        }
        ("GET", ["commits", sha, "check-runs"]) => {
            let runs: Vec<Value> = s.check_runs.iter().filter(|(r, v)| *r == repo && v["head_sha"] == *sha).map(|(_, v)| v.clone()).collect();
            json_response(StatusCode::OK, json!({"total_count": runs.len(), "check_runs": runs}))
        }
        ("GET", ["commits", sha, "pulls"]) => {
            let list: Vec<Value> = s.pulls.iter().filter(|p| p.repo == repo && p.head == *sha).map(|p| pull_json(&base_url, p)).collect();
            json_response(StatusCode::OK, json!(list))
        }
        ("GET", ["branches", b]) => json_response(StatusCode::OK, json!({"name": b, "protected": false})),
        ("GET", ["collaborators", user, "permission"]) => {
            let permission = s.users.iter().find(|(l, _, _)| l == user).map_or("write", |u| u.1.as_str());
            json_response(StatusCode::OK, json!({"permission": permission}))
        }
        ("POST", ["statuses", sha]) => {
            let mut v = body.clone();
            v["creator"] = json!({"login": "sluice-app[bot]"});
            s.statuses.push((repo.clone(), sha.to_string(), v.clone()));
            json_response(StatusCode::CREATED, v)
        }
        ("POST", ["check-runs"]) => {
            let mut v = body.clone();
            let id = s.check_runs.len() as i64 + 1;
            v["id"] = json!(id);
            v["app"] = json!({"slug": "sluice-app"});
            s.check_runs.push((repo.clone(), v.clone()));
            json_response(StatusCode::CREATED, v)
        }
        ("PATCH", ["check-runs", id]) => {
            let id: i64 = id.parse().unwrap_or(0);
            match s.check_runs.iter_mut().find(|(r, v)| *r == repo && v["id"] == id) {
                Some((_, v)) => {
                    if let (Value::Object(cur), Value::Object(new)) = (&mut *v, body) {
                        for (k, val) in new {
                            cur.insert(k.clone(), val.clone());
                        }
                    }
                    json_response(StatusCode::OK, v.clone())
                }
                None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
            }
        }
        ("POST", ["issues", n, "comments"]) => {
            let n: i64 = n.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or("").to_string();
            s.comments.push((repo.clone(), n, text.clone()));
            json_response(StatusCode::CREATED, json!({"id": s.comments.len(), "body": text}))
        }
        ("POST", ["issues", n, "labels"]) => match find(s, n) {
            Some(i) => {
                for l in body["labels"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if !s.pulls[i].labels.iter().any(|x| x == l) {
                        s.pulls[i].labels.push(l.to_string());
                    }
                }
                json_response(StatusCode::OK, json!(s.pulls[i].labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>()))
            }
            None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        },
        ("DELETE", ["issues", n, "labels", label]) => match find(s, n) {
            Some(i) => {
                s.pulls[i].labels.retain(|l| l != label);
                json_response(StatusCode::OK, json!([]))
            }
            None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        },
        ("PUT", ["pulls", n, "merge"]) => match find(s, n) {
            Some(i) => {
                let p = s.pulls[i].clone();
                if body["sha"].as_str() != Some(p.head.as_str()) {
                    return json_response(StatusCode::CONFLICT, json!({"message": "Head branch was modified. Review and try the merge again."}));
                }
                let method = body["merge_method"].as_str().unwrap_or("merge");
                let message = body["commit_message"].as_str().unwrap_or("").to_string();
                match merge(&git_dir, &p, method, &message) {
                    Ok(sha) => {
                        s.pulls[i].merged = true;
                        s.pulls[i].closed = true;
                        json_response(StatusCode::OK, json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}))
                    }
                    Err(e) => json_response(StatusCode::METHOD_NOT_ALLOWED, json!({"message": format!("Pull Request is not mergeable: {e}")})),
                }
            }
            None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        },
        _ => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
    }
}

fn chrono_like_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
fn iso(t: u64) -> String {
    let days = t / 86400;
    let (h, m, s) = (t % 86400 / 3600, t % 3600 / 60, t % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn changed_files(git_dir: &Path, p: &Pull) -> Vec<String> {
    let Ok(repo) = git2::Repository::open(git_dir) else {
        return vec![];
    };
    let (Ok(head), Ok(base)) = (
        git2::Oid::from_str(&p.head),
        repo.revparse_single(&format!("refs/heads/{}", p.base))
            .map(|o| o.id()),
    ) else {
        return vec![];
    };
    let Ok(mb) = repo.merge_base(base, head) else {
        return vec![];
    };
    let tree = |oid| repo.find_commit(oid).and_then(|c| c.tree()).ok();
    let Ok(diff) = repo.diff_tree_to_tree(tree(mb).as_ref(), tree(head).as_ref(), None) else {
        return vec![];
    };
    diff.deltas()
        .filter_map(|d| d.new_file().path().map(|p| p.display().to_string()))
        .collect()
}

/// Merges the pull request into its base branch the way GitHub's merge methods do.
fn merge(git_dir: &Path, p: &Pull, method: &str, message: &str) -> Result<String, String> {
    let e = |e: git2::Error| e.to_string();
    let repo = git2::Repository::open(git_dir).map_err(e)?;
    let base_ref = format!("refs/heads/{}", p.base);
    let base = repo
        .revparse_single(&base_ref)
        .map_err(e)?
        .peel_to_commit()
        .map_err(e)?;
    let head = repo
        .find_commit(git2::Oid::from_str(&p.head).map_err(e)?)
        .map_err(e)?;
    let sig = git2::Signature::now("GitHub", "noreply@github.com").map_err(e)?;
    let new = match method {
        "merge" | "squash" => {
            let mut index = repo.merge_commits(&base, &head, None).map_err(e)?;
            if index.has_conflicts() {
                return Err("merge conflict".into());
            }
            let tree = repo
                .find_tree(index.write_tree_to(&repo).map_err(e)?)
                .map_err(e)?;
            let parents: Vec<&git2::Commit> = if method == "merge" {
                vec![&base, &head]
            } else {
                vec![&base]
            };
            repo.commit(None, &sig, &sig, message, &tree, &parents)
                .map_err(e)?
        }
        "rebase" => {
            let mut walk = repo.revwalk().map_err(e)?;
            walk.push(head.id()).map_err(e)?;
            walk.hide(base.id()).map_err(e)?;
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
                .map_err(e)?;
            let mut onto = base.clone();
            for oid in walk {
                let c = repo.find_commit(oid.map_err(e)?).map_err(e)?;
                let mut index = repo.cherrypick_commit(&c, &onto, 0, None).map_err(e)?;
                if index.has_conflicts() {
                    return Err("rebase conflict".into());
                }
                let tree = repo
                    .find_tree(index.write_tree_to(&repo).map_err(e)?)
                    .map_err(e)?;
                let id = repo
                    .commit(
                        None,
                        &c.author(),
                        &sig,
                        c.message().unwrap_or(""),
                        &tree,
                        &[&onto],
                    )
                    .map_err(e)?;
                onto = repo.find_commit(id).map_err(e)?;
            }
            onto.id()
        }
        other => return Err(format!("unknown merge_method {other}")),
    };
    repo.reference(&base_ref, new, true, "merge pull request")
        .map_err(e)?;
    Ok(new.to_string())
}
