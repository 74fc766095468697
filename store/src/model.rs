//! Row types: what the store keeps, one struct per table, plus the serde documents stored in
//! JSON columns.

use serde::{Deserialize, Serialize};

/// What a queue item or buildset is about: a change (a review branch at one patchset), or a
/// ref (a branch or tag at one commit: periodic and post items), which has `number` 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRef {
    /// Connection name.
    pub connection: String,
    /// Canonical project name (`host/org/repo`).
    pub project: String,
    /// Change number; 0 for a ref.
    pub number: i64,
    /// Patchset: the tested commit's sha (for a ref, the commit the ref pointed at).
    pub patchset: String,
    /// The review ref (`refs/heads/review/<branch>/<topic>`), or the ref itself
    /// (`refs/heads/<branch>`, `refs/tags/<tag>`).
    pub refname: String,
    /// Target branch (for a ref: its branch; empty for a tag).
    pub branch: String,
    /// Topic.
    pub topic: String,
    /// Commit message(s) of the change.
    pub message: String,
    /// Where a person can see the change.
    pub url: String,
    /// A ref's previous commit (`ref-updated` events), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldrev: Option<String>,
    /// A ref's new commit as the event reported it (`ref-updated`; timer events with
    /// `dereference`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newrev: Option<String>,
}

impl ChangeRef {
    /// True for a change, false for a ref.
    pub fn is_change(&self) -> bool {
        self.number > 0
    }

    /// Zuul's `<number>,<patchset>` id.
    pub fn id(&self) -> String {
        format!("{},{}", self.number, self.patchset)
    }
}

/// A trigger event waiting for (or done with) the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Sequence number; events are processed in this order.
    pub id: i64,
    /// Connection name.
    pub connection: String,
    /// `patchset-created`, `change-approved`, `ref-updated`, ...
    pub kind: String,
    /// Driver-specific JSON payload.
    pub payload: serde_json::Value,
    /// Milliseconds since the epoch.
    pub created: i64,
}

/// A review change known to the git driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    /// Connection name.
    pub connection: String,
    /// Canonical project name.
    pub project: String,
    /// Number, unique per connection and project.
    pub number: i64,
    /// Review ref.
    pub refname: String,
    /// Target branch.
    pub branch: String,
    /// Topic.
    pub topic: String,
    /// Current patchset (sha).
    pub patchset: String,
    /// Commit message(s).
    pub message: String,
    /// `open`, `merged` or `abandoned`.
    pub status: String,
}

/// A queue item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    /// Item uuid.
    pub uuid: String,
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Change queue name (for independent pipelines: the item's own uuid).
    pub queue: String,
    /// Position: items of a queue are ordered by it.
    pub seq: i64,
    /// `active` or `done`.
    pub state: String,
    /// Live items are tested and reported.
    pub live: bool,
    /// The change.
    pub change: ChangeRef,
    /// Needed changes merged underneath (independent pipelines), in merge order.
    pub deps: Vec<ChangeRef>,
    /// Event that enqueued it.
    pub event_id: String,
    /// Milliseconds since the epoch.
    pub enqueue_time: i64,
    /// The current buildset.
    pub buildset_uuid: Option<String>,
    /// Result once reported.
    pub result: Option<String>,
}

/// A buildset: one attempt at testing an item in one speculative context.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildsetRow {
    /// Buildset uuid.
    pub uuid: String,
    /// Integer id (Zuul's `_id`).
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// The item.
    pub item_uuid: String,
    /// Uuids of the live items ahead whose changes are merged underneath.
    pub context: Vec<String>,
    /// Every change merged for this buildset, in order, the item's own change last.
    pub refs: Vec<ChangeRef>,
    /// `new` (not prepared), `running` (builds requested), `done`.
    pub state: String,
    /// Zuul buildset result once known.
    pub result: Option<String>,
    /// Report text.
    pub message: Option<String>,
    /// Event id.
    pub event_id: String,
    /// Milliseconds since the epoch.
    pub event_timestamp: i64,
    /// Milliseconds since the epoch.
    pub created: i64,
    /// ISO time.
    pub first_build_start_time: Option<String>,
    /// ISO time.
    pub last_build_end_time: Option<String>,
}

/// A build record.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRow {
    /// Build uuid (also its request's uuid).
    pub uuid: String,
    /// Integer id (Zuul's `_id`).
    pub id: i64,
    /// Buildset.
    pub buildset_uuid: String,
    /// Item.
    pub item_uuid: String,
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Job name.
    pub job_name: String,
    /// Voting.
    pub voting: bool,
    /// 1-based try.
    pub attempt: i64,
    /// Nodeset name (empty for anonymous ones).
    pub nodeset: String,
    /// Result once known.
    pub result: Option<String>,
    /// False for a try that is retried.
    pub final_: bool,
    /// Why, for unusual results.
    pub error_detail: Option<String>,
    /// Log location.
    pub log_url: Option<String>,
    /// ISO time.
    pub start_time: Option<String>,
    /// ISO time.
    pub end_time: Option<String>,
    /// `zuul_return` data.
    pub data: Option<serde_json::Value>,
    /// Jobs of the same buildset this build waits for.
    pub dependencies: Vec<BuildDependency>,
    /// The request document while the build waits for its dependencies (no request yet).
    pub pending_request: Option<serde_json::Value>,
    /// Paused after its run phase (`zuul.pause`): its children may start; `data` holds what
    /// it returned at the pause.
    pub paused: bool,
    /// Its nodes were held by an autohold request.
    pub held: bool,
}

