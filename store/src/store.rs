//! The store handle: opening (and migrating) the database, reads, and the executor's
//! single-statement writes (claim, renew, complete), each atomic on its own.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::watch;

use crate::errors::{j, q, StoreError};
use crate::model::*;
use crate::schema::MIGRATIONS;
use crate::tx::Tx;

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A cheap, cloneable handle on the database.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    /// SQLite: transactions take the write lock when they begin (see [`Store::begin`]).
    sqlite: bool,
    pub(crate) wakeups: Arc<Wakeups>,
    /// Statements run outside transactions through this handle and its clones (see
    /// [`Store::statements`]).
    statements: Arc<AtomicU64>,
}

/// In-process wake-ups: what a commit through this handle (or its clones) wrote that the
/// scheduler or the executors should look at now rather than at their next poll. Each is a
/// counter bumped after the commit; a waiter remembers the value it saw, so a bump between
/// its look at the store and its wait is not missed. Other processes are not told: they
/// keep polling.
#[derive(Debug)]
pub(crate) struct Wakeups {
    /// New events, finished or paused builds.
    pub(crate) scheduler: watch::Sender<u64>,
    /// New build requests, freed node slots, resumed builds.
    pub(crate) executors: watch::Sender<u64>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            scheduler: watch::channel(0).0,
            executors: watch::channel(0).0,
        }
    }
}

/// What a committed write asks for (see [`Store::scheduler_wakeups`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Wake {
    pub(crate) scheduler: bool,
    pub(crate) executors: bool,
}

