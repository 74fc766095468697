//! Counts for the web server's `/metrics`: job results, queue items, build requests and
//! pending trigger events, each one aggregate query read at scrape time (so every process that
//! shares the store reports the same numbers, and nothing is lost across restarts); and the
//! recently finished builds whose durations statsd's job timers send.

use std::collections::BTreeMap;

use crate::errors::{j, q, StoreError};
use crate::model::ChangeRef;
use crate::store::{get, Store};

/// Finished builds per tenant, pipeline, project, branch, job and result.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobResultKey {
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Canonical project name of the item's change.
    pub project: String,
    /// Target branch of the item's change.
    pub branch: String,
    /// Job name.
    pub job: String,
    /// Zuul result (`SUCCESS`, `FAILURE`, ...).
    pub result: String,
}

/// What `/metrics` reports from the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricCounts {
    /// Finished builds by key.
    pub job_results: BTreeMap<JobResultKey, u64>,
    /// `(tenant, pipeline)` → `(active items, items ever enqueued)`.
    pub pipeline_items: BTreeMap<(String, String), (u64, u64)>,
    /// Build requests waiting for an executor.
    pub requests_queued: u64,
    /// Build requests an executor holds, by executor.
    pub requests_running: BTreeMap<String, u64>,
    /// Unprocessed trigger events by connection.
    pub pending_events: BTreeMap<String, u64>,
}

/// A build with a result, as statsd's job timers need it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedBuild {
    /// The build's uuid.
    pub uuid: String,
    /// Where its result is counted.
    pub key: JobResultKey,
    /// When it started and ended (RFC 3339), if it ran.
    pub start_time: Option<String>,
    /// See `start_time`.
    pub end_time: Option<String>,
}

/// The key of a row with `tenant`, `pipeline`, `job_name`, `result` and the item's
/// `change_json` (the project and branch live in the item's change document).
fn job_result_key(row: &sqlx::any::AnyRow) -> Result<JobResultKey, StoreError> {
    let change: Option<String> = get(row, "change_json")?;
    let change: ChangeRef = match change {
        Some(text) => serde_json::from_str(&text).map_err(j("change_json"))?,
        None => ChangeRef::default(),
    };
    Ok(JobResultKey {
        tenant: get(row, "tenant")?,
        pipeline: get(row, "pipeline")?,
        project: change.project,
        branch: change.branch,
        job: get(row, "job_name")?,
        result: get(row, "result")?,
    })
}

fn count(row: &sqlx::any::AnyRow) -> Result<u64, StoreError> {
    Ok(u64::try_from(get::<i64>(row, "n")?).unwrap_or(0))
}

impl Store {
    /// Builds created at or after `created_ms` (milliseconds since the epoch) that have a
    /// result.
    pub async fn finished_builds_created_since(
        &self,
        created_ms: i64,
    ) -> Result<Vec<FinishedBuild>, StoreError> {
        let rows = sqlx::query(
            "SELECT b.uuid, b.tenant, b.pipeline, b.job_name, b.result, b.start_time, \
             b.end_time, i.change_json FROM builds b LEFT JOIN queue_items i ON i.uuid = b.item_uuid \
             WHERE b.result IS NOT NULL AND b.created >= $1",
        )
        .bind(created_ms)
        .fetch_all(self.pool())
        .await
        .map_err(q("list finished builds"))?;
        rows.iter()
            .map(|row| {
                Ok(FinishedBuild {
                    uuid: get(row, "uuid")?,
                    key: job_result_key(row)?,
                    start_time: get(row, "start_time")?,
                    end_time: get(row, "end_time")?,
                })
            })
            .collect()
    }

    /// Reads every count of [`MetricCounts`].
    pub async fn metric_counts(&self) -> Result<MetricCounts, StoreError> {
        let mut out = MetricCounts::default();
        // Builds with a result, grouped by what SQL can group; the project and branch live in
        // the item's change document.
        let rows = sqlx::query(
            "SELECT b.tenant, b.pipeline, b.job_name, b.result, i.change_json, COUNT(*) AS n \
             FROM builds b LEFT JOIN queue_items i ON i.uuid = b.item_uuid \
             WHERE b.result IS NOT NULL \
             GROUP BY b.tenant, b.pipeline, b.job_name, b.result, i.change_json",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("count job results"))?;
        for row in &rows {
            *out.job_results.entry(job_result_key(row)?).or_default() += count(row)?;
        }
        let rows = sqlx::query(
            "SELECT tenant, pipeline, state, COUNT(*) AS n FROM queue_items \
             GROUP BY tenant, pipeline, state",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("count queue items"))?;
        for row in &rows {
            let entry = out
                .pipeline_items
                .entry((get(row, "tenant")?, get(row, "pipeline")?))
                .or_default();
            let n = count(row)?;
            if get::<String>(row, "state")? == "active" {
                entry.0 += n;
            }
            entry.1 += n;
        }
        let rows = sqlx::query(
            "SELECT state, executor, COUNT(*) AS n FROM build_requests \
             WHERE state IN ('requested', 'running') GROUP BY state, executor",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("count build requests"))?;
        for row in &rows {
            let n = count(row)?;
            if get::<String>(row, "state")? == "requested" {
                out.requests_queued += n;
            } else {
                let executor: Option<String> = get(row, "executor")?;
                *out.requests_running
                    .entry(executor.unwrap_or_default())
                    .or_default() += n;
            }
        }
        let rows = sqlx::query(
            "SELECT connection, COUNT(*) AS n FROM events WHERE processed IS NULL \
             GROUP BY connection",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("count pending events"))?;
        for row in &rows {
            out.pending_events
                .insert(get(row, "connection")?, count(row)?);
        }
        Ok(out)
    }
}
