//! `/api/tenant/{t}/status` and `status/change/{change}`: every pipeline's change queues with
//! their items, each item's jobs and their builds' progress, in Zuul's status.json shape.
//!
//! Everything comes from the store (active items, the builds of their current buildsets and
//! their requests) and the tenant layout (pipelines); nothing is asked of the scheduler. The
//! document is rendered at most once a second per tenant (`Cache-Control: max-age=1`, as Zuul),
//! so many watchers cost one rendering.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_scheduler::pipeline::Manager;
use sluice_store::{now_ms, ItemRow, LiveBuild};
use utoipa::ToSchema;

use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::records::{duration, short_name};
use crate::state::WebState;

/// How long a rendered status document is served.
const STATUS_MAX_AGE: Duration = Duration::from_secs(1);
/// How many recent successful builds a job's estimated time averages.
const ESTIMATE_SAMPLES: i64 = 10;

/// An event queue's length.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueLength {
    /// Events waiting.
    pub length: i64,
}

/// A trigger of a pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerDriver {
    /// The connection's driver.
    pub driver: String,
}

/// A job of a status item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// Jobs it depends on.
    pub dependencies: Vec<String>,
    /// Milliseconds since the build started.
    pub elapsed_time: Option<i64>,
    /// Milliseconds still expected.
    pub remaining_time: Option<i64>,
    /// The live log, relative to the dashboard (`stream/<uuid>?logfile=console.log`).
    pub url: Option<String>,
    /// The build page, relative to the dashboard.
    pub report_url: Option<String>,
    /// Result once finished.
    pub result: Option<String>,
    /// Voting.
    pub voting: bool,
    /// Build uuid.
    pub uuid: Option<String>,
    /// When it was requested (epoch seconds).
    pub execute_time: Option<f64>,
    /// When it started (epoch seconds).
    pub start_time: Option<f64>,
    /// When it ended (epoch seconds).
    pub end_time: Option<f64>,
    /// Seconds expected, from the job's recent successful builds.
    pub estimated_time: Option<f64>,
    /// Pipeline.
    pub pipeline: String,
    /// Canceled.
    pub canceled: bool,
    /// Paused.
    pub paused: bool,
    /// Failed in pre-run.
    pub pre_fail: bool,
    /// A retried try.
    pub retry: bool,
    /// Tries so far.
    pub tries: i64,
    /// Waiting for an executor.
    pub queued: bool,
    /// What it waits for, if anything.
    pub waiting_status: Option<String>,
}

/// A ref of a status item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusRef {
    /// `<change>,<patchset>`, or a ref's new revision.
    pub id: String,
    /// Where a person can see the change.
    pub url: String,
    /// The review ref.
    #[serde(rename = "ref")]
    pub ref_: String,
    /// Short project name.
    pub project: String,
    /// Canonical project name.
    pub project_canonical: String,
    /// Change owner (unknown for the git driver).
    pub owner: Option<String>,
    /// Change number (`null` for a ref).
    pub change: Option<i64>,
    /// Patchset (`null` for a ref).
    pub patchset: Option<String>,
    /// Old revision (refs).
    pub oldrev: Option<String>,
    /// New revision (refs).
    pub newrev: Option<String>,
    /// Target branch.
    pub branch: String,
}

/// A queue item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemStatus {
    /// Item uuid.
    pub id: String,
    /// Being tested.
    pub active: bool,
    /// Tested and reported (not only there for the items behind).
    pub live: bool,
    /// What it tests.
    pub refs: Vec<StatusRef>,
    /// The item ahead in its queue.
    pub item_ahead: Option<String>,
    /// The items behind it.
    pub items_behind: Vec<String>,
    /// Why it is failing, if it is.
    pub failing_reasons: Vec<String>,
    /// The speculative ref name.
    pub zuul_ref: Option<String>,
    /// Milliseconds since the epoch.
    pub enqueue_time: i64,
    /// Milliseconds still expected (when every running job has an estimate).
    pub remaining_time: Option<i64>,
    /// Its jobs (latest try of each).
    pub jobs: Vec<JobStatus>,
}

/// A change queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeQueueStatus {
    /// Queue name.
    pub name: String,
    /// Window (dependent pipelines; 0 is unlimited).
    pub window: i64,
    /// Branch, for per-branch queues.
    pub branch: Option<String>,
    /// Chains of items linked by `item_ahead`.
    pub heads: Vec<Vec<ItemStatus>>,
}

