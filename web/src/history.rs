//! `/api/tenant/{t}/builds`, `build/{uuid}`, `buildsets`, `buildset/{uuid}`: the build history
//! with Zuul's query parameters (each may be repeated: any of the values matches). Filters on
//! build columns run in SQL; filters on what was tested (project, change, branch, patchset,
//! ref, newrev) are matched against the queue items afterwards.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use sluice_store::{BuildQuery, BuildRow, BuildsetQuery, BuildsetRow, ItemRow};
use utoipa::IntoParams;

use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::records::{build_record, buildset_record, short_name, BuildRecord, BuildsetRecord};
use crate::state::WebState;

/// Zuul's default page size.
const DEFAULT_LIMIT: i64 = 50;

/// The `builds` query parameters (documentation; every one may be repeated).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BuildsParams {
    /// Project (short or canonical name).
    project: Option<String>,
    /// Pipeline.
    pipeline: Option<String>,
    /// Change number.
    change: Option<String>,
    /// Target branch.
    branch: Option<String>,
    /// Patchset.
    patchset: Option<String>,
    /// Ref.
    #[serde(rename = "ref")]
    #[param(rename = "ref")]
    ref_: Option<String>,
    /// New revision (ref updates).
    newrev: Option<String>,
    /// Build uuid.
    uuid: Option<String>,
    /// Job name.
    job_name: Option<String>,
    /// Voting builds only (`true`) or non-voting only (`false`).
    voting: Option<String>,
    /// Node name (no build records one yet: matches nothing).
    node_name: Option<String>,
    /// Nodeset name.
    nodeset: Option<String>,
    /// Result.
    result: Option<String>,
    /// Final tries only (`true`) or retried ones (`false`).
    #[serde(rename = "final")]
    #[param(rename = "final")]
    final_: Option<String>,
    /// Held builds (autohold) or not.
    held: Option<String>,
    /// Finished builds (`true`) or unfinished ones (`false`).
    complete: Option<String>,
    /// At most this many (default 50).
    limit: Option<i64>,
    /// Skip this many first.
    skip: Option<i64>,
    /// Smallest `_id`.
    idx_min: Option<i64>,
    /// Largest `_id`.
    idx_max: Option<i64>,
    /// Leave out builds with this result.
    exclude_result: Option<String>,
}

/// The `buildsets` query parameters (documentation; every one may be repeated).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BuildsetsParams {
    /// Project.
    project: Option<String>,
    /// Pipeline.
    pipeline: Option<String>,
    /// Change number.
    change: Option<String>,
    /// Target branch.
    branch: Option<String>,
    /// Patchset.
    patchset: Option<String>,
    /// Ref.
    #[serde(rename = "ref")]
    #[param(rename = "ref")]
    ref_: Option<String>,
    /// New revision.
    newrev: Option<String>,
    /// Buildset uuid.
    uuid: Option<String>,
    /// Result.
    result: Option<String>,
    /// Finished or not.
    complete: Option<String>,
    /// At most this many (default 50).
    limit: Option<i64>,
    /// Skip this many first.
    skip: Option<i64>,
    /// Smallest `_id`.
    idx_min: Option<i64>,
    /// Largest `_id`.
    idx_max: Option<i64>,
}

/// The raw query, every value of every key.
struct Params(HashMap<String, Vec<String>>);

impl Params {
    fn new(pairs: Vec<(String, String)>, allowed: &[&str]) -> ApiResult<Self> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {k:?} (known: {})",
                    allowed.join(", ")
                )));
            }
            map.entry(k).or_default().push(v);
        }
        Ok(Params(map))
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0.get(key).cloned().unwrap_or_default()
    }

    fn bool(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.0.get(key).and_then(|v| v.last()) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(ApiError::BadRequest(format!(
                    "{key} must be true or false, not {v:?}"
                ))),
            },
        }
    }

    fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.0.get(key).and_then(|v| v.last()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("{key} must be an integer, not {v:?}"))),
        }
    }
}

/// Filters on what an item tested.
struct RefFilter {
    projects: Vec<String>,
    changes: Vec<String>,
    branches: Vec<String>,
    patchsets: Vec<String>,
    refs: Vec<String>,
    newrevs: Vec<String>,
}

