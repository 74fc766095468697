//! Webhooks: `POST /api/connection/{connection}/payload`. The signature (`X-Hub-Signature-256`,
//! or the legacy SHA-1 `X-Hub-Signature`) is checked in constant time against the connection's
//! secret before the body is parsed; the payload is then turned into trigger events, written
//! to the store's `events` table in one transaction, and the call returns. Pull request data
//! is not fetched here: the scheduler refreshes it from the API when it processes the event.
//!
//! Answers: 401 bad or missing signature (nothing stored), 400 a body that is not JSON or no
//! event header, 404 an unknown connection, 200 for events (unknown kinds are ignored), 500
//! when the store cannot take them (GitHub redelivers on request).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sluice_store::Store;
use subtle::ConstantTimeEq;

/// The sha of a ref that does not exist (created or deleted refs).
pub const NULL_SHA: &str = "0000000000000000000000000000000000000000";

/// Whether the body is signed with `secret`: `sha256=<hex>` in `X-Hub-Signature-256`, else
/// `sha1=<hex>` in `X-Hub-Signature`. Compared in constant time.
pub fn signature_valid(
    secret: &[u8],
    body: &[u8],
    sha256_header: Option<&str>,
    sha1_header: Option<&str>,
) -> bool {
    if let Some(sig) = sha256_header {
        let Some(hex_sig) = sig.trim().strip_prefix("sha256=") else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(body);
        let expected = hex::encode(mac.finalize().into_bytes());
        return expected.as_bytes().ct_eq(hex_sig.as_bytes()).into();
    }
    if let Some(sig) = sha1_header {
        let Some(hex_sig) = sig.trim().strip_prefix("sha1=") else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else {
            return false;
        };
        mac.update(body);
        let expected = hex::encode(mac.finalize().into_bytes());
        return expected.as_bytes().ct_eq(hex_sig.as_bytes()).into();
    }
    false
}

/// A trigger event made from a webhook: the `events` row's kind and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEvent {
    /// `pull_request`, `pull_request_review`, `push` or `check_run` (Zuul's event types).
    pub kind: String,
    /// `project`, `action`, `number`, `patchset`, `branch`, `ref`, `account`, ... (see
    /// `docs/github.md`).
    pub payload: Value,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

fn n(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_i64()
}

