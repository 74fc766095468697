//! Zuul's autohold routes: `POST project/{p}/autohold` (admin) records a hold request in the
//! store, `GET project/{p}/autohold`, `GET autohold` and `GET autohold/{id}` list them in
//! Zuul's shape, `DELETE autohold/{id}` (admin) deletes one and gives its held nodes back.
//! The executors apply the requests (`sluice_scheduler::autohold`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_scheduler::autohold::ANY_REF;
use sluice_store::{HoldRequest, HoldRequestRow};
use utoipa::ToSchema;

use crate::admin::find_change;
use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::state::{AdminCall, WebState};

/// Zuul's `autohold` body (what `zuul-client autohold` sends).
#[derive(Debug, Deserialize, ToSchema)]
pub struct AutoholdRequest {
    /// The job whose failing builds hold their nodes.
    pub job: String,
    /// Only builds of this change (its number); empty or absent: any.
    #[serde(default)]
    pub change: Option<String>,
    /// Only builds whose ref matches this regular expression; empty or absent: any.
    #[serde(default, rename = "ref")]
    pub ref_: Option<String>,
    /// Why (shown in the list).
    pub reason: String,
    /// How many failing builds to hold (default 1).
    #[serde(default)]
    pub count: Option<i64>,
    /// Seconds the nodes stay held; absent or 0: until the request is deleted.
    #[serde(default)]
    pub node_hold_expiration: Option<i64>,
}

/// The nodes one build held.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldBuildRecord {
    /// Build uuid.
    pub build: String,
    /// Node names.
    pub nodes: Vec<String>,
}

/// A hold request, as Zuul shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoholdRecord {
    /// Id (10 digits).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Canonical project name.
    pub project: String,
    /// Job.
    pub job: String,
    /// Regular expression on the build's ref.
    pub ref_filter: String,
    /// Builds to hold.
    pub max_count: i64,
    /// Builds held so far.
    pub current_count: i64,
    /// Why.
    pub reason: String,
    /// Seconds the nodes stay held (0: until deleted).
    pub node_expiration: i64,
    /// When the request was used up (epoch seconds), else null.
    pub expired: Option<i64>,
    /// The held builds and their nodes.
    pub nodes: Vec<HeldBuildRecord>,
}

fn record(r: HoldRequestRow) -> AutoholdRecord {
    AutoholdRecord {
        id: format!("{:010}", r.id),
        tenant: r.request.tenant,
        project: r.request.project,
        job: r.request.job,
        ref_filter: r.request.ref_filter,
        max_count: r.request.max_count,
        current_count: r.current_count,
        reason: r.request.reason,
        node_expiration: r.request.node_expiration,
        expired: r.expired,
        nodes: r
            .nodes
            .into_iter()
            .map(|h| HeldBuildRecord {
                build: h.build,
                nodes: h.nodes,
            })
            .collect(),
    }
}

/// Records a hold request (Zuul's `autohold`); answers `true`.
#[utoipa::path(post, path = "/api/tenant/{tenant}/project/{project}/autohold", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("project" = String, Path, description = "Project (short or canonical name)")),
    request_body = AutoholdRequest,
    security(("bearer" = [])),
    responses((status = 200, body = bool), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn post_autohold() {}

/// `POST project/{project}/autohold`, reached through the project route.
pub(crate) async fn create(
    state: &WebState,
    peer: SocketAddr,
    headers: &HeaderMap,
    tenant: &str,
    project: &str,
    body: &[u8],
) -> ApiResult<bool> {
    let AdminCall { tenant: t, user } = state.authorize_admin(peer, headers, tenant)?;
    let body: AutoholdRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("autohold body: {e}")))?;
    let p = t
        .project(project)
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} does not exist")))?;
    let change = body
        .change
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let ref_ = body.ref_.as_deref().filter(|r| !r.is_empty());
    let ref_filter = match (change, ref_) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "change and ref are mutually exclusive".into(),
            ))
        }
        (Some(c), None) => {
            let change = find_change(state, &p.entry.connection, &p.entry.name, c).await?;
            regex::escape(&change.refname)
        }
        (None, Some(r)) => {
            regex::Regex::new(r).map_err(|e| {
                ApiError::BadRequest(format!(
                    "argument is not a valid regular expression: \"{e}\""
                ))
            })?;
            r.to_string()
        }
        (None, None) => ANY_REF.to_string(),
    };
    let count = body.count.unwrap_or(1);
    if count < 0 {
        return Err(ApiError::BadRequest("Count must be greater than 0".into()));
    }
    if body.job.trim().is_empty() {
        return Err(ApiError::BadRequest("job: name a job".into()));
    }
    let node_expiration = body.node_hold_expiration.unwrap_or(0).max(0);
    let id = state
        .store()
        .insert_hold_request(&HoldRequest {
            tenant: t.tenant.name.clone(),
            project: p.canonical.clone(),
            job: body.job.clone(),
            ref_filter: ref_filter.clone(),
            reason: body.reason.clone(),
            max_count: count,
            node_expiration,
        })
        .await?;
    tracing::info!(%tenant, project = %p.canonical, job = %body.job, %ref_filter, count, id, %user, "autohold requested");
    Ok(true)
}