impl RefFilter {
    fn new(p: &Params) -> Self {
        RefFilter {
            projects: p.all("project"),
            changes: p.all("change"),
            branches: p.all("branch"),
            patchsets: p.all("patchset"),
            refs: p.all("ref"),
            newrevs: p.all("newrev"),
        }
    }

    fn is_empty(&self) -> bool {
        self.projects.is_empty()
            && self.changes.is_empty()
            && self.branches.is_empty()
            && self.patchsets.is_empty()
            && self.refs.is_empty()
            && self.newrevs.is_empty()
    }

    fn matches(&self, item: Option<&ItemRow>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(item) = item else {
            return false;
        };
        let c = &item.change;
        let any = |wanted: &[String], have: &[&str]| {
            wanted.is_empty() || wanted.iter().any(|w| have.contains(&w.as_str()))
        };
        let number = if c.is_change() {
            c.number.to_string()
        } else {
            String::new()
        };
        let short_ref = c.refname.strip_prefix("refs/heads/").unwrap_or(&c.refname);
        any(
            &self.projects,
            &[c.project.as_str(), short_name(&c.project)],
        ) && any(&self.changes, &[number.as_str()])
            && any(&self.branches, &[c.branch.as_str()])
            && any(&self.patchsets, &[c.patchset.as_str()])
            && any(&self.refs, &[c.refname.as_str(), short_ref])
            && any(&self.newrevs, &[c.newrev.as_deref().unwrap_or_default()])
    }
}

