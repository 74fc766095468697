//! A pipeline's GitHub rules, read from its `pipeline` item: trigger filters
//! (`trigger: {<conn>: [...]}`), requirements (`require`/`reject: {<conn>: {...}}`, also per
//! filter) and reporters (`<action>: {<conn>: {...}}`), with Zuul's matching semantics:
//! lists within a key are ORed, different keys ANDed.

use regex::Regex;
use serde_json::Value;

use crate::pull::PullRequest;

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

fn regexes(v: Option<&Value>, anchor: Anchor, what: &str) -> Result<Vec<Regex>, String> {
    strings(v)
        .into_iter()
        .map(|p| {
            let pattern = match anchor {
                Anchor::Start => format!("^(?:{p})"),
                Anchor::Full => format!("^(?:{p})$"),
                Anchor::Search => p.clone(),
            };
            Regex::new(&pattern).map_err(|e| format!("{what} regex {p:?}: {e}"))
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Anchor {
    /// Python's `re.match`.
    Start,
    /// Python's `re.fullmatch`.
    Full,
    /// Python's `re.search`.
    Search,
}

fn rank(permission: &str) -> u8 {
    match permission {
        "admin" => 3,
        "write" | "maintain" => 2,
        "read" | "triage" => 1,
        _ => 0,
    }
}

/// Whether `have` is at least `need` (`write` is satisfied by `admin`).
pub fn permission_at_least(have: &str, need: &str) -> bool {
    rank(have) >= rank(need)
}

/// `48h`, `2d`, `1w 3d`, `90m`, `30s` (or plain seconds) in seconds.
pub fn parse_age(text: &str) -> Result<i64, String> {
    let mut total = 0i64;
    let mut digits = String::new();
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| format!("bad age {text:?}"))?;
        digits.clear();
        total += n * match c {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("bad age unit {c:?} in {text:?}")),
        };
    }
    if !digits.is_empty() {
        total += digits
            .parse::<i64>()
            .map_err(|_| format!("bad age {text:?}"))?;
    }
    Ok(total)
}

/// One `review` entry of a requirement.
#[derive(Debug, Clone)]
pub struct ReviewRule {
    username: Option<Regex>,
    email: Option<Regex>,
    kind: Option<String>,
    permission: Option<String>,
    older_than: Option<i64>,
    newer_than: Option<i64>,
}

impl ReviewRule {
    fn parse(v: &Value) -> Result<ReviewRule, String> {
        let one = |key: &str| -> Result<Option<Regex>, String> {
            Ok(regexes(v.get(key), Anchor::Full, key)?.into_iter().next())
        };
        let age = |key: &str| -> Result<Option<i64>, String> {
            v.get(key)
                .map(|a| match a {
                    Value::Number(n) => n.as_i64().ok_or_else(|| format!("bad {key}")),
                    Value::String(s) => parse_age(s),
                    _ => Err(format!("bad {key}")),
                })
                .transpose()
        };
        Ok(ReviewRule {
            username: one("username")?,
            email: one("email")?,
            kind: v
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase),
            permission: v
                .get("permission")
                .and_then(Value::as_str)
                .map(str::to_string),
            older_than: age("older-than")?,
            newer_than: age("newer-than")?,
        })
    }

    fn matches(&self, r: &crate::pull::Review, now_ms: i64) -> bool {
        let age_s = (now_ms - r.submitted_at) / 1000;
        self.username
            .as_ref()
            .is_none_or(|re| re.is_match(&r.username))
            && self
                .email
                .as_ref()
                .is_none_or(|re| r.email.as_deref().is_some_and(|e| re.is_match(e)))
            && self.kind.as_ref().is_none_or(|k| *k == r.state)
            && self
                .permission
                .as_ref()
                .is_none_or(|p| permission_at_least(&r.permission, p))
            && self.older_than.is_none_or(|o| age_s >= o)
            && self.newer_than.is_none_or(|n| age_s <= n)
    }
}

/// A `require` or `reject` block for a GitHub connection.
#[derive(Debug, Clone, Default)]
pub struct Requirement {
    open: Option<bool>,
    merged: Option<bool>,
    draft: Option<bool>,
    current_patchset: Option<bool>,
    status: Vec<Regex>,
    label: Vec<String>,
    review: Vec<ReviewRule>,
}

impl Requirement {
    /// Reads a block; `Err` names the bad value.
    pub fn parse(v: &Value) -> Result<Requirement, String> {
        let flag = |key: &str| v.get(key).and_then(Value::as_bool);
        let review = match v.get("review") {
            Some(Value::Array(a)) => a.iter().map(ReviewRule::parse).collect::<Result<_, _>>()?,
            Some(one @ Value::Object(_)) => vec![ReviewRule::parse(one)?],
            _ => vec![],
        };
        Ok(Requirement {
            open: flag("open"),
            merged: flag("merged"),
            draft: flag("draft"),
            current_patchset: flag("current-patchset"),
            status: regexes(v.get("status"), Anchor::Full, "status")?,
            label: strings(v.get("label")),
            review,
        })
    }

