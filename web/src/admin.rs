//! Admin routes, behind [`WebState::authorize_admin`]: approving a change of the git driver's
//! local review flow (what `sluice change approve` does: a `change-approved` event, which moves
//! the change into the pipelines it triggers, the gate), and Zuul's `enqueue` and `dequeue`
//! of a change in one pipeline (admin events the scheduler acts on in order).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sluice_scheduler::MANAGEMENT_ENQUEUE;
use sluice_scheduler::{AdminEvent, MANAGEMENT_DEQUEUE};

use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::state::{AdminCall, WebState};

/// What to approve.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The change: its review branch (`review/<branch>/<topic>`), its number, or
    /// `<number>,<patchset>` (the patchset must be the current one).
    pub change: String,
}

/// The recorded approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApproveResponse {
    /// Project.
    pub project: String,
    /// The review ref.
    #[serde(rename = "ref")]
    pub ref_: String,
    /// The change number.
    pub change: i64,
    /// The approved patchset.
    pub patchset: String,
    /// The trigger event's id.
    pub event_id: i64,
    /// Who approved it (a token's user, or `local`).
    pub user: String,
}

/// Approves a change: its current patchset enters the pipelines triggered by
/// `change-approved`. (Routed as `POST project/{rest}`: project names hold slashes, so the
/// action is the last segment of the rest.)
#[utoipa::path(post, path = "/api/tenant/{tenant}/project/{project}/approve", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("project" = String, Path, description = "Project (short or canonical name)")),
    request_body = ApproveRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ApproveResponse), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn post_project_action(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((tenant, rest)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let Some((project, action)) = rest.rsplit_once('/') else {
        return Err(ApiError::NotFound(format!("No route for project/{rest}")));
    };
    match action {
        "approve" => {
            let body: ApproveRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("approve body: {e}")))?;
            let approved = approve(&state, peer, &headers, &tenant, project, body).await?;
            Ok(Json(serde_json::to_value(approved.0).unwrap_or_default()))
        }
        "enqueue" | "dequeue" => {
            let body: EnqueueRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("{action} body: {e}")))?;
            let kind = if action == "enqueue" {
                MANAGEMENT_ENQUEUE
            } else {
                MANAGEMENT_DEQUEUE
            };
            let done = manage(
                &state,
                peer,
                &headers,
                &tenant,
                project,
                kind,
                &body.pipeline,
                body.change.as_deref(),
                body.ref_.as_deref(),
            )
            .await?;
            Ok(Json(serde_json::to_value(done).unwrap_or_default()))
        }
        "autohold" => Ok(Json(serde_json::Value::Bool(
            crate::autohold::create(&state, peer, &headers, &tenant, project, &body).await?,
        ))),
        other => Err(ApiError::NotFound(format!(
            "Unknown project action {other:?} (supported: approve, enqueue, dequeue, autohold)"
        ))),
    }
}

/// Zuul's `enqueue` and `dequeue` body: a change in a pipeline.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EnqueueRequest {
    /// The pipeline.
    pub pipeline: String,
    /// The change (`N,patchset`, `N`, or its review branch).
    pub change: Option<String>,
    /// A ref (Zuul's ref enqueue: not supported yet, answered with a 400).
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    /// A ref's old commit (ignored with `ref`).
    pub oldrev: Option<String>,
    /// A ref's new commit (ignored with `ref`).
    pub newrev: Option<String>,
}