impl Wakeups {
    pub(crate) fn send(&self, wake: Wake) {
        if wake.scheduler {
            self.scheduler.send_modify(|n| *n = n.wrapping_add(1));
        }
        if wake.executors {
            self.executors.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

const ITEM_COLUMNS: &str = "uuid, tenant, pipeline, queue, seq, state, live, change_json, deps_json, event_id, enqueue_time, buildset_uuid, result";
const BUILDSET_COLUMNS: &str = "uuid, id, tenant, pipeline, item_uuid, context_json, refs_json, state, result, message, event_id, event_timestamp, created, first_build_start_time, last_build_end_time";
const BUILD_COLUMNS: &str = "uuid, id, buildset_uuid, item_uuid, tenant, pipeline, job_name, voting, attempt, nodeset, result, final, error_detail, log_url, start_time, end_time, data_json, dependencies_json, pending_request_json, paused, held";
const REQUEST_COLUMNS: &str = "uuid, tenant, pipeline, precedence, state, executor, lease_expires, cancel, request_json, result_json";
const CHANGE_COLUMNS: &str =
    "connection, project, number, refname, branch, topic, patchset, message, status";

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Store::open(&format!("sqlite://{}?mode=rwc", abs.display())).await
    }

    /// Opens a database by URL (`sqlite://...` or `postgres://...`) and applies pending
    /// migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        // SQLite allows one writer: one connection per process keeps transactions from
        // deadlocking on lock upgrades; other processes wait on the busy timeout.
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA busy_timeout=10000").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|source| StoreError::Open {
                url: url.to_string(),
                source,
            })?;
        let store = Store {
            pool,
            sqlite,
            wakeups: Arc::default(),
            statements: Arc::new(AtomicU64::new(0)),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let created =
            sqlx::query("CREATE TABLE IF NOT EXISTS sluice_schema (version BIGINT NOT NULL)")
                .execute(&self.pool)
                .await;
        if let Err(source) = created {
            // PostgreSQL reports two processes creating it at the same moment as an error for
            // the later one (once the other committed): fine if the table is there now.
            if self.schema_version().await.is_err() {
                return Err(StoreError::Migrate { version: 0, source });
            }
        }
        for (version, statements) in MIGRATIONS {
            if *version <= self.schema_version().await? {
                continue;
            }
            match self.apply_migration(*version, statements).await {
                Ok(()) => tracing::info!(version, "applied store migration"),
                // Another process may have applied it at the same time.
                Err(_) if *version <= self.schema_version().await? => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        let current: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM sluice_schema")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get::<Option<i64>, _>("v"))
            .map_err(|source| StoreError::Migrate { version: 0, source })?;
        Ok(current.unwrap_or(0))
    }

    async fn apply_migration(&self, version: i64, statements: &[&str]) -> Result<(), StoreError> {
        let err = |source| StoreError::Migrate { version, source };
        let mut tx = self.pool.begin().await.map_err(err)?;
        for statement in statements {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        sqlx::query("INSERT INTO sluice_schema (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    /// The pool, for one statement outside a transaction (counted).
    pub(crate) fn pool(&self) -> &AnyPool {
        self.statements.fetch_add(1, Ordering::Relaxed);
        &self.pool
    }

    /// How many statements this handle and its clones ran outside transactions so far: what
    /// a caller's reads cost in round trips, e.g. the scheduler's per pass, which must not
    /// grow with the length of its queues.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Starts a transaction; nothing it writes is visible until [`Tx::commit`].
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        // SQLite: a deferred transaction that reads and then writes fails at once with
        // "database is locked" when another process wrote in between (WAL snapshots cannot be
        // upgraded; the busy timeout does not apply). Taking the write lock at BEGIN makes
        // such writers (`sluice change approve`, `sluice executor`) wait their turn instead.
        self.statements.fetch_add(1, Ordering::Relaxed);
        let tx = if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        } else {
            self.pool.begin().await
        }
        .map_err(q("begin transaction"))?;
        Ok(Tx::new(tx, self.wakeups.clone()))
    }

    /// Changes each time a write through this handle (or a clone) committed something the
    /// scheduler acts on: an event, a finished or paused build. For the scheduler loop of the
    /// same process; other processes' writes are only seen by polling.
    pub fn scheduler_wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.scheduler.subscribe()
    }

    /// Changes each time a write through this handle (or a clone) committed something
    /// executors act on: a new build request, a finished build (its nodes are free again), a
    /// resumed build. For the executor workers of the same process.
    pub fn executor_wakeups(&self) -> watch::Receiver<u64> {
        self.wakeups.executors.subscribe()
    }

    /// Unprocessed events, oldest first.
    pub async fn pending_events(&self, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, connection, kind, payload, created FROM events WHERE processed IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(q("read pending events"))?;
        rows.iter().map(event_row).collect()
    }

    /// The git driver's stored refs of a project: `(refname, sha)`.
    pub async fn git_refs(
        &self,
        connection: &str,
        project: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT refname, sha FROM git_refs WHERE connection = $1 AND project = $2 ORDER BY refname",
        )
        .bind(connection)
        .bind(project)
        .fetch_all(self.pool())
        .await
        .map_err(q("read git refs"))?;
        rows.iter()
            .map(|r| Ok((get(r, "refname")?, get(r, "sha")?)))
            .collect()
    }

    /// A review change by its ref.
    pub async fn change_by_ref(
        &self,
        connection: &str,
        project: &str,
        refname: &str,
    ) -> Result<Option<ChangeRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE connection = $1 AND project = $2 AND refname = $3"
        ))
        .bind(connection)
        .bind(project)
        .bind(refname)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read change"))?;
        row.as_ref().map(change_row).transpose()
    }

    /// The patchset a change was last approved at.
    pub async fn approved_patchset(
        &self,
        connection: &str,
        project: &str,
        number: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT patchset FROM change_approvals WHERE connection = $1 AND project = $2 AND number = $3",
        )
        .bind(connection)
        .bind(project)
        .bind(number)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read change approval"))?;
        row.map(|r| get::<String>(&r, "patchset")).transpose()
    }

    /// The statuses of a commit: `(context, state)`, by context.
    pub async fn commit_statuses(
        &self,
        connection: &str,
        project: &str,
        sha: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT context, state FROM commit_statuses WHERE connection = $1 AND project = $2 AND sha = $3 ORDER BY context",
        )
        .bind(connection)
        .bind(project)
        .bind(sha)
        .fetch_all(self.pool())
        .await
        .map_err(q("read commit statuses"))?;
        rows.iter()
            .map(|r| Ok((get(r, "context")?, get(r, "state")?)))
            .collect()
    }

    /// Extends the node locks of build `holder` until `expires`.
    pub async fn renew_node_locks(&self, holder: &str, expires: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE node_locks SET expires = $1 WHERE holder = $2")
            .bind(expires)
            .bind(holder)
            .execute(self.pool())
            .await
            .map_err(q("renew node locks"))?;
        Ok(())
    }

    /// Gives back the node slots build `holder` took.
    pub async fn release_node_locks(&self, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM node_locks WHERE holder = $1")
            .bind(holder)
            .execute(self.pool())
            .await
            .map_err(q("release node locks"))?;
        Ok(())
    }

    /// How many node slots are taken (unexpired at `now`).
    pub async fn node_locks_in_use(&self, now: i64) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM node_locks WHERE expires >= $1")
            .bind(now)
            .fetch_one(self.pool())
            .await
            .map_err(q("count node locks"))?;
        get::<i64>(&row, "n")
    }

    /// Every review change of a connection.
    pub async fn changes(&self, connection: &str) -> Result<Vec<ChangeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE connection = $1 ORDER BY project, number"
        ))
        .bind(connection)
        .fetch_all(self.pool())
        .await
        .map_err(q("read changes"))?;
        rows.iter().map(change_row).collect()
    }

    /// Active items of a pipeline, by queue then position.
    pub async fn active_items(
        &self,
        tenant: &str,
        pipeline: &str,
    ) -> Result<Vec<ItemRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM queue_items WHERE tenant = $1 AND pipeline = $2 AND state = 'active' ORDER BY seq"
        ))
        .bind(tenant)
        .bind(pipeline)
        .fetch_all(self.pool())
        .await
        .map_err(q("read active items"))?;
        rows.iter().map(item_row).collect()
    }

    /// Every item of a tenant, in enqueue order.
    pub async fn items(&self, tenant: &str) -> Result<Vec<ItemRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM queue_items WHERE tenant = $1 ORDER BY seq"
        ))
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(q("read items"))?;
        rows.iter().map(item_row).collect()
    }

    /// One item.
    pub async fn item(&self, uuid: &str) -> Result<Option<ItemRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM queue_items WHERE uuid = $1"
        ))
        .bind(uuid)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read item"))?;
        row.as_ref().map(item_row).transpose()
    }

    /// A change queue's window size, if one was recorded.
    pub async fn window(
        &self,
        tenant: &str,
        pipeline: &str,
        queue: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT size FROM queue_windows WHERE tenant = $1 AND pipeline = $2 AND queue = $3",
        )
        .bind(tenant)
        .bind(pipeline)
        .bind(queue)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read window"))?;
        row.map(|r| get::<i64>(&r, "size")).transpose()
    }

    /// One buildset.
    pub async fn buildset(&self, uuid: &str) -> Result<Option<BuildsetRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BUILDSET_COLUMNS} FROM buildsets WHERE uuid = $1"
        ))
        .bind(uuid)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read buildset"))?;
        row.as_ref().map(buildset_row).transpose()
    }

    /// Every buildset of a tenant, oldest first.
    pub async fn buildsets(&self, tenant: &str) -> Result<Vec<BuildsetRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BUILDSET_COLUMNS} FROM buildsets WHERE tenant = $1 ORDER BY id"
        ))
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(q("read buildsets"))?;
        rows.iter().map(buildset_row).collect()
    }

    /// Builds of a buildset, oldest first.
    pub async fn builds_of_buildset(&self, buildset: &str) -> Result<Vec<BuildRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE buildset_uuid = $1 ORDER BY id"
        ))
        .bind(buildset)
        .fetch_all(self.pool())
        .await
        .map_err(q("read builds of buildset"))?;
        rows.iter().map(build_row).collect()
    }

    /// Every build of a tenant, oldest first.
    pub async fn builds(&self, tenant: &str) -> Result<Vec<BuildRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE tenant = $1 ORDER BY id"
        ))
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(q("read builds"))?;
        rows.iter().map(build_row).collect()
    }

    /// One build.
    pub async fn build(&self, uuid: &str) -> Result<Option<BuildRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE uuid = $1"
        ))
        .bind(uuid)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read build"))?;
        row.as_ref().map(build_row).transpose()
    }

    /// One build request.
    pub async fn request(&self, uuid: &str) -> Result<Option<RequestRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM build_requests WHERE uuid = $1"
        ))
        .bind(uuid)
        .fetch_optional(self.pool())
        .await
        .map_err(q("read build request"))?;
        row.as_ref().map(request_row).transpose()
    }

    /// Requests nobody holds, in the order executors should take them (precedence, then age).
    pub async fn open_requests(&self, limit: i64) -> Result<Vec<RequestRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM build_requests WHERE state = 'requested' ORDER BY precedence, seq LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(q("read open requests"))?;
        rows.iter().map(request_row).collect()
    }

    /// Requests whose result the scheduler has not recorded yet (completed or canceled).
    pub async fn finished_requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM build_requests WHERE state IN ('completed', 'canceled') AND processed = 0 ORDER BY seq"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(q("read finished requests"))?;
        rows.iter().map(request_row).collect()
    }

    /// Claims a request for `executor` until `lease_until`; `None` if someone else got it first.
    pub async fn claim(
        &self,
        uuid: &str,
        executor: &str,
        lease_until: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        self.claim_recording(uuid, executor, lease_until, None)
            .await
    }

    /// [`Store::claim`], recording in the same statement where the executor streams the
    /// build's log (`worker_json`; `None` clears what an earlier try's executor left).
    pub(crate) async fn claim_recording(
        &self,
        uuid: &str,
        executor: &str,
        lease_until: i64,
        worker_json: Option<String>,
    ) -> Result<Option<Claimed>, StoreError> {
        let done = sqlx::query(
            "UPDATE build_requests SET state = 'running', executor = $1, lease_expires = $2, worker_json = $3, claimed = $4 WHERE uuid = $5 AND state = 'requested'",
        )
        .bind(executor)
        .bind(lease_until)
        .bind(worker_json)
        .bind(now_ms())
        .bind(uuid)
        .execute(self.pool())
        .await
        .map_err(q("claim build request"))?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let Some(row) = self.request(uuid).await? else {
            return Ok(None);
        };
        Ok(Some(Claimed {
            uuid: row.uuid,
            request: row.request,
        }))
    }

    /// Extends a held lease; says whether it is still held and whether a cancel was asked.
    pub async fn renew(
        &self,
        uuid: &str,
        executor: &str,
        lease_until: i64,
    ) -> Result<LeaseState, StoreError> {
        let done = sqlx::query(
            "UPDATE build_requests SET lease_expires = $1 WHERE uuid = $2 AND executor = $3 AND state = 'running'",
        )
        .bind(lease_until)
        .bind(uuid)
        .bind(executor)
        .execute(self.pool())
        .await
        .map_err(q("renew lease"))?;
        if done.rows_affected() != 1 {
            return Ok(LeaseState::Lost);
        }
        let cancel: i64 = sqlx::query("SELECT cancel FROM build_requests WHERE uuid = $1")
            .bind(uuid)
            .fetch_one(self.pool())
            .await
            .and_then(|r| r.try_get::<i64, _>("cancel"))
            .map_err(q("read cancel flag"))?;
        Ok(if cancel != 0 {
            LeaseState::CancelRequested
        } else {
            LeaseState::Held
        })
    }

    /// Records an executor's result; false if the lease was lost (the result is dropped).
    pub async fn complete(
        &self,
        uuid: &str,
        executor: &str,
        result: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let text = serde_json::to_string(result).map_err(j("build result"))?;
        let done = sqlx::query(
            "UPDATE build_requests SET state = 'completed', result_json = $1, lease_expires = NULL WHERE uuid = $2 AND executor = $3 AND state = 'running'",
        )
        .bind(text)
        .bind(uuid)
        .bind(executor)
        .execute(self.pool())
        .await
        .map_err(q("complete build request"))?;
        self.wakeups.send(Wake {
            scheduler: true,
            executors: true,
        });
        Ok(done.rows_affected() == 1)
    }

    /// Records that a held build paused after its run phase with `data` returned so far;
    /// false if the lease was lost.
    pub async fn pause(
        &self,
        uuid: &str,
        executor: &str,
        data: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let text = serde_json::to_string(data).map_err(j("paused build data"))?;
        let done = sqlx::query(
            "UPDATE build_requests SET paused_json = $1 WHERE uuid = $2 AND executor = $3 AND state = 'running'",
        )
        .bind(text)
        .bind(uuid)
        .bind(executor)
        .execute(self.pool())
        .await
        .map_err(q("pause build request"))?;
        self.wakeups.send(Wake {
            scheduler: true,
            executors: false,
        });
        Ok(done.rows_affected() == 1)
    }

    /// Whether the scheduler resumed a paused build.
    pub async fn resume_wanted(&self, uuid: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT resume FROM build_requests WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(self.pool())
            .await
            .map_err(q("read resume flag"))?;
        Ok(match row {
            Some(r) => get::<i64>(&r, "resume")? != 0,
            None => false,
        })
    }

    /// Builds paused at their executors that the scheduler has not marked paused yet.
    pub async fn newly_paused(&self) -> Result<Vec<PausedRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.uuid AS uuid, r.paused_json AS paused_json FROM build_requests r JOIN builds b ON b.uuid = r.uuid WHERE r.state = 'running' AND r.paused_json IS NOT NULL AND r.resume = 0 AND b.paused = 0",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("read paused requests"))?;
        rows.iter()
            .map(|r| {
                Ok(PausedRequest {
                    uuid: get(r, "uuid")?,
                    data: get_json(r, "paused_json")?,
                })
            })
            .collect()
    }

    /// Hands back requests whose lease ran out: they complete with no result, which the
    /// scheduler turns into RETRY. Returns how many.
    pub async fn expire_leases(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE build_requests SET state = 'completed', result_json = NULL, lease_expires = NULL WHERE state = 'running' AND lease_expires < $1",
        )
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(q("expire leases"))?;
        Ok(done.rows_affected())
    }

    /// Hands back (as above) every running request held by executors whose id starts with
    /// `prefix`: an executor host restarting knows its old builds are gone.
    pub async fn release_executor(&self, prefix: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE build_requests SET state = 'completed', result_json = NULL, lease_expires = NULL WHERE state = 'running' AND executor LIKE $1",
        )
        .bind(format!("{prefix}%"))
        .execute(self.pool())
        .await
        .map_err(q("release executor requests"))?;
        Ok(done.rows_affected())
    }

    /// Active items of every pipeline of a tenant, by position.
    pub async fn active_items_of_tenant(&self, tenant: &str) -> Result<Vec<ItemRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM queue_items WHERE tenant = $1 AND state = 'active' ORDER BY seq"
        ))
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(q("read active items of tenant"))?;
        rows.iter().map(item_row).collect()
    }

    /// The builds of the current buildsets of a tenant's active items, oldest first, each with
    /// its request's state and claim time (`None` while it waits for its dependencies).
    pub async fn live_builds(&self, tenant: &str) -> Result<Vec<LiveBuild>, StoreError> {
        let columns: Vec<String> = BUILD_COLUMNS
            .split(", ")
            .map(|c| format!("b.{c}"))
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT {}, r.state AS request_state, r.claimed AS request_claimed FROM builds b JOIN queue_items i ON i.buildset_uuid = b.buildset_uuid LEFT JOIN build_requests r ON r.uuid = b.uuid WHERE i.tenant = $1 AND i.state = 'active' ORDER BY b.id",
            columns.join(", ")
        ))
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(q("read live builds"))?;
        rows.iter()
            .map(|r| {
                Ok(LiveBuild {
                    build: build_row(r)?,
                    request_state: get(r, "request_state")?,
                    claimed: get(r, "request_claimed")?,
                })
            })
            .collect()
    }

    /// How many trigger events wait for the scheduler.
    pub async fn pending_event_count(&self) -> Result<i64, StoreError> {
        sqlx::query("SELECT COUNT(*) AS n FROM events WHERE processed IS NULL")
            .fetch_one(self.pool())
            .await
            .and_then(|r| r.try_get::<i64, _>("n"))
            .map_err(q("count pending events"))
    }

    /// Builds of a tenant matching `query`, newest first.
    pub async fn query_builds(&self, query: &BuildQuery) -> Result<Vec<BuildRow>, StoreError> {
        let mut w = Where::new("tenant", &query.tenant);
        w.any_of("pipeline", &query.pipelines);
        w.any_of("job_name", &query.job_names);
        w.any_of("uuid", &query.uuids);
        w.any_of("result", &query.results);
        w.any_of("nodeset", &query.nodesets);
        w.none_of("result", &query.exclude_results);
        w.flag("voting", query.voting);
        w.flag("final", query.final_);
        w.flag("held", query.held);
        w.complete(query.complete);
        w.id_range(query.idx_min, query.idx_max);
        let page = w.page(query.limit, query.skip);
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE {} ORDER BY id DESC{page}",
            w.sql
        );
        let rows = w
            .bind_all(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await
            .map_err(q("query builds"))?;
        rows.iter().map(build_row).collect()
    }

    /// Buildsets of a tenant matching `query`, newest first.
    pub async fn query_buildsets(
        &self,
        query: &BuildsetQuery,
    ) -> Result<Vec<BuildsetRow>, StoreError> {
        let mut w = Where::new("tenant", &query.tenant);
        w.any_of("pipeline", &query.pipelines);
        w.any_of("uuid", &query.uuids);
        w.any_of("result", &query.results);
        w.complete(query.complete);
        w.id_range(query.idx_min, query.idx_max);
        let page = w.page(query.limit, query.skip);
        let sql = format!(
            "SELECT {BUILDSET_COLUMNS} FROM buildsets WHERE {} ORDER BY id DESC{page}",
            w.sql
        );
        let rows = w
            .bind_all(sqlx::query(&sql))
            .fetch_all(self.pool())
            .await
            .map_err(q("query buildsets"))?;
        rows.iter().map(buildset_row).collect()
    }

    /// The items with these uuids (in no particular order; unknown ones are left out).
    pub async fn items_by_uuid(&self, uuids: &[String]) -> Result<Vec<ItemRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in uuids.chunks(500) {
            let mut w = Where::default();
            w.any_of("uuid", chunk);
            let sql = format!("SELECT {ITEM_COLUMNS} FROM queue_items WHERE {}", w.sql);
            let rows = w
                .bind_all(sqlx::query(&sql))
                .fetch_all(self.pool())
                .await
                .map_err(q("read items by uuid"))?;
            for r in &rows {
                out.push(item_row(r)?);
            }
        }
        Ok(out)
    }

    /// The buildsets with these uuids (in no particular order; unknown ones are left out).
    pub async fn buildsets_by_uuid(
        &self,
        uuids: &[String],
    ) -> Result<Vec<BuildsetRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in uuids.chunks(500) {
            let mut w = Where::default();
            w.any_of("uuid", chunk);
            let sql = format!("SELECT {BUILDSET_COLUMNS} FROM buildsets WHERE {}", w.sql);
            let rows = w
                .bind_all(sqlx::query(&sql))
                .fetch_all(self.pool())
                .await
                .map_err(q("read buildsets by uuid"))?;
            for r in &rows {
                out.push(buildset_row(r)?);
            }
        }
        Ok(out)
    }

    /// The builds of these buildsets, oldest first (one statement per 500 buildsets: what
    /// the scheduler reads for a whole queue at once).
    pub async fn builds_of_buildsets(
        &self,
        buildsets: &[String],
    ) -> Result<Vec<BuildRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in buildsets.chunks(500) {
            let mut w = Where::default();
            w.any_of("buildset_uuid", chunk);
            let sql = format!(
                "SELECT {BUILD_COLUMNS} FROM builds WHERE {} ORDER BY id",
                w.sql
            );
            let rows = w
                .bind_all(sqlx::query(&sql))
                .fetch_all(self.pool())
                .await
                .map_err(q("read builds of buildsets"))?;
            for r in &rows {
                out.push(build_row(r)?);
            }
        }
        out.sort_by_key(|b| b.id);
        Ok(out)
    }

    /// Start and end times of a tenant's latest successful builds of `job`, newest first
    /// (at most `limit`): what a running build's estimated time is made from.
    pub async fn recent_success_times(
        &self,
        tenant: &str,
        job: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT start_time, end_time FROM builds WHERE tenant = $1 AND job_name = $2 AND result = 'SUCCESS' AND start_time IS NOT NULL AND end_time IS NOT NULL ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(job)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(q("read recent build times"))?;
        rows.iter()
            .map(|r| Ok((get(r, "start_time")?, get(r, "end_time")?)))
            .collect()
    }
}

