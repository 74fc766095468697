//! Thin pyo3 layer over `sluice-callback`: one module, one error-mapping function.
//!
//! Python API (`import sluice_native`):
//! - `JobOutput(path, control=None)`: job-output.txt writer; `control` is a callable receiving
//!   control lines (`RESULT failure`), stdout when None. Methods: `set_failure_output(regexes)`,
//!   `line(msg)`, `lines(msgs)`, `host_line(host, text)`, `signal_failure() -> bool`,
//!   `stream(host, addr, port, log_id) -> Stream`.
//! - `Stream`: `stop(grace_seconds)`, `join(timeout_seconds=30.0) -> bool`, `done`.
//! - `PlainResult(result, native=None)`: a task result read into Rust once (see [`convert`];
//!   `native` converts values that are not plain Python data), shared by the two uses below.
//! - `format_event(event) -> list[str]` (a dict), `format_result(kind, meta, result) -> list[str]`
//!   (`meta`: the event's other fields; `result`: a `PlainResult`).
//! - `JobRecord(path)`: the job-output.json entry of this playbook run: `play_start(name, id,
//!   extra_vars)`, `task_start(name, id, role=None)` (`role`: `(name, id, path)`),
//!   `host_result(host, action, result, failed=False, skipped=False, unreachable=False)`
//!   (`result`: a `PlainResult`, which it takes over, or None for a `no_log` result), and
//!   `write(stats)`, which appends the entry to the file.
//! - `claim(name) -> bool`: true for the first claimer of a piece of work in this process.
//! - `record_unreachable(path, host)`: adds a host to `nodes.unreachable` once.
//! - `short_action(action)`, `is_command_action(action)`, `now_utc_iso()`, `__version__`.
#![warn(missing_docs)]

mod convert;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Map, Value};
use sluice_callback::format::{HostResult, ResultKind};
use sluice_callback::record::{self, Flags, PlaybookRecord, RoleRef};
use sluice_callback::{console, format, timefmt, CallbackError, ControlSink, StdoutControl};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Maps core errors to Python exceptions.
fn to_py(err: CallbackError) -> PyErr {
    let msg = err.to_string();
    match err {
        CallbackError::File { .. } => PyOSError::new_err(msg),
        CallbackError::Json(_) | CallbackError::Shape(_) | CallbackError::Regex { .. } => {
            PyValueError::new_err(msg)
        }
        CallbackError::Thread(_) => PyRuntimeError::new_err(msg),
    }
}

/// Control lines go to a Python callable (under the GIL), or stdout without one.
struct PyControl(Option<PyObject>);

impl ControlSink for PyControl {
    fn emit(&self, line: &str) {
        match &self.0 {
            Some(cb) => Python::with_gil(|py| {
                if let Err(e) = cb.call1(py, (line,)) {
                    e.print(py);
                    StdoutControl.emit(line);
                }
            }),
            None => StdoutControl.emit(line),
        }
    }
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::from_secs(u32::MAX.into()))
}

/// Appends `<ts> | <msg>` lines to job-output.txt.
#[pyclass(module = "sluice_native", frozen)]
struct JobOutput(sluice_callback::JobOutput);

#[pymethods]
impl JobOutput {
    #[new]
    #[pyo3(signature = (path, control=None))]
    fn new(path: std::path::PathBuf, control: Option<PyObject>) -> PyResult<Self> {
        sluice_callback::JobOutput::with_control(path, Box::new(PyControl(control)))
            .map(JobOutput)
            .map_err(to_py)
    }

    /// Sets the failure-output regexes.
    fn set_failure_output(&self, regexes: Vec<String>) -> PyResult<()> {
        self.0.set_failure_output(&regexes).map_err(to_py)
    }

    /// Appends one line.
    fn line(&self, py: Python<'_>, msg: &str) -> PyResult<()> {
        py.allow_threads(|| self.0.line(msg)).map_err(to_py)
    }

    /// Appends several lines.
    fn lines(&self, py: Python<'_>, msgs: Vec<String>) -> PyResult<()> {
        py.allow_threads(|| self.0.lines(&msgs)).map_err(to_py)
    }