/// The trigger events a webhook stands for (none: ignored), or why the payload is unusable.
pub fn translate(event: &str, delivery: &str, body: &Value) -> Result<Vec<TriggerEvent>, String> {
    let action = s(body, &["action"]).unwrap_or("");
    let project = s(body, &["repository", "full_name"]).map(str::to_string);
    let installation = n(body, &["installation", "id"]);
    let account = s(body, &["sender", "login"]).unwrap_or("");
    let base = |project: &str| {
        json!({
            "project": project,
            "account": account,
            "installation": installation,
            "delivery": delivery,
        })
    };
    let need_project = || {
        project
            .clone()
            .ok_or_else(|| "no repository.full_name".to_string())
    };
    let mut out = Vec::new();
    match event {
        "pull_request" => {
            let action = match action {
                "synchronize" => "changed",
                a @ ("opened" | "closed" | "reopened" | "labeled" | "unlabeled" | "edited"
                | "ready_for_review" | "converted_to_draft") => a,
                _ => return Ok(out),
            };
            let pr = body.get("pull_request").ok_or("no pull_request")?;
            let number = n(pr, &["number"]).ok_or("no pull_request.number")?;
            let project = s(pr, &["base", "repo", "full_name"])
                .map(str::to_string)
                .map_or_else(need_project, Ok)?;
            let mut p = base(&project);
            p["action"] = json!(action);
            p["number"] = json!(number);
            p["patchset"] = json!(s(pr, &["head", "sha"]));
            p["branch"] = json!(s(pr, &["base", "ref"]));
            p["ref"] = json!(format!("refs/pull/{number}/head"));
            if let Some(label) = s(body, &["label", "name"]) {
                p["label"] = json!(label);
            }
            if action == "edited" {
                p["body_edited"] = json!(body.pointer("/changes/body").is_some());
            }
            out.push(TriggerEvent {
                kind: "pull_request".into(),
                payload: p,
            });
        }
        "issue_comment" => {
            if action != "created" || body.pointer("/issue/pull_request").is_none() {
                return Ok(out);
            }
            let number = n(body, &["issue", "number"]).ok_or("no issue.number")?;
            let mut p = base(&need_project()?);
            p["action"] = json!("comment");
            p["number"] = json!(number);
            p["ref"] = json!(format!("refs/pull/{number}/head"));
            p["comment"] = json!(s(body, &["comment", "body"]).unwrap_or(""));
            out.push(TriggerEvent {
                kind: "pull_request".into(),
                payload: p,
            });
        }
        "pull_request_review" => {
            if !matches!(action, "submitted" | "dismissed") {
                return Ok(out);
            }
            let pr = body.get("pull_request").ok_or("no pull_request")?;
            let number = n(pr, &["number"]).ok_or("no pull_request.number")?;
            let mut p = base(&need_project()?);
            p["action"] = json!(action);
            p["number"] = json!(number);
            p["patchset"] = json!(s(pr, &["head", "sha"]));
            p["branch"] = json!(s(pr, &["base", "ref"]));
            p["ref"] = json!(format!("refs/pull/{number}/head"));
            p["state"] = json!(s(body, &["review", "state"])
                .unwrap_or("")
                .to_ascii_lowercase());
            out.push(TriggerEvent {
                kind: "pull_request_review".into(),
                payload: p,
            });
        }
        "push" => {
            let refname = s(body, &["ref"]).ok_or("no ref")?;
            let after = s(body, &["after"]).unwrap_or(NULL_SHA);
            if body.get("deleted").and_then(Value::as_bool) == Some(true) || after == NULL_SHA {
                // Ref deletions trigger nothing.
                return Ok(out);
            }
            let mut p = base(&need_project()?);
            p["ref"] = json!(refname);
            p["oldrev"] = json!(s(body, &["before"]));
            p["newrev"] = json!(after);
            if let Some(branch) = refname.strip_prefix("refs/heads/") {
                p["branch"] = json!(branch);
            }
            out.push(TriggerEvent {
                kind: "push".into(),
                payload: p,
            });
        }
        "check_run" if action == "requested_action" => {
            // The `Abort` button of a running check run: the item its `external_id` names
            // (`{"tenant", "pipeline", "change"}`, set by the check reporter) leaves its
            // pipeline. Other buttons, and check runs that are not Sluice's, are ignored.
            if s(body, &["requested_action", "identifier"]) != Some("abort") {
                return Ok(out);
            }
            let run = body.get("check_run").ok_or("no check_run")?;
            let Some(ext) =
                s(run, &["external_id"]).and_then(|e| serde_json::from_str::<Value>(e).ok())
            else {
                return Ok(out);
            };
            let (Some(tenant), Some(pipeline), Some(number)) = (
                s(&ext, &["tenant"]),
                s(&ext, &["pipeline"]),
                n(&ext, &["change"]),
            ) else {
                return Ok(out);
            };
            let mut p = base(&need_project()?);
            p["action"] = json!("abort");
            p["tenant"] = json!(tenant);
            p["pipeline"] = json!(pipeline);
            p["number"] = json!(number);
            p["sha"] = json!(s(run, &["head_sha"]));
            out.push(TriggerEvent {
                kind: "check_run".into(),
                payload: p,
            });
        }
        "check_run" => {
            let action = match action {
                "requested" | "rerequested" => "rerequested",
                "completed" => "completed",
                _ => return Ok(out),
            };
            let run = body.get("check_run").ok_or("no check_run")?;
            let mut p = base(&need_project()?);
            p["action"] = json!(action);
            p["sha"] = json!(s(run, &["head_sha"]));
            p["check"] = json!(format!(
                "{}:{}:{}",
                s(run, &["app", "slug"]).unwrap_or(""),
                s(run, &["name"]).unwrap_or(""),
                s(run, &["conclusion"]).unwrap_or("")
            ));
            let numbers: Vec<i64> = run
                .get("pull_requests")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|pr| n(pr, &["number"])).collect())
                .unwrap_or_default();
            p["numbers"] = json!(numbers);
            out.push(TriggerEvent {
                kind: "check_run".into(),
                payload: p,
            });
        }
        "status" => {
            let mut p = base(&need_project()?);
            p["action"] = json!("status");
            p["sha"] = json!(s(body, &["sha"]));
            p["status"] = json!(format!(
                "{}:{}:{}",
                account,
                s(body, &["context"]).unwrap_or(""),
                s(body, &["state"]).unwrap_or("")
            ));
            p["numbers"] = json!([]);
            out.push(TriggerEvent {
                kind: "pull_request".into(),
                payload: p,
            });
        }
        _ => {}
    }
    Ok(out)
}

/// One connection as the webhook endpoint sees it.
#[derive(Debug, Clone)]
pub struct WebhookConnection {
    /// Connection name (the `{connection}` of the URL).
    pub name: String,
    /// The webhook secret; a connection without one refuses every payload.
    pub secret: Option<String>,
}

#[derive(Clone)]
struct WebhookState {
    connections: Arc<Vec<WebhookConnection>>,
    store: Store,
}

