//! Build and buildset records in Zuul's JSON shapes (what `/api/tenant/{t}/builds`,
//! `/build/{uuid}` and `/buildsets` return), made from store rows. One Sluice extension:
//! a buildset's `ahead` lists the refs of the items it was tested on top of (its speculative
//! context), after the item's own `refs`.

use serde_json::{json, Value};
use sluice_store::{BuildRow, BuildsetRow, ChangeRef, ItemRow, Store, StoreError};

/// Zuul's `ref` object for a change or a ref (no change number or patchset).
pub fn ref_json(c: &ChangeRef) -> Value {
    json!({
        "project": c.project.split_once('/').map_or(c.project.as_str(), |(_, p)| p),
        "project_canonical": c.project,
        "branch": c.branch,
        "change": c.is_change().then_some(c.number),
        "patchset": c.is_change().then_some(&c.patchset),
        "ref": c.refname,
        "oldrev": c.oldrev,
        "newrev": c.newrev,
        "ref_url": c.url,
    })
}

fn duration(start: Option<&str>, end: Option<&str>) -> Value {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (start.and_then(parse), end.and_then(parse)) {
        (Some(s), Some(e)) => json!((e - s).num_milliseconds() as f64 / 1000.0),
        _ => Value::Null,
    }
}

/// A build record.
pub fn build_json(b: &BuildRow, bs: Option<&BuildsetRow>, item: Option<&ItemRow>) -> Value {
    json!({
        "_id": b.id,
        "uuid": b.uuid,
        "job_name": b.job_name,
        "result": b.result,
        "held": false,
        "start_time": b.start_time,
        "end_time": b.end_time,
        "duration": duration(b.start_time.as_deref(), b.end_time.as_deref()),
        "voting": b.voting,
        "log_url": b.log_url,
        "nodeset": b.nodeset,
        "error_detail": b.error_detail,
        "final": b.final_,
        "artifacts": [],
        "provides": [],
        "ref": item.map(|i| ref_json(&i.change)),
        "pipeline": b.pipeline,
        "event_id": bs.map(|s| s.event_id.clone()),
        "event_timestamp": bs.map(|s| s.event_timestamp),
        "queue_item_uuid": b.item_uuid,
        "buildset": {
            "uuid": b.buildset_uuid,
            "refs": item.map(|i| vec![ref_json(&i.change)]).unwrap_or_default(),
        },
        "attempt": b.attempt,
    })
}

/// A buildset record with its builds.
pub fn buildset_json(bs: &BuildsetRow, item: Option<&ItemRow>, builds: &[BuildRow]) -> Value {
    let own = item.map(|i| i.change.clone());
    let ahead: Vec<Value> = bs
        .refs
        .iter()
        .filter(|r| Some(*r) != own.as_ref())
        .map(ref_json)
        .collect();
    json!({
        "_id": bs.id,
        "uuid": bs.uuid,
        "result": bs.result,
        "message": bs.message,
        "pipeline": bs.pipeline,
        "event_id": bs.event_id,
        "event_timestamp": bs.event_timestamp,
        "queue_item_uuid": bs.item_uuid,
        "first_build_start_time": bs.first_build_start_time,
        "last_build_end_time": bs.last_build_end_time,
        "user_id": null,
        "parameters": {},
        "refs": own.iter().map(ref_json).collect::<Vec<_>>(),
        "ahead": ahead,
        "builds": builds.iter().map(|b| build_json(b, Some(bs), item)).collect::<Vec<_>>(),
    })
}

/// Every buildset of a tenant (oldest first) with its builds, and every build.
pub async fn tenant_history(store: &Store, tenant: &str) -> Result<Value, StoreError> {
    let items = store.items(tenant).await?;
    let buildsets = store.buildsets(tenant).await?;
    let builds = store.builds(tenant).await?;
    let find_item = |uuid: &str| items.iter().find(|i| i.uuid == uuid);
    let mut out_sets = Vec::new();
    for bs in &buildsets {
        let of: Vec<BuildRow> = builds
            .iter()
            .filter(|b| b.buildset_uuid == bs.uuid)
            .cloned()
            .collect();
        out_sets.push(buildset_json(bs, find_item(&bs.item_uuid), &of));
    }
    let out_builds: Vec<Value> = builds
        .iter()
        .map(|b| {
            let bs = buildsets.iter().find(|s| s.uuid == b.buildset_uuid);
            build_json(b, bs, find_item(&b.item_uuid))
        })
        .collect();
    let out_items: Vec<Value> = items
        .iter()
        .map(|i| {
            json!({
                "id": i.uuid,
                "pipeline": i.pipeline,
                "queue": i.queue,
                "state": i.state,
                "result": i.result,
                "live": i.live,
                "refs": [ref_json(&i.change)],
                "dependencies": i.deps.iter().map(ref_json).collect::<Vec<_>>(),
                "enqueue_time": i.enqueue_time,
                "buildset": i.buildset_uuid,
            })
        })
        .collect();
    Ok(json!({"items": out_items, "buildsets": out_sets, "builds": out_builds}))
}
