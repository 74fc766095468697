//! What a tenant's layout defines, in Zuul's shapes: `pipelines`, `jobs`, `job/{name}`,
//! `projects`, `project/{p}`, `config-errors` and `semaphores`. The layout is the one the
//! scheduler loaded from the branch tips (`TenantLayout`).

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_config::{
    Controlled, JobVariant, NodesetSpec, Parent, PlaybookDef, ProjectStanza, SourceContext,
};
use sluice_scheduler::TenantLayout;
use utoipa::{IntoParams, ToSchema};

use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::state::WebState;

/// A pipeline's trigger.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineTrigger {
    /// Connection name.
    pub name: String,
    /// Its driver.
    pub driver: String,
}

/// A pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineSummary {
    /// Name.
    pub name: String,
    /// Its triggers.
    pub triggers: Vec<PipelineTrigger>,
}

/// One variant in the job list.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantSummary {
    /// Parent job (`null` for a base job).
    pub parent: Option<String>,
    /// Branch matchers.
    pub branches: Vec<String>,
}

/// A job in the job list.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobSummary {
    /// Name.
    pub name: String,
    /// Description (of its first variant that has one).
    pub description: Option<String>,
    /// Tags of all its variants.
    pub tags: Vec<String>,
    /// Its variants.
    pub variants: Vec<VariantSummary>,
}

/// A project in the project list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectSummary {
    /// Short name.
    pub name: String,
    /// Connection.
    pub connection_name: String,
    /// Canonical name.
    pub canonical_name: String,
    /// `config` or `untrusted`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// A project with its configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectDetail {
    /// Short name.
    pub name: String,
    /// Connection.
    pub connection_name: String,
    /// Canonical name.
    pub canonical_name: String,
    /// `config` or `untrusted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `{merge_mode, default_branch, is_template, queue_name}`.
    pub metadata: Value,
    /// Its `project` stanzas: `{source_context, templates, default_branch, queue_name,
    /// merge_mode, description, variables, pipelines: [{name, queue_name, jobs: [[variant]]}]}`.
    pub configs: Vec<Value>,
}

/// A configuration error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigErrorRecord {
    /// `{project, branch, path}`.
    pub source_context: Value,
    /// Line and column.
    pub source_line: usize,
    /// The whole message.
    pub error: String,
    /// Its first line.
    pub short_error: String,
    /// `error`.
    pub severity: String,
    /// The item type and name, when known.
    pub name: Option<String>,
}

/// `config-errors` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigErrorsParams {
    /// Only errors in this project.
    pub project: Option<String>,
    /// Only errors on this branch.
    pub branch: Option<String>,
    /// Only this severity (`error`).
    pub severity: Option<String>,
    /// Only errors of this item.
    pub name: Option<String>,
}

/// Who holds a semaphore.
#[derive(Debug, Serialize, ToSchema)]
pub struct SemaphoreHolders {
    /// How many hold it.
    pub count: usize,
    /// Holders in this tenant.
    pub this_tenant: Vec<Value>,
    /// Holders in other tenants.
    pub other_tenants: usize,
}

/// A semaphore.
#[derive(Debug, Serialize, ToSchema)]
pub struct SemaphoreRecord {
    /// Name.
    pub name: String,
    /// Global (shared by tenants).
    pub global: bool,
    /// How many may hold it.
    pub max: u64,
    /// Holders.
    pub holders: SemaphoreHolders,
}

fn source_context(s: &SourceContext) -> Value {
    json!({"project": s.short_name, "branch": s.branch, "path": s.path})
}

fn playbooks(list: &Option<Vec<PlaybookDef>>) -> Value {
    json!(list
        .iter()
        .flatten()
        .map(|p| p.path.clone())
        .collect::<Vec<_>>())
}

