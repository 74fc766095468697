//! Pipelines as the scheduler uses them, read from the layout's `pipeline` items: manager,
//! trigger filters per connection (git events, the timer trigger), the `merge` flag of success reporters, precedence and the
//! report messages.

use regex::Regex;
use serde_json::Value;
use sluice_config::PipelineDef;

use crate::timer::CronSpec;

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

/// One trigger filter. Lists within a key are ORed, different keys ANDed.
#[derive(Debug, Clone)]
pub struct TriggerFilter {
    /// The connection it listens to (`timer` for the timer trigger).
    pub connection: String,
    /// Event kinds (`patchset-created`, `change-approved`, `change-abandoned`,
    /// `ref-updated`; `timer` for the timer trigger).
    pub events: Vec<String>,
    /// Target branch regexes, matched at the start (empty: any).
    pub branches: Vec<Regex>,
    /// Full ref regexes, matched against the whole ref (empty: any).
    pub refs: Vec<Regex>,
    /// `ignore-deletes` (default true): a deleted ref does not match.
    pub ignore_deletes: bool,
    /// Timer trigger: the `time` specs.
    pub timespecs: Vec<CronSpec>,
    /// Timer trigger: `dereference` (items carry the branch head as `newrev`).
    pub dereference: bool,
}

impl TriggerFilter {
    /// Whether a review event of `kind` on target `branch` from `connection` matches.
    pub fn matches(&self, connection: &str, kind: &str, branch: &str) -> bool {
        self.connection == connection
            && self.events.iter().any(|e| e == kind)
            && (self.branches.is_empty() || self.branches.iter().any(|r| r.is_match(branch)))
    }

    /// Whether a `ref-updated` event on `refname` (`branch`: its branch, `None` for tags)
    /// matches; `deleted` when the ref is gone.
    pub fn matches_ref(
        &self,
        connection: &str,
        refname: &str,
        branch: Option<&str>,
        deleted: bool,
    ) -> bool {
        self.connection == connection
            && self.events.iter().any(|e| e == "ref-updated")
            && (self.refs.is_empty() || self.refs.iter().any(|r| r.is_match(refname)))
            && (self.branches.is_empty()
                || branch.is_some_and(|b| self.branches.iter().any(|r| r.is_match(b))))
            && !(deleted && self.ignore_deletes)
    }

    /// True for a timer trigger's filter.
    pub fn is_timer(&self) -> bool {
        self.connection == TIMER
    }
}

/// The timer trigger's connection name (Zuul's timer driver).
pub const TIMER: &str = "timer";

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
    /// `post-review`: jobs see `zuul.post_review` true (and post-review jobs may run).
    pub post_review: bool,
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

fn parse_filter(connection: &str, f: &Value) -> Result<TriggerFilter, String> {
    let regexes = |key: &str, whole: bool| -> Result<Vec<Regex>, String> {
        f.get(key)
            .map(strings)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let anchored = if whole {
                    format!("^(?:{r})$")
                } else {
                    format!("^(?:{r})")
                };
                Regex::new(&anchored).map_err(|e| format!("trigger {key} regex {r:?}: {e}"))
            })
            .collect()
    };
    if connection == TIMER {
        let times = f.get("time").map(strings).unwrap_or_default();
        if times.is_empty() {
            return Err("a timer trigger needs `time`".into());
        }
        let timespecs = times
            .iter()
            .map(|t| CronSpec::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(TriggerFilter {
            connection: connection.to_string(),
            events: vec![TIMER.into()],
            branches: Vec::new(),
            refs: Vec::new(),
            ignore_deletes: true,
            timespecs,
            dereference: f.get("dereference").and_then(Value::as_bool) == Some(true),
        });
    }
    Ok(TriggerFilter {
        connection: connection.to_string(),
        events: f.get("event").map(strings).unwrap_or_default(),
        branches: regexes("branch", false)?,
        refs: regexes("ref", true)?,
        ignore_deletes: f.get("ignore-deletes").and_then(Value::as_bool) != Some(false),
        timespecs: Vec::new(),
        dereference: false,
    })
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
                triggers.push(parse_filter(connection, &f)?);
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
        post_review: raw.get("post-review").and_then(Value::as_bool) == Some(true),
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
