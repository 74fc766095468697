//! Sluice's web server: Zuul's REST API (`/api/...`, same routes and JSON shapes, so that
//! `zuul-client` and Zuul's dashboard work) over the store and the tenant layouts, with
//! sluice-stream's websocket console stream mounted in the same router, and an OpenAPI
//! document generated from the handlers' types at `/api/openapi.json`.
//!
//! # Layout
//! - [`state`]: [`WebState`] (store, layouts, keys, nodes, auth) and [`WebConfig`].
//! - [`info`]: `/api/info`, `/api/tenants`, `tenant/{t}/info`.
//! - [`status`]: `status`, `status/change/{c}` (Zuul's status.json).
//! - [`history`]: `builds`, `build/{uuid}`, `buildsets`, `buildset/{uuid}` with Zuul's filters.
//! - [`records`]: build and buildset records (also `sluice change history`).
//! - [`layout_api`]: `pipelines`, `jobs`, `job/{name}`, `projects`, `project/{p}`,
//!   `config-errors`, `semaphores`.
//! - [`resources`]: `labels`, `nodes`, `key/{project}.pub`, `project-ssh-key/{project}.pub`.
//! - [`admin`] and [`auth`]: admin routes behind JWT bearer tokens (HS256/RS256, per-tenant
//!   rules).
//! - [`autohold`]: `project/{p}/autohold`, `autohold`, `autohold/{id}` (hold requests).
//! - [`errors`]: Zuul's JSON errors.
//! - [`dashboard`]: the web UI (`/t/{tenant}/status`, ...), assets embedded in the binary.
//! - [`metrics`]: `/metrics` (Prometheus), `/health/live`, `/health/ready`.
//! - [`statsd`]: the same counts sent to a statsd server with Zuul's keys (`statsd:` in the
//!   configuration; run by the process running the scheduler, not served).
//!
//! # Why it is built this way
//! The web server shares nothing with the scheduler but the store and the layouts: in
//! `sluice serve` it reads the layouts the scheduler publishes ([`SharedLayouts`]); as
//! `sluice web` it loads them itself with the same code ([`follow_layouts`]). Either way one
//! [`app`] is served, so the routes never differ between the two.
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod autohold;
pub mod dashboard;
pub mod errors;
pub mod history;
pub mod info;
pub mod layout_api;
pub mod metrics;
pub mod records;
pub mod resources;
pub mod state;
pub mod statsd;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use sluice_scheduler::tenant::load_tenants;
use sluice_scheduler::{refresh_layouts, GitDriver, ServeConfig, SharedLayouts};
use sluice_stream::ConsoleState;
use tokio::net::TcpListener;
use utoipa::OpenApi;

pub use errors::{ApiError, ApiResult};
pub use state::{WebConfig, WebState};

/// The OpenAPI document of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice REST API", description = "Zuul's REST API as Sluice serves it."),
    paths(
        info::get_info,
        info::get_tenants,
        info::get_tenant_info,
        status::get_status,
        status::get_status_change,
        history::get_builds,
        history::get_build,
        history::get_buildsets,
        history::get_buildset,
        layout_api::get_pipelines,
        layout_api::get_jobs,
        layout_api::get_job,
        layout_api::get_projects,
        layout_api::get_project,
        layout_api::get_config_errors,
        layout_api::get_semaphores,
        resources::get_labels,
        resources::get_nodes,
        resources::get_key,
        resources::get_project_ssh_key,
        admin::post_project_action,
        admin::post_enqueue,
        admin::post_dequeue,
        admin::post_promote,
        autohold::post_autohold,
        autohold::get_project_autohold,
        autohold::get_autoholds,
        autohold::get_autohold,
        autohold::delete_autohold,
    ),
    modifiers(&BearerScheme),
)]
pub struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The REST routes.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/info", get(info::get_info))
        .route("/api/tenants", get(info::get_tenants))
        .route("/api/tenant/{tenant}/info", get(info::get_tenant_info))
        .route("/api/tenant/{tenant}/status", get(status::get_status))
        .route(
            "/api/tenant/{tenant}/status/change/{change}",
            get(status::get_status_change),
        )
        .route("/api/tenant/{tenant}/builds", get(history::get_builds))
        .route("/api/tenant/{tenant}/build/{uuid}", get(history::get_build))
        .route(
            "/api/tenant/{tenant}/buildsets",
            get(history::get_buildsets),
        )
        .route(
            "/api/tenant/{tenant}/buildset/{uuid}",
            get(history::get_buildset),
        )
        .route(
            "/api/tenant/{tenant}/pipelines",
            get(layout_api::get_pipelines),
        )
        .route("/api/tenant/{tenant}/jobs", get(layout_api::get_jobs))
        .route("/api/tenant/{tenant}/job/{name}", get(layout_api::get_job))
        .route(
            "/api/tenant/{tenant}/projects",
            get(layout_api::get_projects),
        )
        // Project names hold slashes: the rest of the path is the project (GET) or the
        // project and an action (POST).
        .route(
            "/api/tenant/{tenant}/project/{*project}",
            get(autohold::get_project_route).post(admin::post_project_action),
        )
        .route(
            "/api/tenant/{tenant}/config-errors",
            get(layout_api::get_config_errors),
        )
        .route(
            "/api/tenant/{tenant}/semaphores",
            get(layout_api::get_semaphores),
        )
        .route(
            "/api/tenant/{tenant}/promote",
            axum::routing::post(admin::post_promote),
        )
        .route(
            "/api/tenant/{tenant}/autohold",
            get(autohold::get_autoholds),
        )
        .route(
            "/api/tenant/{tenant}/autohold/{id}",
            get(autohold::get_autohold).delete(autohold::delete_autohold),
        )
        .route("/api/tenant/{tenant}/labels", get(resources::get_labels))
        .route("/api/tenant/{tenant}/nodes", get(resources::get_nodes))
        .route("/api/tenant/{tenant}/key/{*file}", get(resources::get_key))
        .route(
            "/api/tenant/{tenant}/project-ssh-key/{*file}",
            get(resources::get_project_ssh_key),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("No route for {}", uri.path()))
}

