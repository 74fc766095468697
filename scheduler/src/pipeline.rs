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

/// A pipeline `require` or `reject` entry for one connection (the git driver's attributes).
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    /// The connection whose changes it applies to.
    pub connection: String,
    /// `open`: the change is open.
    pub open: Option<bool>,
    /// `merged`: the change is merged.
    pub merged: Option<bool>,
    /// `current-patchset`: the item is the change's latest patchset.
    pub current_patchset: Option<bool>,
    /// `approved`: the change was approved (`sluice change approve`) at its current patchset.
    pub approved: Option<bool>,
    /// `status`: regexes matched whole against `sluice:<tenant>/<pipeline>:<state>` statuses of
    /// the tested commit.
    pub status: Vec<Regex>,
}

/// What a requirement is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFacts {
    /// A change (false: a ref item, which has none of the change attributes).
    pub is_change: bool,
    /// Open.
    pub open: bool,
    /// Merged.
    pub merged: bool,
    /// The item's patchset is the change's latest.
    pub current_patchset: bool,
    /// Approved at its current patchset.
    pub approved: bool,
    /// Statuses of the commit, `sluice:<context>:<state>`.
    pub statuses: Vec<String>,
}

impl ChangeFilter {
    /// As a `require` entry: every attribute given holds (every `status` regex matches one of
    /// the statuses). Change attributes do not apply to ref items.
    pub fn required(&self, f: &ChangeFacts) -> bool {
        let attr = |want: Option<bool>, have: bool| !f.is_change || want.is_none_or(|w| w == have);
        attr(self.open, f.open)
            && attr(self.merged, f.merged)
            && attr(self.current_patchset, f.current_patchset)
            && attr(self.approved, f.approved)
            && self
                .status
                .iter()
                .all(|r| f.statuses.iter().any(|s| r.is_match(s)))
    }

    /// As a `reject` entry: any attribute given holds (any status matches one regex).
    pub fn rejects(&self, f: &ChangeFacts) -> bool {
        let attr = |want: Option<bool>, have: bool| f.is_change && want == Some(have);
        attr(self.open, f.open)
            || attr(self.merged, f.merged)
            || attr(self.current_patchset, f.current_patchset)
            || attr(self.approved, f.approved)
            || self
                .status
                .iter()
                .any(|r| f.statuses.iter().any(|s| r.is_match(s)))
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
    /// Triggers, requirements and reporters as the GitHub driver reads them.
    pub github: sluice_github::PipelineRules,
    /// `require`: every entry must hold for an item to enter (and stay).
    pub require: Vec<ChangeFilter>,
    /// `reject`: no entry may hold.
    pub reject: Vec<ChangeFilter>,
    /// `dequeue-on-new-patchset` (default true).
    pub dequeue_on_new_patchset: bool,
    /// `ignore-dependencies`: `Depends-On` footers are not followed.
    pub ignore_dependencies: bool,
    /// `supercedes`: enqueuing a change here dequeues it from these pipelines.
    pub supercedes: Vec<String>,
    /// `merge-conflict-message`.
    pub merge_conflict_message: String,
    /// `no-jobs-message`.
    pub no_jobs_message: String,
    /// `dequeue-message`.
    pub dequeue_message: String,
    /// `start-message`, written as a report when the pipeline has `start` reporters.
    pub start_message: Option<String>,
    /// `enqueue-message`, written as a report when the pipeline has `enqueue` reporters.
    pub enqueue_message: Option<String>,
    /// `footer-message`, appended to every report.
    pub footer_message: String,
    /// `disable-after-consecutive-failures`: after this many job failures reported in a row
    /// the pipeline reports to its `disabled` reporters only (`None`: never).
    pub disable_after: Option<u32>,
    /// The connections named under `disabled`: where reports go once the pipeline is disabled.
    pub disabled_reporters: Vec<String>,
    /// A `disabled` reporter says `merge: true` (otherwise a disabled pipeline merges nothing,
    /// as its success reporters are not used).
    pub merge_when_disabled: bool,
}

impl Pipeline {
    /// Whether an item with `facts` from `connection` may be in this pipeline.
    pub fn admits(&self, connection: &str, facts: &ChangeFacts) -> bool {
        self.require
            .iter()
            .filter(|f| f.connection == connection)
            .all(|f| f.required(facts))
            && !self
                .reject
                .iter()
                .filter(|f| f.connection == connection)
                .any(|f| f.rejects(facts))
    }

