//! Build and buildset records in Zuul's JSON shapes (`/api/tenant/{t}/builds`, `/build/{uuid}`,
//! `/buildsets`, `/buildset/{uuid}`), made from store rows; also what `sluice change history`
//! prints. One Sluice extension: a buildset's `ahead` lists the refs of the items it was
//! tested on top of (its speculative context), after the item's own `refs`; builds carry
//! their `attempt`.

use serde::Serialize;
use serde_json::Value;
use sluice_store::{BuildRow, BuildsetRow, ChangeRef, ItemRow, Store, StoreError};
use utoipa::ToSchema;

/// Zuul's `ref` object: what was tested.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RefRecord {
    /// Short project name (`org/repo`).
    pub project: String,
    /// Canonical project name (`host/org/repo`).
    pub project_canonical: String,
    /// Target branch.
    pub branch: String,
    /// Change number (`null` for a ref).
    pub change: Option<i64>,
    /// Patchset, the tested commit's sha (`null` for a ref).
    pub patchset: Option<String>,
    /// The review ref, or the branch or tag ref.
    #[serde(rename = "ref")]
    pub ref_: String,
    /// Old revision (ref updates only).
    pub oldrev: Option<String>,
    /// New revision (ref updates only).
    pub newrev: Option<String>,
    /// Where a person can see the change.
    pub ref_url: String,
}

impl RefRecord {
    /// The record of a change or a ref.
    pub fn of(c: &ChangeRef) -> Self {
        RefRecord {
            project: short_name(&c.project).to_string(),
            project_canonical: c.project.clone(),
            branch: c.branch.clone(),
            change: c.is_change().then_some(c.number),
            patchset: c.is_change().then(|| c.patchset.clone()),
            ref_: c.refname.clone(),
            oldrev: c.oldrev.clone(),
            newrev: c.newrev.clone(),
            ref_url: c.url.clone(),
        }
    }
}

/// `org/repo` of `host/org/repo`.
pub fn short_name(canonical: &str) -> &str {
    canonical.split_once('/').map_or(canonical, |(_, p)| p)
}

/// An artifact a build returned with `zuul_return`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ArtifactRecord {
    /// Name.
    pub name: String,
    /// URL (relative ones joined to the build's log URL).
    pub url: String,
    /// Metadata as returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A provided resource name.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProvidesRecord {
    /// Name.
    pub name: String,
}

/// A build's buildset reference.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BuildBuildset {
    /// Buildset uuid.
    pub uuid: String,
    /// What the buildset tested.
    pub refs: Vec<RefRecord>,
}

/// A build record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BuildRecord {
    /// Integer id.
    #[serde(rename = "_id")]
    pub id: i64,
    /// Build uuid.
    pub uuid: String,
    /// Job name.
    pub job_name: String,
    /// Result (`null` while unfinished).
    pub result: Option<String>,
    /// Whether its nodes were held.
    pub held: bool,
    /// When it was requested (ISO 8601).
    pub execute_time: Option<String>,
    /// Start (ISO 8601).
    pub start_time: Option<String>,
    /// End (ISO 8601).
    pub end_time: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
    /// Voting.
    pub voting: bool,
    /// Where its logs are.
    pub log_url: Option<String>,
    /// Nodeset name.
    pub nodeset: String,
    /// Why, for unusual results.
    pub error_detail: Option<String>,
    /// False for a try that was retried.
    #[serde(rename = "final")]
    pub final_: bool,
    /// Artifacts from `zuul_return`.
    pub artifacts: Vec<ArtifactRecord>,
    /// Provided resources.
    pub provides: Vec<ProvidesRecord>,
    /// What was tested.
    #[serde(rename = "ref")]
    pub ref_: Option<RefRecord>,
    /// Pipeline.
    pub pipeline: String,
    /// The triggering event.
    pub event_id: Option<String>,
    /// When the event happened (ISO 8601).
    pub event_timestamp: Option<String>,
    /// Queue item uuid.
    pub queue_item_uuid: String,
    /// Its buildset.
    pub buildset: BuildBuildset,
    /// Sluice: the 1-based try.
    pub attempt: i64,
}