/// The whole web server: the console stream routes, and the REST API when there is a store
/// (`sluice web` with only an executors file serves the console alone).
pub fn app(state: Option<WebState>, console: ConsoleState) -> Router {
    #[expect(
        deprecated,
        reason = "TimeoutLayer::new answers 408, which suits plain requests"
    )]
    let timeout = tower_http::timeout::TimeoutLayer::new(sluice_stream::web::REQUEST_TIMEOUT);
    // The console routes come first: their paths are more specific than the API's fallback.
    let ops = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/health/live", get(metrics::live))
        .route("/health/ready", get(metrics::ready))
        .with_state(metrics::OpsState {
            web: state.clone(),
            console: console.clone(),
        });
    let console = sluice_stream::router(console).merge(ops);
    match state {
        Some(state) => {
            // GitHub webhooks (`POST /api/connection/{connection}/payload`) write events.
            let webhooks = sluice_github::webhook::router(
                state.config().webhooks.clone(),
                state.store().clone(),
            );
            console
                .merge(webhooks)
                .merge(dashboard::router())
                .merge(router(state))
        }
        None => console,
    }
    .layer(timeout)
}

/// Serves [`app`] until `shutdown` resolves, then closes the websocket sessions and returns
/// once they are all gone.
pub async fn serve(
    listener: TcpListener,
    state: Option<WebState>,
    console: ConsoleState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(state, console.clone());
    let sessions = console.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        sessions.notify_shutdown();
    })
    .await?;
    console.shutdown().await;
    Ok(())
}

/// How often a standalone web server looks for moved branch tips.
pub const LAYOUT_REFRESH: Duration = Duration::from_secs(2);

/// For `sluice web` on its own: loads every tenant's layout from `cfg` (with the scheduler's
/// code), publishes it on `layouts`, and reloads the
/// tenants whose branch tips moved every [`LAYOUT_REFRESH`], forever.
pub async fn follow_layouts(cfg: ServeConfig, layouts: SharedLayouts) {
    let tenants = match load_tenants(&cfg.tenant_config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "web: cannot read the tenant configuration");
            return;
        }
    };
    let drivers: Vec<GitDriver> = cfg.connections.iter().map(GitDriver::new).collect();
    loop {
        let old = layouts.snapshot();
        let (tenants_now, error) = {
            let (tenants, drivers) = (tenants.clone(), drivers.clone());
            match tokio::task::spawn_blocking(move || refresh_layouts(&tenants, &drivers, old))
                .await
            {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!(error = %e, "web: layout reload task failed");
                    return;
                }
            }
        };
        layouts.publish(tenants_now);
        if let Some(e) = error {
            tracing::warn!(error = %e, "web: cannot reload a tenant layout");
        }
        tokio::time::sleep(LAYOUT_REFRESH).await;
    }
}