/// A WHERE clause built from optional filters, with its bind values in placeholder order.
#[derive(Debug, Default)]
struct Where {
    sql: String,
    values: Vec<Bind>,
}

#[derive(Debug)]
enum Bind {
    Text(String),
    Int(i64),
}

impl Where {
    fn new(column: &str, value: &str) -> Self {
        let mut w = Where::default();
        w.any_of(column, &[value.to_string()]);
        w
    }

    fn push(&mut self, clause: String) {
        if !self.sql.is_empty() {
            self.sql.push_str(" AND ");
        }
        self.sql.push_str(&clause);
    }

    fn placeholder(&mut self, value: Bind) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    fn list(&mut self, values: &[String]) -> String {
        values
            .iter()
            .map(|v| self.placeholder(Bind::Text(v.clone())))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn any_of(&mut self, column: &str, values: &[String]) {
        if !values.is_empty() {
            let list = self.list(values);
            self.push(format!("{column} IN ({list})"));
        }
    }

    /// Unfinished rows (no result yet) are kept.
    fn none_of(&mut self, column: &str, values: &[String]) {
        if !values.is_empty() {
            let list = self.list(values);
            self.push(format!("({column} IS NULL OR {column} NOT IN ({list}))"));
        }
    }

    fn flag(&mut self, column: &str, value: Option<bool>) {
        if let Some(v) = value {
            let p = self.placeholder(Bind::Int(i64::from(v)));
            self.push(format!("{column} = {p}"));
        }
    }

    fn complete(&mut self, value: Option<bool>) {
        match value {
            Some(true) => self.push("result IS NOT NULL".into()),
            Some(false) => self.push("result IS NULL".into()),
            None => {}
        }
    }

    fn id_range(&mut self, min: Option<i64>, max: Option<i64>) {
        if let Some(min) = min {
            let p = self.placeholder(Bind::Int(min));
            self.push(format!("id >= {p}"));
        }
        if let Some(max) = max {
            let p = self.placeholder(Bind::Int(max));
            self.push(format!("id <= {p}"));
        }
    }

    fn page(&mut self, limit: Option<i64>, skip: i64) -> String {
        match limit {
            Some(limit) => {
                let l = self.placeholder(Bind::Int(limit.max(0)));
                let o = self.placeholder(Bind::Int(skip.max(0)));
                format!(" LIMIT {l} OFFSET {o}")
            }
            None => String::new(),
        }
    }

    fn bind_all<'q>(
        &'q self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for v in &self.values {
            query = match v {
                Bind::Text(t) => query.bind(t.as_str()),
                Bind::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

pub(crate) fn get<T>(row: &AnyRow, col: &'static str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<T, _>(col).map_err(q(col))
}

fn get_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &'static str,
) -> Result<T, StoreError> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(j(col))
}

fn get_opt_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &'static str,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = get(row, col)?;
    text.map(|t| serde_json::from_str(&t).map_err(j(col)))
        .transpose()
}