/// A buildset record (with its builds and events on `/buildset/{uuid}`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BuildsetRecord {
    /// Integer id.
    #[serde(rename = "_id")]
    pub id: i64,
    /// Buildset uuid.
    pub uuid: String,
    /// Result (`null` while unfinished).
    pub result: Option<String>,
    /// Report text.
    pub message: Option<String>,
    /// Pipeline.
    pub pipeline: String,
    /// The triggering event.
    pub event_id: String,
    /// When the event happened (ISO 8601).
    pub event_timestamp: String,
    /// Queue item uuid.
    pub queue_item_uuid: String,
    /// First build start (ISO 8601).
    pub first_build_start_time: Option<String>,
    /// Last build end (ISO 8601).
    pub last_build_end_time: Option<String>,
    /// Who triggered it (admin actions).
    pub user_id: Option<String>,
    /// Parameters of a manual enqueue.
    pub parameters: Value,
    /// What was tested.
    pub refs: Vec<RefRecord>,
    /// Sluice: the changes ahead it was tested on top of.
    pub ahead: Vec<RefRecord>,
    /// Its builds, oldest first (detail view and history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builds: Option<Vec<BuildRecord>>,
    /// Its events (detail view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Value>>,
}

/// Milliseconds since the epoch as Zuul's ISO 8601 time.
pub fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Seconds between two ISO times.
pub fn duration(start: Option<&str>, end: Option<&str>) -> Option<f64> {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let (s, e) = (parse(start?)?, parse(end?)?);
    Some((e - s).num_milliseconds() as f64 / 1000.0)
}

