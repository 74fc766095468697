//! What every handler reads: the store, the tenant layouts, the project keys, the static nodes
//! and the connections, behind one cheap, cloneable [`WebState`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::HeaderMap;
use sluice_executor::nodes::StaticNode;
use sluice_executor::secrets::KeyStore;
use sluice_scheduler::{ServeConfig, SharedLayouts, TenantLayout};
use sluice_store::Store;

use crate::auth::{authorize, Authenticators, Caller};
use crate::errors::{ApiError, ApiResult};

/// How the web server is set up (from the `sluice serve` configuration file).
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Connection name → driver (`git`).
    pub connections: Vec<(String, String)>,
    /// Where project keys live (`<Sluice state dir>/keys`).
    pub keys_dir: PathBuf,
    /// The static nodes (Nodepool static-driver format).
    pub nodes: Vec<StaticNode>,
    /// Bearer-token authenticators and admin rules; `None`: no admin route is served.
    pub auth: Option<Authenticators>,
    /// Accept admin calls without a token from loopback clients when no authenticator is
    /// configured (`sluice serve`'s local use, documented in docs/web.md).
    pub local_admin: bool,
    /// GitHub connections whose webhooks are served (`docs/github.md`).
    pub webhooks: Vec<sluice_github::webhook::WebhookConnection>,
}

impl WebConfig {
    /// The settings `cfg` implies; `keys_dir` is the executor's keys dir.
    pub fn from_serve_config(cfg: &ServeConfig, keys_dir: PathBuf) -> Result<Self, String> {
        let nodes = match &cfg.executor.nodes {
            Some(path) => sluice_executor::nodes::load_nodes(path).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let auth = Authenticators::from_serve_config(cfg)?;
        Ok(WebConfig {
            connections: cfg
                .connections
                .iter()
                .map(|c| (c.name.clone(), c.driver.clone()))
                .collect(),
            keys_dir,
            nodes,
            auth,
            local_admin: cfg.web.local_admin,
            webhooks: cfg
                .connections
                .iter()
                .filter(|c| c.driver == "github")
                .map(|c| sluice_github::webhook::WebhookConnection {
                    name: c.name.clone(),
                    secret: c.webhook_secret.clone(),
                })
                .collect(),
        })
    }
}

/// An admin call that passed [`WebState::authorize_admin`].
pub(crate) struct AdminCall {
    /// The tenant it acts on.
    pub tenant: Arc<TenantLayout>,
    /// Who made it: a token's user, or `local`.
    pub user: String,
}

/// The handlers' shared state.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    layouts: SharedLayouts,
    config: WebConfig,
    keys: KeyStore,
    /// Rendered status documents per tenant, with when they were made.
    status_cache: Mutex<HashMap<String, (Instant, Bytes)>>,
    /// Per tenant: held while its status document is rendered, so that when the cached one
    /// expires under many clients one request renders it and the others wait for that one.
    status_render: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").finish_non_exhaustive()
    }
}

impl WebState {
    /// State over `store`, reading layouts from `layouts` (published by the scheduler in the
    /// same process, or by [`crate::follow_layouts`]).
    pub fn new(store: Store, layouts: SharedLayouts, config: WebConfig) -> Self {
        let keys = KeyStore::new(config.keys_dir.clone());
        WebState {
            inner: Arc::new(Inner {
                store,
                layouts,
                config,
                keys,
                status_cache: Mutex::new(HashMap::new()),
                status_render: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    /// Project keys.
    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }

    /// Every tenant's layout, as last loaded.
    pub fn tenants(&self) -> Vec<Arc<TenantLayout>> {
        self.inner.layouts.snapshot()
    }

    /// A tenant's layout, or Zuul's 404.
    pub fn tenant(&self, name: &str) -> ApiResult<Arc<TenantLayout>> {
        self.inner
            .layouts
            .tenant(name)
            .ok_or_else(|| ApiError::NotFound(format!("Tenant {name} does not exist.")))
    }

    /// Checks that the caller at `peer` with `headers` may make admin calls on `tenant`
    /// (bearer token and the tenant's admin rules, or `local-admin` from loopback): the one
    /// check every admin route makes before anything else.
    pub(crate) fn authorize_admin(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        tenant: &str,
    ) -> ApiResult<AdminCall> {
        let layout = self.tenant(tenant)?;
        let caller = authorize(
            self.config().auth.as_ref(),
            self.config().local_admin,
            Some(peer.ip()),
            headers,
            &layout.tenant.name,
        )?;
        let user = match caller {
            Caller::User(u) => u,
            Caller::Local => "local".into(),
        };
        Ok(AdminCall {
            tenant: layout,
            user,
        })
    }

    /// The driver of a connection.
    pub fn driver(&self, connection: &str) -> &str {
        self.inner
            .config
            .connections
            .iter()
            .find(|(n, _)| n == connection)
            .map_or("unknown", |(_, d)| d.as_str())
    }

    /// A cached status document younger than `max_age`.
    pub(crate) fn cached_status(
        &self,
        tenant: &str,
        max_age: std::time::Duration,
    ) -> Option<Bytes> {
        let cache = self.inner.status_cache.lock().ok()?;
        cache
            .get(tenant)
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, body)| body.clone())
    }

    /// Waits for the right to render `tenant`'s status document (one render at a time per
    /// tenant; `tenant` must be a known tenant's name, so the map stays as small as the layout).
    pub(crate) async fn status_render_lock(
        &self,
        tenant: &str,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .inner
                .status_render
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(tenant.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Remembers a tenant's status document.
    pub(crate) fn cache_status(&self, tenant: &str, body: Bytes) {
        if let Ok(mut cache) = self.inner.status_cache.lock() {
            cache.insert(tenant.to_string(), (Instant::now(), body));
        }
    }
}
