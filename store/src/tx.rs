//! One write transaction: the scheduler's and the git driver's state changes. Dropping a `Tx`
//! without [`Tx::commit`] rolls everything back.

use std::sync::Arc;

use sqlx::{Any, Row, Transaction};

use crate::errors::{j, q, StoreError};
use crate::model::*;
use crate::store::{change_row, get, now_ms, Wake, Wakeups};

/// A transaction on the store.
pub struct Tx {
    tx: Transaction<'static, Any>,
    wakeups: Arc<Wakeups>,
    wake: Wake,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}

fn to_json<T: serde::Serialize>(value: &T, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(j(what))
}

impl Tx {
    pub(crate) fn new(tx: Transaction<'static, Any>, wakeups: Arc<Wakeups>) -> Self {
        Tx {
            tx,
            wakeups,
            wake: Wake::default(),
        }
    }

    /// The connection under the transaction (for queries in other modules of this crate).
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Makes every write of this transaction durable at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(q("commit"))?;
        self.wakeups.send(self.wake);
        Ok(())
    }

    /// The next value of a named counter (1, 2, ...).
    pub async fn next_id(&mut self, name: &str) -> Result<i64, StoreError> {
        let done = sqlx::query("UPDATE counters SET value = value + 1 WHERE name = $1")
            .bind(name)
            .execute(&mut *self.tx)
            .await
            .map_err(q("bump counter"))?;
        if done.rows_affected() == 0 {
            sqlx::query("INSERT INTO counters (name, value) VALUES ($1, 1)")
                .bind(name)
                .execute(&mut *self.tx)
                .await
                .map_err(q("create counter"))?;
        }
        sqlx::query("SELECT value FROM counters WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *self.tx)
            .await
            .and_then(|r| r.try_get::<i64, _>("value"))
            .map_err(q("read counter"))
    }

    /// Queues a trigger event; returns its id.
    pub async fn insert_event(
        &mut self,
        connection: &str,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let id = self.next_id("event").await?;
        sqlx::query(
            "INSERT INTO events (id, connection, kind, payload, created, processed) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(id)
        .bind(connection)
        .bind(kind)
        .bind(to_json(payload, "event payload")?)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(q("insert event"))?;
        self.wake.scheduler = true;
        Ok(id)
    }

    /// Marks an event handled.
    pub async fn mark_event_processed(&mut self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE events SET processed = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(q("mark event processed"))?;
        Ok(())
    }

    /// Records a ref's sha (`None`: the ref is gone).
    pub async fn set_git_ref(
        &mut self,
        connection: &str,
        project: &str,
        refname: &str,
        sha: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM git_refs WHERE connection = $1 AND project = $2 AND refname = $3")
            .bind(connection)
            .bind(project)
            .bind(refname)
            .execute(&mut *self.tx)
            .await
            .map_err(q("delete git ref"))?;
        if let Some(sha) = sha {
            sqlx::query(
                "INSERT INTO git_refs (connection, project, refname, sha) VALUES ($1, $2, $3, $4)",
            )
            .bind(connection)
            .bind(project)
            .bind(refname)
            .bind(sha)
            .execute(&mut *self.tx)
            .await
            .map_err(q("insert git ref"))?;
        }
        Ok(())
    }

    /// A review change by its ref, inside this transaction.
    pub async fn change_by_ref(
        &mut self,
        connection: &str,
        project: &str,
        refname: &str,
    ) -> Result<Option<ChangeRow>, StoreError> {
        let row = sqlx::query(
            "SELECT connection, project, number, refname, branch, topic, patchset, message, status FROM changes WHERE connection = $1 AND project = $2 AND refname = $3",
        )
        .bind(connection)
        .bind(project)
        .bind(refname)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(q("read change"))?;
        row.as_ref().map(change_row).transpose()
    }

    /// Creates a change (numbered per project) or moves it to a new patchset; returns its row.
    #[allow(clippy::too_many_arguments)]
    pub async fn upsert_change(
        &mut self,
        connection: &str,
        project: &str,
        refname: &str,
        branch: &str,
        topic: &str,
        patchset: &str,
        message: &str,
    ) -> Result<ChangeRow, StoreError> {
        if let Some(existing) = self.change_by_ref(connection, project, refname).await? {
            sqlx::query(
                "UPDATE changes SET patchset = $1, message = $2, status = 'open', updated = $3 WHERE connection = $4 AND project = $5 AND number = $6",
            )
            .bind(patchset)
            .bind(message)
            .bind(now_ms())
            .bind(connection)
            .bind(project)
            .bind(existing.number)
            .execute(&mut *self.tx)
            .await
            .map_err(q("update change"))?;
            return Ok(ChangeRow {
                patchset: patchset.to_string(),
                message: message.to_string(),
                status: "open".into(),
                ..existing
            });
        }
        let number = self
            .next_id(&format!("change:{connection}:{project}"))
            .await?;
        sqlx::query(
            "INSERT INTO changes (connection, project, number, refname, branch, topic, patchset, message, status, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9)",
        )
        .bind(connection)
        .bind(project)
        .bind(number)
        .bind(refname)
        .bind(branch)
        .bind(topic)
        .bind(patchset)
        .bind(message)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(q("insert change"))?;
        Ok(ChangeRow {
            connection: connection.into(),
            project: project.into(),
            number,
            refname: refname.into(),
            branch: branch.into(),
            topic: topic.into(),
            patchset: patchset.into(),
            message: message.into(),
            status: "open".into(),
        })
    }

    /// Records a change numbered by its review system (a GitHub pull request) as it is now.
    pub async fn put_change(&mut self, change: &ChangeRow) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM changes WHERE connection = $1 AND project = $2 AND number = $3")
            .bind(&change.connection)
            .bind(&change.project)
            .bind(change.number)
            .execute(&mut *self.tx)
            .await
            .map_err(q("replace change"))?;
        sqlx::query(
            "INSERT INTO changes (connection, project, number, refname, branch, topic, patchset, message, status, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&change.connection)
        .bind(&change.project)
        .bind(change.number)
        .bind(&change.refname)
        .bind(&change.branch)
        .bind(&change.topic)
        .bind(&change.patchset)
        .bind(&change.message)
        .bind(&change.status)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(q("insert change"))?;
        Ok(())
    }

    /// Sets a change's status (`open`, `merged`, `abandoned`).
    pub async fn set_change_status(
        &mut self,
        connection: &str,
        project: &str,
        number: i64,
        status: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE changes SET status = $1, updated = $2 WHERE connection = $3 AND project = $4 AND number = $5",
        )
        .bind(status)
        .bind(now_ms())
        .bind(connection)
        .bind(project)
        .bind(number)
        .execute(&mut *self.tx)
        .await
        .map_err(q("set change status"))?;
        Ok(())
    }

    /// Enqueues an item at the end of its queue (its `seq` is assigned here and returned).
    pub async fn insert_item(&mut self, item: &ItemRow) -> Result<i64, StoreError> {
        let seq = self.next_id("item").await?;
        sqlx::query(
            "INSERT INTO queue_items (uuid, tenant, pipeline, queue, seq, state, live, change_json, deps_json, event_id, enqueue_time, buildset_uuid, result, dequeue_time) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, NULL, NULL, NULL)",
        )
        .bind(&item.uuid)
        .bind(&item.tenant)
        .bind(&item.pipeline)
        .bind(&item.queue)
        .bind(seq)
        .bind(i64::from(item.live))
        .bind(to_json(&item.change, "item change")?)
        .bind(to_json(&item.deps, "item deps")?)
        .bind(&item.event_id)
        .bind(item.enqueue_time)
        .execute(&mut *self.tx)
        .await
        .map_err(q("insert item"))?;
        Ok(seq)
    }

    /// Moves an item within its queue: items of a queue are ordered by `seq` (promote).
    pub async fn set_item_seq(&mut self, item: &str, seq: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE queue_items SET seq = $1 WHERE uuid = $2")
            .bind(seq)
            .bind(item)
            .execute(&mut *self.tx)
            .await
            .map_err(q("set item seq"))?;
        Ok(())
    }

    /// Points an item at its current buildset.
    pub async fn set_item_buildset(
        &mut self,
        item: &str,
        buildset: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE queue_items SET buildset_uuid = $1 WHERE uuid = $2")
            .bind(buildset)
            .bind(item)
            .execute(&mut *self.tx)
            .await
            .map_err(q("set item buildset"))?;
        Ok(())
    }

    /// Dequeues an item with its result.
    pub async fn finish_item(&mut self, item: &str, result: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE queue_items SET state = 'done', result = $1, dequeue_time = $2 WHERE uuid = $3",
        )
        .bind(result)
        .bind(now_ms())
        .bind(item)
        .execute(&mut *self.tx)
        .await
        .map_err(q("finish item"))?;
        Ok(())
    }

    /// Records a change queue's window size.
    pub async fn set_window(
        &mut self,
        tenant: &str,
        pipeline: &str,
        queue: &str,
        size: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM queue_windows WHERE tenant = $1 AND pipeline = $2 AND queue = $3")
            .bind(tenant)
            .bind(pipeline)
            .bind(queue)
            .execute(&mut *self.tx)
            .await
            .map_err(q("clear window"))?;
        sqlx::query(
            "INSERT INTO queue_windows (tenant, pipeline, queue, size) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant)
        .bind(pipeline)
        .bind(queue)
        .bind(size)
        .execute(&mut *self.tx)
        .await
        .map_err(q("set window"))?;
        Ok(())
    }

    /// Creates a buildset (its `id` is assigned here and returned).
    pub async fn insert_buildset(&mut self, bs: &BuildsetRow) -> Result<i64, StoreError> {
        let id = self.next_id("buildset").await?;
        sqlx::query(
            "INSERT INTO buildsets (uuid, id, tenant, pipeline, item_uuid, context_json, refs_json, state, result, message, event_id, event_timestamp, created, first_build_start_time, last_build_end_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10, $11, NULL, NULL)",
        )
        .bind(&bs.uuid)
        .bind(id)
        .bind(&bs.tenant)
        .bind(&bs.pipeline)
        .bind(&bs.item_uuid)
        .bind(to_json(&bs.context, "buildset context")?)
        .bind(to_json(&bs.refs, "buildset refs")?)
        .bind(&bs.state)
        .bind(&bs.event_id)
        .bind(bs.event_timestamp)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(q("insert buildset"))?;
        Ok(id)
    }

    /// Moves a buildset to `state` (`running` once its builds are requested).
    pub async fn set_buildset_state(&mut self, uuid: &str, state: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE buildsets SET state = $1 WHERE uuid = $2")
            .bind(state)
            .bind(uuid)
            .execute(&mut *self.tx)
            .await
            .map_err(q("set buildset state"))?;
        Ok(())
    }

    /// Ends a buildset with its result and report text.
    pub async fn finish_buildset(
        &mut self,
        uuid: &str,
        result: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE buildsets SET state = 'done', result = $1, message = $2 WHERE uuid = $3",
        )
        .bind(result)
        .bind(message)
        .bind(uuid)
        .execute(&mut *self.tx)
        .await
        .map_err(q("finish buildset"))?;
        Ok(())
    }

    /// Creates a build record and, if it is ready, its request for executors.
    pub async fn insert_build(&mut self, b: &NewBuild) -> Result<(), StoreError> {
        let id = self.next_id("build").await?;
        let now = now_ms();
        let pending = if b.ready {
            None
        } else {
            Some(to_json(&b.request, "build request")?)
        };
        sqlx::query(
            "INSERT INTO builds (uuid, id, buildset_uuid, item_uuid, tenant, pipeline, job_name, voting, attempt, nodeset, result, final, error_detail, log_url, start_time, end_time, data_json, created, dependencies_json, pending_request_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, 0, NULL, NULL, NULL, NULL, NULL, $11, $12, $13)",
        )
        .bind(&b.uuid)
        .bind(id)
        .bind(&b.buildset_uuid)
        .bind(&b.item_uuid)
        .bind(&b.tenant)
        .bind(&b.pipeline)
        .bind(&b.job_name)
        .bind(i64::from(b.voting))
        .bind(b.attempt)
        .bind(&b.nodeset)
        .bind(now)
        .bind(to_json(&b.dependencies, "build dependencies")?)
        .bind(pending)
        .execute(&mut *self.tx)
        .await
        .map_err(q("insert build"))?;
        if b.ready {
            self.insert_request(
                &b.uuid,
                &b.tenant,
                &b.pipeline,
                b.precedence,
                id,
                &b.request,
            )
            .await?;
        }
        Ok(())
    }

    /// Requests a build that waited for its dependencies, with its final request document.
    pub async fn release_build(
        &mut self,
        build: &BuildRow,
        precedence: i64,
        request: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE builds SET pending_request_json = NULL WHERE uuid = $1")
            .bind(&build.uuid)
            .execute(&mut *self.tx)
            .await
            .map_err(q("release build"))?;
        self.insert_request(
            &build.uuid,
            &build.tenant,
            &build.pipeline,
            precedence,
            build.id,
            request,
        )
        .await
    }

    async fn insert_request(
        &mut self,
        uuid: &str,
        tenant: &str,
        pipeline: &str,
        precedence: i64,
        seq: i64,
        request: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO build_requests (uuid, tenant, pipeline, precedence, seq, state, executor, lease_expires, cancel, processed, request_json, result_json, created) VALUES ($1, $2, $3, $4, $5, 'requested', NULL, NULL, 0, 0, $6, NULL, $7)",
        )
        .bind(uuid)
        .bind(tenant)
        .bind(pipeline)
        .bind(precedence)
        .bind(seq)
        .bind(to_json(request, "build request")?)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(q("insert build request"))?;
        self.wake.executors = true;
        Ok(())
    }

    /// Records a build's outcome.
    pub async fn record_build_result(
        &mut self,
        uuid: &str,
        outcome: &BuildOutcome<'_>,
    ) -> Result<(), StoreError> {
        let BuildOutcome {
            result,
            final_,
            error_detail,
            log_url,
            start_time,
            end_time,
            data,
        } = *outcome;
        let data = data.map(|d| to_json(d, "build data")).transpose()?;
        sqlx::query(
            "UPDATE builds SET result = $1, final = $2, error_detail = $3, log_url = $4, start_time = $5, end_time = $6, data_json = $7, pending_request_json = NULL, paused = 0 WHERE uuid = $8",
        )
        .bind(result)
        .bind(i64::from(final_))
        .bind(error_detail)
        .bind(log_url)
        .bind(start_time)
        .bind(end_time)
        .bind(data)
        .bind(uuid)
        .execute(&mut *self.tx)
        .await
        .map_err(q("record build result"))?;
        Ok(())
    }

    /// Marks a buildset's first start and last end times (keeps the earliest/latest).
    pub async fn touch_buildset_times(
        &mut self,
        uuid: &str,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(start) = start {
            sqlx::query("UPDATE buildsets SET first_build_start_time = $1 WHERE uuid = $2 AND (first_build_start_time IS NULL OR first_build_start_time > $1)")
                .bind(start)
                .bind(uuid)
                .execute(&mut *self.tx)
                .await
                .map_err(q("buildset start time"))?;
        }
        if let Some(end) = end {
            sqlx::query("UPDATE buildsets SET last_build_end_time = $1 WHERE uuid = $2 AND (last_build_end_time IS NULL OR last_build_end_time < $1)")
                .bind(end)
                .bind(uuid)
                .execute(&mut *self.tx)
                .await
                .map_err(q("buildset end time"))?;
        }
        Ok(())
    }

    /// Asks for a build to stop: a request nobody holds is canceled at once, a running one is
    /// flagged for its executor (which aborts it at its next lease renewal).
    pub async fn cancel_request(&mut self, uuid: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE build_requests SET state = 'canceled' WHERE uuid = $1 AND state = 'requested'",
        )
        .bind(uuid)
        .execute(&mut *self.tx)
        .await
        .map_err(q("cancel open request"))?;
        sqlx::query("UPDATE build_requests SET cancel = 1 WHERE uuid = $1")
            .bind(uuid)
            .execute(&mut *self.tx)
            .await
            .map_err(q("flag request canceled"))?;
        Ok(())
    }

    /// Marks a build paused, with the data it returned at the pause (what its children get).
    pub async fn mark_build_paused(
        &mut self,
        uuid: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE builds SET paused = 1, data_json = $1 WHERE uuid = $2")
            .bind(to_json(data, "paused build data")?)
            .bind(uuid)
            .execute(&mut *self.tx)
            .await
            .map_err(q("mark build paused"))?;
        Ok(())
    }

    /// Lets a paused build go on (its post-run playbooks run next).
    pub async fn resume_build(&mut self, uuid: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE build_requests SET resume = 1 WHERE uuid = $1")
            .bind(uuid)
            .execute(&mut *self.tx)
            .await
            .map_err(q("resume build request"))?;
        self.wake.executors = true;
        sqlx::query("UPDATE builds SET paused = 0 WHERE uuid = $1")
            .bind(uuid)
            .execute(&mut *self.tx)
            .await
            .map_err(q("resume build"))?;
        Ok(())
    }

    /// The builds holding a tenant's semaphore, read inside this transaction.
    pub async fn semaphore_holders(
        &mut self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT holder FROM semaphore_holders WHERE tenant = $1 AND name = $2 ORDER BY holder",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(q("read semaphore holders"))?;
        rows.iter().map(|r| get(r, "holder")).collect()
    }

    /// Records that build `holder` holds a tenant's semaphore.
    pub async fn acquire_semaphore(
        &mut self,
        tenant: &str,
        name: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO semaphore_holders (tenant, name, holder) VALUES ($1, $2, $3)")
            .bind(tenant)
            .bind(name)
            .bind(holder)
            .execute(&mut *self.tx)
            .await
            .map_err(q("acquire semaphore"))?;
        Ok(())
    }

    /// Takes every one of `semaphores` (name, `max`) of a tenant for `holder` if each has
    /// room, all or nothing, and says whether it did (one `holder` already holds counts as
    /// taken). Takers of a semaphore wait for each other on its row in `semaphore_locks`, so
    /// that two processes (the scheduler, executors taking playbook semaphores) cannot both
    /// take its last place, on PostgreSQL as on SQLite.
    pub async fn take_semaphores(
        &mut self,
        tenant: &str,
        holder: &str,
        semaphores: &[(String, u64)],
    ) -> Result<bool, StoreError> {
        let mut sorted: Vec<&(String, u64)> = semaphores.iter().collect();
        sorted.sort();
        for (name, _) in &sorted {
            sqlx::query(
                "INSERT INTO semaphore_locks (tenant, name, takes) VALUES ($1, $2, 0) ON CONFLICT (tenant, name) DO NOTHING",
            )
            .bind(tenant)
            .bind(name)
            .execute(&mut *self.tx)
            .await
            .map_err(q("lock semaphore"))?;
            sqlx::query(
                "UPDATE semaphore_locks SET takes = takes + 1 WHERE tenant = $1 AND name = $2",
            )
            .bind(tenant)
            .bind(name)
            .execute(&mut *self.tx)
            .await
            .map_err(q("lock semaphore"))?;
        }
        let mut missing = Vec::new();
        for (name, max) in &sorted {
            let holders = self.semaphore_holders(tenant, name).await?;
            if holders.iter().any(|h| h == holder) {
                continue;
            }
            if holders.len() as u64 >= *max {
                return Ok(false);
            }
            missing.push(name);
        }
        for name in missing {
            self.acquire_semaphore(tenant, name, holder).await?;
        }
        Ok(true)
    }

    /// Gives back the tenant's semaphores `names` that `holder` holds.
    pub async fn release_semaphores_named(
        &mut self,
        tenant: &str,
        holder: &str,
        names: &[String],
    ) -> Result<(), StoreError> {
        for name in names {
            sqlx::query(
                "DELETE FROM semaphore_holders WHERE tenant = $1 AND name = $2 AND holder = $3",
            )
            .bind(tenant)
            .bind(name)
            .bind(holder)
            .execute(&mut *self.tx)
            .await
            .map_err(q("release semaphore"))?;
        }
        Ok(())
    }

    /// Releases every semaphore build `holder` holds.
    pub async fn release_semaphores(&mut self, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM semaphore_holders WHERE holder = $1")
            .bind(holder)
            .execute(&mut *self.tx)
            .await
            .map_err(q("release semaphores"))?;
        Ok(())
    }

    /// Records that a change was approved at `patchset` (a later approval replaces it).
    pub async fn approve_change(
        &mut self,
        connection: &str,
        project: &str,
        number: i64,
        patchset: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM change_approvals WHERE connection = $1 AND project = $2 AND number = $3",
        )
        .bind(connection)
        .bind(project)
        .bind(number)
        .execute(&mut *self.tx)
        .await
        .map_err(q("replace change approval"))?;
        sqlx::query(
            "INSERT INTO change_approvals (connection, project, number, patchset, approved) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(connection)
        .bind(project)
        .bind(number)
        .bind(patchset)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(q("approve change"))?;
        Ok(())
    }

    /// Sets a commit status (`state` for `context` on commit `sha`), replacing the previous one.
    pub async fn set_commit_status(
        &mut self,
        connection: &str,
        project: &str,
        sha: &str,
        context: &str,
        state: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM commit_statuses WHERE connection = $1 AND project = $2 AND sha = $3 AND context = $4",
        )
        .bind(connection)
        .bind(project)
        .bind(sha)
        .bind(context)
        .execute(&mut *self.tx)
        .await
        .map_err(q("replace commit status"))?;
        sqlx::query(
            "INSERT INTO commit_statuses (connection, project, sha, context, state, updated) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(connection)
        .bind(project)
        .bind(sha)
        .bind(context)
        .bind(state)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(q("set commit status"))?;
        Ok(())
    }

    /// Forgets node locks that were not renewed in time (their executor is gone).
    pub async fn expire_node_locks(&mut self, now: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM node_locks WHERE expires < $1")
            .bind(now)
            .execute(&mut *self.tx)
            .await
            .map_err(q("expire node locks"))?;
        Ok(())
    }

    /// Every node slot in use: `(node, slot)`, read inside this transaction.
    pub async fn node_locks(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT node, slot FROM node_locks ORDER BY node, slot")
            .fetch_all(&mut *self.tx)
            .await
            .map_err(q("read node locks"))?;
        rows.iter()
            .map(|r| Ok((get(r, "node")?, get(r, "slot")?)))
            .collect()
    }

    /// Takes slot `slot` of `node` for build `holder` until `expires`; fails if it is taken.
    pub async fn lock_node(
        &mut self,
        node: &str,
        slot: i64,
        holder: &str,
        expires: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO node_locks (node, slot, holder, expires) VALUES ($1, $2, $3, $4)")
            .bind(node)
            .bind(slot)
            .bind(holder)
            .bind(expires)
            .execute(&mut *self.tx)
            .await
            .map_err(q("lock node"))?;
        Ok(())
    }

    /// Marks a finished request's result as recorded.
    pub async fn mark_request_processed(&mut self, uuid: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE build_requests SET processed = 1 WHERE uuid = $1")
            .bind(uuid)
            .execute(&mut *self.tx)
            .await
            .map_err(q("mark request processed"))?;
        Ok(())
    }

    /// Whether a request has been asked to stop.
    pub async fn request_canceled(&mut self, uuid: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT cancel FROM build_requests WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(q("read cancel flag"))?;
        match row {
            Some(r) => Ok(get::<i64>(&r, "cancel")? != 0),
            None => Ok(false),
        }
    }
}
