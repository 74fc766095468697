//! In-process executor workers: each claims build requests from the store (precedence, then
//! age) unless the governor says the host is too busy, reserves nodes from the node provider,
//! runs the build with `sluice_executor::build::run_build_pausable` while a heartbeat renews
//! the lease and the node locks (and turns a cancel request into an abort), then records the
//! result. A build that pauses (`zuul.pause`) records its data in the store and waits for the
//! scheduler to resume it. A playbook with `semaphores` takes them in the store while it runs.
//! It knows nothing of pipelines, so the same loop can run in a separate `sluice executor`
//! process.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_executor::build::{
    run_build_hooked, BuildAbort, BuildHooks, ExecutorConfig, PlaybookSemaphores,
};
use sluice_executor::registry::BuildRegistry;
use sluice_executor::request::{BuildRequest, BuildResult, BuildResultKind};
use sluice_store::{now_ms, LeaseState, Store, WorkerInfo};
use tokio::sync::watch;

use crate::governor::Governor;
use crate::nodes::{NodeProvider, NodeRequest};

/// What a worker needs.
#[derive(Clone)]
pub struct WorkerContext {
    /// The store.
    pub store: Store,
    /// Executor settings (its `nodes` are replaced by each build's allocation).
    pub executor: Arc<ExecutorConfig>,
    /// Nodes.
    pub provider: Arc<dyn NodeProvider>,
    /// This worker's id (unique per process and worker).
    pub id: String,
    /// Lease length.
    pub lease: Duration,
    /// Running builds, for live log streamers (finger, websocket).
    pub registry: BuildRegistry,
    /// Where this process streams builds' logs (recorded with each claim), if it does.
    pub worker_info: Option<WorkerInfo>,
    /// Whether the host may take more work.
    pub governor: Arc<Governor>,
}

fn failed(uuid: &str, kind: BuildResultKind, detail: String) -> BuildResult {
    let now = chrono::Utc::now().to_rfc3339();
    BuildResult {
        uuid: uuid.to_string(),
        result: kind,
        error_detail: Some(detail),
        data: json!({}),
        log_dir: Default::default(),
        start_time: now.clone(),
        end_time: now,
    }
}

/// Runs builds until `shutdown` turns true.
pub async fn run_worker(ctx: WorkerContext, mut shutdown: watch::Receiver<bool>) {
    // Requests written in this process (`sluice serve`) wake the worker at once; those of a
    // scheduler in another process are found by polling.
    let mut wakeups = ctx.store.executor_wakeups();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Marked seen before looking, so a request committed meanwhile still wakes the wait.
        wakeups.borrow_and_update();
        let worked = match work_once(&ctx).await {
            Ok(worked) => worked,
            Err(e) => {
                tracing::warn!(worker = %ctx.id, error = %e, "executor worker");
                false
            }
        };
        if !worked {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = wakeups.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

fn lease_until(ctx: &WorkerContext) -> i64 {
    now_ms() + ctx.lease.as_millis() as i64
}

/// Claims and runs at most one build; says whether it did.
async fn work_once(ctx: &WorkerContext) -> Result<bool, sluice_store::StoreError> {
    let started = std::time::Instant::now();
    if ctx.governor.refusal().is_some() {
        return Ok(false);
    }
    for candidate in ctx.store.open_requests(50).await? {
        let req: BuildRequest = match serde_json::from_value(candidate.request.clone()) {
            Ok(r) => r,
            Err(e) => {
                if ctx
                    .store
                    .claim(&candidate.uuid, &ctx.id, lease_until(ctx))
                    .await?
                    .is_some()
                {
                    let result = failed(
                        &candidate.uuid,
                        BuildResultKind::Error,
                        format!("unreadable build request: {e}"),
                    );
                    ctx.store
                        .complete(&candidate.uuid, &ctx.id, &to_value(&result))
                        .await?;
                }
                return Ok(true);
            }
        };
        let allocation = match ctx
            .provider
            .request(&req.job.nodeset, &candidate.uuid, ctx.lease)
            .await
        {
            NodeRequest::Wait => continue,
            NodeRequest::Fail(detail) => {
                if ctx
                    .store
                    .claim(&candidate.uuid, &ctx.id, lease_until(ctx))
                    .await?
                    .is_some()
                {
                    let result = failed(&req.uuid, BuildResultKind::NodeFailure, detail);
                    ctx.store
                        .complete(&candidate.uuid, &ctx.id, &to_value(&result))
                        .await?;
                }
                return Ok(true);
            }
            NodeRequest::Fulfilled(a) => a,
        };
        let claimed = match &ctx.worker_info {
            Some(info) => {
                ctx.store
                    .claim_streaming(&candidate.uuid, &ctx.id, lease_until(ctx), info)
                    .await
            }
            None => {
                ctx.store
                    .claim(&candidate.uuid, &ctx.id, lease_until(ctx))
                    .await
            }
        };
        match claimed {
            Ok(Some(_)) => {}
            Ok(None) => {
                ctx.provider.release(&allocation).await;
                continue;
            }
            Err(e) => {
                ctx.provider.release(&allocation).await;
                return Err(e);
            }
        }
        tracing::info!(worker = %ctx.id, build = %req.uuid, job = %req.job.name, ms = started.elapsed().as_secs_f64() * 1000.0, "build claimed");
        let mut cfg = (*ctx.executor).clone();
        cfg.nodes = allocation.nodes.clone();
        let abort = BuildAbort::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let heartbeat = tokio::spawn(heartbeat(
            ctx.clone(),
            req.uuid.clone(),
            abort.clone(),
            stop_rx,
        ));
        let log = cfg
            .work_root
            .join(&req.uuid)
            .join("work/logs/job-output.txt");
        let registered = ctx.registry.register(&req.uuid, log);
        let pause = pause_hook(ctx, &req.uuid, &abort);
        let semaphores = StoreSemaphores {
            store: ctx.store.clone(),
            tenant: req.tenant.clone(),
            holder: req.uuid.clone(),
            limits: req.playbook_semaphores.clone(),
        };
        let hooks = BuildHooks {
            pause: Some(&pause),
            semaphores: Some(&semaphores),
        };
        let result = run_build_hooked(&cfg, &req, &abort, hooks).await;
        drop(registered);
        let _ = stop_tx.send(true);
        let _ = heartbeat.await;
        // A failing build an autohold request matches keeps its nodes (before they go back).
        match crate::autohold::hold_if_requested(&ctx.store, &req, &result, &allocation).await {
            Ok(Some(hold)) => {
                tracing::info!(build = %req.uuid, job = %req.job.name, hold, "nodes held")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(build = %req.uuid, error = %e, "cannot apply autohold"),
        }
        ctx.provider.release(&allocation).await;
        let kept = ctx
            .store
            .complete(&req.uuid, &ctx.id, &to_value(&result))
            .await?;
        tracing::info!(worker = %ctx.id, build = %req.uuid, result = %result.result, kept, "build finished");
        return Ok(true);
    }
    Ok(false)
}

/// A paused build (`zuul.pause`) records the data it returned so far, then waits until the
/// scheduler resumes it (its dependent jobs are done) or the build is aborted.
fn pause_hook(
    ctx: &WorkerContext,
    uuid: &str,
    abort: &BuildAbort,
) -> impl Fn(serde_json::Value) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync {
    let (store, executor, uuid, abort) = (
        ctx.store.clone(),
        ctx.id.clone(),
        uuid.to_string(),
        abort.clone(),
    );
    move |data| {
        let (store, executor, uuid, abort) =
            (store.clone(), executor.clone(), uuid.clone(), abort.clone());
        Box::pin(async move {
            match store.pause(&uuid, &executor, &data).await {
                Ok(true) => {}
                // The lease is gone: the build is being aborted anyway.
                Ok(false) => return,
                Err(e) => {
                    // Nobody could learn of the pause, so nobody would resume it.
                    tracing::warn!(build = %uuid, error = %e, "cannot record the pause; going on");
                    return;
                }
            }
            let mut wakeups = store.executor_wakeups();
            while !abort.is_requested() {
                wakeups.borrow_and_update();
                match store.resume_wanted(&uuid).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(build = %uuid, error = %e, "cannot read the resume flag")
                    }
                }
                // A resume written in this process wakes the wait; another process's is polled.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = wakeups.changed() => {}
                }
            }
        })
    }
}

