//! Pure formatting of callback events into job-output.txt messages (without timestamps): play and
//! task banners, per-host result lines (ok/changed/ERROR, pretty JSON, `Runtime:` for command
//! tasks, loop items), includes and the PLAY RECAP.
//!
//! The Python callback hands over plain data (an [`Event`], or a [`HostResult`] read straight
//! from Ansible's result by the pyo3 layer); everything about how it reads in the log is decided
//! here.

use crate::errors::CallbackError;
use crate::pyjson::{dumps_indent, py_str};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A callback event to format.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A play starts.
    Play {
        /// `play.get_name()`.
        name: String,
    },
    /// A task starts.
    Task(TaskStart),
    /// Hosts included a task file.
    Include {
        /// The hosts.
        hosts: Vec<String>,
        /// The included file.
        file: String,
    },
    /// A task succeeded on a host.
    Ok(HostResult),
    /// A task failed on a host.
    Failed(HostResult),
    /// A task was skipped on a host.
    Skipped(HostResult),
    /// A host was unreachable.
    Unreachable(HostResult),
    /// A loop item succeeded.
    ItemOk(HostResult),
    /// A loop item failed.
    ItemFailed(HostResult),
    /// A loop item was skipped.
    ItemSkipped(HostResult),
    /// The playbook ended.
    Stats {
        /// Per-host counters.
        hosts: BTreeMap<String, HostStats>,
    },
}

/// A task banner's inputs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskStart {
    /// `task.get_name()`.
    pub name: String,
    /// The task's action as written (`shell`, `ansible.builtin.command`, …).
    #[serde(default)]
    pub action: String,
    /// Whether the task has an explicit name.
    #[serde(default)]
    pub named: bool,
    /// `_raw_params` of the task's args, if any.
    #[serde(default)]
    pub raw_params: Option<String>,
    /// `_uses_shell` of the task's args.
    #[serde(default)]
    pub uses_shell: bool,
    /// Whether the task loops.
    #[serde(default)]
    pub is_loop: bool,
}

/// One host's result for a task (or loop item).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostResult {
    /// The host as shown: `<host>` or `<host> -> <delegate>`.
    pub host: String,
    /// The task's action as written.
    #[serde(default)]
    pub action: String,
    /// Whether the task loops.
    #[serde(default)]
    pub is_loop: bool,
    /// Print the captured stdout/stderr lines (localhost, raw and unstreamed tasks).
    #[serde(default)]
    pub print_stdout: bool,
    /// The task has `ignore_errors`.
    #[serde(default)]
    pub ignore_errors: bool,
    /// The task has `no_log`.
    #[serde(default)]
    pub no_log: bool,
    /// The loop item's label (items only).
    #[serde(default)]
    pub item_label: Option<Value>,
    /// The module result, converted to plain JSON.
    #[serde(default)]
    pub result: Map<String, Value>,
}

/// PLAY RECAP counters of one host (Ansible's `stats.summarize(host)`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[allow(missing_docs)]
pub struct HostStats {
    #[serde(default)]
    pub ok: u64,
    #[serde(default)]
    pub changed: u64,
    #[serde(default)]
    pub unreachable: u64,
    #[serde(default)]
    pub failures: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub rescued: u64,
    #[serde(default)]
    pub ignored: u64,
}

/// Keys never shown in result JSON on the console.
const HIDDEN_KEYS: &[&str] = &[
    "stdout",
    "stderr",
    "stdout_lines",
    "stderr_lines",
    "changed",
    "cmd",
    "zuul_log_id",
    "invocation",
];
const ITEM_KEYS: &[&str] = &[
    "item",
    "ansible_loop_var",
    "ansible_index_var",
    "ansible_loop",
];
const NO_LOG: &str = "Output suppressed because no_log was given";

/// `ansible.builtin.X` / `ansible.legacy.X` → `X`.
pub fn short_action(action: &str) -> &str {
    action
        .strip_prefix("ansible.builtin.")
        .or_else(|| action.strip_prefix("ansible.legacy."))
        .unwrap_or(action)
}

/// Whether the (short or FQCN) action runs a command whose output the node console captures.
pub fn is_command_action(action: &str) -> bool {
    matches!(
        short_action(action),
        "command" | "shell" | "win_command" | "win_shell"
    )
}