pub(crate) fn event_row(r: &AnyRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        id: get(r, "id")?,
        connection: get(r, "connection")?,
        kind: get(r, "kind")?,
        payload: get_json(r, "payload")?,
        created: get(r, "created")?,
    })
}

pub(crate) fn change_row(r: &AnyRow) -> Result<ChangeRow, StoreError> {
    Ok(ChangeRow {
        connection: get(r, "connection")?,
        project: get(r, "project")?,
        number: get(r, "number")?,
        refname: get(r, "refname")?,
        branch: get(r, "branch")?,
        topic: get(r, "topic")?,
        patchset: get(r, "patchset")?,
        message: get(r, "message")?,
        status: get(r, "status")?,
    })
}

pub(crate) fn item_row(r: &AnyRow) -> Result<ItemRow, StoreError> {
    Ok(ItemRow {
        uuid: get(r, "uuid")?,
        tenant: get(r, "tenant")?,
        pipeline: get(r, "pipeline")?,
        queue: get(r, "queue")?,
        seq: get(r, "seq")?,
        state: get(r, "state")?,
        live: get::<i64>(r, "live")? != 0,
        change: get_json(r, "change_json")?,
        deps: get_json(r, "deps_json")?,
        event_id: get(r, "event_id")?,
        enqueue_time: get(r, "enqueue_time")?,
        buildset_uuid: get(r, "buildset_uuid")?,
        result: get(r, "result")?,
    })
}

