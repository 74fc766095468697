//! Thin pyo3 layer over `sluice-callback`: one module, one error-mapping function.
//!
//! Python API (`import sluice_native`):
//! - `JobOutput(path, control=None)`: job-output.txt writer; `control` is a callable receiving
//!   control lines (`RESULT failure`), stdout when None. Methods: `set_failure_output(regexes)`,
//!   `line(msg)`, `lines(msgs)`, `host_line(host, text)`, `signal_failure() -> bool`,
//!   `stream(host, addr, port, log_id) -> Stream`.
//! - `Stream`: `stop(grace_seconds)`, `join(timeout_seconds=30.0) -> bool`, `done`.
//! - `JobJson(path)`: job-output.json writer; `append(obj_json)`.
//! - `format_event(event_json) -> list[str]`, `short_action(action)`,
//!   `is_command_action(action)`, `now_utc_iso()`, `__version__`.
#![warn(missing_docs)]

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use sluice_callback::{console, format, timefmt, CallbackError, ControlSink, StdoutControl};
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

/// Appends playbook objects to job-output.json.
#[pyclass(module = "sluice_native", frozen)]
struct JobJson(sluice_callback::JobJson);

#[pymethods]
impl JobJson {
    #[new]
    fn new(path: std::path::PathBuf) -> Self {
        JobJson(sluice_callback::JobJson::new(path))
    }

    /// Appends one playbook object given as JSON.
    fn append(&self, py: Python<'_>, obj_json: &str) -> PyResult<()> {
        py.allow_threads(|| self.0.append_str(obj_json))
            .map_err(to_py)
    }
}

/// Sets the secret values whose lines are redacted, and whether a detection fails the build.
#[pyfunction]
fn set_redaction(values: Vec<String>, fail: bool) {
    sluice_callback::redact::configure(&values, fail);
}

/// Formats a callback event (JSON) into job-output.txt messages.
#[pyfunction]
fn format_event(event_json: &str) -> PyResult<Vec<String>> {
    format::format_event_json(event_json).map_err(to_py)
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
    m.add_class::<JobJson>()?;
    m.add_function(wrap_pyfunction!(format_event, m)?)?;
    m.add_function(wrap_pyfunction!(short_action, m)?)?;
    m.add_function(wrap_pyfunction!(is_command_action, m)?)?;
    m.add_function(wrap_pyfunction!(now_utc_iso, m)?)?;
    m.add_function(wrap_pyfunction!(set_redaction, m)?)?;
    Ok(())
}
