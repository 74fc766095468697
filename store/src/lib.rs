//! Sluice's durable state: trigger events, the git driver's ref snapshot and review changes,
//! queue items, buildsets, builds and build requests with executor leases.
//!
//! # Layout
//!
//! - [`Store`] (`store.rs`): the connection pool, reads, and [`Store::begin`] for writes.
//! - [`Tx`] (`tx.rs`): one transaction; every state change of the scheduler and the executors
//!   is made inside one, so a process can die at any line and the next one resumes from a
//!   consistent state.
//! - `streams.rs`: where running builds' logs are streamed from (the claiming executor's finger
//!   address and zone) and the zones' finger gateways, for `sluice fingergw` and the web.
//! - `schema.rs`: the migrations, applied in order at open.
//! - `metrics.rs`: aggregate counts for the web server's `/metrics` ([`MetricCounts`]).
//! - `holds.rs`: autohold requests and the nodes they hold ([`HoldRequestRow`]).
//! - `reports.rs`: the queue of reports to code-review systems ([`ReportRow`]).
//! - `timers.rs`: when the timer trigger last fired ([`TimerFire`]).
//! - `model.rs`: the row types ([`ItemRow`], [`BuildsetRow`], [`BuildRow`], [`RequestRow`],
//!   [`ChangeRow`], [`EventRow`]).
//!
//! # Why it is built this way
//!
//! The store goes through `sqlx::Any` with portable SQL only (`$N` placeholders, `TEXT` and
//! `BIGINT` columns, no autoincrement, no `RETURNING`, no upsert syntax): SQLite is the embedded
//! default and PostgreSQL (`postgres://` URLs) runs the very same queries; the tests run every
//! case on both. Ids that must grow (events, builds) come from a `counters` table inside the writing
//! transaction. Booleans are `BIGINT` 0/1 and times are milliseconds since the epoch (or Zuul's
//! ISO strings where the record shape wants them).
//!
//! Executors claim build requests with a compare-and-set `UPDATE ... WHERE state = 'requested'`
//! and hold them with a lease they renew; the scheduler turns expired leases into RETRY results.
//! Nothing here knows about pipelines: the scheduler decides, the store remembers.
#![warn(missing_docs)]

mod errors;
mod holds;
mod metrics;
mod model;
mod reports;
mod schema;
mod store;
mod streams;
mod timers;
mod tx;

pub use errors::StoreError;
pub use holds::{HeldBuild, HoldRequest, HoldRequestRow};
pub use metrics::{FinishedBuild, JobResultKey, MetricCounts};
pub use model::*;
pub use reports::{NewReport, ReportRow};
pub use store::{now_ms, Store};
pub use streams::{BuildStage, GatewayRow, WorkerInfo};
pub use timers::TimerFire;
pub use tx::Tx;
