//! Finding builds through the scheduler's store: the executor that claimed a build recorded
//! where it streams the log (its finger host and port, and its zone), and finger gateways
//! register the zone they serve ([`GatewayRegistration`]), as Zuul's components in ZooKeeper.

use std::time::Duration;

use sluice_store::{now_ms, BuildStage, GatewayRow, Store};

use crate::errors::LocateError;
use crate::locate::{BuildLocation, BuildLocator, Executor, Gateway, LocateFuture};

/// How often a gateway refreshes its registration.
pub const GATEWAY_REFRESH: Duration = Duration::from_secs(20);
/// A registration older than this is taken for a gateway that died.
pub const GATEWAY_TTL: Duration = Duration::from_secs(60);

/// Locates builds in the store.
#[derive(Debug, Clone)]
pub struct StoreLocator {
    store: Store,
}

impl StoreLocator {
    /// A locator over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn internal(e: sluice_store::StoreError) -> LocateError {
    LocateError::Internal(format!("store: {e}"))
}

impl BuildLocator for StoreLocator {
    fn locate<'a>(&'a self, uuid: &'a str, tenant: Option<&'a str>) -> LocateFuture<'a> {
        Box::pin(async move {
            let other_tenant = |t: &str| tenant.is_some_and(|wanted| wanted != t);
            match self.store.build_stage(uuid).await.map_err(internal)? {
                BuildStage::Unknown => Err(LocateError::NotFound),
                BuildStage::Waiting { tenant: t } if other_tenant(&t) => Err(LocateError::NotFound),
                BuildStage::Waiting { .. } => Err(LocateError::NotStarted),
                BuildStage::Claimed { tenant: t, .. } if other_tenant(&t) => {
                    Err(LocateError::NotFound)
                }
                BuildStage::Claimed {
                    executor,
                    worker: None,
                    running,
                    ..
                } => Err(if running {
                    LocateError::Internal(format!("executor {executor} serves no log stream"))
                } else {
                    LocateError::NotFound
                }),
                BuildStage::Claimed {
                    executor,
                    worker: Some(worker),
                    running,
                    ..
                } => {
                    let zone_gateways = match &worker.zone {
                        Some(zone) => {
                            let fresh_since = now_ms() - GATEWAY_TTL.as_millis() as i64;
                            self.store
                                .gateways(zone, fresh_since)
                                .await
                                .map_err(internal)?
                                .into_iter()
                                .map(|g| Gateway {
                                    name: g.id,
                                    host: g.host,
                                    port: g.port,
                                    zone: g.zone,
                                })
                                .collect()
                        }
                        None => Vec::new(),
                    };
                    Ok(BuildLocation {
                        executor: Executor {
                            name: executor,
                            host: worker.hostname,
                            finger_port: worker.finger_port,
                            zone: worker.zone,
                        },
                        running,
                        zone_gateways,
                    })
                }
            }
        })
    }
}

/// A zoned gateway's entry in the store, refreshed while it runs and removed when it stops.
#[derive(Debug, Clone)]
pub struct GatewayRegistration {
    store: Store,
    row: GatewayRow,
}

impl GatewayRegistration {
    /// Registers `row` now; fails if the store cannot be written.
    pub async fn register(store: Store, row: GatewayRow) -> Result<Self, sluice_store::StoreError> {
        store.register_gateway(&row, now_ms()).await?;
        Ok(Self { store, row })
    }

    /// Refreshes the entry until `stop` resolves, then removes it.
    pub async fn keep_until(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(GATEWAY_REFRESH) => {
                    if let Err(e) = self.store.register_gateway(&self.row, now_ms()).await {
                        tracing::warn!(error = %e, "cannot refresh the gateway's registration");
                    }
                }
            }
        }
        if let Err(e) = self.store.remove_gateway(&self.row.id).await {
            tracing::warn!(error = %e, "cannot remove the gateway's registration");
        }
    }
}