/// Playbook semaphores taken in the store for one build, like the scheduler takes job
/// semaphores (`semaphore_holders`; the scheduler gives back whatever a build still holds
/// when its result is recorded).
struct StoreSemaphores {
    store: Store,
    tenant: String,
    holder: String,
    limits: std::collections::BTreeMap<String, u64>,
}

impl PlaybookSemaphores for StoreSemaphores {
    fn take<'a>(
        &'a self,
        names: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move {
            let wanted: Vec<(String, u64)> = names
                .iter()
                .map(|n| (n.clone(), self.limits.get(n).copied().unwrap_or(1)))
                .collect();
            let mut tx = self.store.begin().await.map_err(|e| e.to_string())?;
            let took = tx
                .take_semaphores(&self.tenant, &self.holder, &wanted)
                .await
                .map_err(|e| e.to_string())?;
            if took {
                tx.commit().await.map_err(|e| e.to_string())?;
            }
            Ok(took)
        })
    }

    fn release<'a>(
        &'a self,
        names: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let mut tx = self.store.begin().await.map_err(|e| e.to_string())?;
            tx.release_semaphores_named(&self.tenant, &self.holder, names)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        })
    }
}

fn to_value(result: &BuildResult) -> serde_json::Value {
    serde_json::to_value(result).unwrap_or_else(|_| json!({"result": "ERROR"}))
}

/// Renews the lease (and the node locks) every third of its length until stopped; aborts the build when the
/// scheduler cancels it or the lease is lost.
async fn heartbeat(
    ctx: WorkerContext,
    uuid: String,
    abort: BuildAbort,
    mut stop: watch::Receiver<bool>,
) {
    let every = (ctx.lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        ctx.provider.renew(&uuid, ctx.lease).await;
        match ctx.store.renew(&uuid, &ctx.id, lease_until(&ctx)).await {
            Ok(LeaseState::Held) => {}
            Ok(LeaseState::CancelRequested) | Ok(LeaseState::Lost) => {
                if !abort.is_requested() {
                    tracing::info!(build = %uuid, "aborting build (canceled or lease lost)");
                    abort.request();
                }
            }
            Err(e) => tracing::warn!(build = %uuid, error = %e, "cannot renew lease"),
        }
    }
}