    /// `require`: every stated condition holds. `None` when it holds, else why not.
    pub fn unmet(
        &self,
        pr: &PullRequest,
        event_patchset: Option<&str>,
        now_ms: i64,
    ) -> Option<String> {
        if let Some(open) = self.open {
            if pr.is_open() != open {
                return Some(format!("open is not {open}"));
            }
        }
        if let Some(merged) = self.merged {
            if pr.merged != merged {
                return Some(format!("merged is not {merged}"));
            }
        }
        if let Some(draft) = self.draft {
            if pr.draft != draft {
                return Some(format!("draft is not {draft}"));
            }
        }
        if self.current_patchset == Some(true) {
            if let Some(ps) = event_patchset {
                if ps != pr.head_sha {
                    return Some("not the current patchset".into());
                }
            }
        }
        for re in &self.status {
            if !pr.statuses.iter().any(|s| re.is_match(s)) {
                return Some(format!("no status matches {}", re.as_str()));
            }
        }
        for l in &self.label {
            if !pr.labels.contains(l) {
                return Some(format!("label {l} is missing"));
            }
        }
        for rule in &self.review {
            if !pr.reviews.iter().any(|r| rule.matches(r, now_ms)) {
                return Some("no review matches the requirement".into());
            }
        }
        None
    }

    /// `reject`: any stated condition holds. `Some(why)` when it rejects.
    pub fn rejects(&self, pr: &PullRequest, now_ms: i64) -> Option<String> {
        if self.open.is_some_and(|o| pr.is_open() == o) {
            return Some("open matches reject".into());
        }
        if self.merged.is_some_and(|m| pr.merged == m) {
            return Some("merged matches reject".into());
        }
        if self.draft.is_some_and(|d| pr.draft == d) {
            return Some(format!("draft is {}", pr.draft));
        }
        if let Some(s) = pr
            .statuses
            .iter()
            .find(|s| self.status.iter().any(|re| re.is_match(s)))
        {
            return Some(format!("status {s} is rejected"));
        }
        if let Some(l) = self.label.iter().find(|l| pr.labels.contains(l)) {
            return Some(format!("label {l} is rejected"));
        }
        if pr
            .reviews
            .iter()
            .any(|r| self.review.iter().any(|rule| rule.matches(r, now_ms)))
        {
            return Some("a review matches reject".into());
        }
        None
    }
}

/// One trigger filter on a GitHub connection.
#[derive(Debug, Clone, Default)]
pub struct TriggerFilter {
    events: Vec<String>,
    actions: Vec<String>,
    branches: Vec<Regex>,
    refs: Vec<Regex>,
    comments: Vec<Regex>,
    labels: Vec<String>,
    states: Vec<String>,
    statuses: Vec<Regex>,
    checks: Vec<Regex>,
    /// The acting user needs at least this permission on the repository.
    pub permission: Option<String>,
    /// Per-filter requirement.
    pub require: Option<Requirement>,
    /// Per-filter rejection.
    pub reject: Option<Requirement>,
}

impl TriggerFilter {
    /// Reads one filter mapping.
    pub fn parse(v: &Value) -> Result<TriggerFilter, String> {
        let actions = strings(v.get("action"))
            .into_iter()
            // `requested` is Zuul's deprecated alias.
            .map(|a| {
                if a == "requested" {
                    "rerequested".into()
                } else {
                    a
                }
            })
            .collect();
        Ok(TriggerFilter {
            events: strings(v.get("event")),
            actions,
            branches: regexes(v.get("branch"), Anchor::Start, "branch")?,
            refs: regexes(v.get("ref"), Anchor::Start, "ref")?,
            comments: regexes(v.get("comment"), Anchor::Search, "comment")?,
            labels: strings(v.get("label")),
            states: strings(v.get("state"))
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            statuses: regexes(v.get("status"), Anchor::Full, "status")?,
            checks: regexes(v.get("check"), Anchor::Full, "check")?,
            permission: v
                .get("permission")
                .and_then(Value::as_str)
                .map(str::to_string),
            require: v.get("require").map(Requirement::parse).transpose()?,
            reject: v.get("reject").map(Requirement::parse).transpose()?,
        })
    }

