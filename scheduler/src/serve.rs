//! The processes: [`serve`] runs the scheduler loop and executor workers in one process;
//! [`run_scheduler`] and [`run_executor`] run one side each (`sluice scheduler`,
//! `sluice executor`) against the same store. Each runs until its shutdown future resolves.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_executor::build::ExecutorConfig;
use sluice_executor::nodes::load_nodes;
use sluice_executor::registry::BuildRegistry;
use sluice_store::Store;
use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::errors::SchedulerError;
use crate::governor::Governor;
use crate::layout::SharedLayouts;
use crate::nodes::StaticProvider;
use crate::scheduler::Scheduler;
use crate::worker::{run_worker, WorkerContext};

/// What the binary supplies besides the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Executor settings not in the config file (plugin sources, host name, ...); its
    /// `work_root`, `ssh_key`, `nodes` and `state_dir` are filled from the config file.
    pub executor: ExecutorConfig,
    /// Default Ansible state dir when the config file names none.
    pub ansible_state_dir: PathBuf,
    /// Where workers register running builds (share it with a finger server to stream them).
    pub registry: BuildRegistry,
    /// The finger server streaming them, recorded with each claim for gateways and the web.
    pub finger: Option<sluice_store::WorkerInfo>,
    /// Where the scheduler publishes its tenant layouts (share it with the web server).
    pub layouts: SharedLayouts,
}

/// Opens (creating and migrating) the configured store.
pub async fn open_store(cfg: &ServeConfig) -> Result<Store, SchedulerError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| SchedulerError::Read {
        path: cfg.state_dir.clone(),
        source,
    })?;
    Ok(Store::open(&cfg.database_url()).await?)
}

/// Runs the scheduler and executor workers until `shutdown` resolves.
pub async fn serve(
    cfg: ServeConfig,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SchedulerError> {
    let store = open_store(&cfg).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let executor = start_workers(&cfg, &opts, &store, stop_rx)?;
    let outcome = run_scheduler_loop(cfg, store, opts.layouts.clone(), shutdown).await;
    stop_workers(stop_tx, executor).await;
    outcome
}

/// Runs only the scheduler (no builds) until `shutdown` resolves, publishing its layouts on
/// `layouts`.
pub async fn run_scheduler(
    cfg: ServeConfig,
    layouts: SharedLayouts,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SchedulerError> {
    let store = open_store(&cfg).await?;
    run_scheduler_loop(cfg, store, layouts, shutdown).await
}

/// Runs only executor workers until `shutdown` resolves.
pub async fn run_executor(
    cfg: ServeConfig,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SchedulerError> {
    let store = open_store(&cfg).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers = start_workers(&cfg, &opts, &store, stop_rx)?;
    tracing::info!("sluice executor running");
    shutdown.await;
    stop_workers(stop_tx, workers).await;
    Ok(())
}

fn start_workers(
    cfg: &ServeConfig,
    opts: &ServeOptions,
    store: &Store,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, SchedulerError> {
    let nodes = match &cfg.executor.nodes {
        Some(path) => load_nodes(path).map_err(|e| SchedulerError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?,
        None => Vec::new(),
    };
    let mut exec = opts.executor.clone();
    exec.state_dir = cfg
        .executor
        .ansible_state_dir
        .clone()
        .unwrap_or(opts.ansible_state_dir.clone());
    exec.work_root = cfg.state_dir.join("builds");
    exec.ssh_key = cfg.executor.ssh_key.clone().or(exec.ssh_key);
    exec.nodes = Vec::new();
    exec.keep_jobdir = cfg.executor.keep_jobdir;
    exec.console_port = cfg.executor.console_port.or(exec.console_port);
    if cfg.executor.default_ansible_version.is_some() {
        exec.default_ansible_version = cfg.executor.default_ansible_version.clone();
    }
    let provider = Arc::new(StaticProvider::new(nodes, store.clone()));
    let governor = Arc::new(Governor::new(
        cfg.executor.governor.clone(),
        cfg.state_dir.clone(),
    ));
    let process_id = uuid::Uuid::new_v4().simple().to_string();
    let executor = Arc::new(exec);
    let mut workers = Vec::new();
    for n in 0..cfg.executor.workers.max(1) {
        let ctx = WorkerContext {
            store: store.clone(),
            executor: executor.clone(),
            provider: provider.clone(),
            governor: governor.clone(),
            id: format!("{}:{process_id}:{n}", executor.hostname),
            lease: Duration::from_secs(cfg.executor.lease_seconds.max(1)),
            registry: opts.registry.clone(),
            worker_info: opts.finger.clone(),
        };
        workers.push(tokio::spawn(run_worker(ctx, stop.clone())));
    }
    Ok(workers)
}

async fn stop_workers(stop: watch::Sender<bool>, workers: Vec<tokio::task::JoinHandle<()>>) {
    tracing::info!("stopping executor workers");
    let _ = stop.send(true);
    // Running builds are not waited for long (5 s for all of them, not each): those still
    // running are stopped with the process, their leases expire and they are retried.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for w in workers {
        let _ = tokio::time::timeout_at(deadline, w).await;
    }
}

async fn run_scheduler_loop(
    cfg: ServeConfig,
    store: Store,
    layouts: SharedLayouts,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SchedulerError> {
    let tick = Duration::from_secs_f64(cfg.tick_seconds.clamp(0.05, 10.0));
    // Events and finished builds written in this process (workers, the web's approvals in
    // `sluice serve`) wake the loop at once; other processes' writes wait for the tick.
    let mut written = store.scheduler_wakeups();
    let mut scheduler = Scheduler::new(cfg, store).await?;
    let wake = scheduler.wake();
    let stop = scheduler.stop_flag();
    scheduler.share_layouts(layouts);
    tracing::info!("sluice scheduler running");
    tokio::pin!(shutdown);
    let mut stopping = false;
    loop {
        // Seen before the pass reads the store, so a write committed during it wakes the next.
        written.borrow_and_update();
        // A shutdown during a pass stops it at the next event, build or item boundary (at
        // most one merge away): a long pass over a long queue does not hold the exit.
        let pass = scheduler.pass();
        tokio::pin!(pass);
        let outcome = tokio::select! {
            outcome = &mut pass => outcome,
            _ = &mut shutdown, if !stopping => {
                stopping = true;
                stop.store(true, Ordering::Relaxed);
                tracing::info!("shutting down: the scheduler stops after the item at hand");
                pass.await
            }
        };
        let busy = match outcome {
            Ok(busy) => busy,
            Err(e) => {
                tracing::error!(error = %e, "scheduler pass failed");
                false
            }
        };
        if stopping {
            break;
        }
        let pause = if busy {
            Duration::from_millis(20)
        } else {
            tick
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(pause) => {}
            // A repository changed: scan it now rather than at the next tick.
            _ = wake.notified() => {}
            _ = written.changed() => {}
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}
