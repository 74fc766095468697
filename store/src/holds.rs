//! Autohold (Zuul's hold requests): what the web's `autohold` routes create, list and delete,
//! and what an executor consults when a build fails. A failing build that matches a request
//! (tenant, canonical project, job, a regular expression on the ref) holds its nodes: they are
//! recorded in `held_nodes` and node providers keep them out of use until the request is
//! deleted or the nodes' expiration passes; the request counts the build and is used up
//! (`expired` set) once `current_count` reaches `max_count`.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::errors::{j, q, StoreError};
use crate::store::{get, now_ms, Store};

/// The nodes one build held (Zuul's `{build, nodes}` entries of a hold request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBuild {
    /// Build uuid.
    pub build: String,
    /// Node names.
    pub nodes: Vec<String>,
}

/// One hold request as stored: what was asked, and what it held so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequestRow {
    /// Id (Zuul shows it zero-padded to 10 digits).
    pub id: i64,
    /// What was asked.
    pub request: HoldRequest,
    /// How many failing builds it held so far.
    pub current_count: i64,
    /// When it was used up (seconds since the epoch), if it was.
    pub expired: Option<i64>,
    /// The builds whose nodes it holds.
    pub nodes: Vec<HeldBuild>,
}

/// What a hold request asks for (a new one's id is assigned by the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    /// Tenant.
    pub tenant: String,
    /// Canonical project name.
    pub project: String,
    /// Job name.
    pub job: String,
    /// Regular expression the build's ref must match (from its start).
    pub ref_filter: String,
    /// Why.
    pub reason: String,
    /// How many failing builds it holds at most.
    pub max_count: i64,
    /// Seconds the nodes stay held (0: until the request is deleted).
    pub node_expiration: i64,
}

const HOLD_COLUMNS: &str = "id, tenant, project, job, ref_filter, reason, max_count, current_count, node_expiration, expired, nodes_json";

fn hold_row(r: &AnyRow) -> Result<HoldRequestRow, StoreError> {
    let nodes: String = get(r, "nodes_json")?;
    Ok(HoldRequestRow {
        id: get(r, "id")?,
        request: HoldRequest {
            tenant: get(r, "tenant")?,
            project: get(r, "project")?,
            job: get(r, "job")?,
            ref_filter: get(r, "ref_filter")?,
            reason: get(r, "reason")?,
            max_count: get(r, "max_count")?,
            node_expiration: get(r, "node_expiration")?,
        },
        current_count: get(r, "current_count")?,
        expired: get(r, "expired")?,
        nodes: serde_json::from_str(&nodes).map_err(j("hold request nodes"))?,
    })
}

impl Store {
    /// Records a hold request; returns its id.
    pub async fn insert_hold_request(&self, new: &HoldRequest) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let id = tx.next_id("hold_request").await?;
        sqlx::query(
            "INSERT INTO hold_requests (id, tenant, project, job, ref_filter, reason, max_count, current_count, node_expiration, expired, nodes_json, created) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, NULL, '[]', $9)",
        )
        .bind(id)
        .bind(&new.tenant)
        .bind(&new.project)
        .bind(&new.job)
        .bind(&new.ref_filter)
        .bind(&new.reason)
        .bind(new.max_count)
        .bind(new.node_expiration)
        .bind(now_ms())
        .execute(tx.conn())
        .await
        .map_err(q("insert hold request"))?;
        tx.commit().await?;
        Ok(id)
    }

    /// A tenant's hold requests, oldest first.
    pub async fn hold_requests(&self, tenant: &str) -> Result<Vec<HoldRequestRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM hold_requests WHERE tenant = $1 ORDER BY id"
        ))
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(q("read hold requests"))?;
        rows.iter().map(hold_row).collect()
    }

    /// One hold request.
    pub async fn hold_request(&self, id: i64) -> Result<Option<HoldRequestRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM hold_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read hold request"))?;
        row.as_ref().map(hold_row).transpose()
    }

    /// Deletes a hold request and gives its nodes back; says whether it existed.
    pub async fn delete_hold_request(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM held_nodes WHERE hold_id = $1")
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(q("release held nodes"))?;
        let gone = sqlx::query("DELETE FROM hold_requests WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(q("delete hold request"))?
            .rows_affected();
        tx.commit().await?;
        Ok(gone > 0)
    }

    /// Deletes the used-up requests whose nodes' expiration passed at `now_s` (seconds), and
    /// the held nodes that expired; returns how many requests went.
    pub async fn expire_hold_requests(&self, now_s: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM held_nodes WHERE expires IS NOT NULL AND expires < $1")
            .bind(now_s * 1000)
            .execute(tx.conn())
            .await
            .map_err(q("expire held nodes"))?;
        let gone = sqlx::query(
            "DELETE FROM hold_requests WHERE expired IS NOT NULL AND node_expiration > 0 AND expired + node_expiration < $1",
        )
        .bind(now_s)
        .execute(tx.conn())
        .await
        .map_err(q("expire hold requests"))?
        .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }

    /// The keys of the nodes held at `now` (milliseconds).
    pub async fn held_nodes(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT node FROM held_nodes WHERE expires IS NULL OR expires >= $1 ORDER BY node",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await
        .map_err(q("read held nodes"))?;
        rows.iter().map(|r| get(r, "node")).collect()
    }

    /// Holds build `build`'s nodes for request `id` if it is still usable: `nodes` are
    /// `(key, name)` pairs (the provider's key, the name shown to users). Counts the build,
    /// marks it `held`, and uses the request up when its count is reached, all in one
    /// transaction. Says whether the nodes were held.
    pub async fn hold_build_nodes(
        &self,
        id: i64,
        build: &str,
        nodes: &[(String, String)],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM hold_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .map_err(q("read hold request"))?;
        let Some(mut hold) = row.as_ref().map(hold_row).transpose()? else {
            return Ok(false);
        };
        if hold.current_count >= hold.request.max_count {
            return Ok(false);
        }
        let now = now_ms();
        let expires =
            (hold.request.node_expiration > 0).then(|| now + hold.request.node_expiration * 1000);
        for (key, _) in nodes {
            sqlx::query(
                "INSERT INTO held_nodes (node, hold_id, build, expires) VALUES ($1, $2, $3, $4)",
            )
            .bind(key)
            .bind(id)
            .bind(build)
            .bind(expires)
            .execute(tx.conn())
            .await
            .map_err(q("hold node"))?;
        }
        hold.current_count += 1;
        hold.nodes.push(HeldBuild {
            build: build.to_string(),
            nodes: nodes.iter().map(|(_, name)| name.clone()).collect(),
        });
        if hold.current_count >= hold.request.max_count {
            hold.expired = Some(now / 1000);
        }
        sqlx::query(
            "UPDATE hold_requests SET current_count = $1, nodes_json = $2, expired = $3 WHERE id = $4",
        )
        .bind(hold.current_count)
        .bind(serde_json::to_string(&hold.nodes).map_err(j("hold request nodes"))?)
        .bind(hold.expired)
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(q("count held build"))?;
        sqlx::query("UPDATE builds SET held = 1 WHERE uuid = $1")
            .bind(build)
            .execute(tx.conn())
            .await
            .map_err(q("mark build held"))?;
        tx.commit().await?;
        Ok(true)
    }
}