/// A job dependency of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildDependency {
    /// The job depended on.
    pub name: String,
    /// Soft: ignored when the job is not in the buildset.
    pub soft: bool,
}

/// A build request as an executor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    /// The build's uuid.
    pub uuid: String,
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// 100 (high), 200 (normal), 300 (low): lower is served first.
    pub precedence: i64,
    /// `requested`, `running`, `completed` or `canceled`.
    pub state: String,
    /// The executor holding it.
    pub executor: Option<String>,
    /// Lease end, milliseconds since the epoch.
    pub lease_expires: Option<i64>,
    /// The scheduler asked for the build to stop.
    pub cancel: bool,
    /// The executor's `BuildRequest` document.
    pub request: serde_json::Value,
    /// The executor's `BuildResult` document once completed.
    pub result: Option<serde_json::Value>,
}

/// A new build and its request, written together.
#[derive(Debug, Clone)]
pub struct NewBuild {
    /// Build uuid.
    pub uuid: String,
    /// Buildset.
    pub buildset_uuid: String,
    /// Item.
    pub item_uuid: String,
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// Job name.
    pub job_name: String,
    /// Voting.
    pub voting: bool,
    /// 1-based try.
    pub attempt: i64,
    /// Nodeset name.
    pub nodeset: String,
    /// Precedence (100/200/300).
    pub precedence: i64,
    /// The `BuildRequest` document.
    pub request: serde_json::Value,
    /// Jobs this build waits for.
    pub dependencies: Vec<BuildDependency>,
    /// Request at once (false: the scheduler releases it when its dependencies succeeded).
    pub ready: bool,
}

/// What an executor got when it claimed a request.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The build's uuid.
    pub uuid: String,
    /// The `BuildRequest` document.
    pub request: serde_json::Value,
}

/// A build that paused at its executor and is not marked paused yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PausedRequest {
    /// The build's uuid.
    pub uuid: String,
    /// What the build returned (`zuul_return`) at the pause.
    pub data: serde_json::Value,
}

/// What a lease renewal learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Still ours; keep going.
    Held,
    /// Still ours, but the scheduler wants the build stopped.
    CancelRequested,
    /// Not ours any more (expired and handed back): stop and drop the result.
    Lost,
}

/// A build of an active item's current buildset, with its request's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveBuild {
    /// The build record.
    pub build: BuildRow,
    /// `requested`, `running`, `completed` or `canceled`; `None` while it waits for its
    /// dependencies.
    pub request_state: Option<String>,
    /// When an executor claimed it, milliseconds since the epoch.
    pub claimed: Option<i64>,
}

/// Filters of a build history query: Zuul's `/builds` parameters that are build columns.
/// Empty lists and `None` do not filter.
#[derive(Debug, Clone, Default)]
pub struct BuildQuery {
    /// Tenant.
    pub tenant: String,
    /// Any of these pipelines.
    pub pipelines: Vec<String>,
    /// Any of these job names.
    pub job_names: Vec<String>,
    /// Any of these uuids.
    pub uuids: Vec<String>,
    /// Any of these results.
    pub results: Vec<String>,
    /// None of these results (unfinished builds are kept).
    pub exclude_results: Vec<String>,
    /// Any of these nodesets.
    pub nodesets: Vec<String>,
    /// Voting or not.
    pub voting: Option<bool>,
    /// Final tries or retried ones.
    pub final_: Option<bool>,
    /// Held (autohold) or not.
    pub held: Option<bool>,
    /// Finished (a result) or not.
    pub complete: Option<bool>,
    /// Smallest `_id`.
    pub idx_min: Option<i64>,
    /// Largest `_id`.
    pub idx_max: Option<i64>,
    /// At most this many (`None`: all).
    pub limit: Option<i64>,
    /// Skip this many first (with `limit`).
    pub skip: i64,
}

/// Filters of a buildset history query (as [`BuildQuery`]).
#[derive(Debug, Clone, Default)]
pub struct BuildsetQuery {
    /// Tenant.
    pub tenant: String,
    /// Any of these pipelines.
    pub pipelines: Vec<String>,
    /// Any of these uuids.
    pub uuids: Vec<String>,
    /// Any of these results.
    pub results: Vec<String>,
    /// Finished (a result) or not.
    pub complete: Option<bool>,
    /// Smallest `_id`.
    pub idx_min: Option<i64>,
    /// Largest `_id`.
    pub idx_max: Option<i64>,
    /// At most this many (`None`: all).
    pub limit: Option<i64>,
    /// Skip this many first (with `limit`).
    pub skip: i64,
}

/// A build's outcome as [`crate::Tx::record_build_result`] records it.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuildOutcome<'a> {
    /// Zuul's result word (`SUCCESS`, `FAILURE`, `RETRY`, `SKIPPED`, ...).
    pub result: &'a str,
    /// Whether this is the build's last try (a retried try is not).
    pub final_: bool,
    /// Why it ended so, for people (Zuul's `error_detail`).
    pub error_detail: Option<&'a str>,
    /// Where its logs are.
    pub log_url: Option<&'a str>,
    /// When it started (RFC 3339).
    pub start_time: Option<&'a str>,
    /// When it ended (RFC 3339).
    pub end_time: Option<&'a str>,
    /// What the build returned (`zuul_return`).
    pub data: Option<&'a serde_json::Value>,
}

impl<'a> BuildOutcome<'a> {
    /// An outcome decided without the build running (skipped, canceled, unreadable): no
    /// times, log or data.
    pub fn without_run(result: &'a str, final_: bool, error_detail: Option<&'a str>) -> Self {
        BuildOutcome {
            result,
            final_,
            error_detail,
            ..BuildOutcome::default()
        }
    }
}
