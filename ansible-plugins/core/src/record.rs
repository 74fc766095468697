//! The job-output.json entry of one `ansible-playbook` run, built as the callbacks see it: plays,
//! tasks (with their role), each host's result without Ansible's internal `_ansible_*` keys plus
//! `action` and the `failed`/`skipped`/`unreachable` flags, durations, the PLAY RECAP counters and
//! the playbook metadata the executor passes as `zuul_execution_*` extra vars (Zuul's zuul_json
//! shape, see [`crate::jobjson`] for how the entries are written).
//!
//! Which callback records: the stdout callback `zuul_stream` does, so that Ansible hands a task
//! result to one plugin only (it copies the result for every plugin that implements the hook,
//! which for a 200,000-line output costs more than all of Sluice's own work). `zuul_json` records
//! only when it runs without `zuul_stream`. [`claim`] settles this within the process.

use crate::errors::CallbackError;
use crate::jobjson::JobJson;
use crate::pyjson::py_str;
use crate::timefmt::now_utc_iso;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Mutex;

/// What Zuul writes instead of a `no_log` result.
pub const CENSORED: &str =
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result";

/// The `zuul_execution_*` extra vars and the keys they become in the entry.
pub const METADATA: &[(&str, &str)] = &[
    ("zuul_execution_canonical_name_and_path", "playbook"),
    ("zuul_execution_phase", "phase"),
    ("zuul_execution_phase_index", "index"),
    ("zuul_execution_trusted", "trusted"),
    ("zuul_execution_branch", "branch"),
];

static CLAIMED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Claims a piece of work (e.g. `"job-output.json"`) for the caller: true the first time a name
/// is claimed in this process, false afterwards. Ansible instantiates the stdout callback before
/// the aggregate ones, so the stdout callback wins.
pub fn claim(name: &str) -> bool {
    let Ok(mut claimed) = CLAIMED.lock() else {
        return true;
    };
    if claimed.iter().any(|c| c == name) {
        return false;
    }
    claimed.push(name.to_string());
    true
}

/// The role a task comes from.
#[derive(Debug, Clone)]
pub struct RoleRef {
    /// `role.get_name()`.
    pub name: String,
    /// The role's uuid.
    pub id: String,
    /// The role's path.
    pub path: String,
}

/// How a host's task ended, beyond ok.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    /// The task failed (`failed: true`).
    pub failed: bool,
    /// The task was skipped (`skipped: true`).
    pub skipped: bool,
    /// The host was unreachable (`unreachable: true`).
    pub unreachable: bool,
}

/// The entry of one playbook run, built event by event.
#[derive(Debug, Default)]
pub struct PlaybookRecord {
    plays: Vec<Map<String, Value>>,
    meta: Map<String, Value>,
}

fn obj(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn duration_start() -> Value {
    Value::Object(obj(vec![("start", Value::String(now_utc_iso()))]))
}

/// Removes Ansible's internal `_ansible_*` keys at every level.
pub fn strip_internal(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with("_ansible_"));
            map.values_mut().for_each(strip_internal);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_internal),
        _ => {}
    }
}