/// The router serving `POST /api/connection/{connection}/payload` for `connections`, writing
/// trigger events to `store`. Merge it into the HTTP server's router.
pub fn router(connections: Vec<WebhookConnection>, store: Store) -> Router {
    Router::new()
        .route("/api/connection/{connection}/payload", post(payload))
        .with_state(WebhookState {
            connections: Arc::new(connections),
            store,
        })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn payload(
    State(state): State<WebhookState>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(conn) = state.connections.iter().find(|c| c.name == connection) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no GitHub connection named {connection:?}\n"),
        );
    };
    let Some(secret) = conn.secret.as_deref() else {
        tracing::warn!(%connection, "webhook refused: the connection has no webhook-secret");
        return (
            StatusCode::UNAUTHORIZED,
            "this connection has no webhook secret configured\n".into(),
        );
    };
    if !signature_valid(
        secret.as_bytes(),
        &body,
        header(&headers, "x-hub-signature-256"),
        header(&headers, "x-hub-signature"),
    ) {
        tracing::warn!(%connection, "webhook refused: bad or missing signature");
        return (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256\n".into(),
        );
    }
    let Some(event) = header(&headers, "x-github-event") else {
        return (StatusCode::BAD_REQUEST, "no X-GitHub-Event header\n".into());
    };
    let delivery = header(&headers, "x-github-delivery")
        .unwrap_or("")
        .to_string();
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(%connection, %event, %delivery, error = %e, "webhook refused: body is not JSON");
            return (StatusCode::BAD_REQUEST, format!("body is not JSON: {e}\n"));
        }
    };
    let events = match translate(event, &delivery, &doc) {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(%connection, %event, %delivery, error = %e, "webhook refused: payload lacks fields");
            return (
                StatusCode::BAD_REQUEST,
                format!("unusable {event} payload: {e}\n"),
            );
        }
    };
    if events.is_empty() {
        tracing::debug!(%connection, %event, %delivery, "webhook ignored");
        return (StatusCode::OK, "ignored\n".into());
    }
    let stored = async {
        let mut tx = state.store.begin().await?;
        for e in &events {
            tx.insert_event(&conn.name, &e.kind, &e.payload).await?;
        }
        tx.commit().await
    }
    .await;
    match stored {
        Ok(()) => {
            tracing::info!(%connection, %event, %delivery, events = events.len(), "webhook accepted");
            (
                StatusCode::OK,
                format!("{} event(s) queued\n", events.len()),
            )
        }
        Err(e) => {
            tracing::error!(%connection, %event, %delivery, error = %e, "webhook not stored");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot store the event\n".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign256(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures() {
        let body = br#"{"a":1}"#;
        let good = sign256("s3cret", body);
        assert!(signature_valid(b"s3cret", body, Some(&good), None));
        assert!(!signature_valid(b"other", body, Some(&good), None));
        assert!(!signature_valid(b"s3cret", b"{\"a\":2}", Some(&good), None));
        assert!(!signature_valid(b"s3cret", body, None, None));
        assert!(!signature_valid(b"s3cret", body, Some("sha1=00"), None));
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let legacy = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_valid(b"s3cret", body, None, Some(&legacy)));
    }

    #[test]
    fn pull_request_events() {
        let body = json!({
            "action": "synchronize",
            "pull_request": {"number": 3, "head": {"sha": "abc"}, "base": {"ref": "main", "repo": {"full_name": "org/a"}}},
            "repository": {"full_name": "org/a"},
            "sender": {"login": "alice"},
            "installation": {"id": 9}
        });
        let ev = translate("pull_request", "d1", &body).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, "pull_request");
        assert_eq!(ev[0].payload["action"], "changed");
        assert_eq!(ev[0].payload["ref"], "refs/pull/3/head");
        assert_eq!(ev[0].payload["installation"], 9);
        let mut other = body.clone();
        other["action"] = json!("assigned");
        assert!(translate("pull_request", "d", &other).unwrap().is_empty());
        assert!(translate("ping", "d", &json!({"zen": "x"}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn check_run_abort() {
        let body = json!({
            "action": "requested_action",
            "check_run": {"head_sha": "abc", "external_id": "{\"tenant\":\"t\",\"pipeline\":\"check\",\"change\":5}"},
            "requested_action": {"identifier": "abort"},
            "repository": {"full_name": "org/a"},
            "sender": {"login": "alice"}
        });
        let ev = translate("check_run", "d", &body).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, "check_run");
        assert_eq!(
            (
                &ev[0].payload["action"],
                &ev[0].payload["tenant"],
                &ev[0].payload["pipeline"],
                &ev[0].payload["number"]
            ),
            (&json!("abort"), &json!("t"), &json!("check"), &json!(5))
        );
        let mut other = body.clone();
        other["requested_action"]["identifier"] = json!("lgtm");
        assert!(translate("check_run", "d", &other).unwrap().is_empty());
        let mut foreign = body.clone();
        foreign["check_run"]["external_id"] = json!("");
        assert!(translate("check_run", "d", &foreign).unwrap().is_empty());
    }

    #[test]
    fn pushes_and_deletions() {
        let push = json!({"ref": "refs/heads/main", "before": "a", "after": "b", "deleted": false, "repository": {"full_name": "org/a"}});
        let ev = translate("push", "d", &push).unwrap();
        assert_eq!(ev[0].payload["branch"], "main");
        let mut deleted = push.clone();
        deleted["deleted"] = json!(true);
        deleted["after"] = json!(NULL_SHA);
        assert!(translate("push", "d", &deleted).unwrap().is_empty());
    }
}