/// A pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineStatus {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// `normal` or `error`.
    pub state: String,
    /// `independent`, `dependent`, `serial` or `supercedent`.
    pub manager: String,
    /// Trigger drivers.
    pub triggers: Vec<TriggerDriver>,
    /// Its change queues.
    pub change_queues: Vec<ChangeQueueStatus>,
    /// Trigger events waiting (tenant-wide in Sluice).
    pub trigger_events: i64,
    /// Result events waiting.
    pub result_events: i64,
    /// Management events waiting.
    pub management_events: i64,
}

/// The status document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// Server version.
    pub zuul_version: String,
    /// Trigger events waiting.
    pub trigger_event_queue: QueueLength,
    /// Management events waiting.
    pub management_event_queue: QueueLength,
    /// Per-connection events waiting.
    pub connection_event_queues: HashMap<String, QueueLength>,
    /// Tenant state.
    pub state: String,
    /// Milliseconds since the epoch.
    pub last_reconfigured: Option<i64>,
    /// Pipelines.
    pub pipelines: Vec<PipelineStatus>,
}

fn manager_name(m: Manager) -> &'static str {
    match m {
        Manager::Independent => "independent",
        Manager::Dependent => "dependent",
        Manager::Serial => "serial",
        Manager::Supercedent => "supercedent",
    }
}

fn epoch_s(iso: Option<&str>) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(iso?)
        .ok()
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

fn status_ref(item: &ItemRow) -> StatusRef {
    let c = &item.change;
    StatusRef {
        id: if c.is_change() {
            c.id()
        } else {
            c.newrev.clone().unwrap_or_else(|| c.patchset.clone())
        },
        url: c.url.clone(),
        ref_: c.refname.clone(),
        project: short_name(&c.project).to_string(),
        project_canonical: c.project.clone(),
        owner: None,
        change: c.is_change().then_some(c.number),
        patchset: c.is_change().then(|| c.patchset.clone()),
        oldrev: c.oldrev.clone(),
        newrev: c.newrev.clone(),
        branch: c.branch.clone(),
    }
}

/// Averages of recent successful durations, per job, read once per rendering.
struct Estimates<'a> {
    state: &'a WebState,
    tenant: &'a str,
    known: HashMap<String, Option<f64>>,
}

impl Estimates<'_> {
    async fn of(&mut self, job: &str) -> ApiResult<Option<f64>> {
        if let Some(v) = self.known.get(job) {
            return Ok(*v);
        }
        let times = self
            .state
            .store()
            .recent_success_times(self.tenant, job, ESTIMATE_SAMPLES)
            .await?;
        let durations: Vec<f64> = times
            .iter()
            .filter_map(|(s, e)| duration(Some(s), Some(e)))
            .collect();
        let avg =
            (!durations.is_empty()).then(|| durations.iter().sum::<f64>() / durations.len() as f64);
        self.known.insert(job.to_string(), avg);
        Ok(avg)
    }
}

async fn job_status(
    live: &LiveBuild,
    created: Option<i64>,
    estimates: &mut Estimates<'_>,
    now: i64,
) -> ApiResult<JobStatus> {
    let b = &live.build;
    let running = live.request_state.as_deref() == Some("running") && b.result.is_none();
    let queued = live.request_state.as_deref() == Some("requested") && b.result.is_none();
    let waiting = live.request_state.is_none() && b.result.is_none();
    let start_ms = b
        .start_time
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_millis())
        .or(live.claimed.filter(|_| running || b.result.is_some()));
    let estimated = if b.result.is_none() {
        estimates.of(&b.job_name).await?
    } else {
        None
    };
    let elapsed = if running {
        start_ms.map(|s| (now - s).max(0))
    } else {
        duration(b.start_time.as_deref(), b.end_time.as_deref()).map(|d| (d * 1000.0) as i64)
    };
    let remaining = match (running, estimated, elapsed) {
        (true, Some(est), Some(el)) => Some(((est * 1000.0) as i64 - el).max(0)),
        (false, _, _) if b.result.is_some() => Some(0),
        (false, Some(est), _) => Some((est * 1000.0) as i64),
        _ => None,
    };
    let started = running || b.result.is_some();
    Ok(JobStatus {
        name: b.job_name.clone(),
        dependencies: b.dependencies.iter().map(|d| d.name.clone()).collect(),
        elapsed_time: elapsed,
        remaining_time: remaining,
        url: started.then(|| format!("stream/{}?logfile=console.log", b.uuid)),
        report_url: b.result.is_some().then(|| format!("build/{}", b.uuid)),
        result: b.result.clone(),
        voting: b.voting,
        uuid: Some(b.uuid.clone()),
        execute_time: created.map(|c| c as f64 / 1000.0),
        start_time: start_ms.map(|s| s as f64 / 1000.0),
        end_time: epoch_s(b.end_time.as_deref()),
        estimated_time: estimated,
        pipeline: b.pipeline.clone(),
        canceled: b.result.as_deref() == Some("CANCELED"),
        paused: false,
        pre_fail: false,
        retry: b.result.as_deref() == Some("RETRY"),
        tries: b.attempt,
        queued,
        waiting_status: if waiting {
            Some("dependencies".into())
        } else if queued {
            Some("executor".into())
        } else {
            None
        },
    })
}

