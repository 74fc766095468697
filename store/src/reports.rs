//! The report queue: what a driver must tell a code-review system (a commit status, a check
//! run, a comment, labels), written in the transaction that decided it and sent afterwards by
//! the driver, which records each attempt here. Rows stay after they are sent (`sent` or
//! `failed` with the error) so what was reported can be looked at.

use sqlx::any::AnyRow;

use crate::errors::{j, q, StoreError};
use crate::store::{get, now_ms, Store};
use crate::tx::Tx;

/// A report to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReport {
    /// Connection that sends it.
    pub connection: String,
    /// The queue item it reports on.
    pub item_uuid: String,
    /// The pipeline action (`enqueue`, `start`, `success`, `failure`, ...).
    pub action: String,
    /// The driver's description of the operation.
    pub op: serde_json::Value,
}

/// A queued (or sent) report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// Sequence number: a connection sends an item's reports in this order.
    pub id: i64,
    /// Connection.
    pub connection: String,
    /// Queue item.
    pub item_uuid: String,
    /// Pipeline action.
    pub action: String,
    /// The operation.
    pub op: serde_json::Value,
    /// `pending`, `sent` or `failed` (a permanent error).
    pub state: String,
    /// Tries so far.
    pub attempts: i64,
    /// Not before this (ms since the epoch).
    pub next_attempt: i64,
    /// The last error.
    pub last_error: Option<String>,
    /// What the system answered that later reports need (a check run id).
    pub result: Option<serde_json::Value>,
}

const REPORT_COLUMNS: &str =
    "id, connection, item_uuid, action, op_json, state, attempts, next_attempt, last_error, result_json";

fn report_row(r: &AnyRow) -> Result<ReportRow, StoreError> {
    let op: String = get(r, "op_json")?;
    let result: Option<String> = get(r, "result_json")?;
    Ok(ReportRow {
        id: get(r, "id")?,
        connection: get(r, "connection")?,
        item_uuid: get(r, "item_uuid")?,
        action: get(r, "action")?,
        op: serde_json::from_str(&op).map_err(j("report op"))?,
        state: get(r, "state")?,
        attempts: get(r, "attempts")?,
        next_attempt: get(r, "next_attempt")?,
        last_error: get(r, "last_error")?,
        result: result
            .map(|t| serde_json::from_str(&t).map_err(j("report result")))
            .transpose()?,
    })
}

impl Tx {
    /// Queues a report; returns its id.
    pub async fn insert_report(&mut self, report: &NewReport) -> Result<i64, StoreError> {
        let id = self.next_id("report").await?;
        let now = now_ms();
        let op = serde_json::to_string(&report.op).map_err(j("report op"))?;
        sqlx::query(
            "INSERT INTO reports (id, connection, item_uuid, action, op_json, state, attempts, next_attempt, last_error, result_json, created, updated) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, NULL, NULL, $7, $8)",
        )
        .bind(id)
        .bind(&report.connection)
        .bind(&report.item_uuid)
        .bind(&report.action)
        .bind(op)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(self.conn())
        .await
        .map_err(q("insert report"))?;
        Ok(id)
    }
}

impl Store {
    /// Unsent reports of a connection, oldest first.
    pub async fn pending_reports(&self, connection: &str) -> Result<Vec<ReportRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE connection = $1 AND state = 'pending' ORDER BY id"
        ))
        .bind(connection)
        .fetch_all(self.pool())
        .await
        .map_err(q("read pending reports"))?;
        rows.iter().map(report_row).collect()
    }

    /// Every report of an item, oldest first.
    pub async fn reports_of_item(&self, item_uuid: &str) -> Result<Vec<ReportRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REPORT_COLUMNS} FROM reports WHERE item_uuid = $1 ORDER BY id"
        ))
        .bind(item_uuid)
        .fetch_all(self.pool())
        .await
        .map_err(q("read reports of item"))?;
        rows.iter().map(report_row).collect()
    }

    /// Records the outcome of a try: the new state, when to try again, the error, the answer.
    pub async fn update_report(
        &self,
        id: i64,
        state: &str,
        next_attempt: i64,
        last_error: Option<&str>,
        result: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let result = result
            .map(|r| serde_json::to_string(r).map_err(j("report result")))
            .transpose()?;
        sqlx::query(
            "UPDATE reports SET state = $1, attempts = attempts + 1, next_attempt = $2, last_error = $3, result_json = $4, updated = $5 WHERE id = $6",
        )
        .bind(state)
        .bind(next_attempt)
        .bind(last_error)
        .bind(result)
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(q("update report"))?;
        Ok(())
    }
}