    /// Appends `<host> | <text>`.
    fn host_line(&self, py: Python<'_>, host: &str, text: &str) -> PyResult<()> {
        py.allow_threads(|| self.0.host_line(host, text))
            .map_err(to_py)
    }

    /// Emits `RESULT failure` unless already done; returns whether it did.
    fn signal_failure(&self, py: Python<'_>) -> bool {
        py.allow_threads(|| self.0.signal_failure())
    }

    /// Starts streaming a node's console log for one task.
    fn stream(&self, host: String, addr: String, port: u16, log_id: String) -> PyResult<Stream> {
        let req = console::StreamRequest {
            host,
            addr,
            port,
            log_id,
        };
        console::spawn(self.0.clone(), req, console::StreamOptions::default())
            .map(Stream)
            .map_err(to_py)
    }
}

/// A running console stream.
#[pyclass(module = "sluice_native", frozen)]
struct Stream(console::StreamHandle);

#[pymethods]
impl Stream {
    /// The task result arrived: a missing log may be given up on after `grace` seconds.
    fn stop(&self, grace: f64) {
        self.0.stop(seconds(grace));
    }

    /// Waits for the stream to end; false (and a log line) if it had to be cut off.
    #[pyo3(signature = (timeout=30.0))]
    fn join(&self, py: Python<'_>, timeout: f64) -> bool {
        py.allow_threads(|| self.0.join(seconds(timeout)))
    }

    /// Whether the stream has ended.
    #[getter]
    fn done(&self) -> bool {
        self.0.is_done()
    }
}

/// A task result read into Rust once, for job-output.txt and job-output.json alike.
#[pyclass(module = "sluice_native", frozen)]
struct PlainResult(Mutex<Option<Map<String, Value>>>);

#[pymethods]
impl PlainResult {
    #[new]
    #[pyo3(signature = (result, native=None))]
    fn new(result: &Bound<'_, PyAny>, native: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(PlainResult(Mutex::new(Some(convert::to_map(
            result, native,
        )?))))
    }
}

impl PlainResult {
    /// Takes the result out (the caller puts it back if it only borrows it).
    fn take(&self) -> PyResult<Map<String, Value>> {
        self.0
            .lock()
            .map_err(|_| PyRuntimeError::new_err("task result lock poisoned"))?
            .take()
            .ok_or_else(|| PyValueError::new_err("task result already handed to JobRecord"))
    }

    fn put_back(&self, map: Map<String, Value>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(map);
        }
    }
}

/// The job-output.json entry of one ansible-playbook run.
#[pyclass(module = "sluice_native", frozen)]
struct JobRecord {
    path: PathBuf,
    record: Mutex<PlaybookRecord>,
}

impl JobRecord {
    fn with<T>(&self, f: impl FnOnce(&mut PlaybookRecord) -> T) -> PyResult<T> {
        let mut record = self
            .record
            .lock()
            .map_err(|_| PyRuntimeError::new_err("job record lock poisoned"))?;
        Ok(f(&mut record))
    }
}

#[pymethods]
impl JobRecord {
    #[new]
    fn new(path: PathBuf) -> Self {
        JobRecord {
            path,
            record: Mutex::new(PlaybookRecord::new()),
        }
    }

    /// A play starts; the `zuul_execution_*` extra vars become the entry's metadata.
    fn play_start(&self, name: &str, id: &str, extra_vars: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut meta = Map::new();
        for (var, _) in record::METADATA {
            let value = extra_vars.call_method1("get", (*var,))?;
            if !value.is_none() {
                meta.insert(var.to_string(), convert::to_value(&value, None)?);
            }
        }
        self.with(|r| r.play_start(name, id, &meta))
    }

    /// A task or handler starts; `role` is `(name, id, path)`.
    #[pyo3(signature = (name, id, role=None))]
    fn task_start(
        &self,
        name: &str,
        id: &str,
        role: Option<(String, String, String)>,
    ) -> PyResult<()> {
        let role = role.map(|(name, id, path)| RoleRef { name, id, path });
        self.with(|r| r.task_start(name, id, role))
    }

