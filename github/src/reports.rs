//! Reports to GitHub: the operations a pipeline's reporters ask for (commit status, check run,
//! comment, labels, review), queued in the store by the scheduler and sent from the queue in
//! order per item, retried with back-off on rate limits, server errors and lost connections
//! (never dropped; permanent errors are kept as `failed` with GitHub's message), and the merge,
//! which the scheduler does itself because its outcome decides the item's result.

use std::collections::HashSet;

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_store::{now_ms, ReportRow, Store};

use crate::client::Client;
use crate::errors::GithubError;
use crate::rules::ReporterConfig;

/// Longest pause between tries of one report.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

/// One operation on GitHub (the `op_json` of a `reports` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ReportOp {
    /// `POST /repos/{project}/statuses/{sha}`.
    Status {
        /// `org/repo`.
        project: String,
        /// Commit.
        sha: String,
        /// `pending`, `success`, `failure`, `error`.
        state: String,
        /// `<tenant>/<pipeline>`.
        context: String,
        /// `<pipeline> status: <state>`.
        description: String,
        /// The item's page.
        target_url: Option<String>,
    },
    /// A check run, created once per item and updated after.
    Check {
        /// `org/repo`.
        project: String,
        /// Commit.
        sha: String,
        /// `<tenant>/<pipeline>`.
        name: String,
        /// `queued`, `in_progress`, or a conclusion (`success`, `failure`, `cancelled`, ...).
        state: String,
        /// The item's page.
        details_url: Option<String>,
        /// The report text.
        summary: String,
        /// `{"tenant", "pipeline", "change"}` as JSON.
        external_id: String,
    },
    /// `POST /repos/{project}/issues/{number}/comments`.
    Comment {
        /// `org/repo`.
        project: String,
        /// Pull request.
        number: i64,
        /// Markdown.
        body: String,
    },
    /// `POST /repos/{project}/issues/{number}/labels`.
    AddLabels {
        /// `org/repo`.
        project: String,
        /// Pull request.
        number: i64,
        /// Names.
        labels: Vec<String>,
    },
    /// `DELETE /repos/{project}/issues/{number}/labels/{label}`.
    RemoveLabel {
        /// `org/repo`.
        project: String,
        /// Pull request.
        number: i64,
        /// Name.
        label: String,
    },
    /// `POST /repos/{project}/pulls/{number}/reviews`.
    Review {
        /// `org/repo`.
        project: String,
        /// Pull request.
        number: i64,
        /// Commit reviewed.
        sha: String,
        /// `APPROVE`, `REQUEST_CHANGES` or `COMMENT`.
        event: String,
        /// Text.
        body: String,
    },
}

/// What the reporters need to know about the item.
#[derive(Debug, Clone)]
pub struct ReportContext {
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// `org/repo`.
    pub project: String,
    /// Pull request number.
    pub number: i64,
    /// Tested head commit.
    pub sha: String,
    /// The report text (GitHub flavour).
    pub message: String,
    /// The item's page (`<web-root>/t/<tenant>/buildset/<uuid>`), when a web root is set.
    pub item_url: Option<String>,
    /// Check runs are possible (App auth).
    pub can_check: bool,
}

