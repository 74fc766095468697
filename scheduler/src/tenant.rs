//! Zuul's tenant configuration (`main.yaml`): tenants, their config-projects and
//! untrusted-projects per connection, with `include`/`exclude` of item types (also on project
//! groups). Other top-level keys (`authorization-rule`, `role`, `global-semaphore`, `api-root`)
//! are accepted and not used yet.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use sluice_config::ProjectConfig;

use crate::errors::{parse_yaml, SchedulerError};

/// Item types a project's configuration may hold, in Zuul's spelling.
pub const ITEM_TYPES: [&str; 8] = [
    "pipeline",
    "job",
    "semaphore",
    "project",
    "project-template",
    "nodeset",
    "secret",
    "queue",
];

/// One tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    /// Name.
    pub name: String,
    /// `default-parent` (Zuul's default `base`).
    pub default_parent: String,
    /// Projects in load order: config-projects first, then untrusted ones.
    pub projects: Vec<TenantProject>,
}

/// One project of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantProject {
    /// Connection name.
    pub connection: String,
    /// Project name (`org/repo`).
    pub name: String,
    /// Config-project.
    pub trusted: bool,
    /// Item types loaded from it.
    pub include: BTreeSet<String>,
}

impl TenantProject {
    /// Drops the items whose type is not loaded from this project.
    pub fn filter(&self, config: &mut ProjectConfig) {
        let keep = |t: &str| self.include.contains(t);
        if !keep("pipeline") {
            config.pipelines.clear();
        }
        if !keep("job") {
            config.jobs.clear();
        }
        if !keep("semaphore") {
            config.semaphores.clear();
        }
        if !keep("project") {
            config.projects.clear();
        }
        if !keep("project-template") {
            config.templates.clear();
        }
        if !keep("nodeset") {
            config.nodesets.clear();
        }
        if !keep("secret") {
            config.secrets.clear();
        }
        if !keep("queue") {
            config.queues.clear();
        }
    }
}

/// Reads `main.yaml`.
pub fn load_tenants(path: &Path) -> Result<Vec<TenantConfig>, SchedulerError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchedulerError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: Value = parse_yaml(path, &text)?;
    parse_tenants(path, &doc)
}

fn invalid(path: &Path, message: String) -> SchedulerError {
    SchedulerError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

/// Interprets a parsed `main.yaml`.
pub fn parse_tenants(path: &Path, doc: &Value) -> Result<Vec<TenantConfig>, SchedulerError> {
    let Some(items) = doc.as_array() else {
        return Err(invalid(
            path,
            "the tenant configuration must be a list".into(),
        ));
    };
    let mut tenants: Vec<TenantConfig> = Vec::new();
    for item in items {
        let Some(obj) = item.as_object().filter(|o| o.len() == 1) else {
            return Err(invalid(
                path,
                "each entry must be a single-key mapping".into(),
            ));
        };
        let Some((key, body)) = obj.iter().next() else {
            continue;
        };
        match key.as_str() {
            "tenant" => {
                let tenant = parse_tenant(path, body)?;
                if tenants.iter().any(|t| t.name == tenant.name) {
                    return Err(invalid(path, format!("duplicate tenant {}", tenant.name)));
                }
                tenants.push(tenant);
            }
            "authorization-rule" | "admin-rule" | "role" | "global-semaphore" | "api-root" => {}
            other => return Err(invalid(path, format!("unknown entry type {other:?}"))),
        }
    }
    Ok(tenants)
}

fn parse_tenant(path: &Path, body: &Value) -> Result<TenantConfig, SchedulerError> {
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(path, "a tenant needs a name".into()))?
        .to_string();
    let default_parent = body
        .get("default-parent")
        .and_then(Value::as_str)
        .unwrap_or("base")
        .to_string();
    let mut config = Vec::new();
    let mut untrusted = Vec::new();
    if let Some(source) = body.get("source") {
        let Some(source) = source.as_object() else {
            return Err(invalid(
                path,
                format!("tenant {name}: source must be a mapping"),
            ));
        };
        for (connection, lists) in source {
            for (key, trusted) in [("config-projects", true), ("untrusted-projects", false)] {
                let Some(list) = lists.get(key) else {
                    continue;
                };
                let out = if trusted { &mut config } else { &mut untrusted };
                parse_project_list(path, &name, connection, list, trusted, None, out)?;
            }
        }
    }
    config.extend(untrusted);
    Ok(TenantConfig {
        name,
        default_parent,
        projects: config,
    })
}