/// Parses an event given as JSON and formats it.
pub fn format_event_json(event_json: &str) -> Result<Vec<String>, CallbackError> {
    let event: Event = serde_json::from_str(event_json)?;
    Ok(format_event(&event))
}

/// Reads an event from a JSON value and formats it.
pub fn format_event_value(event: Value) -> Result<Vec<String>, CallbackError> {
    let event: Event = serde_json::from_value(event)?;
    Ok(format_event(&event))
}

/// The job-output.txt messages for one event.
pub fn format_event(event: &Event) -> Vec<String> {
    match event {
        Event::Play { name } => vec![String::new(), format!("PLAY [{}]", name.trim())],
        Event::Task(t) => vec![String::new(), task_banner(t)],
        Event::Include { hosts, file } => hosts
            .iter()
            .map(|h| format!("{h} | included: {file}"))
            .collect(),
        Event::Ok(r) => format_result(ResultKind::Ok, r),
        Event::Failed(r) => format_result(ResultKind::Failed, r),
        Event::Skipped(r) => format_result(ResultKind::Skipped, r),
        Event::Unreachable(r) => format_result(ResultKind::Unreachable, r),
        Event::ItemOk(r) => format_result(ResultKind::ItemOk, r),
        Event::ItemFailed(r) => format_result(ResultKind::ItemFailed, r),
        Event::ItemSkipped(r) => format_result(ResultKind::ItemSkipped, r),
        Event::Stats { hosts } => recap(hosts),
    }
}

/// The kinds of per-host result events (the `event` names of [`Event`]'s result variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// A task succeeded on a host.
    Ok,
    /// A task failed on a host.
    Failed,
    /// A task was skipped on a host.
    Skipped,
    /// A host was unreachable.
    Unreachable,
    /// A loop item succeeded.
    ItemOk,
    /// A loop item failed.
    ItemFailed,
    /// A loop item was skipped.
    ItemSkipped,
}

impl std::str::FromStr for ResultKind {
    type Err = CallbackError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ok" => ResultKind::Ok,
            "failed" => ResultKind::Failed,
            "skipped" => ResultKind::Skipped,
            "unreachable" => ResultKind::Unreachable,
            "item_ok" => ResultKind::ItemOk,
            "item_failed" => ResultKind::ItemFailed,
            "item_skipped" => ResultKind::ItemSkipped,
            other => {
                return Err(CallbackError::Shape(format!(
                    "unknown result event {other:?}"
                )))
            }
        })
    }
}

/// The job-output.txt messages for one host's result.
pub fn format_result(kind: ResultKind, r: &HostResult) -> Vec<String> {
    match kind {
        ResultKind::Ok => on_ok(r),
        ResultKind::Failed => on_failed(r),
        ResultKind::Skipped => {
            let reason = str_key(&r.result, "skip_reason").or_else(|| {
                if r.is_loop {
                    str_key(&r.result, "msg")
                } else {
                    None
                }
            });
            message(&r.host, "skipping", reason)
        }
        ResultKind::Unreachable => {
            error_block(&r.host, "UNREACHABLE", &r.result, &["msg", "unreachable"])
        }
        ResultKind::ItemOk => on_item_ok(r),
        ResultKind::ItemFailed => on_item_failed(r),
        ResultKind::ItemSkipped => message(
            &r.host,
            "skipping",
            Some(&format!("Item: {}", item_label(r))),
        ),
    }
}

/// `TASK [<name>]` / `LOOP [<name>]`; unnamed one-line command tasks show `<module>: <cmd>`.
pub fn task_banner(t: &TaskStart) -> String {
    let kind = if t.is_loop { "LOOP" } else { "TASK" };
    let mut name = t.name.trim().to_string();
    let action = short_action(&t.action);
    if !t.named && matches!(action, "command" | "shell") {
        let module = if t.uses_shell || action == "shell" {
            "shell"
        } else {
            "command"
        };
        match t
            .raw_params
            .as_deref()
            .map(|p| p.split('\n').collect::<Vec<_>>())
        {
            Some(lines) if lines.len() == 1 => name = format!("{module}: {}", lines[0]),
            _ => name = module.to_string(),
        }
    }
    format!("{kind} [{name}]")
}