impl PlaybookRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// A play starts. `extra_vars` are the playbook's extra vars, of which the
    /// `zuul_execution_*` ones become the entry's metadata.
    pub fn play_start(&mut self, name: &str, id: &str, extra_vars: &Map<String, Value>) {
        for (var, key) in METADATA {
            let Some(value) = extra_vars.get(*var) else {
                continue;
            };
            let value = match *key {
                "trusted" => Value::Bool(py_str(value).to_lowercase() == "true"),
                "index" => Value::String(py_str(value)),
                _ => value.clone(),
            };
            self.meta.insert(key.to_string(), value);
        }
        let play = obj(vec![
            ("name", Value::String(name.to_string())),
            ("id", Value::String(id.to_string())),
            ("duration", duration_start()),
        ]);
        self.plays.push(obj(vec![
            ("play", Value::Object(play)),
            ("tasks", Value::Array(Vec::new())),
        ]));
    }

    /// A task (or handler) starts in the current play.
    pub fn task_start(&mut self, name: &str, id: &str, role: Option<RoleRef>) {
        let Some(Value::Array(tasks)) = self.plays.last_mut().and_then(|p| p.get_mut("tasks"))
        else {
            return;
        };
        let task = obj(vec![
            ("name", Value::String(name.to_string())),
            ("id", Value::String(id.to_string())),
            ("duration", duration_start()),
        ]);
        let mut entry = obj(vec![
            ("task", Value::Object(task)),
            ("hosts", Value::Object(Map::new())),
        ]);
        if let Some(role) = role {
            entry.insert(
                "role".into(),
                Value::Object(obj(vec![
                    ("name", Value::String(role.name)),
                    ("id", Value::String(role.id)),
                    ("path", Value::String(role.path)),
                ])),
            );
        }
        tasks.push(Value::Object(entry));
    }

    /// A host's result for the current task; `None` for a `no_log` result (censored). `action`
    /// is the short module name.
    pub fn host_result(
        &mut self,
        host: &str,
        action: &str,
        result: Option<Map<String, Value>>,
        flags: Flags,
    ) {
        let Some(play) = self.plays.last_mut() else {
            return;
        };
        let end = Value::String(now_utc_iso());
        let Some(Value::Object(task)) = play
            .get_mut("tasks")
            .and_then(Value::as_array_mut)
            .and_then(|t| t.last_mut())
        else {
            return;
        };
        let mut host_result = match result {
            Some(map) => {
                let mut v = Value::Object(map);
                strip_internal(&mut v);
                match v {
                    Value::Object(map) => map,
                    _ => Map::new(),
                }
            }
            None => obj(vec![("censored", Value::String(CENSORED.into()))]),
        };
        host_result.insert("action".into(), Value::String(action.to_string()));
        for (key, set) in [
            ("failed", flags.failed),
            ("skipped", flags.skipped),
            ("unreachable", flags.unreachable),
        ] {
            if set {
                host_result.insert(key.into(), Value::Bool(true));
            }
        }
        if let Some(Value::Object(hosts)) = task.get_mut("hosts") {
            hosts.insert(host.to_string(), Value::Object(host_result));
        }
        set_end(task.get_mut("task"), end.clone());
        set_end(play.get_mut("play"), end);
    }

    /// The finished entry, with the PLAY RECAP counters per host.
    pub fn finish(self, stats: Map<String, Value>) -> Value {
        let mut out = self.meta;
        out.insert(
            "plays".into(),
            Value::Array(self.plays.into_iter().map(Value::Object).collect()),
        );
        out.insert("stats".into(), Value::Object(stats));
        Value::Object(out)
    }

    /// Finishes the entry and appends it to job-output.json at `path`.
    pub fn write(self, path: &Path, stats: Map<String, Value>) -> Result<(), CallbackError> {
        JobJson::new(path).append(self.finish(stats))
    }
}

fn set_end(holder: Option<&mut Value>, end: Value) {
    if let Some(Value::Object(duration)) = holder.and_then(|h| h.get_mut("duration")) {
        duration.insert("end".into(), end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn builds_zuul_json_entry() {
        let mut r = PlaybookRecord::new();
        let extra = map(json!({
            "zuul_execution_phase": "run",
            "zuul_execution_phase_index": 1,
            "zuul_execution_trusted": "False",
            "zuul_execution_canonical_name_and_path": "localhost/org/project/pb.yaml",
            "zuul_execution_branch": "main",
            "other": "x",
        }));
        r.play_start("all", "play-1", &extra);
        // A host result before any task has nowhere to go.
        r.host_result("node", "shell", Some(Map::new()), Flags::default());
        r.task_start(
            "Say hi",
            "task-1",
            Some(RoleRef {
                name: "r".into(),
                id: "role-1".into(),
                path: "/roles/r".into(),
            }),
        );
        let lines: Vec<Value> = (1..=3).map(|i| json!(i.to_string())).collect();
        let result = map(json!({
            "changed": true, "rc": 1, "stdout_lines": lines,
            "_ansible_no_log": false, "nested": [{"_ansible_x": 1, "k": "v"}],
        }));
        r.host_result(
            "node",
            "shell",
            Some(result),
            Flags {
                failed: true,
                ..Flags::default()
            },
        );
        r.task_start("Secret", "task-2", None);
        r.host_result("node", "debug", None, Flags::default());
        let stats = map(json!({"node": {"ok": 1, "failures": 1}}));
        let out = r.finish(stats);
        assert_eq!(out["phase"], "run");
        assert_eq!(out["index"], "1");
        assert_eq!(out["trusted"], false);
        assert_eq!(out["playbook"], "localhost/org/project/pb.yaml");
        assert_eq!(out["branch"], "main");
        assert!(out.get("other").is_none());
        let play = &out["plays"][0];
        assert_eq!(play["play"]["name"], "all");
        assert!(play["play"]["duration"]["end"].is_string());
        let task = &play["tasks"][0];
        assert_eq!(
            task["role"],
            json!({"name": "r", "id": "role-1", "path": "/roles/r"})
        );
        assert_eq!(
            task["hosts"]["node"],
            json!({"action": "shell", "changed": true, "failed": true, "rc": 1,
                   "stdout_lines": ["1", "2", "3"], "nested": [{"k": "v"}]})
        );
        assert!(task["task"]["duration"]["start"].is_string());
        assert!(task["task"]["duration"]["end"].is_string());
        assert_eq!(
            play["tasks"][1]["hosts"]["node"],
            json!({"action": "debug", "censored": CENSORED})
        );
        assert!(play["tasks"][1].get("role").is_none());
        assert_eq!(out["stats"]["node"]["failures"], 1);
    }

    #[test]
    fn a_name_is_claimed_once() {
        assert!(claim("test-claim"));
        assert!(!claim("test-claim"));
        assert!(claim("test-claim-other"));
    }
}