/// Enqueues a change into a pipeline, whatever the pipeline's triggers (Zuul's `enqueue`;
/// answers `true` once the scheduler has the request).
#[utoipa::path(post, path = "/api/tenant/{tenant}/project/{project}/enqueue", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("project" = String, Path, description = "Project (short or canonical name)")),
    request_body = EnqueueRequest,
    security(("bearer" = [])),
    responses((status = 200, body = bool), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn post_enqueue() {}

/// Takes a change out of a pipeline, canceling its builds (Zuul's `dequeue`).
#[utoipa::path(post, path = "/api/tenant/{tenant}/project/{project}/dequeue", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("project" = String, Path, description = "Project (short or canonical name)")),
    request_body = EnqueueRequest,
    security(("bearer" = [])),
    responses((status = 200, body = bool), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn post_dequeue() {}

#[expect(clippy::too_many_arguments, reason = "one request's parts")]
async fn manage(
    state: &WebState,
    peer: SocketAddr,
    headers: &HeaderMap,
    tenant: &str,
    project: &str,
    kind: &str,
    pipeline: &str,
    change: Option<&str>,
    ref_: Option<&str>,
) -> ApiResult<bool> {
    let AdminCall { tenant: t, user } = state.authorize_admin(peer, headers, tenant)?;
    let p = t
        .project(project)
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} does not exist")))?;
    if !t.pipelines.iter().any(|pl| pl.name == pipeline) {
        return Err(ApiError::NotFound(format!(
            "Pipeline {pipeline} does not exist in tenant {tenant}"
        )));
    }
    let wanted = match (change, ref_) {
        (Some(c), None) => c,
        (None, Some(r)) => {
            return Err(ApiError::BadRequest(format!(
                "ref {r}: only changes can be enqueued or dequeued yet"
            )))
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give either change or ref".to_string(),
            ))
        }
    };
    let connection = p.entry.connection.clone();
    let short = p.entry.name.clone();
    let change = find_change(state, &connection, &short, wanted).await?;
    if kind == MANAGEMENT_DEQUEUE {
        let active = state.store().active_items(&t.tenant.name, pipeline).await?;
        let queued = active.iter().any(|i| {
            i.change.is_change()
                && i.change.number == change.number
                && i.change.project.ends_with(&format!("/{short}"))
        });
        if !queued {
            return Err(ApiError::BadRequest(format!(
                "Change {} of {short} is not in pipeline {pipeline}",
                change.number
            )));
        }
    } else if change.status != "open" {
        return Err(ApiError::BadRequest(format!(
            "Change {} of {short} is {}",
            change.number, change.status
        )));
    }
    sluice_scheduler::manage_change(
        state.store(),
        AdminEvent {
            kind,
            connection: &connection,
            project: &short,
            refname: &change.refname,
            tenant: &t.tenant.name,
            pipeline,
            user: &user,
        },
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(%tenant, project = %short, change = change.number, %pipeline, %user, %kind, "admin event");
    Ok(true)
}

/// The change `wanted` names (its review branch, number, or `N,patchset` with the current
/// patchset) among `project`'s.
pub(crate) async fn find_change(
    state: &WebState,
    connection: &str,
    short: &str,
    wanted: &str,
) -> ApiResult<sluice_store::ChangeRow> {
    let changes = state.store().changes(connection).await?;
    let of_project = changes.into_iter().filter(|c| c.project == short);
    let wanted = wanted.trim();
    let (number, patchset) = match wanted.split_once(',') {
        Some((n, ps)) => (n.parse::<i64>().ok(), Some(ps)),
        None => (wanted.parse::<i64>().ok(), None),
    };
    let mut of_project = of_project;
    let change = match number {
        Some(n) => of_project.find(|c| c.number == n),
        None => {
            let refname = if wanted.starts_with("refs/") {
                wanted.to_string()
            } else {
                format!("refs/heads/{wanted}")
            };
            if sluice_scheduler::git::parse_review_ref(&refname).is_none() {
                return Err(ApiError::BadRequest(format!(
                    "{wanted} is neither a change number nor a review branch (review/<branch>/<topic>)"
                )));
            }
            of_project.find(|c| c.refname == refname)
        }
    }
    .ok_or_else(|| ApiError::NotFound(format!("Change {wanted} of {short} not found")))?;
    if let Some(ps) = patchset {
        if ps != change.patchset {
            return Err(ApiError::BadRequest(format!(
                "Patchset {ps} is not the current one of change {} ({})",
                change.number, change.patchset
            )));
        }
    }
    Ok(change)
}