pub(crate) fn buildset_row(r: &AnyRow) -> Result<BuildsetRow, StoreError> {
    Ok(BuildsetRow {
        uuid: get(r, "uuid")?,
        id: get(r, "id")?,
        tenant: get(r, "tenant")?,
        pipeline: get(r, "pipeline")?,
        item_uuid: get(r, "item_uuid")?,
        context: get_json(r, "context_json")?,
        refs: get_json(r, "refs_json")?,
        state: get(r, "state")?,
        result: get(r, "result")?,
        message: get(r, "message")?,
        event_id: get(r, "event_id")?,
        event_timestamp: get(r, "event_timestamp")?,
        created: get(r, "created")?,
        first_build_start_time: get(r, "first_build_start_time")?,
        last_build_end_time: get(r, "last_build_end_time")?,
    })
}

pub(crate) fn build_row(r: &AnyRow) -> Result<BuildRow, StoreError> {
    Ok(BuildRow {
        uuid: get(r, "uuid")?,
        id: get(r, "id")?,
        buildset_uuid: get(r, "buildset_uuid")?,
        item_uuid: get(r, "item_uuid")?,
        tenant: get(r, "tenant")?,
        pipeline: get(r, "pipeline")?,
        job_name: get(r, "job_name")?,
        voting: get::<i64>(r, "voting")? != 0,
        attempt: get(r, "attempt")?,
        nodeset: get(r, "nodeset")?,
        result: get(r, "result")?,
        final_: get::<i64>(r, "final")? != 0,
        error_detail: get(r, "error_detail")?,
        log_url: get(r, "log_url")?,
        start_time: get(r, "start_time")?,
        end_time: get(r, "end_time")?,
        data: get_opt_json(r, "data_json")?,
        dependencies: get_opt_json(r, "dependencies_json")?.unwrap_or_default(),
        pending_request: get_opt_json(r, "pending_request_json")?,
        paused: get::<i64>(r, "paused")? != 0,
        held: get::<i64>(r, "held")? != 0,
    })
}

pub(crate) fn request_row(r: &AnyRow) -> Result<RequestRow, StoreError> {
    Ok(RequestRow {
        uuid: get(r, "uuid")?,
        tenant: get(r, "tenant")?,
        pipeline: get(r, "pipeline")?,
        precedence: get(r, "precedence")?,
        state: get(r, "state")?,
        executor: get(r, "executor")?,
        lease_expires: get(r, "lease_expires")?,
        cancel: get::<i64>(r, "cancel")? != 0,
        request: get_json(r, "request_json")?,
        result: get_opt_json(r, "result_json")?,
    })
}
