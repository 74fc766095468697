//! Secret redaction (`secret-exposure: redact|fail`): every line written to job-output.txt and
//! every string in job-output.json that contains a secret value is replaced by Zuul's notice.
//!
//! The executor hands the values to the callbacks through an in-memory file inside the sandbox;
//! they are kept here, process-wide, because one ansible-playbook process writes one playbook's
//! output through several writers (`JobOutput` clones, `JobJson`). In `fail` mode the first
//! detection also emits the control line `RESULT secret_exposure`, which ends the build with
//! SECRET_EXPOSURE.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use serde_json::Value;

/// What replaces a line (or a JSON string) that contains a secret value.
pub const NOTICE: &str = "[Zuul] Secret detected in output";

/// The control line of a detection in `fail` mode.
pub const CONTROL: &str = "RESULT secret_exposure";

struct Settings {
    values: Vec<String>,
    fail: bool,
}

static SETTINGS: RwLock<Settings> = RwLock::new(Settings {
    values: Vec::new(),
    fail: false,
});
static DETECTED: AtomicBool = AtomicBool::new(false);

/// Sets the values to redact (empty ones are ignored) and whether a detection fails the build.
pub fn configure(values: &[String], fail: bool) {
    if let Ok(mut s) = SETTINGS.write() {
        s.values = values.iter().filter(|v| !v.is_empty()).cloned().collect();
        s.fail = fail;
    }
}

/// Whether `text` contains a secret value.
fn contains_secret(text: &str) -> bool {
    SETTINGS
        .read()
        .map(|s| s.values.iter().any(|v| text.contains(v.as_str())))
        .unwrap_or(false)
}

/// Records a detection; returns true when the caller must emit [`CONTROL`] (first detection in
/// `fail` mode).
fn detected() -> bool {
    let fail = SETTINGS.read().map(|s| s.fail).unwrap_or(false);
    !DETECTED.swap(true, Ordering::SeqCst) && fail
}

/// A line as it may be written: itself, or the notice (then also whether to emit [`CONTROL`]).
pub fn line(text: &str) -> (std::borrow::Cow<'_, str>, bool) {
    if contains_secret(text) {
        (NOTICE.into(), detected())
    } else {
        (text.into(), false)
    }
}

/// Replaces every string (and key) of `value` that contains a secret; returns whether to emit
/// [`CONTROL`].
pub fn value(value: &mut Value) -> bool {
    if SETTINGS.read().map(|s| s.values.is_empty()).unwrap_or(true) {
        return false;
    }
    let mut emit = false;
    walk(value, &mut emit);
    emit
}

fn walk(value: &mut Value, emit: &mut bool) {
    match value {
        Value::String(s) if contains_secret(s) => {
            *s = NOTICE.to_string();
            *emit |= detected();
        }
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, emit)),
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if let Some(mut v) = map.remove(&key) {
                    walk(&mut v, emit);
                    let key = if contains_secret(&key) {
                        *emit |= detected();
                        NOTICE.to_string()
                    } else {
                        key
                    };
                    map.insert(key, v);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Tests share the process-wide settings: one test covers them all.
    #[test]
    fn lines_and_json_are_redacted_and_fail_mode_signals_once() {
        configure(&["hunter2".into(), String::new()], false);
        assert_eq!(line("node | ok").0, "node | ok");
        assert_eq!(line("node | pw=hunter2!").0, NOTICE);
        assert!(!line("hunter2").1, "redact mode never signals");
        let mut v = json!({"stdout": "x hunter2", "n": 1, "list": ["ok", "hunter2"], "hunter2": 1});
        value(&mut v);
        assert_eq!(
            v,
            json!({"stdout": NOTICE, "n": 1, "list": ["ok", NOTICE], NOTICE: 1})
        );
        DETECTED.store(false, Ordering::SeqCst);
        configure(&["hunter2".into()], true);
        assert!(line("hunter2").1);
        assert!(!line("hunter2 again").1);
        configure(&[], false);
        assert_eq!(line("hunter2").0, "hunter2");
    }
}