/// `PLAY RECAP` with one line per host, sorted.
pub fn recap(hosts: &BTreeMap<String, HostStats>) -> Vec<String> {
    let mut out = vec![String::new(), "PLAY RECAP".to_string()];
    for (host, s) in hosts {
        out.push(format!(
            "{host} | ok: {} changed: {} unreachable: {} failed: {} skipped: {} rescued: {} ignored: {}",
            s.ok, s.changed, s.unreachable, s.failures, s.skipped, s.rescued, s.ignored
        ));
    }
    out.push(String::new());
    out
}

fn str_key<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn flag(m: &Map<String, Value>, k: &str) -> bool {
    matches!(m.get(k), Some(Value::Bool(true)))
}

/// `<host> | <status>`, `<host> | <status>: <msg>`, or for a multi-line message a
/// `<host> | <status>:` header and one `<host> | <line>` per line.
pub fn message(host: &str, status: &str, msg: Option<&str>) -> Vec<String> {
    match msg.map(str::trim_end) {
        Some(m) if !m.is_empty() => {
            let lines: Vec<&str> = m.split('\n').collect();
            if lines.len() > 1 {
                let mut out = vec![format!("{host} | {status}:")];
                out.extend(lines.iter().map(|l| format!("{host} | {l}")));
                out
            } else {
                vec![format!("{host} | {status}: {m}")]
            }
        }
        _ => vec![format!("{host} | {status}")],
    }
}

/// Pretty JSON (indent 2, sorted keys), each line prefixed with the host.
pub fn json_lines(host: &str, value: &Value) -> Vec<String> {
    dumps_indent(value, 2)
        .split('\n')
        .map(|l| format!("{host} | {l}"))
        .collect()
}

/// The result without Ansible-internal and console-redundant keys.
pub fn clean_result(result: &Map<String, Value>, extra: &[&str]) -> Map<String, Value> {
    result
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("_ansible")
                && !HIDDEN_KEYS.contains(&k.as_str())
                && !extra.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn output_lines(host: &str, result: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (lines_key, text_key) in [("stdout_lines", "stdout"), ("stderr_lines", "stderr")] {
        match (result.get(lines_key), result.get(text_key)) {
            (Some(Value::Array(lines)), _) => {
                out.extend(lines.iter().map(|l| format!("{host} | {}", py_str(l))));
            }
            (_, Some(Value::String(text))) if !text.is_empty() => {
                out.extend(
                    text.trim_end_matches('\n')
                        .split('\n')
                        .map(|l| format!("{host} | {l}")),
                );
            }
            _ => {}
        }
    }
    out
}

fn status_of(r: &HostResult) -> &'static str {
    if flag(&r.result, "changed") {
        "changed"
    } else {
        "ok"
    }
}

fn suppressed(r: &HostResult) -> bool {
    r.no_log || flag(&r.result, "_ansible_no_log")
}

/// `<host> | <status>` + JSON, or `<host> | <status>: <msg>` when only `simple` keys remain.
fn error_block(
    host: &str,
    status: &str,
    result: &Map<String, Value>,
    simple: &[&str],
) -> Vec<String> {
    // Like Ansible's own result dumps, the `exception` text is not part of the JSON block.
    let cleaned = clean_result(result, &["exception"]);
    if let Some(msg) = str_key(&cleaned, "msg") {
        if cleaned.keys().all(|k| simple.contains(&k.as_str())) {
            return message(host, status, Some(msg));
        }
    }
    let mut out = vec![format!("{host} | {status}")];
    out.extend(json_lines(host, &Value::Object(cleaned)));
    out
}

