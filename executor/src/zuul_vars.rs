//! The `zuul.*` variables a build's playbooks see (`zuul_vars.yaml`), from the request, the
//! workspace state and the executor's own paths.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::jobdir::JobDir;
use crate::request::{BuildRequest, ChangeItem, ProjectSpec};

/// A workspace repository as checked out for the build.
#[derive(Debug, Clone)]
pub struct RepoCheckout {
    /// Canonical project name.
    pub canonical_name: String,
    /// Path relative to `work/` (`src/localhost/org/repo`).
    pub src_dir: String,
    /// Branch or ref checked out.
    pub checkout: String,
    /// HEAD commit.
    pub commit: String,
    /// Whether the job listed it in `required-projects` (or it is the item's project).
    pub required: bool,
}

fn project_fields(project: &ProjectSpec, src_dir: Option<&str>) -> Value {
    let mut v = json!({
        "name": project.name,
        "short_name": project.short_name(),
        "canonical_hostname": project.canonical_hostname,
        "canonical_name": project.canonical_name(),
    });
    if let (Some(src), Some(map)) = (src_dir, v.as_object_mut()) {
        map.insert("src_dir".into(), json!(src));
    }
    v
}

fn item_fields(
    item: &ChangeItem,
    project: Option<&ProjectSpec>,
    repos: &[RepoCheckout],
) -> Map<String, Value> {
    let src_dir = repos
        .iter()
        .find(|r| r.canonical_name == item.project)
        .map(|r| r.src_dir.as_str());
    let mut m = Map::new();
    if let Some(p) = project {
        m.insert("project".into(), project_fields(p, src_dir));
    }
    if let Some(refname) = &item.refname {
        // A ref item (periodic, post): no change fields, Zuul's ref fields instead.
        if let Some(tag) = item.tag() {
            m.insert("tag".into(), json!(tag));
        } else {
            m.insert("branch".into(), json!(item.branch));
        }
        m.insert("ref".into(), json!(refname));
        for (key, rev) in [("oldrev", &item.oldrev), ("newrev", &item.newrev)] {
            if let Some(rev) = rev.as_deref().filter(|r| !is_null_sha(r)) {
                m.insert(key.into(), json!(rev));
            }
        }
        m.insert("commit_id".into(), json!(item.commit));
        return m;
    }
    m.insert("branch".into(), json!(item.branch));
    m.insert("change".into(), json!(item.change));
    m.insert("patchset".into(), json!(item.patchset));
    m.insert("commit_id".into(), json!(item.commit));
    m.insert("change_url".into(), json!(item.change_url));
    m.insert("change_message".into(), json!(item.message));
    m.insert("topic".into(), json!(item.topic));
    m
}

/// Git's forty zeros (a created or deleted ref's missing side).
fn is_null_sha(rev: &str) -> bool {
    !rev.is_empty() && rev.bytes().all(|b| b == b'0')
}

/// Builds the `zuul` dict.
pub fn zuul_vars(
    req: &BuildRequest,
    jobdir: &JobDir,
    repos: &[RepoCheckout],
    ansible_version: &str,
    hostname: &str,
) -> Value {
    let job = &req.job;
    let find = |cname: &str| req.projects.iter().find(|p| p.canonical_name() == cname);
    let mut zuul = Map::new();
    zuul.insert("build".into(), json!(req.uuid));
    zuul.insert("buildset".into(), json!(req.buildset_uuid));
    zuul.insert("pipeline".into(), json!(req.pipeline));
    zuul.insert(
        "post_review".into(),
        json!(req.post_review || job.post_review),
    );
    zuul.insert("job".into(), json!(job.name));
    zuul.insert("voting".into(), json!(job.voting));
    zuul.insert("tenant".into(), json!(req.tenant));
    zuul.insert("event_id".into(), json!(req.event_id));
    zuul.insert("jobtags".into(), json!(job.tags));
    zuul.insert("include_vars".into(), json!([]));
    zuul.insert("timeout".into(), json!(job.timeout));
    zuul.insert("pre_timeout".into(), json!(job.pre_timeout));
    zuul.insert("post_timeout".into(), json!(job.post_timeout));
    zuul.insert("workspace_checkout".into(), json!(true));
    zuul.insert("deduplicate".into(), json!("auto"));
    if let Some(oc) = &job.override_checkout {
        zuul.insert("override_checkout".into(), json!(oc));
    }
    zuul.insert("_inheritance_path".into(), json!(job.inheritance_path));
    zuul.insert("attempts".into(), json!(req.attempt));
    zuul.insert("max_attempts".into(), json!(job.attempts));
    zuul.insert("child_jobs".into(), json!(req.child_jobs));
    zuul.insert("artifacts".into(), json!(req.artifacts));
    zuul.insert("ansible_version".into(), json!(ansible_version));
    if let Some(item) = req.items.last() {
        zuul.insert(
            "ref".into(),
            json!(item
                .refname
                .clone()
                .unwrap_or_else(|| format!("refs/changes/{}/{}", item.change, item.patchset))),
        );
        if item.is_change() {
            zuul.insert(
                "message".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(&item.message)),
            );
        }
        for (k, v) in item_fields(item, find(&item.project), repos) {
            zuul.insert(k, v);
        }
    }
    let items: Vec<Value> = req
        .items
        .iter()
        .map(|i| Value::Object(item_fields(i, find(&i.project), repos)))
        .collect();
    zuul.insert("items".into(), json!(items));
    let mut projects = Map::new();
    for repo in repos {
        if let Some(p) = find(&repo.canonical_name) {
            let mut v = project_fields(p, Some(&repo.src_dir));
            if let Some(map) = v.as_object_mut() {
                map.insert("required".into(), json!(repo.required));
                map.insert("checkout".into(), json!(repo.checkout));
                map.insert(
                    "checkout_description".into(),
                    json!(format!("{} checkout", repo.checkout)),
                );
                map.insert("commit".into(), json!(repo.commit));
            }
            projects.insert(repo.canonical_name.clone(), v);
        }
    }
    zuul.insert("projects".into(), Value::Object(projects));
    zuul.insert(
        "executor".into(),
        json!({
            "hostname": hostname,
            "src_root": jobdir.src,
            "log_root": jobdir.logs,
            "work_root": jobdir.work,
            "result_data_file": jobdir.results(),
            "inventory_file": jobdir.ansible.join("inventory.yaml"),
        }),
    );
    zuul.insert("resources".into(), json!({}));
    Value::Object(zuul)
}

/// The whole `zuul_vars.yaml`: `zuul` plus `zuul_user_dir`.
pub fn zuul_vars_file(zuul: Value) -> Value {
    json!({
        "zuul": zuul,
        "zuul_user_dir": "{{ inventory_hostname == 'localhost' and zuul.executor.work_root or ansible_user_dir }}",
    })
}