/// Items and buildsets of some builds, by uuid.
async fn context(
    state: &WebState,
    item_uuids: Vec<String>,
    buildset_uuids: Vec<String>,
) -> ApiResult<(HashMap<String, ItemRow>, HashMap<String, BuildsetRow>)> {
    let items = state.store().items_by_uuid(&dedup(item_uuids)).await?;
    let sets = state
        .store()
        .buildsets_by_uuid(&dedup(buildset_uuids))
        .await?;
    Ok((
        items.into_iter().map(|i| (i.uuid.clone(), i)).collect(),
        sets.into_iter().map(|s| (s.uuid.clone(), s)).collect(),
    ))
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn page<T>(rows: Vec<T>, limit: Option<i64>, skip: i64) -> Vec<T> {
    let skip = skip.max(0) as usize;
    let limit = limit.map_or(usize::MAX, |l| l.max(0) as usize);
    rows.into_iter().skip(skip).take(limit).collect()
}

const BUILD_PARAMS: &[&str] = &[
    "project",
    "pipeline",
    "change",
    "branch",
    "patchset",
    "ref",
    "newrev",
    "uuid",
    "job_name",
    "voting",
    "node_name",
    "nodeset",
    "result",
    "final",
    "held",
    "complete",
    "limit",
    "skip",
    "idx_min",
    "idx_max",
    "exclude_result",
];

/// Builds of a tenant, newest first.
#[utoipa::path(get, path = "/api/tenant/{tenant}/builds", tag = "history",
    params(("tenant" = String, Path, description = "Tenant name"), BuildsParams),
    responses((status = 200, body = Vec<BuildRecord>), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get_builds(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Vec<BuildRecord>>> {
    state.tenant(&tenant)?;
    let p = Params::new(pairs, BUILD_PARAMS)?;
    let refs = RefFilter::new(&p);
    let limit = p.int("limit")?.unwrap_or(DEFAULT_LIMIT);
    let skip = p.int("skip")?.unwrap_or(0);
    // No build records its node names yet.
    if !p.all("node_name").is_empty() {
        return Ok(Json(Vec::new()));
    }
    let query = BuildQuery {
        tenant: tenant.clone(),
        pipelines: p.all("pipeline"),
        job_names: p.all("job_name"),
        uuids: p.all("uuid"),
        results: p.all("result"),
        exclude_results: p.all("exclude_result"),
        nodesets: p.all("nodeset"),
        voting: p.bool("voting")?,
        final_: p.bool("final")?,
        held: p.bool("held")?,
        complete: p.bool("complete")?,
        idx_min: p.int("idx_min")?,
        idx_max: p.int("idx_max")?,
        limit: refs.is_empty().then_some(limit),
        skip: if refs.is_empty() { skip } else { 0 },
    };
    let rows = state.store().query_builds(&query).await?;
    let (items, sets) = context(
        &state,
        rows.iter().map(|b| b.item_uuid.clone()).collect(),
        rows.iter().map(|b| b.buildset_uuid.clone()).collect(),
    )
    .await?;
    let matching: Vec<&BuildRow> = rows
        .iter()
        .filter(|b| refs.matches(items.get(&b.item_uuid)))
        .collect();
    let matching = if refs.is_empty() {
        matching
    } else {
        page(matching, Some(limit), skip)
    };
    Ok(Json(
        matching
            .into_iter()
            .map(|b| build_record(b, sets.get(&b.buildset_uuid), items.get(&b.item_uuid)))
            .collect(),
    ))
}

/// One build.
#[utoipa::path(get, path = "/api/tenant/{tenant}/build/{uuid}", tag = "history",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("uuid" = String, Path, description = "Build uuid")),
    responses((status = 200, body = BuildRecord), (status = 404, body = ErrorBody)))]
pub async fn get_build(
    State(state): State<WebState>,
    Path((tenant, uuid)): Path<(String, String)>,
) -> ApiResult<Json<BuildRecord>> {
    state.tenant(&tenant)?;
    let store = state.store();
    let build = store
        .build(&uuid)
        .await?
        .filter(|b| b.tenant == tenant)
        .ok_or_else(|| ApiError::NotFound(format!("Build {uuid} not found")))?;
    let bs = store.buildset(&build.buildset_uuid).await?;
    let item = store.item(&build.item_uuid).await?;
    Ok(Json(build_record(&build, bs.as_ref(), item.as_ref())))
}

const BUILDSET_PARAMS: &[&str] = &[
    "project", "pipeline", "change", "branch", "patchset", "ref", "newrev", "uuid", "result",
    "complete", "limit", "skip", "idx_min", "idx_max",
];

/// Buildsets of a tenant, newest first (without their builds).
#[utoipa::path(get, path = "/api/tenant/{tenant}/buildsets", tag = "history",
    params(("tenant" = String, Path, description = "Tenant name"), BuildsetsParams),
    responses((status = 200, body = Vec<BuildsetRecord>), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn get_buildsets(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Vec<BuildsetRecord>>> {
    state.tenant(&tenant)?;
    let p = Params::new(pairs, BUILDSET_PARAMS)?;
    let refs = RefFilter::new(&p);
    let limit = p.int("limit")?.unwrap_or(DEFAULT_LIMIT);
    let skip = p.int("skip")?.unwrap_or(0);
    let query = BuildsetQuery {
        tenant: tenant.clone(),
        pipelines: p.all("pipeline"),
        uuids: p.all("uuid"),
        results: p.all("result"),
        complete: p.bool("complete")?,
        idx_min: p.int("idx_min")?,
        idx_max: p.int("idx_max")?,
        limit: refs.is_empty().then_some(limit),
        skip: if refs.is_empty() { skip } else { 0 },
    };
    let rows = state.store().query_buildsets(&query).await?;
    let (items, _) = context(
        &state,
        rows.iter().map(|b| b.item_uuid.clone()).collect(),
        Vec::new(),
    )
    .await?;
    let matching: Vec<&BuildsetRow> = rows
        .iter()
        .filter(|bs| refs.matches(items.get(&bs.item_uuid)))
        .collect();
    let matching = if refs.is_empty() {
        matching
    } else {
        page(matching, Some(limit), skip)
    };
    Ok(Json(
        matching
            .into_iter()
            .map(|bs| buildset_record(bs, items.get(&bs.item_uuid), None))
            .collect(),
    ))
}

/// One buildset with its builds and events.
#[utoipa::path(get, path = "/api/tenant/{tenant}/buildset/{uuid}", tag = "history",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("uuid" = String, Path, description = "Buildset uuid")),
    responses((status = 200, body = BuildsetRecord), (status = 404, body = ErrorBody)))]
pub async fn get_buildset(
    State(state): State<WebState>,
    Path((tenant, uuid)): Path<(String, String)>,
) -> ApiResult<Json<BuildsetRecord>> {
    state.tenant(&tenant)?;
    let store = state.store();
    let bs = store
        .buildset(&uuid)
        .await?
        .filter(|b| b.tenant == tenant)
        .ok_or_else(|| ApiError::NotFound(format!("Buildset {uuid} not found")))?;
    let item = store.item(&bs.item_uuid).await?;
    let builds = store.builds_of_buildset(&bs.uuid).await?;
    let mut record = buildset_record(&bs, item.as_ref(), Some(&builds));
    record.events = Some(Vec::new());
    Ok(Json(record))
}
