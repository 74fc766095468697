//! The scheduler: tenants, layouts, pipelines and their managers, the git driver with the
//! local review flow, node providers and in-process executor workers, all over the store.
//!
//! # Layout
//!
//! - `config.rs`: [`ServeConfig`], the `sluice serve` file.
//! - `tenant.rs`: Zuul's `main.yaml` ([`TenantConfig`], include/exclude).
//! - `layout.rs`: [`TenantLayout`], layouts of branch tips and speculative layouts, loaded with
//!   the one configuration loader (`sluice-config`).
//! - `pipeline.rs`: [`Pipeline`] (manager, triggers, reporters) from `pipeline` items.
//! - `pipeline_state.rs`: consecutive failures and the disabled state of a pipeline
//!   (`disable-after-consecutive-failures`), in memory per layout.
//! - `git.rs`: [`GitDriver`]: ref polling into events, review changes, `Depends-On`, merging
//!   and report notes; the repository watcher that wakes the scheduler on a push.
//! - `timer.rs`: the timer trigger's cron-style time specs.
//! - `github.rs`: GitHub connections: mirrors, pull requests as changes, GitHub trigger
//!   filters, `require`/`reject`, `canMerge`, queued reports and merges through the API.
//! - `scheduler.rs`: [`Scheduler`], one pass over the store: poll, layouts, finished builds,
//!   leases, events.
//! - `manager.rs`: independent and dependent pipeline processing (resets, speculative merges,
//!   job freezing, reporting).
//! - `config_updates.rs`: `match-on-config-updates`: which jobs a change updates (their file
//!   matchers are then ignored).
//! - `job_graph.rs`: a buildset's job dependencies, `zuul.child_jobs`, paused builds.
//! - `nodes.rs`: the [`NodeProvider`] trait and the [`StaticProvider`] (node slots locked in
//!   the store).
//! - `governor.rs`: when an executor stops taking work (load, memory, disk).
//! - `worker.rs`: [`run_worker`], an executor loop claiming build requests.
//! - `serve.rs`: [`serve`], everything in one process.
//! - `quickstart.rs`: the files and repositories `sluice quickstart` writes.
//!
//! # Why it is built this way
//!
//! The store is the only state that matters: every pass re-reads the queue from it and every
//! decision is one transaction, so `sluice serve` can be killed at any line and resumes. The
//! executor side shares nothing with the scheduler but the store, so it can move to its own
//! process (`sluice executor`) without changing either.
#![warn(missing_docs)]

pub mod autohold;
pub mod config;
mod config_updates;
pub mod errors;
pub mod git;
pub mod github;
pub mod governor;
mod job_graph;
pub mod layout;
mod manager;
pub mod nodes;
pub mod pipeline;
mod pipeline_state;
pub mod quickstart;
pub mod scheduler;
pub mod serve;
pub mod tenant;
pub mod timer;
pub mod worker;

pub use config::{FingerTlsSection, ServeConfig, StatsdSection};
pub use errors::SchedulerError;
pub use git::GitDriver;
pub use layout::{refresh_layouts, SharedLayouts, TenantLayout};
pub use nodes::{NodeProvider, StaticProvider};
pub use pipeline::Pipeline;
pub use scheduler::{
    approve_change, manage_change, promote_items, AdminEvent, Scheduler, MANAGEMENT_DEQUEUE,
    MANAGEMENT_ENQUEUE, MANAGEMENT_PROMOTE,
};
pub use serve::serve;
pub use tenant::TenantConfig;
pub use worker::run_worker;