fn controlled<T: Clone, U: Serialize>(c: &Option<Controlled<T>>, f: impl Fn(&T) -> U) -> Value {
    c.as_ref()
        .map(|c| serde_json::to_value(f(&c.value)).unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

fn parent(v: &JobVariant) -> Option<String> {
    match &v.parent {
        Parent::Named(n) => Some(n.clone()),
        Parent::Base | Parent::Unset => None,
    }
}

fn branches(v: &JobVariant) -> Vec<String> {
    v.branches
        .iter()
        .flat_map(|m| m.patterns.iter())
        .map(|p| p.source.clone())
        .collect()
}

/// A job variant as Zuul's `job/{name}` lists it.
fn variant_json(v: &JobVariant) -> Value {
    let nodeset = match &v.nodeset {
        Some(NodesetSpec::Named(n)) => json!(n),
        Some(NodesetSpec::Inline(def)) => json!({
            "name": def.name,
            "nodes": def.nodes.iter().map(|n| json!({"name": n.names, "label": n.label})).collect::<Vec<_>>(),
            "groups": def.groups,
        }),
        None => Value::Null,
    };
    json!({
        "name": v.name,
        "branches": branches(v),
        "parent": parent(v),
        "description": v.description,
        "variant_description": v.variant_description,
        "source_context": v.source.as_ref().map(source_context),
        "abstract": v.abstract_.unwrap_or(false),
        "final": v.final_.unwrap_or(false),
        "protected": v.protected.unwrap_or(false),
        "intermediate": v.intermediate.unwrap_or(false),
        "voting": v.voting.unwrap_or(true),
        "timeout": v.timeout,
        "post_timeout": v.post_timeout,
        "attempts": v.attempts,
        "nodeset": nodeset,
        "pre_run": playbooks(&v.pre_run),
        "run": playbooks(&v.run),
        "post_run": playbooks(&v.post_run),
        "cleanup_run": playbooks(&v.cleanup_run),
        "roles": v.roles.iter().flatten().map(|r| json!({"project": r.project, "target_name": r.name})).collect::<Vec<_>>(),
        "required_projects": controlled(&v.required_projects, |list| list.iter().map(|r| json!({
            "project_name": r.name, "override_branch": r.override_branch, "override_checkout": r.override_checkout,
        })).collect::<Vec<_>>()),
        "dependencies": controlled(&v.dependencies, |list| list.iter().map(|d| json!({"name": d.name, "soft": d.soft})).collect::<Vec<_>>()),
        "semaphores": v.semaphores.iter().flatten().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "tags": controlled(&v.tags, Clone::clone),
        "provides": controlled(&v.provides, Clone::clone),
        "requires": controlled(&v.requires, Clone::clone),
        "files": controlled(&v.files, Clone::clone),
        "irrelevant_files": controlled(&v.irrelevant_files, Clone::clone),
        "variables": controlled(&v.vars, Clone::clone),
        "extra_variables": controlled(&v.extra_vars, Clone::clone),
        "host_variables": controlled(&v.host_vars, Clone::clone),
        "group_variables": controlled(&v.group_vars, Clone::clone),
        "ansible_version": v.ansible_version,
        "override_checkout": v.override_checkout,
        "post_review": v.post_review,
        "match_on_config_updates": v.match_on_config_updates.unwrap_or(true),
        "workspace_scheme": v.workspace_scheme,
    })
}

/// A tenant's pipelines.
#[utoipa::path(get, path = "/api/tenant/{tenant}/pipelines", tag = "layout",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<PipelineSummary>), (status = 404, body = ErrorBody)))]
pub async fn get_pipelines(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<PipelineSummary>>> {
    let t = state.tenant(&tenant)?;
    Ok(Json(
        t.layout
            .pipelines()
            .map(|def| {
                let connections: Vec<String> = def
                    .raw
                    .get("trigger")
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                PipelineSummary {
                    name: def.name.clone(),
                    triggers: connections
                        .into_iter()
                        .map(|name| PipelineTrigger {
                            driver: state.driver(&name).to_string(),
                            name,
                        })
                        .collect(),
                }
            })
            .collect(),
    ))
}

/// A tenant's jobs, by name.
#[utoipa::path(get, path = "/api/tenant/{tenant}/jobs", tag = "layout",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<JobSummary>), (status = 404, body = ErrorBody)))]
pub async fn get_jobs(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<JobSummary>>> {
    let t = state.tenant(&tenant)?;
    let mut names: Vec<&str> = t.layout.job_names().collect();
    names.sort_unstable();
    let out = names
        .into_iter()
        .filter_map(|name| {
            let variants = t.layout.job_variants(name)?;
            let mut tags: Vec<String> = variants
                .iter()
                .filter_map(|v| v.tags.as_ref())
                .flat_map(|t| t.value.iter().cloned())
                .collect();
            tags.sort();
            tags.dedup();
            Some(JobSummary {
                name: name.to_string(),
                description: variants.iter().find_map(|v| v.description.clone()),
                tags,
                variants: variants
                    .iter()
                    .map(|v| VariantSummary {
                        parent: parent(v),
                        branches: branches(v),
                    })
                    .collect(),
            })
        })
        .collect();
    Ok(Json(out))
}

/// A job's variants.
#[utoipa::path(get, path = "/api/tenant/{tenant}/job/{name}", tag = "layout",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("name" = String, Path, description = "Job name")),
    responses((status = 200, body = Vec<Object>), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): State<WebState>,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Value>>> {
    let t = state.tenant(&tenant)?;
    let variants = t
        .layout
        .job_variants(&name)
        .ok_or_else(|| ApiError::NotFound(format!("Job {name} does not exist")))?;
    Ok(Json(variants.iter().map(variant_json).collect()))
}

fn project_type(trusted: bool) -> String {
    if trusted { "config" } else { "untrusted" }.to_string()
}

/// A tenant's projects.
#[utoipa::path(get, path = "/api/tenant/{tenant}/projects", tag = "layout",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<ProjectSummary>), (status = 404, body = ErrorBody)))]
pub async fn get_projects(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<ProjectSummary>>> {
    let t = state.tenant(&tenant)?;
    let mut out: Vec<ProjectSummary> = t
        .projects
        .iter()
        .map(|p| ProjectSummary {
            name: p.entry.name.clone(),
            connection_name: p.entry.connection.clone(),
            canonical_name: p.canonical.clone(),
            type_: project_type(p.entry.trusted),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

/// Whether a `project` stanza is about `project` (by name, or defined in it without one).
fn stanza_is_for(st: &ProjectStanza, canonical: &str, short: &str) -> bool {
    match &st.name {
        Some(n) => n == canonical || n == short,
        None => st.source.project == canonical,
    }
}

fn stanza_json(t: &TenantLayout, st: &ProjectStanza) -> Value {
    let pipelines: Vec<Value> = st
        .pipelines
        .iter()
        .map(|(name, pp)| {
            json!({
                "name": name,
                "queue_name": st.queue,
                "fail_fast": pp.fail_fast,
                "debug": pp.debug,
                "jobs": pp.jobs.iter().map(|v| vec![variant_json(v)]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let templates: Vec<Value> = st
        .templates
        .iter()
        .map(|name| {
            let known = t
                .layout
                .project_stanzas()
                .iter()
                .any(|s| s.is_template && s.name.as_deref() == Some(name.as_str()));
            json!({"name": name, "defined": known})
        })
        .collect();
    json!({
        "source_context": source_context(&st.source),
        "is_template": st.is_template,
        "templates": templates,
        "default_branch": st.default_branch,
        "queue_name": st.queue,
        "merge_mode": st.merge_mode.map(|m| m.as_str()),
        "description": st.description,
        "variables": st.vars,
        "pipelines": pipelines,
    })
}

/// A project and its configuration.
#[utoipa::path(get, path = "/api/tenant/{tenant}/project/{project}", tag = "layout",
    params(("tenant" = String, Path, description = "Tenant name"),
           ("project" = String, Path, description = "Project (short or canonical name)")),
    responses((status = 200, body = ProjectDetail), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(state): State<WebState>,
    Path((tenant, project)): Path<(String, String)>,
) -> ApiResult<Json<ProjectDetail>> {
    let t = state.tenant(&tenant)?;
    let p = t
        .project(&project)
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} does not exist")))?;
    let configs: Vec<Value> = t
        .layout
        .project_stanzas()
        .iter()
        .filter(|st| !st.is_template && stanza_is_for(st, &p.canonical, &p.entry.name))
        .map(|st| stanza_json(&t, st))
        .collect();
    let default_branch = t
        .layout
        .project_default_branch(&p.canonical)
        .unwrap_or_else(|| p.default_branch.clone());
    Ok(Json(ProjectDetail {
        name: p.entry.name.clone(),
        connection_name: p.entry.connection.clone(),
        canonical_name: p.canonical.clone(),
        type_: project_type(p.entry.trusted),
        metadata: json!({
            "merge_mode": t.layout.project_merge_mode(&p.canonical).as_str(),
            "default_branch": default_branch,
            "is_template": false,
            "queue_name": t.layout.project_queue(&p.canonical),
        }),
        configs,
    }))
}

/// The configuration errors of the tenant's branch tips.
#[utoipa::path(get, path = "/api/tenant/{tenant}/config-errors", tag = "layout",
    params(("tenant" = String, Path, description = "Tenant name"), ConfigErrorsParams),
    responses((status = 200, body = Vec<ConfigErrorRecord>), (status = 404, body = ErrorBody)))]
pub async fn get_config_errors(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
    Query(filter): Query<ConfigErrorsParams>,
) -> ApiResult<Json<Vec<ConfigErrorRecord>>> {
    let t = state.tenant(&tenant)?;
    let out = t
        .errors
        .iter()
        .map(|e| {
            let short_project = crate::records::short_name(&e.location.project).to_string();
            let name = match (&e.item.item_type, &e.item.name) {
                (Some(kind), Some(name)) => Some(format!("{kind} {name}")),
                (None, Some(name)) => Some(name.clone()),
                _ => None,
            };
            let text = e.to_string();
            (
                short_project.clone(),
                ConfigErrorRecord {
                    source_context: json!({
                        "project": short_project,
                        "branch": e.location.branch,
                        "path": e.location.path,
                    }),
                    source_line: e.location.line,
                    short_error: e.kind.to_string(),
                    error: text,
                    severity: "error".into(),
                    name,
                },
            )
        })
        .filter(|(project, rec)| {
            filter
                .project
                .as_ref()
                .is_none_or(|p| p == project || e_project_matches(rec, p))
                && filter
                    .branch
                    .as_ref()
                    .is_none_or(|b| rec.source_context["branch"] == b.as_str())
                && filter.severity.as_ref().is_none_or(|s| s == "error")
                && filter.name.as_ref().is_none_or(|n| {
                    rec.name
                        .as_deref()
                        .is_some_and(|have| have.ends_with(n.as_str()))
                })
        })
        .map(|(_, rec)| rec)
        .collect();
    Ok(Json(out))
}

fn e_project_matches(rec: &ConfigErrorRecord, wanted: &str) -> bool {
    rec.source_context["project"]
        .as_str()
        .is_some_and(|p| wanted.ends_with(&format!("/{p}")))
}

/// The tenant's semaphores.
#[utoipa::path(get, path = "/api/tenant/{tenant}/semaphores", tag = "layout",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<SemaphoreRecord>), (status = 404, body = ErrorBody)))]
pub async fn get_semaphores(
    State(state): State<WebState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<SemaphoreRecord>>> {
    let t = state.tenant(&tenant)?;
    let mut out: Vec<SemaphoreRecord> = Vec::new();
    for def in t.layout.semaphores() {
        // Holders are builds (their uuids); Zuul shows each as its buildset and job.
        let mut tx = state.store().begin().await?;
        let holders = tx.semaphore_holders(&t.tenant.name, &def.name).await?;
        drop(tx);
        let mut this_tenant = Vec::new();
        for uuid in &holders {
            if let Some(b) = state.store().build(uuid).await? {
                this_tenant.push(json!({"buildset_uuid": b.buildset_uuid, "job_name": b.job_name}));
            }
        }
        out.push(SemaphoreRecord {
            name: def.name.clone(),
            global: false,
            max: def.max,
            holders: SemaphoreHolders {
                count: holders.len(),
                this_tenant,
                other_tenants: 0,
            },
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}
