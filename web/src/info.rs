//! `/api/info`, `/api/tenants`, `/api/tenant/{t}/info`: what the server offers and which
//! tenants exist, in Zuul's shapes (what `zuul-client` reads first).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::errors::{ApiResult, ErrorBody};
use crate::state::WebState;

/// Authentication capabilities.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthInfo {
    /// Realm name → `{authority, client_id, driver}`.
    pub realms: Value,
    /// The realm clients use by default.
    pub default_realm: Option<String>,
    /// Whether reading needs a token (never, for now).
    pub read_protected: bool,
}

/// What the server can do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Capabilities {
    /// Build history is available.
    pub job_history: bool,
    /// Authentication.
    pub auth: AuthInfo,
}

/// Statistics settings (none: Sluice serves metrics itself).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsInfo {
    /// Graphite URL.
    pub url: Option<String>,
    /// Key prefix.
    pub prefix: Option<String>,
    /// Backend type.
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

/// The body of `info`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    /// Capabilities.
    pub capabilities: Capabilities,
    /// Where the console stream is when not under `/api`.
    pub websocket_url: Option<String>,
    /// Statistics.
    pub stats: StatsInfo,
    /// The tenant, on `/api/tenant/{t}/info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `{"info": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InfoResponse {
    /// The info.
    pub info: Info,
}

/// One tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSummary {
    /// Name.
    pub name: String,
    /// Number of projects.
    pub projects: usize,
    /// Number of items in its pipelines.
    pub queue: usize,
}

fn info(state: &WebState, tenant: Option<String>) -> InfoResponse {
    let (realms, default_realm) = match &state.config().auth {
        Some(a) => a.info(),
        None => (Value::Object(Default::default()), None),
    };
    InfoResponse {
        info: Info {
            capabilities: Capabilities {
                job_history: true,
                auth: AuthInfo {
                    realms,
                    default_realm,
                    read_protected: false,
                },
            },
            websocket_url: None,
            stats: StatsInfo {
                url: None,
                prefix: None,
                type_: None,
            },
            tenant,
        },
    }
}

/// The server's capabilities.
#[utoipa::path(get, path = "/api/info", tag = "info",
    responses((status = 200, body = InfoResponse)))]
pub async fn get_info(State(state): State<WebState>) -> Json<InfoResponse> {
    Json(info(&state, None))
}

/// A tenant's capabilities.
#[utoipa::path(get, path = "/api/tenant/{tenant}/info", tag = "info",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = InfoResponse), (status = 404, body = ErrorBody)))]
pub async fn get_tenant_info(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<InfoResponse>> {
    let t = state.tenant(&tenant)?;
    Ok(Json(info(&state, Some(t.tenant.name.clone()))))
}

/// Every tenant.
#[utoipa::path(get, path = "/api/tenants", tag = "info",
    responses((status = 200, body = Vec<TenantSummary>)))]
pub async fn get_tenants(State(state): State<WebState>) -> ApiResult<Json<Vec<TenantSummary>>> {
    let mut out = Vec::new();
    for t in state.tenants() {
        let queue = state
            .store()
            .active_items_of_tenant(&t.tenant.name)
            .await?
            .len();
        out.push(TenantSummary {
            name: t.tenant.name.clone(),
            projects: t.projects.len(),
            queue,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}