    /// Whether an event (`kind` and the payload the webhook made, with the change's `branch`)
    /// passes the filter's event-level conditions (requirements and permission are checked
    /// by the caller with the pull request at hand).
    pub fn matches_event(&self, kind: &str, payload: &Value, branch: &str) -> bool {
        let field = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or("");
        let any =
            |list: &[Regex], text: &str| list.is_empty() || list.iter().any(|r| r.is_match(text));
        self.events.iter().any(|e| e == kind)
            && (self.actions.is_empty() || self.actions.iter().any(|a| a == field("action")))
            && any(&self.branches, branch)
            && any(&self.refs, field("ref"))
            && (self.comments.is_empty()
                || (field("action") == "comment" && any(&self.comments, field("comment"))))
            && (self.labels.is_empty() || self.labels.iter().any(|l| l == field("label")))
            && (self.states.is_empty() || self.states.iter().any(|s| s == field("state")))
            && (self.statuses.is_empty()
                || (field("action") == "status" && any(&self.statuses, field("status"))))
            && (self.checks.is_empty() || any(&self.checks, field("check")))
    }
}

/// What a reporter does for one pipeline action on a GitHub connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReporterConfig {
    /// Commit status state (`pending`, `success`, `failure`).
    pub status: Option<String>,
    /// Check run state (`in_progress`, `success`, `failure`, `cancelled`, `skipped`, `neutral`).
    pub check: Option<String>,
    /// Post the report text as a comment (default true).
    pub comment: bool,
    /// Labels to add.
    pub label: Vec<String>,
    /// Labels to remove.
    pub unlabel: Vec<String>,
    /// Merge the pull request.
    pub merge: bool,
    /// A review to leave (`approve`, `request-changes`, `comment`).
    pub review: Option<String>,
    /// The review's text.
    pub review_body: Option<String>,
}

