//! Pipelines as the scheduler uses them, read from the layout's `pipeline` items: manager,
//! trigger filters per connection, the `merge` flag of success reporters, precedence and the
//! report messages.

use regex::Regex;
use serde_json::Value;
use sluice_config::PipelineDef;

/// How a pipeline's items relate to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// Every item on its own (check).
    Independent,
    /// Shared change queues, items tested on top of the ones ahead (gate).
    Dependent,
}

/// One trigger filter.
#[derive(Debug, Clone)]
pub struct TriggerFilter {
    /// The connection it listens to.
    pub connection: String,
    /// Event kinds (`patchset-created`, `change-approved`, `ref-updated`).
    pub events: Vec<String>,
    /// Target branch regexes (empty: any).
    pub branches: Vec<Regex>,
}

impl TriggerFilter {
    /// Whether an event of `kind` on `branch` from `connection` matches.
    pub fn matches(&self, connection: &str, kind: &str, branch: &str) -> bool {
        self.connection == connection
            && self.events.iter().any(|e| e == kind)
            && (self.branches.is_empty() || self.branches.iter().any(|r| r.is_match(branch)))
    }
}

/// A pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Name.
    pub name: String,
    /// Manager.
    pub manager: Manager,
    /// Trigger filters (ORed).
    pub triggers: Vec<TriggerFilter>,
    /// A success reporter for a connection says `merge: true`: successful items merge.
    pub merge_on_success: bool,
    /// 100, 200 or 300.
    pub precedence: i64,
    /// `success-message`.
    pub success_message: String,
    /// `failure-message`.
    pub failure_message: String,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![],
    }
}

/// Reads a pipeline item; `Err` says why it cannot be used (unsupported manager, bad regex).
pub fn parse_pipeline(def: &PipelineDef) -> Result<Pipeline, String> {
    let raw = &def.raw;
    let manager = match raw.get("manager").and_then(Value::as_str) {
        Some("independent") => Manager::Independent,
        Some("dependent") => Manager::Dependent,
        Some(other) => return Err(format!("manager {other:?} is not supported yet")),
        None => return Err("no manager".into()),
    };
    let mut triggers = Vec::new();
    if let Some(trigger) = raw.get("trigger").and_then(Value::as_object) {
        for (connection, filters) in trigger {
            let filters = match filters {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            for f in filters {
                let mut branches = Vec::new();
                for b in f.get("branch").map(strings).unwrap_or_default() {
                    let re = Regex::new(&format!("^(?:{b})"))
                        .map_err(|e| format!("trigger branch regex {b:?}: {e}"))?;
                    branches.push(re);
                }
                triggers.push(TriggerFilter {
                    connection: connection.clone(),
                    events: f.get("event").map(strings).unwrap_or_default(),
                    branches,
                });
            }
        }
    }
    let merge_on_success = raw
        .get("success")
        .and_then(Value::as_object)
        .is_some_and(|reporters| {
            reporters
                .values()
                .any(|r| r.get("merge").and_then(Value::as_bool) == Some(true))
        });
    let precedence = match raw.get("precedence").and_then(Value::as_str) {
        Some("high") => 100,
        Some("low") => 300,
        _ => 200,
    };
    let message = |key: &str, default: &str| {
        raw.get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    Ok(Pipeline {
        name: def.name.clone(),
        manager,
        triggers,
        merge_on_success,
        precedence,
        success_message: message("success-message", "Build succeeded."),
        failure_message: message("failure-message", "Build failed."),
    })
}