/// Renders a tenant's status document.
pub async fn render(state: &WebState, tenant: &str) -> ApiResult<Status> {
    let t = state.tenant(tenant)?;
    let store = state.store();
    let items = store.active_items_of_tenant(tenant).await?;
    let builds = store.live_builds(tenant).await?;
    let pending = store.pending_event_count().await?;
    let now = now_ms();
    let mut estimates = Estimates {
        state,
        tenant,
        known: HashMap::new(),
    };
    // Latest try of each job, per buildset, in build order.
    let mut by_buildset: HashMap<&str, Vec<&LiveBuild>> = HashMap::new();
    for lb in &builds {
        let list = by_buildset
            .entry(lb.build.buildset_uuid.as_str())
            .or_default();
        match list
            .iter_mut()
            .find(|other| other.build.job_name == lb.build.job_name)
        {
            Some(slot) => {
                if lb.build.id > slot.build.id {
                    *slot = lb;
                }
            }
            None => list.push(lb),
        }
    }
    let buildset_created: HashMap<String, i64> = if items.is_empty() {
        HashMap::new()
    } else {
        let uuids: Vec<String> = items
            .iter()
            .filter_map(|i| i.buildset_uuid.clone())
            .collect();
        store
            .buildsets_by_uuid(&uuids)
            .await?
            .into_iter()
            .map(|bs| (bs.uuid, bs.created))
            .collect()
    };
    let mut pipelines = Vec::new();
    for p in &t.pipelines {
        let description = t
            .layout
            .pipelines()
            .find(|d| d.name == p.name)
            .and_then(|d| d.raw.get("description"))
            .and_then(|d| d.as_str())
            .map(str::to_string);
        let mut drivers: Vec<String> = p
            .triggers
            .iter()
            .map(|f| state.driver(&f.connection).to_string())
            .collect();
        drivers.dedup();
        let mut queues: Vec<(String, Vec<&ItemRow>)> = Vec::new();
        for item in items.iter().filter(|i| i.pipeline == p.name) {
            match queues.iter_mut().find(|(q, _)| *q == item.queue) {
                Some((_, list)) => list.push(item),
                None => queues.push((item.queue.clone(), vec![item])),
            }
        }
        let mut change_queues = Vec::new();
        for (queue, list) in queues {
            let mut chain = Vec::new();
            for (n, item) in list.iter().enumerate() {
                let mut jobs = Vec::new();
                if let Some(bs) = &item.buildset_uuid {
                    for lb in by_buildset.get(bs.as_str()).into_iter().flatten() {
                        let created = buildset_created.get(bs).copied();
                        jobs.push(job_status(lb, created, &mut estimates, now).await?);
                    }
                }
                let failing = jobs.iter().any(|j| {
                    j.voting
                        && j.result
                            .as_deref()
                            .is_some_and(|r| !matches!(r, "SUCCESS" | "SKIPPED" | "RETRY"))
                });
                let remaining = jobs
                    .iter()
                    .map(|j| j.remaining_time)
                    .try_fold(0i64, |acc, r| r.map(|r| acc.max(r)));
                chain.push(ItemStatus {
                    id: item.uuid.clone(),
                    active: true,
                    live: item.live,
                    refs: vec![status_ref(item)],
                    item_ahead: (n > 0).then(|| list[n - 1].uuid.clone()),
                    items_behind: list
                        .get(n + 1)
                        .map(|i| i.uuid.clone())
                        .into_iter()
                        .collect(),
                    failing_reasons: if failing {
                        vec!["at least one job failed".into()]
                    } else {
                        Vec::new()
                    },
                    zuul_ref: item.buildset_uuid.as_ref().map(|b| format!("Z{b}")),
                    enqueue_time: item.enqueue_time,
                    remaining_time: remaining,
                    jobs,
                });
            }
            let window = if p.manager == Manager::Dependent {
                store
                    .window(tenant, &p.name, &queue)
                    .await?
                    .unwrap_or(p.window.size)
            } else {
                0
            };
            // Independent items are queued alone under their uuid: name them by project.
            let name = match (p.manager, list.first()) {
                (Manager::Independent, Some(first)) => first.change.project.clone(),
                (Manager::Supercedent, Some(first)) => first.change.project.clone(),
                _ => queue.clone(),
            };
            let branch = match (p.manager, list.first()) {
                (Manager::Supercedent, Some(first)) => Some(first.change.branch.clone()),
                _ => None,
            };
            change_queues.push(ChangeQueueStatus {
                name,
                window,
                branch,
                heads: vec![chain],
            });
        }
        pipelines.push(PipelineStatus {
            name: p.name.clone(),
            description,
            state: "normal".into(),
            manager: manager_name(p.manager).into(),
            triggers: drivers
                .into_iter()
                .map(|driver| TriggerDriver { driver })
                .collect(),
            change_queues,
            trigger_events: 0,
            result_events: 0,
            management_events: 0,
        });
    }
    let connection_event_queues = state
        .config()
        .connections
        .iter()
        .map(|(name, _)| (name.clone(), QueueLength { length: 0 }))
        .collect();
    Ok(Status {
        zuul_version: format!("sluice {}", env!("CARGO_PKG_VERSION")),
        trigger_event_queue: QueueLength { length: pending },
        management_event_queue: QueueLength { length: 0 },
        connection_event_queues,
        state: "running".into(),
        last_reconfigured: None,
        pipelines,
    })
}