impl ReporterConfig {
    /// Reads a reporter mapping (`{}` or null is the default: a comment).
    pub fn parse(v: &Value) -> ReporterConfig {
        ReporterConfig {
            status: v.get("status").and_then(Value::as_str).map(str::to_string),
            check: v.get("check").and_then(Value::as_str).map(str::to_string),
            comment: v.get("comment").and_then(Value::as_bool).unwrap_or(true),
            label: strings(v.get("label")),
            unlabel: strings(v.get("unlabel")),
            merge: v.get("merge").and_then(Value::as_bool).unwrap_or(false),
            review: v.get("review").and_then(Value::as_str).map(str::to_string),
            review_body: v
                .get("review-body")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// Pipeline actions that have reporters.
pub const ACTIONS: [&str; 9] = [
    "enqueue",
    "start",
    "success",
    "failure",
    "merge-conflict",
    "config-error",
    "no-jobs",
    "disabled",
    "dequeue",
];

/// A pipeline's rules for every connection it names (only GitHub connections consult them).
#[derive(Debug, Clone, Default)]
pub struct PipelineRules {
    /// `(connection, filter)`.
    pub triggers: Vec<(String, TriggerFilter)>,
    /// `(connection, requirement)`.
    pub require: Vec<(String, Requirement)>,
    /// `(connection, rejection)`.
    pub reject: Vec<(String, Requirement)>,
    /// `(action, connection, reporter)`.
    pub reporters: Vec<(String, String, ReporterConfig)>,
    /// `start-message` (`{pipeline.name}` not yet replaced).
    pub start_message: String,
}

impl PipelineRules {
    /// Reads them from the pipeline item.
    pub fn parse(raw: &Value) -> Result<PipelineRules, String> {
        let mut rules = PipelineRules {
            start_message: raw
                .get("start-message")
                .and_then(Value::as_str)
                .unwrap_or("Starting {pipeline.name} jobs.")
                .to_string(),
            ..PipelineRules::default()
        };
        if let Some(trigger) = raw.get("trigger").and_then(Value::as_object) {
            for (conn, filters) in trigger {
                let list = match filters {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                for f in &list {
                    rules
                        .triggers
                        .push((conn.clone(), TriggerFilter::parse(f)?));
                }
            }
        }
        for (key, out) in [
            ("require", &mut rules.require),
            ("reject", &mut rules.reject),
        ] {
            if let Some(m) = raw.get(key).and_then(Value::as_object) {
                for (conn, v) in m {
                    out.push((conn.clone(), Requirement::parse(v)?));
                }
            }
        }
        for action in ACTIONS {
            if let Some(m) = raw.get(action).and_then(Value::as_object) {
                for (conn, v) in m {
                    rules.reporters.push((
                        action.to_string(),
                        conn.clone(),
                        ReporterConfig::parse(v),
                    ));
                }
            }
        }
        Ok(rules)
    }

    /// The reporters of `action` for `connection`, with Zuul's fallbacks (`merge-conflict` and
    /// `config-error` use `failure`'s when they have none).
    pub fn reporters_for(&self, action: &str, connection: &str) -> Vec<&ReporterConfig> {
        let find = |a: &str| -> Vec<&ReporterConfig> {
            self.reporters
                .iter()
                .filter(|(act, conn, _)| act == a && conn == connection)
                .map(|(_, _, r)| r)
                .collect()
        };
        let own = find(action);
        let has_action = self.reporters.iter().any(|(a, _, _)| a == action);
        if own.is_empty() && !has_action && matches!(action, "merge-conflict" | "config-error") {
            return find("failure");
        }
        own
    }

    /// Whether any reporter of this pipeline sets a status or check on `connection` (its
    /// context is then not required by `canMerge`).
    pub fn sets_status(&self, connection: &str) -> bool {
        self.reporters
            .iter()
            .any(|(_, c, r)| c == connection && (r.status.is_some() || r.check.is_some()))
    }

    /// Whether the success reporters of `connection` merge.
    pub fn merges(&self, connection: &str) -> bool {
        self.reporters_for("success", connection)
            .iter()
            .any(|r| r.merge)
    }

    /// The pipeline has a trigger, requirement or reporter on `connection`.
    pub fn names(&self, connection: &str) -> bool {
        self.triggers.iter().any(|(c, _)| c == connection)
            || self.reporters.iter().any(|(_, c, _)| c == connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pr() -> PullRequest {
        PullRequest {
            project: "org/a".into(),
            number: 1,
            title: String::new(),
            body: String::new(),
            head_sha: "abc".into(),
            base_branch: "main".into(),
            state: "open".into(),
            merged: false,
            draft: false,
            mergeable: Some(true),
            labels: vec!["gate".into()],
            reviews: vec![crate::pull::Review {
                username: "alice".into(),
                email: None,
                state: "approved".into(),
                submitted_at: 0,
                permission: "admin".into(),
            }],
            statuses: vec!["ci:t/check:success".into()],
            successful: vec![],
            files: vec![],
            protected: false,
            required_contexts: vec![],
            required_approvals: 0,
            author: String::new(),
            url: String::new(),
        }
    }

    #[test]
    fn trigger_filters() {
        let f = TriggerFilter::parse(&json!({"event": "pull_request", "action": "comment", "comment": "(?i)^\\s*recheck\\s*$"})).unwrap();
        let ev = json!({"action": "comment", "comment": "recheck"});
        assert!(f.matches_event("pull_request", &ev, "main"));
        assert!(!f.matches_event(
            "pull_request",
            &json!({"action": "comment", "comment": "looks good"}),
            "main"
        ));
        assert!(!f.matches_event("push", &ev, "main"));
        let f = TriggerFilter::parse(
            &json!({"event": "pull_request", "action": ["opened", "changed"], "branch": "main"}),
        )
        .unwrap();
        assert!(f.matches_event("pull_request", &json!({"action": "changed"}), "main"));
        assert!(!f.matches_event("pull_request", &json!({"action": "changed"}), "stable"));
        let f = TriggerFilter::parse(
            &json!({"event": "check_run", "action": "requested", "check": ".*/check:.*"}),
        )
        .unwrap();
        assert!(f.matches_event(
            "check_run",
            &json!({"action": "rerequested", "check": "sluice:t/check:failure"}),
            "main"
        ));
    }

    #[test]
    fn requirements() {
        let now = 10_000_000;
        let req = Requirement::parse(&json!({"open": true, "label": "gate", "review": [{"type": "approved", "permission": "write"}], "status": "ci:t/check:success"})).unwrap();
        assert_eq!(req.unmet(&pr(), None, now), None);
        let mut p = pr();
        p.labels.clear();
        assert!(req.unmet(&p, None, now).unwrap().contains("gate"));
        let mut p = pr();
        p.reviews[0].permission = "read".into();
        assert!(req.unmet(&p, None, now).is_some());
        let old = Requirement::parse(&json!({"review": {"type": "approved", "older-than": "1h"}}))
            .unwrap();
        assert_eq!(old.unmet(&pr(), None, now), None);
        assert!(old.unmet(&pr(), None, 1_000_000).is_some());
        let reject =
            Requirement::parse(&json!({"draft": true, "label": ["do-not-merge"]})).unwrap();
        assert_eq!(reject.rejects(&pr(), now), None);
        let mut p = pr();
        p.draft = true;
        assert!(reject.rejects(&p, now).is_some());
        assert_eq!(parse_age("1w 2d"), Ok(777_600));
    }

    #[test]
    fn reporters_fall_back() {
        let rules = PipelineRules::parse(&json!({
            "success": {"github": {"status": "success", "merge": true}},
            "failure": {"github": {"status": "failure", "comment": false}}
        }))
        .unwrap();
        assert!(rules.merges("github"));
        assert!(rules.sets_status("github"));
        assert_eq!(
            rules.reporters_for("merge-conflict", "github")[0]
                .status
                .as_deref(),
            Some("failure")
        );
        assert!(!rules.reporters_for("failure", "github")[0].comment);
    }
}