fn type_set(path: &Path, value: &Value) -> Result<BTreeSet<String>, SchedulerError> {
    let names: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        Value::Null => vec![],
        _ => {
            return Err(invalid(
                path,
                "include/exclude must be a string or a list".into(),
            ))
        }
    };
    for n in &names {
        if !ITEM_TYPES.contains(n) {
            return Err(invalid(
                path,
                format!("unknown configuration item type {n:?}"),
            ));
        }
    }
    Ok(names.into_iter().map(str::to_string).collect())
}

fn effective(
    path: &Path,
    opts: Option<&serde_json::Map<String, Value>>,
    inherited: Option<&BTreeSet<String>>,
) -> Result<BTreeSet<String>, SchedulerError> {
    let all: BTreeSet<String> = ITEM_TYPES.iter().map(|s| s.to_string()).collect();
    let mut set = match opts.and_then(|o| o.get("include")) {
        Some(v) => type_set(path, v)?,
        None => inherited.cloned().unwrap_or(all),
    };
    if let Some(v) = opts.and_then(|o| o.get("exclude")) {
        for t in type_set(path, v)? {
            set.remove(&t);
        }
    }
    Ok(set)
}

fn parse_project_list(
    path: &Path,
    tenant: &str,
    connection: &str,
    list: &Value,
    trusted: bool,
    inherited: Option<&BTreeSet<String>>,
    out: &mut Vec<TenantProject>,
) -> Result<(), SchedulerError> {
    if list.is_null() {
        // `untrusted-projects:` with nothing under it.
        return Ok(());
    }
    let Some(entries) = list.as_array() else {
        return Err(invalid(
            path,
            format!("tenant {tenant}: project lists must be lists"),
        ));
    };
    for entry in entries {
        match entry {
            Value::String(name) => out.push(TenantProject {
                connection: connection.to_string(),
                name: name.clone(),
                trusted,
                include: effective(path, None, inherited)?,
            }),
            Value::Object(obj) if obj.contains_key("projects") => {
                let group = effective(path, Some(obj), inherited)?;
                let members = obj.get("projects").cloned().unwrap_or(Value::Null);
                parse_project_list(
                    path,
                    tenant,
                    connection,
                    &members,
                    trusted,
                    Some(&group),
                    out,
                )?;
            }
            Value::Object(obj) if obj.len() == 1 => {
                let Some((name, opts)) = obj.iter().next() else {
                    continue;
                };
                out.push(TenantProject {
                    connection: connection.to_string(),
                    name: name.clone(),
                    trusted,
                    include: effective(path, opts.as_object(), inherited)?,
                });
            }
            other => {
                return Err(invalid(
                    path,
                    format!("tenant {tenant}: bad project entry {other}"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_exclude_and_groups() {
        let text = "- tenant:\n    name: t\n    source:\n      git:\n        config-projects:\n          - config\n        untrusted-projects:\n          - org/a:\n              include: [job]\n          - projects: [org/b, org/c]\n            exclude: project\n          - org/d\n";
        let doc: Value = serde_yaml_ng::from_str(text).unwrap();
        let tenants = parse_tenants(Path::new("main.yaml"), &doc).unwrap();
        let t = &tenants[0];
        assert_eq!(t.default_parent, "base");
        let names: Vec<&str> = t.projects.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["config", "org/a", "org/b", "org/c", "org/d"]);
        assert!(t.projects[0].trusted && !t.projects[1].trusted);
        assert_eq!(t.projects[1].include.iter().collect::<Vec<_>>(), ["job"]);
        assert!(!t.projects[2].include.contains("project"));
        assert!(t.projects[2].include.contains("job"));
        assert_eq!(t.projects[4].include.len(), ITEM_TYPES.len());
    }

    #[test]
    fn unknown_item_type_is_an_error() {
        let text = "- tenant:\n    name: t\n    source:\n      git:\n        untrusted-projects:\n          - org/a:\n              include: [jobs]\n";
        let doc: Value = serde_yaml_ng::from_str(text).unwrap();
        let err = parse_tenants(Path::new("main.yaml"), &doc).unwrap_err();
        assert!(err.to_string().contains("\"jobs\""), "{err}");
    }
}