    /// Whether any `require`/`reject` entry applies to `connection`.
    pub fn has_requirements(&self, connection: &str) -> bool {
        self.require
            .iter()
            .chain(&self.reject)
            .any(|f| f.connection == connection)
    }
}

/// Every attribute of a `pipeline` item Sluice knows (Zuul's, some accepted and unused).
const PIPELINE_KEYS: &[&str] = &[
    "name",
    "description",
    "manager",
    "trigger",
    "require",
    "reject",
    "enqueue",
    "start",
    "success",
    "failure",
    "merge-conflict",
    "merge-failure",
    "config-error",
    "no-jobs",
    "disabled",
    "dequeue",
    "success-message",
    "failure-message",
    "merge-conflict-message",
    "merge-failure-message",
    "start-message",
    "enqueue-message",
    "no-jobs-message",
    "dequeue-message",
    "footer-message",
    "precedence",
    "post-review",
    "dequeue-on-new-patchset",
    "ignore-dependencies",
    "allow-other-connections",
    "allow-parameters",
    "supercedes",
    "disable-after-consecutive-failures",
    "window",
    "window-floor",
    "window-ceiling",
    "window-increase-type",
    "window-increase-factor",
    "window-decrease-type",
    "window-decrease-factor",
];

/// `require`/`reject` entries: `{<connection>: {attribute: value}}`.
fn parse_filters(raw: &Value, key: &str) -> Result<Vec<ChangeFilter>, String> {
    let Some(map) = raw.get(key) else {
        return Ok(Vec::new());
    };
    let Some(map) = map.as_object() else {
        return Err(format!("{key}: expected a dict of connection names"));
    };
    let mut out = Vec::new();
    for (connection, attrs) in map {
        let Some(attrs) = attrs.as_object() else {
            return Err(format!(
                "{key}: {connection}: expected a dict of attributes"
            ));
        };
        let mut f = ChangeFilter {
            connection: connection.clone(),
            ..Default::default()
        };
        for (attr, value) in attrs {
            let flag = || {
                value
                    .as_bool()
                    .ok_or_else(|| format!("{key}: {connection}: {attr} must be true or false"))
            };
            match attr.as_str() {
                "open" => f.open = Some(flag()?),
                "merged" => f.merged = Some(flag()?),
                "current-patchset" => f.current_patchset = Some(flag()?),
                "approved" => f.approved = Some(flag()?),
                "status" => {
                    for r in strings(value) {
                        f.status.push(
                            Regex::new(&format!("^(?:{r})$"))
                                .map_err(|e| format!("{key}: {connection}: status regex {r:?}: {e}"))?,
                        );
                    }
                }
                // GitHub's own attributes: sluice-github reads them (`PipelineRules`).
                "draft" | "label" | "review" => {}
                other => {
                    return Err(format!(
                        "{key}: {connection}: unknown attribute {other:?} (the git driver knows open, merged, current-patchset, approved, status; GitHub also draft, label, review)"
                    ))
                }
            }
        }
        out.push(f);
    }
    Ok(out)
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

/// Zuul's default `merge-conflict-message`.
pub const MERGE_CONFLICT_MESSAGE: &str = "Merge Failed.\n\nThis change or one of its cross-repo dependencies was unable to be automatically merged with the current state of its repository. Please rebase the change and upload a new patchset.";

/// Reads a pipeline item; `Err` says why it cannot be used (unsupported manager, bad regex).
pub fn parse_pipeline(def: &PipelineDef) -> Result<Pipeline, String> {
    let raw = &def.raw;
    if let Some(map) = raw.as_object() {
        if let Some(unknown) = map.keys().find(|k| !PIPELINE_KEYS.contains(&k.as_str())) {
            return Err(format!("unknown pipeline attribute {unknown:?}"));
        }
    }
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
    let merges = |action: &str| {
        raw.get(action)
            .and_then(Value::as_object)
            .is_some_and(|reporters| {
                reporters
                    .values()
                    .any(|r| r.get("merge").and_then(Value::as_bool) == Some(true))
            })
    };
    let merge_on_success = merges("success");
    let disable_after = match raw.get("disable-after-consecutive-failures") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n >= 1)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!(
                        "disable-after-consecutive-failures must be a positive integer, not {v}"
                    )
                })?,
        ),
    };
    let disabled_reporters = raw
        .get("disabled")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
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
    let flag = |key: &str, default: bool| raw.get(key).and_then(Value::as_bool).unwrap_or(default);
    // A report action (`start`, `enqueue`) is wanted when it names a connection.
    let reports = |key: &str| {
        raw.get(key)
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
    };
    let pipeline_name = def.name.clone();
    let optional_message = |key: &str, default: &str, wanted: bool| {
        wanted.then(|| message(key, default).replace("{pipeline.name}", &pipeline_name))
    };
    let github = sluice_github::PipelineRules::parse(raw)?;
    Ok(Pipeline {
        github,
        window,
        post_review: flag("post-review", false),
        require: parse_filters(raw, "require")?,
        reject: parse_filters(raw, "reject")?,
        dequeue_on_new_patchset: flag("dequeue-on-new-patchset", true),
        ignore_dependencies: flag("ignore-dependencies", false),
        supercedes: raw.get("supercedes").map(strings).unwrap_or_default(),
        merge_conflict_message: raw
            .get("merge-conflict-message")
            .or_else(|| raw.get("merge-failure-message"))
            .and_then(Value::as_str)
            .unwrap_or(MERGE_CONFLICT_MESSAGE)
            .to_string(),
        no_jobs_message: message("no-jobs-message", ""),
        dequeue_message: message("dequeue-message", "Build canceled."),
        start_message: optional_message(
            "start-message",
            "Starting {pipeline.name} jobs.",
            reports("start"),
        ),
        enqueue_message: optional_message("enqueue-message", "", reports("enqueue")),
        footer_message: message("footer-message", ""),
        disable_after,
        disabled_reporters,
        merge_when_disabled: merges("disabled"),
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

    fn pipeline(yaml: &str) -> Result<Pipeline, String> {
        let raw: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let def = PipelineDef {
            name: "gate".into(),
            raw,
            source: sluice_config::SourceContext {
                project: "localhost/config".into(),
                short_name: "config".into(),
                hostname: "localhost".into(),
                branch: "main".into(),
                path: "zuul.yaml".into(),
                trusted: true,
                line: 1,
                column: 1,
                implied_branch_matchers: None,
                implied_branches: None,
            },
        };
        parse_pipeline(&def)
    }

    #[test]
    fn require_and_reject_for_the_git_driver() {
        let p = pipeline(
            "name: gate\nmanager: dependent\ntrigger: {git: [{event: change-approved}]}\nrequire:\n  git:\n    open: true\n    status: 'sluice:t/check:success'\nreject:\n  git:\n    status: ['.*:failure']\n",
        )
        .unwrap();
        let passing = ChangeFacts {
            is_change: true,
            open: true,
            statuses: vec!["sluice:t/check:success".into()],
            ..Default::default()
        };
        assert!(p.admits("git", &passing));
        // Another connection's changes are not checked here.
        assert!(p.admits("other", &ChangeFacts::default()));
        let unchecked = ChangeFacts {
            statuses: vec![],
            ..passing.clone()
        };
        assert!(!p.admits("git", &unchecked));
        let failed_elsewhere = ChangeFacts {
            statuses: vec![
                "sluice:t/check:success".into(),
                "sluice:t/other:failure".into(),
            ],
            ..passing.clone()
        };
        assert!(!p.admits("git", &failed_elsewhere));
        let closed = ChangeFacts {
            open: false,
            ..passing
        };
        assert!(!p.admits("git", &closed));
    }

    #[test]
    fn options_and_their_errors() {
        let p = pipeline(
            "name: gate\nmanager: independent\ntrigger: {}\nsupercedes: check\ndequeue-on-new-patchset: false\nignore-dependencies: true\nstart: {git: {}}\nfooter-message: bye\n",
        )
        .unwrap();
        assert_eq!(p.supercedes, ["check"]);
        assert!(!p.dequeue_on_new_patchset && p.ignore_dependencies);
        assert_eq!(p.start_message.as_deref(), Some("Starting gate jobs."));
        assert_eq!(p.enqueue_message, None);
        assert_eq!(p.footer_message, "bye");
        assert_eq!(p.disable_after, None);
        let p = pipeline(
            "name: x\nmanager: dependent\ntrigger: {}\ndisable-after-consecutive-failures: 3\ndisabled: {git: {merge: true}}\n",
        )
        .unwrap();
        assert_eq!(p.disable_after, Some(3));
        assert_eq!(p.disabled_reporters, ["git"]);
        assert!(p.merge_when_disabled && !p.merge_on_success);
        for (yaml, wanted) in [
            (
                "name: x\nmanager: independent\ndisable-after-consecutive-failures: 0\n",
                "disable-after-consecutive-failures must be a positive integer, not 0",
            ),
            (
                "name: x\nmanager: independent\ncolour: red\n",
                "unknown pipeline attribute \"colour\"",
            ),
            (
                "name: x\nmanager: independent\nrequire: {git: {flavour: x}}\n",
                "unknown attribute \"flavour\"",
            ),
            (
                "name: x\nmanager: independent\nrequire: {git: {open: yes-please}}\n",
                "open must be true or false",
            ),
            (
                "name: x\nmanager: independent\ntrigger: {timer: [{time: '* *'}]}\n",
                "expected 5 to 7 fields",
            ),
        ] {
            let e = pipeline(yaml).unwrap_err();
            assert!(e.contains(wanted), "{yaml}: {e}");
        }
    }

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