/// The build's log URL: what `zuul_return` set as `zuul.log_url`, else the executor's.
fn log_url(b: &BuildRow) -> Option<String> {
    b.data
        .as_ref()
        .and_then(|d| d.pointer("/zuul/log_url"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| b.log_url.clone())
}

/// The artifacts a build returned, relative URLs joined to its log URL.
fn artifacts(b: &BuildRow, log_url: Option<&str>) -> Vec<ArtifactRecord> {
    let Some(list) = b
        .data
        .as_ref()
        .and_then(|d| d.pointer("/zuul/artifacts"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| {
            let name = a.get("name")?.as_str()?.to_string();
            let url = a.get("url")?.as_str()?;
            let absolute = url.contains("://") || url.starts_with('/');
            let url = match log_url {
                Some(base) if !absolute => {
                    format!("{}/{}", base.trim_end_matches('/'), url)
                }
                _ => url.to_string(),
            };
            Some(ArtifactRecord {
                name,
                url,
                metadata: a.get("metadata").cloned(),
            })
        })
        .collect()
}

/// A build record; `execute_time` is the buildset's creation when it is known.
pub fn build_record(b: &BuildRow, bs: Option<&BuildsetRow>, item: Option<&ItemRow>) -> BuildRecord {
    let log_url = log_url(b);
    let own_ref = item.map(|i| RefRecord::of(&i.change));
    BuildRecord {
        id: b.id,
        uuid: b.uuid.clone(),
        job_name: b.job_name.clone(),
        result: b.result.clone(),
        held: b.held,
        execute_time: bs.map(|s| iso_ms(s.created)),
        start_time: b.start_time.clone(),
        end_time: b.end_time.clone(),
        duration: duration(b.start_time.as_deref(), b.end_time.as_deref()),
        voting: b.voting,
        artifacts: artifacts(b, log_url.as_deref()),
        log_url,
        nodeset: b.nodeset.clone(),
        error_detail: b.error_detail.clone(),
        final_: b.final_,
        provides: Vec::new(),
        ref_: own_ref.clone(),
        pipeline: b.pipeline.clone(),
        event_id: bs.map(|s| s.event_id.clone()),
        event_timestamp: bs.map(|s| iso_ms(s.event_timestamp)),
        queue_item_uuid: b.item_uuid.clone(),
        buildset: BuildBuildset {
            uuid: b.buildset_uuid.clone(),
            refs: own_ref.into_iter().collect(),
        },
        attempt: b.attempt,
    }
}

/// A buildset record; `builds` (when given) are included with it.
pub fn buildset_record(
    bs: &BuildsetRow,
    item: Option<&ItemRow>,
    builds: Option<&[BuildRow]>,
) -> BuildsetRecord {
    let own = item.map(|i| i.change.clone());
    BuildsetRecord {
        id: bs.id,
        uuid: bs.uuid.clone(),
        result: bs.result.clone(),
        message: bs.message.clone(),
        pipeline: bs.pipeline.clone(),
        event_id: bs.event_id.clone(),
        event_timestamp: iso_ms(bs.event_timestamp),
        queue_item_uuid: bs.item_uuid.clone(),
        first_build_start_time: bs.first_build_start_time.clone(),
        last_build_end_time: bs.last_build_end_time.clone(),
        user_id: None,
        parameters: Value::Object(Default::default()),
        refs: own.iter().map(RefRecord::of).collect(),
        ahead: bs
            .refs
            .iter()
            .filter(|r| Some(*r) != own.as_ref())
            .map(RefRecord::of)
            .collect(),
        builds: builds.map(|bs_builds| {
            bs_builds
                .iter()
                .map(|b| build_record(b, Some(bs), item))
                .collect()
        }),
        events: None,
    }
}

/// A queue item as `sluice change history` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemRecord {
    /// Item uuid.
    pub id: String,
    /// Pipeline.
    pub pipeline: String,
    /// Change queue.
    pub queue: String,
    /// `active` or `done`.
    pub state: String,
    /// Result once reported.
    pub result: Option<String>,
    /// Live or not.
    pub live: bool,
    /// Its change.
    pub refs: Vec<RefRecord>,
    /// Needed changes merged underneath.
    pub dependencies: Vec<RefRecord>,
    /// Milliseconds since the epoch.
    pub enqueue_time: i64,
    /// Current buildset.
    pub buildset: Option<String>,
}

/// Every queue item, buildset (oldest first, with its builds) and build of a tenant: what
/// `sluice change history` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantHistory {
    /// Queue items.
    pub items: Vec<ItemRecord>,
    /// Buildsets.
    pub buildsets: Vec<BuildsetRecord>,
    /// Builds.
    pub builds: Vec<BuildRecord>,
}

/// Reads a tenant's whole history.
pub async fn tenant_history(store: &Store, tenant: &str) -> Result<TenantHistory, StoreError> {
    let items = store.items(tenant).await?;
    let buildsets = store.buildsets(tenant).await?;
    let builds = store.builds(tenant).await?;
    let find_item = |uuid: &str| items.iter().find(|i| i.uuid == uuid);
    let out_sets = buildsets
        .iter()
        .map(|bs| {
            let of: Vec<BuildRow> = builds
                .iter()
                .filter(|b| b.buildset_uuid == bs.uuid)
                .cloned()
                .collect();
            buildset_record(bs, find_item(&bs.item_uuid), Some(&of))
        })
        .collect();
    let out_builds = builds
        .iter()
        .map(|b| {
            let bs = buildsets.iter().find(|s| s.uuid == b.buildset_uuid);
            build_record(b, bs, find_item(&b.item_uuid))
        })
        .collect();
    let out_items = items
        .iter()
        .map(|i| ItemRecord {
            id: i.uuid.clone(),
            pipeline: i.pipeline.clone(),
            queue: i.queue.clone(),
            state: i.state.clone(),
            result: i.result.clone(),
            live: i.live,
            refs: vec![RefRecord::of(&i.change)],
            dependencies: i.deps.iter().map(RefRecord::of).collect(),
            enqueue_time: i.enqueue_time,
            buildset: i.buildset_uuid.clone(),
        })
        .collect();
    Ok(TenantHistory {
        items: out_items,
        buildsets: out_sets,
        builds: out_builds,
    })
}