fn json_response(body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=1"),
        ],
        body,
    )
        .into_response()
}

/// A tenant's pipelines, queues, items and jobs.
#[utoipa::path(get, path = "/api/tenant/{tenant}/status", tag = "status",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Status), (status = 404, body = ErrorBody)))]
pub async fn get_status(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    if let Some(body) = state.cached_status(&tenant, STATUS_MAX_AGE) {
        return Ok(json_response(body));
    }
    // One render per expiry: the requests that missed the cache together wait for the first
    // one's document instead of each reading the store (bench/web: 100 clients).
    let name = state.tenant(&tenant)?.tenant.name.clone();
    let _rendering = state.status_render_lock(&name).await;
    if let Some(body) = state.cached_status(&tenant, STATUS_MAX_AGE) {
        return Ok(json_response(body));
    }
    let status = render(&state, &tenant).await?;
    let body =
        Bytes::from(serde_json::to_vec(&status).map_err(|e| ApiError::Internal(e.to_string()))?);
    state.cache_status(&tenant, body.clone());
    Ok(json_response(body))
}

/// The status items of one change: `<number>,<patchset>` or just the number.
#[utoipa::path(get, path = "/api/tenant/{tenant}/status/change/{change}", tag = "status",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("change" = String, Path, description = "`<number>,<patchset>` or `<number>`")),
    responses((status = 200, body = Vec<ItemStatus>), (status = 404, body = ErrorBody)))]
pub async fn get_status_change(
    State(state): State<WebState>,
    Path((tenant, change)): Path<(String, String)>,
) -> ApiResult<axum::Json<Vec<ItemStatus>>> {
    let status = render(&state, &tenant).await?;
    let matches =
        |r: &StatusRef| r.id == change || r.change.is_some_and(|n| n.to_string() == change);
    let items = status
        .pipelines
        .into_iter()
        .flat_map(|p| p.change_queues)
        .flat_map(|q| q.heads)
        .flatten()
        .filter(|i| i.refs.iter().any(matches))
        .collect();
    Ok(axum::Json(items))
}