fn on_ok(r: &HostResult) -> Vec<String> {
    let action = short_action(&r.action);
    if suppressed(r) {
        return vec![format!("{} | {NO_LOG}", r.host)];
    }
    if matches!(
        action,
        "include_tasks" | "include_role" | "import_tasks" | "import_role" | "include"
    ) {
        return Vec::new();
    }
    let status = status_of(r);
    if r.is_loop && r.result.contains_key("results") {
        let mut out = message(&r.host, status, Some("All items complete"));
        out.push(String::new());
        return out;
    }
    let mut out = if r.print_stdout {
        output_lines(&r.host, &r.result)
    } else {
        Vec::new()
    };
    if is_command_action(action) {
        match str_key(&r.result, "delta") {
            Some(delta) => out.extend(message(&r.host, "ok", Some(&format!("Runtime: {delta}")))),
            None => out.extend(message(&r.host, status, str_key(&r.result, "msg"))),
        }
    } else if action == "debug" {
        match r.result.get("msg") {
            Some(Value::String(msg)) => out.extend(msg.trim_end().split('\n').map(str::to_string)),
            Some(other) => out.extend(dumps_indent(other, 2).split('\n').map(str::to_string)),
            None => {
                let cleaned = clean_result(&r.result, &["failed"]);
                out.push(format!("{} | {status}", r.host));
                if !cleaned.is_empty() {
                    out.extend(json_lines(&r.host, &Value::Object(cleaned)));
                }
            }
        }
    } else {
        out.extend(message(&r.host, status, str_key(&r.result, "msg")));
    }
    out
}

fn on_failed(r: &HostResult) -> Vec<String> {
    let mut out = if r.print_stdout && !suppressed(r) {
        output_lines(&r.host, &r.result)
    } else {
        Vec::new()
    };
    if suppressed(r) {
        out.push(format!("{} | {NO_LOG}", r.host));
    } else if r.is_loop && r.result.contains_key("results") {
        out.extend(message(&r.host, "ERROR", Some("All items complete")));
        out.push(String::new());
    } else if str_key(&r.result, "msg").is_some_and(|m| m.starts_with("MODULE FAILURE")) {
        out.push(format!("{} | MODULE FAILURE:", r.host));
        for key in ["module_stdout", "exception", "module_stderr"] {
            if let Some(text) = str_key(&r.result, key) {
                let text = text.trim_end();
                if !text.is_empty() {
                    out.extend(text.split('\n').map(|l| format!("{} | {l}", r.host)));
                }
            }
        }
    } else {
        out.extend(error_block(&r.host, "ERROR", &r.result, &["msg", "failed"]));
    }
    if r.ignore_errors {
        out.push(format!("{} | Ignoring Errors", r.host));
    }
    out
}

fn item_label(r: &HostResult) -> String {
    let label = r
        .item_label
        .as_ref()
        .or_else(|| r.result.get("_ansible_item_label"))
        .or_else(|| r.result.get("item"));
    label.map(py_str).unwrap_or_default()
}

fn on_item_ok(r: &HostResult) -> Vec<String> {
    let label = item_label(r);
    if suppressed(r) {
        return vec![format!("{} | {NO_LOG}", r.host)];
    }
    let mut out = if r.print_stdout {
        output_lines(&r.host, &r.result)
    } else {
        Vec::new()
    };
    if is_command_action(&r.action) {
        let delta = str_key(&r.result, "delta").unwrap_or("");
        out.extend(message(
            &r.host,
            "ok",
            Some(&format!("Item: {label} Runtime: {delta}")),
        ));
    } else {
        out.extend(message(
            &r.host,
            status_of(r),
            Some(&format!("Item: {label}")),
        ));
        if short_action(&r.action) == "debug" {
            if let Some(Value::String(msg)) = r.result.get("msg") {
                out.extend(msg.trim_end().split('\n').map(str::to_string));
            }
        }
    }
    out
}