async fn approve(
    state: &WebState,
    peer: SocketAddr,
    headers: &HeaderMap,
    tenant: &str,
    project: &str,
    body: ApproveRequest,
) -> ApiResult<Json<ApproveResponse>> {
    let AdminCall { tenant: t, user } = state.authorize_admin(peer, headers, tenant)?;
    let p = t
        .project(project)
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} does not exist")))?;
    let connection = p.entry.connection.clone();
    let short = p.entry.name.clone();
    let change = find_change(state, &connection, &short, &body.change).await?;
    if change.status != "open" {
        return Err(ApiError::BadRequest(format!(
            "Change {} of {short} is {}",
            change.number, change.status
        )));
    }
    let event_id =
        sluice_scheduler::approve_change(state.store(), &connection, &short, &change.refname)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(%tenant, project = %short, change = change.number, %user, "change approved");
    Ok(Json(ApproveResponse {
        project: short,
        ref_: change.refname.clone(),
        change: change.number,
        patchset: change.patchset.clone(),
        event_id,
        user,
    }))
}

/// Zuul's `promote` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PromoteRequest {
    /// The pipeline.
    pub pipeline: String,
    /// The changes (`N,patchset` or `N`), in the order they should head their change queue.
    pub changes: Vec<String>,
}

/// Moves changes to the head of their change queue in the order given (Zuul's `promote`);
/// the items whose items ahead changed are reset: their builds restart on the new order.
/// Answers `true` once the scheduler has the request.
#[utoipa::path(post, path = "/api/tenant/{tenant}/promote", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant name")),
    request_body = PromoteRequest,
    security(("bearer" = [])),
    responses((status = 200, body = bool), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn post_promote(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<bool>> {
    let AdminCall { tenant: t, user } = state.authorize_admin(peer, &headers, &tenant)?;
    let body: PromoteRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("promote body: {e}")))?;
    let pipeline = &body.pipeline;
    if !t.pipelines.iter().any(|pl| pl.name == *pipeline) {
        return Err(ApiError::NotFound(format!(
            "Pipeline {pipeline} does not exist in tenant {tenant}"
        )));
    }
    if body.changes.is_empty() {
        return Err(ApiError::BadRequest(
            "changes: name at least one change".into(),
        ));
    }
    let active = state.store().active_items(&t.tenant.name, pipeline).await?;
    let mut items: Vec<&sluice_store::ItemRow> = Vec::new();
    for wanted in &body.changes {
        let (number, patchset) = match wanted.trim().split_once(',') {
            Some((n, ps)) => (n.trim().parse::<i64>().ok(), Some(ps.trim())),
            None => (wanted.trim().parse::<i64>().ok(), None),
        };
        let Some(number) = number else {
            return Err(ApiError::BadRequest(format!(
                "change {wanted:?}: expected <number>,<patchset> or <number>"
            )));
        };
        let matching: Vec<&sluice_store::ItemRow> = active
            .iter()
            .filter(|i| {
                i.change.is_change()
                    && i.change.number == number
                    && patchset.is_none_or(|ps| i.change.patchset == ps)
            })
            .collect();
        match matching.as_slice() {
            [] => {
                return Err(ApiError::BadRequest(format!(
                    "Change {wanted} is not in pipeline {pipeline}"
                )))
            }
            [one] => {
                if items.iter().any(|i| i.uuid == one.uuid) {
                    return Err(ApiError::BadRequest(format!(
                        "Change {wanted} is named twice"
                    )));
                }
                items.push(one)
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "Change {wanted} names items of several projects in pipeline {pipeline}: give its patchset (<number>,<sha>)"
                )))
            }
        }
    }
    if let Some(other) = items.iter().find(|i| i.queue != items[0].queue) {
        return Err(ApiError::BadRequest(format!(
            "Changes {} and {} are not in the same change queue of pipeline {pipeline}",
            items[0].change.url, other.change.url
        )));
    }
    let uuids: Vec<String> = items.iter().map(|i| i.uuid.clone()).collect();
    sluice_scheduler::promote_items(
        state.store(),
        &items[0].change.connection,
        &t.tenant.name,
        pipeline,
        &uuids,
        &user,
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(%tenant, %pipeline, changes = ?body.changes, %user, "promote requested");
    Ok(Json(true))
}