/// The operations one reporter performs, in Zuul's phase-1 order: status, labels, review,
/// check, comment.
pub fn ops_for(r: &ReporterConfig, ctx: &ReportContext) -> Vec<ReportOp> {
    let context = format!("{}/{}", ctx.tenant, ctx.pipeline);
    let mut ops = Vec::new();
    if let Some(state) = &r.status {
        let mut description = format!("{} status: {state}", ctx.pipeline);
        if description.len() >= 140 {
            description = format!("status: {state}");
        }
        ops.push(ReportOp::Status {
            project: ctx.project.clone(),
            sha: ctx.sha.clone(),
            state: state.clone(),
            context: context.clone(),
            description,
            target_url: ctx.item_url.clone(),
        });
    }
    if !r.label.is_empty() {
        ops.push(ReportOp::AddLabels {
            project: ctx.project.clone(),
            number: ctx.number,
            labels: r.label.clone(),
        });
    }
    for label in &r.unlabel {
        ops.push(ReportOp::RemoveLabel {
            project: ctx.project.clone(),
            number: ctx.number,
            label: label.clone(),
        });
    }
    if let Some(review) = &r.review {
        let event = match review.as_str() {
            "approve" => "APPROVE",
            "request-changes" => "REQUEST_CHANGES",
            _ => "COMMENT",
        };
        ops.push(ReportOp::Review {
            project: ctx.project.clone(),
            number: ctx.number,
            sha: ctx.sha.clone(),
            event: event.into(),
            body: r.review_body.clone().unwrap_or_else(|| ctx.message.clone()),
        });
    }
    let mut message = ctx.message.clone();
    if let Some(state) = &r.check {
        if ctx.can_check {
            ops.push(ReportOp::Check {
                project: ctx.project.clone(),
                sha: ctx.sha.clone(),
                name: context.clone(),
                state: state.clone(),
                details_url: ctx.item_url.clone(),
                summary: ctx.message.clone(),
                external_id:
                    json!({"tenant": ctx.tenant, "pipeline": ctx.pipeline, "change": ctx.number})
                        .to_string(),
            });
        } else {
            message.push_str("\n\nWarning: check runs need GitHub App authentication; this connection uses a token.");
        }
    }
    if r.comment && !message.trim().is_empty() {
        ops.push(ReportOp::Comment {
            project: ctx.project.clone(),
            number: ctx.number,
            body: message,
        });
    }
    ops
}

