//! Live-log routing data: the executor that claims a build records where its log is streamed
//! (Zuul's `worker_info`: finger host and port, zone), and finger gateways register the zone they
//! serve. `sluice fingergw` and the web read both to reach a build's stream.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::errors::{j, q, StoreError};
use crate::model::Claimed;
use crate::store::{get, Store};

/// Where an executor serves its builds' logs over finger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Host name or address of its finger server.
    pub hostname: String,
    /// Its finger port.
    pub finger_port: u16,
    /// Its zone (unzoned when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// How far a build is, as a log stream sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildStage {
    /// No build or request has this uuid.
    Unknown,
    /// Known, not claimed by an executor yet (waiting for its turn, nodes or dependencies).
    Waiting {
        /// The build's tenant.
        tenant: String,
    },
    /// Claimed: `running` until the executor reports its result.
    Claimed {
        /// The build's tenant.
        tenant: String,
        /// The executor's id.
        executor: String,
        /// Where it streams logs; `None` if it serves no finger stream.
        worker: Option<WorkerInfo>,
        /// Whether it still runs.
        running: bool,
    },
}

/// A registered finger gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRow {
    /// Its id (unique per process).
    pub id: String,
    /// Host name or address clients use.
    pub host: String,
    /// Its public port.
    pub port: u16,
    /// The zone it serves.
    pub zone: String,
}

impl Store {
    /// Claims a request like [`Store::claim`] and records, in the same statement, where the
    /// executor streams the build's log.
    pub async fn claim_streaming(
        &self,
        uuid: &str,
        executor: &str,
        lease_until: i64,
        worker: &WorkerInfo,
    ) -> Result<Option<Claimed>, StoreError> {
        let worker = serde_json::to_string(worker).map_err(j("worker info"))?;
        self.claim_recording(uuid, executor, lease_until, Some(worker))
            .await
    }

    /// Where the build `uuid` is, for its log stream.
    pub async fn build_stage(&self, uuid: &str) -> Result<BuildStage, StoreError> {
        let row = sqlx::query(
            "SELECT tenant, state, executor, worker_json FROM build_requests WHERE uuid = $1",
        )
        .bind(uuid)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read build request"))?;
        if let Some(row) = row {
            let tenant: String = get(&row, "tenant")?;
            let state: String = get(&row, "state")?;
            let executor: Option<String> = get(&row, "executor")?;
            let worker: Option<String> = get(&row, "worker_json")?;
            return Ok(match (state.as_str(), executor) {
                ("requested", _) | (_, None) => BuildStage::Waiting { tenant },
                (state, Some(executor)) => BuildStage::Claimed {
                    tenant,
                    executor,
                    worker: worker
                        .map(|w| serde_json::from_str(&w).map_err(j("worker info")))
                        .transpose()?,
                    running: state == "running",
                },
            });
        }
        // A build without a request waits for its dependencies, or never ran (skipped).
        let row = sqlx::query("SELECT tenant, result FROM builds WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(self.pool())
            .await
            .map_err(q("read build"))?;
        Ok(match row {
            Some(row) => match get::<Option<String>>(&row, "result")? {
                None => BuildStage::Waiting {
                    tenant: get(&row, "tenant")?,
                },
                Some(_) => BuildStage::Unknown,
            },
            None => BuildStage::Unknown,
        })
    }

    /// Registers (or refreshes) a finger gateway serving `zone`.
    pub async fn register_gateway(&self, gateway: &GatewayRow, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin transaction"))?;
        sqlx::query("DELETE FROM finger_gateways WHERE id = $1")
            .bind(&gateway.id)
            .execute(&mut *tx)
            .await
            .map_err(q("register finger gateway"))?;
        sqlx::query(
            "INSERT INTO finger_gateways (id, host, port, zone, heartbeat) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&gateway.id)
        .bind(&gateway.host)
        .bind(i64::from(gateway.port))
        .bind(&gateway.zone)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(q("register finger gateway"))?;
        tx.commit().await.map_err(q("register finger gateway"))
    }

    /// Removes a gateway's registration.
    pub async fn remove_gateway(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM finger_gateways WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(q("remove finger gateway"))?;
        Ok(())
    }

    /// The gateways of `zone` whose registration was refreshed since `fresh_since`.
    pub async fn gateways(
        &self,
        zone: &str,
        fresh_since: i64,
    ) -> Result<Vec<GatewayRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, host, port, zone FROM finger_gateways WHERE zone = $1 AND heartbeat >= $2 ORDER BY id",
        )
        .bind(zone)
        .bind(fresh_since)
        .fetch_all(self.pool())
        .await
        .map_err(q("read finger gateways"))?;
        rows.iter()
            .map(|row| {
                let port: i64 = row.try_get("port").map_err(q("port"))?;
                Ok(GatewayRow {
                    id: get(row, "id")?,
                    host: get(row, "host")?,
                    port: u16::try_from(port).unwrap_or(0),
                    zone: get(row, "zone")?,
                })
            })
            .collect()
    }
}
