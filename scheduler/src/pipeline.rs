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
    /// Shared change queues, one item at a time, nothing merged (deploy).
    Serial,
    /// One queue per project and branch: one item running, at most one waiting.
    Supercedent,
}

/// A dependent pipeline's window rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Starting size; 0 is unlimited.
    pub size: i64,
    /// Never below this.
    pub floor: i64,
    /// Never above this (`None`: no ceiling).
    pub ceiling: Option<i64>,
    /// Growth after a merge: linear (add) or exponential (multiply).
    pub increase_linear: bool,
    /// Growth factor.
    pub increase_factor: i64,
    /// Shrink after a failure: linear (subtract) or exponential (divide).
    pub decrease_linear: bool,
    /// Shrink factor.
    pub decrease_factor: i64,
}

impl Window {
    /// The size after an item merged.
    pub fn grow(&self, current: i64) -> i64 {
        let next = if self.increase_linear {
            current.saturating_add(self.increase_factor)
        } else {
            current.saturating_mul(self.increase_factor.max(1))
        };
        self.ceiling.map_or(next, |c| next.min(c))
    }

    /// The size after an item failed.
    pub fn shrink(&self, current: i64) -> i64 {
        let next = if self.decrease_linear {
            current - self.decrease_factor
        } else {
            current / self.decrease_factor.max(1)
        };
        next.max(self.floor)
    }
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
    /// Window rules (dependent pipelines).
    pub window: Window,
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
        Some("serial") => Manager::Serial,
        Some("supercedent") => Manager::Supercedent,
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
    let int = |key: &str, default: i64| raw.get(key).and_then(Value::as_i64).unwrap_or(default);
    let linear = |key: &str, default: bool| match raw.get(key).and_then(Value::as_str) {
        Some("linear") => true,
        Some("exponential") => false,
        _ => default,
    };
    let window = Window {
        size: int("window", 20),
        floor: int("window-floor", 3),
        ceiling: raw.get("window-ceiling").and_then(Value::as_i64),
        increase_linear: linear("window-increase-type", true),
        increase_factor: int("window-increase-factor", 1),
        decrease_linear: linear("window-decrease-type", false),
        decrease_factor: int("window-decrease-factor", 2),
    };
    Ok(Pipeline {
        window,
        name: def.name.clone(),
        manager,
        triggers,
        merge_on_success,
        precedence,
        success_message: message("success-message", "Build succeeded."),
        failure_message: message("failure-message", "Build failed."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rules() {
        let w = Window {
            size: 20,
            floor: 3,
            ceiling: Some(21),
            increase_linear: true,
            increase_factor: 1,
            decrease_linear: false,
            decrease_factor: 2,
        };
        assert_eq!(w.grow(20), 21);
        assert_eq!(w.grow(21), 21);
        assert_eq!(w.shrink(20), 10);
        assert_eq!(w.shrink(5), 3);
        let exp = Window {
            increase_linear: false,
            increase_factor: 2,
            decrease_linear: true,
            decrease_factor: 1,
            ceiling: None,
            ..w
        };
        assert_eq!(exp.grow(4), 8);
        assert_eq!(exp.shrink(4), 3);
    }
}
