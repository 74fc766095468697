//! Nodes and keys: `labels` and `nodes` (the static nodes), `key/{project}.pub` (the project's
//! secrets public key, made on first use as `sluice encrypt` does, so that `zuul-client
//! encrypt` works for every project of the tenant).

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sluice_executor::secrets::public_key_pem;
use utoipa::ToSchema;

use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::state::WebState;

/// A label.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelRecord {
    /// Name.
    pub name: String,
}

/// A node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeRecord {
    /// Id.
    pub id: String,
    /// Its labels.
    #[serde(rename = "type")]
    pub type_: Vec<String>,
    /// `ssh`, `winrm`, `network_cli`.
    pub connection_type: String,
    /// The host it is.
    pub external_id: String,
    /// The provider.
    pub provider: String,
    /// State (`ready`: static nodes are always there).
    pub state: String,
    /// Since when (epoch seconds).
    pub state_time: Option<f64>,
    /// Operator comment.
    pub comment: Option<String>,
}

/// The labels the tenant's nodes offer.
#[utoipa::path(get, path = "/api/tenant/{tenant}/labels", tag = "nodes",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<LabelRecord>), (status = 404, body = ErrorBody)))]
pub async fn get_labels(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<LabelRecord>>> {
    state.tenant(&tenant)?;
    let labels: BTreeSet<&String> = state
        .config()
        .nodes
        .iter()
        .flat_map(|n| n.labels.iter())
        .collect();
    Ok(Json(
        labels
            .into_iter()
            .map(|l| LabelRecord { name: l.clone() })
            .collect(),
    ))
}

/// The nodes.
#[utoipa::path(get, path = "/api/tenant/{tenant}/nodes", tag = "nodes",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<NodeRecord>), (status = 404, body = ErrorBody)))]
pub async fn get_nodes(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<NodeRecord>>> {
    state.tenant(&tenant)?;
    Ok(Json(
        state
            .config()
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| NodeRecord {
                id: format!("{:010}", n),
                type_: node.labels.clone(),
                connection_type: node.connection_type.clone().unwrap_or_else(|| "ssh".into()),
                external_id: node.name.clone(),
                provider: "static".into(),
                state: "ready".into(),
                state_time: None,
                comment: None,
            })
            .collect(),
    ))
}

/// A project's public key for secrets (PEM).
#[utoipa::path(get, path = "/api/tenant/{tenant}/key/{project}", tag = "keys",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("project" = String, Path, description = "`<project>.pub` (short or canonical name)")),
    responses((status = 200, body = String, content_type = "text/plain"),
              (status = 404, body = ErrorBody)))]
pub async fn get_key(
    State(state): State<WebState>,
    Path((tenant, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let t = state.tenant(&tenant)?;
    let project = file
        .strip_suffix(".pub")
        .ok_or_else(|| ApiError::NotFound(format!("{file}: keys are at key/<project>.pub")))?;
    let canonical = t
        .project(project)
        .map(|p| p.canonical.clone())
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} does not exist")))?;
    let keys = state.keys().clone();
    // Generating an RSA-4096 key takes a while: off the async threads.
    let pem = tokio::task::spawn_blocking(move || {
        keys.load_or_create(&canonical)
            .and_then(|key| public_key_pem(&key))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("key task: {e}")))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], pem).into_response())
}

/// A project's SSH public key (OpenSSH format): the per-project key Zuul's executors log in
/// to nodes with, created on first use and kept with the project keys.
#[utoipa::path(get, path = "/api/tenant/{tenant}/project-ssh-key/{project}", tag = "keys",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("project" = String, Path, description = "`<project>.pub` (short or canonical name)")),
    responses((status = 200, body = String, content_type = "text/plain"),
              (status = 404, body = ErrorBody)))]
pub async fn get_project_ssh_key(
    State(state): State<WebState>,
    Path((tenant, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let t = state.tenant(&tenant)?;
    let project = file.strip_suffix(".pub").ok_or_else(|| {
        ApiError::NotFound(format!("{file}: keys are at project-ssh-key/<project>.pub"))
    })?;
    let canonical = t
        .project(project)
        .map(|p| p.canonical.clone())
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} does not exist")))?;
    let keys = state.keys().clone();
    let public = tokio::task::spawn_blocking(move || {
        keys.load_or_create_ssh(&canonical).map(|key| {
            sluice_executor::secrets::ssh_public_key(&key, &format!("project key of {canonical}"))
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("key task: {e}")))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        public,
    )
        .into_response())
}