    /// A host's result for the current task (takes `result` over; None: censored).
    #[pyo3(signature = (host, action, result, failed=false, skipped=false, unreachable=false))]
    fn host_result(
        &self,
        host: &str,
        action: &str,
        result: Option<&PlainResult>,
        failed: bool,
        skipped: bool,
        unreachable: bool,
    ) -> PyResult<()> {
        let result = result.map(PlainResult::take).transpose()?;
        let flags = Flags {
            failed,
            skipped,
            unreachable,
        };
        self.with(|r| r.host_result(host, format::short_action(action), result, flags))
    }

    /// Appends the entry, with the PLAY RECAP counters (`{host: counters}`), to the file.
    fn write(&self, py: Python<'_>, stats: &Bound<'_, PyAny>) -> PyResult<()> {
        let stats = convert::to_map(stats, None)?;
        let record = self.with(std::mem::take)?;
        py.allow_threads(|| record.write(&self.path, stats))
            .map_err(to_py)
    }
}

/// Claims a piece of work for the caller: true the first time `name` is claimed in this process.
#[pyfunction]
fn claim(name: &str) -> bool {
    record::claim(name)
}

/// Adds `host` to the `nodes.unreachable` file at `path` unless it is listed already.
#[pyfunction]
fn record_unreachable(py: Python<'_>, path: PathBuf, host: &str) -> PyResult<()> {
    py.allow_threads(|| sluice_callback::unreachable::record(&path, host))
        .map_err(to_py)
}

/// Sets the secret values whose lines are redacted, and whether a detection fails the build.
#[pyfunction]
fn set_redaction(values: Vec<String>, fail: bool) {
    sluice_callback::redact::configure(&values, fail);
}

/// Formats a callback event (a dict) into job-output.txt messages.
#[pyfunction]
fn format_event(py: Python<'_>, event: &Bound<'_, PyDict>) -> PyResult<Vec<String>> {
    let event = convert::to_value(event.as_any(), None)?;
    py.allow_threads(|| format::format_event_value(event))
        .map_err(to_py)
}

/// Formats one host's result event: `kind` (`ok`, `failed`, `item_ok`, …), `meta` the event's
/// fields but the result (host, action, is_loop, print_stdout, no_log, ignore_errors,
/// item_label).
#[pyfunction]
fn format_result(
    py: Python<'_>,
    kind: &str,
    meta: &Bound<'_, PyDict>,
    result: &PlainResult,
) -> PyResult<Vec<String>> {
    let kind: ResultKind = kind.parse().map_err(to_py)?;
    let meta = convert::to_value(meta.as_any(), None)?;
    let mut host: HostResult =
        serde_json::from_value(meta).map_err(|e| to_py(CallbackError::Json(e)))?;
    host.result = result.take()?;
    let lines = py.allow_threads(|| format::format_result(kind, &host));
    result.put_back(std::mem::take(&mut host.result));
    Ok(lines)
}

/// `ansible.builtin.X` / `ansible.legacy.X` → `X`.
#[pyfunction]
fn short_action(action: &str) -> String {
    format::short_action(action).to_string()
}

/// Whether the action is a command-like task streamed from the node console.
#[pyfunction]
fn is_command_action(action: &str) -> bool {
    format::is_command_action(action)
}

/// Current UTC time as job-output.json writes it.
#[pyfunction]
fn now_utc_iso() -> String {
    timefmt::now_utc_iso()
}

/// The `sluice_native` Python module.
#[pymodule]
fn sluice_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_CONSOLE_PORT", console::DEFAULT_PORT)?;
    m.add_class::<JobOutput>()?;
    m.add_class::<Stream>()?;
    m.add_class::<PlainResult>()?;
    m.add_class::<JobRecord>()?;
    m.add_function(wrap_pyfunction!(format_event, m)?)?;
    m.add_function(wrap_pyfunction!(format_result, m)?)?;
    m.add_function(wrap_pyfunction!(claim, m)?)?;
    m.add_function(wrap_pyfunction!(record_unreachable, m)?)?;
    m.add_function(wrap_pyfunction!(short_action, m)?)?;
    m.add_function(wrap_pyfunction!(is_command_action, m)?)?;
    m.add_function(wrap_pyfunction!(now_utc_iso, m)?)?;
    m.add_function(wrap_pyfunction!(set_redaction, m)?)?;
    Ok(())
}