fn on_item_failed(r: &HostResult) -> Vec<String> {
    let label = item_label(r);
    if suppressed(r) {
        return vec![format!("{} | {NO_LOG}", r.host)];
    }
    let mut out = if r.print_stdout {
        output_lines(&r.host, &r.result)
    } else {
        Vec::new()
    };
    if is_command_action(&r.action) {
        let rc = r.result.get("rc").map(py_str).unwrap_or_default();
        out.extend(message(
            &r.host,
            "ok",
            Some(&format!("Item: {label} Result: {rc}")),
        ));
    } else {
        out.extend(message(&r.host, "ERROR", Some(&format!("Item: {label}"))));
        let cleaned = clean_result(&r.result, ITEM_KEYS);
        out.extend(json_lines(&r.host, &Value::Object(cleaned)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SAMPLE_TXT: &str = include_str!("../testdata/zuul-14.3-hello.job-output.txt");
    const SAMPLE_JSON: &str = include_str!("../testdata/zuul-14.3-hello.job-output.json");

    fn ev(v: Value) -> Vec<String> {
        format_event_json(&v.to_string()).unwrap()
    }

    /// The callback's messages of the sample (executor lines and node-streamed lines removed).
    fn sample_messages() -> Vec<String> {
        let executor = [
            "Job console starting",
            "Updating git repos",
            "Cloning repos",
            "Restoring repo",
            "Merging changes",
            "Checking out",
            "Preparing playbooks",
            "Running Ansible setup",
            "PRE-RUN ",
            "RUN ",
        ];
        SAMPLE_TXT
            .lines()
            .filter_map(|l| {
                l.split_once(" | ")
                    .map(|(_, m)| m.to_string())
                    .or_else(|| l.strip_suffix(" |").map(|_| String::new()))
            })
            .filter(|m| !executor.iter().any(|e| m.starts_with(e)))
            .filter(|m| m != "node | hi" && m != "node | bye")
            .collect()
    }

    #[test]
    fn sample_job_is_reproduced() {
        let json: Value = serde_json::from_str(SAMPLE_JSON).unwrap();
        let pre = &json[0]["plays"][0]["tasks"][0]["hosts"]["node"];
        let run = &json[1]["plays"][0]["tasks"][0]["hosts"]["node"];
        let mut got = Vec::new();
        got.extend(ev(json!({"event": "play", "name": "all"})));
        got.extend(ev(json!({"event": "task", "name": "Start zuul_console daemon", "action": "zuul_console", "named": true})));
        got.extend(ev(
            json!({"event": "ok", "host": "node", "action": "zuul_console", "result": pre}),
        ));
        got.extend(ev(
            json!({"event": "stats", "hosts": {"node": {"ok": 1, "changed": 0}}}),
        ));
        got.extend(ev(json!({"event": "play", "name": "all"})));
        got.extend(ev(json!({"event": "task", "name": "Say hi", "action": "shell", "named": true, "raw_params": "echo hi; sleep 2; echo bye"})));
        got.extend(ev(
            json!({"event": "ok", "host": "node", "action": "shell", "result": run}),
        ));
        got.extend(ev(
            json!({"event": "stats", "hosts": {"node": {"ok": 1, "changed": 1}}}),
        ));
        assert_eq!(got, sample_messages());
    }

    #[test]
    fn unnamed_command_banner() {
        let t = |name: &str, action: &str, raw: &str, named: bool| {
            task_banner(&TaskStart {
                name: name.into(),
                action: action.into(),
                named,
                raw_params: Some(raw.into()),
                ..Default::default()
            })
        };
        assert_eq!(
            t("shell", "shell", "echo hi", false),
            "TASK [shell: echo hi]"
        );
        assert_eq!(
            t(
                "ansible.builtin.command",
                "ansible.builtin.command",
                "ls -l",
                false
            ),
            "TASK [command: ls -l]"
        );
        assert_eq!(t("shell", "shell", "a\nb", false), "TASK [shell]");
        assert_eq!(t("List", "shell", "ls", true), "TASK [List]");
        let l = TaskStart {
            name: "Loop it".into(),
            is_loop: true,
            named: true,
            ..Default::default()
        };
        assert_eq!(task_banner(&l), "LOOP [Loop it]");
    }

    #[test]
    fn failed_command_shows_sorted_json_without_output_keys() {
        let result = json!({
            "changed": true, "cmd": "false", "delta": "0:00:00.003", "end": "e", "failed": true,
            "msg": "non-zero return code", "rc": 1, "start": "s", "stderr": "", "stderr_lines": [],
            "stdout": "x", "stdout_lines": ["x"], "zuul_log_id": "id", "invocation": {"module_args": {}},
            "exception": "(traceback unavailable)",
            "_ansible_no_log": false
        });
        let got =
            ev(json!({"event": "failed", "host": "node", "action": "shell", "result": result}));
        assert_eq!(
            got,
            vec![
                "node | ERROR",
                "node | {",
                "node |   \"delta\": \"0:00:00.003\",",
                "node |   \"end\": \"e\",",
                "node |   \"failed\": true,",
                "node |   \"msg\": \"non-zero return code\",",
                "node |   \"rc\": 1,",
                "node |   \"start\": \"s\"",
                "node | }",
            ]
        );
    }

    #[test]
    fn simple_failures_and_ignore_errors() {
        let got = ev(
            json!({"event": "failed", "host": "node", "action": "fail", "ignore_errors": true,
            "result": {"failed": true, "msg": "boom", "changed": false}}),
        );
        assert_eq!(got, vec!["node | ERROR: boom", "node | Ignoring Errors"]);
        let got = ev(
            json!({"event": "failed", "host": "node", "action": "fail", "result": {"failed": true, "msg": "a\nb"}}),
        );
        assert_eq!(got, vec!["node | ERROR:", "node | a", "node | b"]);
        let got = ev(
            json!({"event": "failed", "host": "n", "action": "x", "result": {"failed": true, "msg": "MODULE FAILURE\nSee stdout/stderr", "module_stdout": "out", "module_stderr": "err\n", "rc": 1}}),
        );
        assert_eq!(got, vec!["n | MODULE FAILURE:", "n | out", "n | err"]);
    }

    #[test]
    fn localhost_output_lines_then_runtime() {
        let got = ev(
            json!({"event": "ok", "host": "localhost", "action": "ansible.builtin.command", "print_stdout": true,
            "result": {"changed": true, "delta": "0:00:00.001", "stdout": "a\nb", "stdout_lines": ["a", "b"], "stderr": ""}}),
        );
        assert_eq!(
            got,
            vec![
                "localhost | a",
                "localhost | b",
                "localhost | ok: Runtime: 0:00:00.001"
            ]
        );
    }

    #[test]
    fn loops_items_and_aggregate() {
        let got = ev(
            json!({"event": "item_ok", "host": "node", "action": "shell", "is_loop": true, "item_label": "one",
            "result": {"changed": true, "delta": "0:00:00.1", "item": "one"}}),
        );
        assert_eq!(got, vec!["node | ok: Item: one Runtime: 0:00:00.1"]);
        let got = ev(
            json!({"event": "item_failed", "host": "node", "action": "command", "is_loop": true,
            "result": {"failed": true, "rc": 2, "item": {"a": 1}}}),
        );
        assert_eq!(got, vec!["node | ok: Item: {'a': 1} Result: 2"]);
        let got = ev(
            json!({"event": "item_ok", "host": "node", "action": "file", "item_label": 3, "result": {"changed": true}}),
        );
        assert_eq!(got, vec!["node | changed: Item: 3"]);
        let got = ev(
            json!({"event": "ok", "host": "node", "action": "shell", "is_loop": true, "result": {"changed": true, "results": []}}),
        );
        assert_eq!(got, vec!["node | changed: All items complete", ""]);
    }

    #[test]
    fn misc_events() {
        assert_eq!(
            ev(
                json!({"event": "skipped", "host": "n", "result": {"skip_reason": "Conditional result was False"}})
            ),
            vec!["n | skipping: Conditional result was False"]
        );
        assert_eq!(
            ev(
                json!({"event": "ok", "host": "n", "action": "debug", "result": {"msg": "line1\nline2"}})
            ),
            vec!["line1", "line2"]
        );
        assert_eq!(
            ev(
                json!({"event": "ok", "host": "n", "action": "copy", "no_log": true, "result": {"censored": "x"}})
            ),
            vec!["n | Output suppressed because no_log was given"]
        );
        assert_eq!(
            ev(
                json!({"event": "ok", "host": "n", "action": "set_fact", "result": {"changed": false, "ansible_facts": {}}})
            ),
            vec!["n | ok"]
        );
        assert_eq!(
            ev(json!({"event": "ok", "host": "n", "action": "include_tasks", "result": {}})),
            Vec::<String>::new()
        );
        assert_eq!(
            ev(json!({"event": "include", "hosts": ["a", "b"], "file": "/x.yaml"})),
            vec!["a | included: /x.yaml", "b | included: /x.yaml"]
        );
        assert_eq!(
            ev(
                json!({"event": "unreachable", "host": "n", "result": {"msg": "ssh: no route", "unreachable": true, "changed": false}})
            ),
            vec!["n | UNREACHABLE: ssh: no route"]
        );
    }
}