/// A project's hold requests.
#[utoipa::path(get, path = "/api/tenant/{tenant}/project/{project}/autohold", tag = "autohold",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("project" = String, Path, description = "Project (short or canonical name)")),
    responses((status = 200, body = Vec<AutoholdRecord>), (status = 404, body = ErrorBody)))]
pub async fn get_project_autohold() {}

/// `GET project/{project}/autohold`, reached through the project route.
pub(crate) async fn list_project(
    state: &WebState,
    tenant: &str,
    project: &str,
) -> ApiResult<Vec<AutoholdRecord>> {
    let t = state.tenant(tenant)?;
    let p = t
        .project(project)
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} does not exist")))?;
    Ok(state
        .store()
        .hold_requests(&t.tenant.name)
        .await?
        .into_iter()
        .filter(|r| r.request.project == p.canonical)
        .map(record)
        .collect())
}

/// A tenant's hold requests.
#[utoipa::path(get, path = "/api/tenant/{tenant}/autohold", tag = "autohold",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<AutoholdRecord>), (status = 404, body = ErrorBody)))]
pub async fn get_autoholds(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<AutoholdRecord>>> {
    let t = state.tenant(&tenant)?;
    Ok(Json(
        state
            .store()
            .hold_requests(&t.tenant.name)
            .await?
            .into_iter()
            .map(record)
            .collect(),
    ))
}

/// The tenant's hold request `id`, or Zuul's 404 (also for another tenant's).
async fn find(state: &WebState, tenant: &str, id: &str) -> ApiResult<HoldRequestRow> {
    let not_found = || ApiError::NotFound(format!("Hold request {id} not found."));
    let n: i64 = id.trim().parse().map_err(|_| not_found())?;
    state
        .store()
        .hold_request(n)
        .await?
        .filter(|r| r.request.tenant == tenant)
        .ok_or_else(not_found)
}

/// One hold request.
#[utoipa::path(get, path = "/api/tenant/{tenant}/autohold/{id}", tag = "autohold",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("id" = String, Path, description = "Hold request id")),
    responses((status = 200, body = AutoholdRecord), (status = 404, body = ErrorBody)))]
pub async fn get_autohold(
    State(state): State<WebState>,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<AutoholdRecord>> {
    let t = state.tenant(&tenant)?;
    Ok(Json(record(find(&state, &t.tenant.name, &id).await?)))
}

/// Deletes a hold request; its held nodes go back into use. Answers 204.
#[utoipa::path(delete, path = "/api/tenant/{tenant}/autohold/{id}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("id" = String, Path, description = "Hold request id")),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_autohold(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let AdminCall { tenant: t, user } = state.authorize_admin(peer, &headers, &tenant)?;
    let request = find(&state, &t.tenant.name, &id).await?;
    state.store().delete_hold_request(request.id).await?;
    tracing::info!(%tenant, id = request.id, project = %request.request.project, %user, "autohold deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET project/{rest}`: a project, or its hold requests when `rest` ends in `/autohold`
/// (project names hold slashes, so both share one route).
pub async fn get_project_route(
    state: State<WebState>,
    Path((tenant, rest)): Path<(String, String)>,
) -> Response {
    match rest.strip_suffix("/autohold") {
        Some(project) => match list_project(&state, &tenant, project).await {
            Ok(list) => Json(list).into_response(),
            Err(e) => e.into_response(),
        },
        None => crate::layout_api::get_project(state, Path((tenant, rest)))
            .await
            .into_response(),
    }
}
