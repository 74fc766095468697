//! Admin routes, behind [`crate::auth::authorize`]: approving a change of the git driver's
//! local review flow (what `sluice change approve` does: a `change-approved` event, which moves
//! the change into the pipelines it triggers, the gate).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{authorize, Caller};
use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::state::WebState;

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
) -> ApiResult<Json<ApproveResponse>> {
    let Some((project, action)) = rest.rsplit_once('/') else {
        return Err(ApiError::NotFound(format!("No route for project/{rest}")));
    };
    match action {
        "approve" => {
            let body: ApproveRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("approve body: {e}")))?;
            approve(&state, peer, &headers, &tenant, project, body).await
        }
        other => Err(ApiError::NotFound(format!(
            "Unknown project action {other:?} (supported: approve)"
        ))),
    }
}

async fn approve(
    state: &WebState,
    peer: SocketAddr,
    headers: &HeaderMap,
    tenant: &str,
    project: &str,
    body: ApproveRequest,
) -> ApiResult<Json<ApproveResponse>> {
    let t = state.tenant(tenant)?;
    let caller = authorize(
        state.config().auth.as_ref(),
        state.config().local_admin,
        Some(peer.ip()),
        headers,
        &t.tenant.name,
    )?;
    let p = t
        .project(project)
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} does not exist")))?;
    let connection = p.entry.connection.clone();
    let short = p.entry.name.clone();
    let changes = state.store().changes(&connection).await?;
    let of_project = changes.iter().filter(|c| c.project == short);
    let wanted = body.change.trim();
    let (number, patchset) = match wanted.split_once(',') {
        Some((n, ps)) => (n.parse::<i64>().ok(), Some(ps)),
        None => (wanted.parse::<i64>().ok(), None),
    };
    let change = match number {
        Some(n) => of_project.clone().find(|c| c.number == n),
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
            of_project.clone().find(|c| c.refname == refname)
        }
    }
    .ok_or_else(|| ApiError::NotFound(format!("Change {wanted} of {short} not found")))?;
    if change.status != "open" {
        return Err(ApiError::BadRequest(format!(
            "Change {} of {short} is {}",
            change.number, change.status
        )));
    }
    if let Some(ps) = patchset {
        if ps != change.patchset {
            return Err(ApiError::BadRequest(format!(
                "Patchset {ps} is not the current one of change {} ({})",
                change.number, change.patchset
            )));
        }
    }
    let event_id =
        sluice_scheduler::approve_change(state.store(), &connection, &short, &change.refname)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    let user = match caller {
        Caller::User(u) => u,
        Caller::Local => "local".into(),
    };
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