/// Percent-encodes a path segment.
fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends one operation; the check run id is returned for check runs (`prior_check` updates
/// an existing run instead of creating one).
pub async fn send(
    client: &Client,
    op: &ReportOp,
    prior_check: Option<i64>,
) -> Result<Option<Value>, GithubError> {
    match op {
        ReportOp::Status {
            project,
            sha,
            state,
            context,
            description,
            target_url,
        } => {
            let mut body = json!({"state": state, "context": context, "description": description});
            if let Some(url) = target_url {
                body["target_url"] = json!(url);
            }
            client
                .write(
                    project,
                    Method::POST,
                    &format!("/repos/{project}/statuses/{sha}"),
                    Some(&body),
                )
                .await?;
            Ok(None)
        }
        ReportOp::Check {
            project,
            sha,
            name,
            state,
            details_url,
            summary,
            external_id,
        } => {
            let mut body = json!({
                "name": name,
                "head_sha": sha,
                "external_id": external_id,
                "output": {"title": "Summary", "summary": summary},
            });
            if let Some(url) = details_url {
                body["details_url"] = json!(url);
            }
            match state.as_str() {
                "queued" | "in_progress" => {
                    body["status"] = json!(state);
                    body["actions"] = json!([{"label": "Abort", "description": "Abort this check run", "identifier": "abort"}]);
                }
                conclusion => {
                    body["status"] = json!("completed");
                    body["conclusion"] = json!(conclusion);
                    body["completed_at"] = json!(
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    body["actions"] = json!([]);
                }
            }
            let answer = match prior_check {
                Some(id) => {
                    client
                        .write(
                            project,
                            Method::PATCH,
                            &format!("/repos/{project}/check-runs/{id}"),
                            Some(&body),
                        )
                        .await?
                }
                None => {
                    client
                        .write(
                            project,
                            Method::POST,
                            &format!("/repos/{project}/check-runs"),
                            Some(&body),
                        )
                        .await?
                }
            };
            let id = answer.get("id").and_then(Value::as_i64).or(prior_check);
            Ok(id.map(|id| json!({"check_run_id": id, "name": name})))
        }
        ReportOp::Comment {
            project,
            number,
            body,
        } => {
            client
                .write(
                    project,
                    Method::POST,
                    &format!("/repos/{project}/issues/{number}/comments"),
                    Some(&json!({"body": body})),
                )
                .await?;
            Ok(None)
        }
        ReportOp::AddLabels {
            project,
            number,
            labels,
        } => {
            client
                .write(
                    project,
                    Method::POST,
                    &format!("/repos/{project}/issues/{number}/labels"),
                    Some(&json!({"labels": labels})),
                )
                .await?;
            Ok(None)
        }
        ReportOp::RemoveLabel {
            project,
            number,
            label,
        } => {
            let path = format!("/repos/{project}/issues/{number}/labels/{}", segment(label));
            match client.write(project, Method::DELETE, &path, None).await {
                // Already gone.
                Err(e) if e.status() == Some(404) => Ok(None),
                other => other.map(|_| None),
            }
        }
        ReportOp::Review {
            project,
            number,
            sha,
            event,
            body,
        } => {
            client
                .write(
                    project,
                    Method::POST,
                    &format!("/repos/{project}/pulls/{number}/reviews"),
                    Some(&json!({"commit_id": sha, "event": event, "body": body})),
                )
                .await?;
            Ok(None)
        }
    }
}

fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(0, 20) as u32;
    2000i64.saturating_mul(1i64 << exp).min(MAX_BACKOFF_MS)
}

/// The check run an item already has for `name` (from its sent reports).
fn prior_check(rows: &[ReportRow], name: &str) -> Option<i64> {
    rows.iter()
        .rev()
        .filter_map(|r| r.result.as_ref())
        .find(|res| res.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|res| res.get("check_run_id").and_then(Value::as_i64))
}

/// Sends the connection's due reports, in order per item (a report waiting for its retry
/// holds back the item's later ones); returns how many were sent.
pub async fn flush(client: &Client, store: &Store) -> Result<usize, GithubError> {
    let connection = client.config().name.clone();
    let pending = store.pending_reports(&connection).await?;
    let mut blocked: HashSet<String> = HashSet::new();
    let mut sent = 0;
    for row in pending {
        let now = now_ms();
        if blocked.contains(&row.item_uuid) {
            continue;
        }
        if row.next_attempt > now {
            blocked.insert(row.item_uuid.clone());
            continue;
        }
        let op: ReportOp = match serde_json::from_value(row.op.clone()) {
            Ok(op) => op,
            Err(e) => {
                let why = format!("unreadable report: {e}");
                tracing::error!(%connection, report = row.id, error = %why, "report dropped");
                store
                    .update_report(row.id, "failed", now, Some(&why), None)
                    .await?;
                continue;
            }
        };
        let prior = match &op {
            ReportOp::Check { name, .. } => {
                prior_check(&store.reports_of_item(&row.item_uuid).await?, name)
            }
            _ => None,
        };
        match send(client, &op, prior).await {
            Ok(result) => {
                store
                    .update_report(row.id, "sent", now_ms(), None, result.as_ref())
                    .await?;
                sent += 1;
            }
            Err(e) if e.is_transient() => {
                let next = e
                    .retry_at()
                    .unwrap_or_else(|| now_ms() + backoff_ms(row.attempts));
                tracing::warn!(%connection, report = row.id, item = %row.item_uuid, error = %e, retry_in_ms = next - now_ms(), "report not sent; will retry");
                store
                    .update_report(row.id, "pending", next, Some(&e.to_string()), None)
                    .await?;
                blocked.insert(row.item_uuid.clone());
                if e.retry_at().is_some() {
                    // A rate limit holds for every request of the connection.
                    break;
                }
            }
            Err(e) => {
                tracing::error!(%connection, report = row.id, item = %row.item_uuid, error = %e, "report refused by GitHub");
                store
                    .update_report(row.id, "failed", now_ms(), Some(&e.to_string()), None)
                    .await?;
            }
        }
    }
    Ok(sent)
}

/// GitHub's `merge_method` for a Zuul merge mode, or why it cannot merge that way.
pub fn merge_method(mode: &str) -> Result<&'static str, String> {
    match mode {
        "merge" | "merge-resolve" | "merge-recursive" | "merge-ort" => Ok("merge"),
        "squash-merge" => Ok("squash"),
        "rebase" => Ok("rebase"),
        other => Err(format!(
            "merge mode {other} cannot be done through the GitHub API"
        )),
    }
}

/// What a merge needs.
#[derive(Debug, Clone)]
pub struct MergeRequest {
    /// `org/repo`.
    pub project: String,
    /// Pull request.
    pub number: i64,
    /// The tested head: GitHub refuses the merge if the head moved.
    pub sha: String,
    /// The project's merge mode.
    pub mode: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// `Reviewed-by:` lines' `Name <email>` (or login).
    pub reviewers: Vec<String>,
    /// An earlier try failed: check first whether it merged meanwhile.
    pub retry: bool,
}

/// Merges a pull request with `PUT /repos/{project}/pulls/{number}/merge`, once (the caller
/// schedules the next try, without waiting for it); a retry first checks whether the pull
/// request merged meanwhile.
pub async fn merge(client: &Client, req: &MergeRequest) -> Result<(), String> {
    let method = merge_method(&req.mode)?;
    let mut message = if method == "squash" {
        req.body.clone()
    } else {
        format!("{}\n\n{}", req.title, req.body)
    };
    let reviewed: Vec<String> = req
        .reviewers
        .iter()
        .map(|r| format!("Reviewed-by: {r}"))
        .collect();
    if !reviewed.is_empty() {
        message = format!("{}\n\n{}", message.trim_end(), reviewed.join("\n"));
    }
    let project = &req.project;
    let body = json!({"merge_method": method, "sha": req.sha, "commit_message": message});
    let path = format!("/repos/{project}/pulls/{}/merge", req.number);
    if req.retry {
        if let Ok(pr) = client
            .get(project, &format!("/repos/{project}/pulls/{}", req.number))
            .await
        {
            if pr.get("merged").and_then(Value::as_bool) == Some(true) {
                return Ok(());
            }
        }
    }
    let last = match client.write(project, Method::PUT, &path, Some(&body)).await {
        Ok(v) if v.get("merged").and_then(Value::as_bool) != Some(false) => {
            tracing::info!(%project, number = req.number, method, "pull request merged");
            return Ok(());
        }
        Ok(v) => v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("not merged")
            .to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(%project, number = req.number, error = %last, "merge failed");
    Err(format!("Merge of {project}#{} failed: {last}", req.number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ReportContext {
        ReportContext {
            tenant: "t".into(),
            pipeline: "check".into(),
            project: "org/a".into(),
            number: 4,
            sha: "abc".into(),
            message: "Build succeeded.".into(),
            item_url: Some("https://ci/t/t/buildset/1".into()),
            can_check: true,
        }
    }

    #[test]
    fn reporter_ops_in_order() {
        let r = ReporterConfig {
            status: Some("success".into()),
            check: Some("success".into()),
            comment: true,
            label: vec!["ok".into()],
            unlabel: vec!["gate me".into()],
            ..Default::default()
        };
        let ops = ops_for(&r, &ctx());
        let kinds: Vec<&str> = ops
            .iter()
            .map(|o| match o {
                ReportOp::Status { .. } => "status",
                ReportOp::AddLabels { .. } => "label",
                ReportOp::RemoveLabel { .. } => "unlabel",
                ReportOp::Review { .. } => "review",
                ReportOp::Check { .. } => "check",
                ReportOp::Comment { .. } => "comment",
            })
            .collect();
        assert_eq!(kinds, ["status", "label", "unlabel", "check", "comment"]);
        let mut no_app = ctx();
        no_app.can_check = false;
        let ops = ops_for(&r, &no_app);
        assert!(
            matches!(ops.last(), Some(ReportOp::Comment { body, .. }) if body.contains("GitHub App"))
        );
        assert_eq!(segment("gate me"), "gate%20me");
        assert_eq!(backoff_ms(0), 2000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
        assert_eq!(merge_method("squash-merge"), Ok("squash"));
        assert!(merge_method("cherry-pick").is_err());
    }
}
