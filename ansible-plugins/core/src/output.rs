//! The `job-output.txt` writer: `<ts> | <msg>` lines appended with one `write` call each to a
//! file opened `O_APPEND`, shared by the callback and every console stream thread; plus the
//! `failure-output` early-failure detection and the `RESULT …` control lines on stdout.

use crate::errors::CallbackError;
use crate::timefmt::now_local;
use regex::Regex;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Where control lines (`RESULT failure`, …) go: the executor reads them from Ansible's stdout.
pub trait ControlSink: Send + Sync {
    /// Emits one control line (without the newline).
    fn emit(&self, line: &str);
}

/// Writes control lines straight to the process's stdout.
#[derive(Debug, Default)]
pub struct StdoutControl;

impl ControlSink for StdoutControl {
    fn emit(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(format!("{line}\n").as_bytes());
        let _ = out.flush();
    }
}

struct Inner {
    path: PathBuf,
    file: File,
    failure_output: RwLock<Vec<(String, Regex)>>,
    failed: AtomicBool,
    control: Box<dyn ControlSink>,
}

/// A handle on `job-output.txt`; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct JobOutput {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JobOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobOutput")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl JobOutput {
    /// Opens (creating if needed) `path` for appending; control lines go to stdout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CallbackError> {
        Self::with_control(path, Box::new(StdoutControl))
    }

    /// Opens `path` for appending with a custom control-line sink.
    pub fn with_control(
        path: impl AsRef<Path>,
        control: Box<dyn ControlSink>,
    ) -> Result<Self, CallbackError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| CallbackError::file(&path, e))?;
        Ok(JobOutput {
            inner: Arc::new(Inner {
                path,
                file,
                failure_output: RwLock::new(Vec::new()),
                failed: AtomicBool::new(false),
                control,
            }),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Sets the job's `failure-output` regexes (matched anchored at the start of a streamed line).
    pub fn set_failure_output(&self, regexes: &[String]) -> Result<(), CallbackError> {
        let mut compiled = Vec::with_capacity(regexes.len());
        for re in regexes {
            let rx = Regex::new(&format!("^(?:{re})")).map_err(|source| CallbackError::Regex {
                regex: re.clone(),
                source,
            })?;
            compiled.push((re.clone(), rx));
        }
        if let Ok(mut slot) = self.inner.failure_output.write() {
            *slot = compiled;
        }
        Ok(())
    }

    /// Appends `<ts> | <msg>` (msg right-stripped) with an explicit timestamp.
    /// A line holding a secret value is replaced by [`crate::redact::NOTICE`].
    pub fn line_at(&self, ts: &str, msg: &str) -> Result<(), CallbackError> {
        let (msg, signal) = crate::redact::line(msg);
        if signal {
            self.inner.control.emit(crate::redact::CONTROL);
        }
        let bytes = format!("{ts} | {}\n", msg.trim_end()).into_bytes();
        // One write call per line: with O_APPEND concurrent writers never interleave a line.
        (&self.inner.file)
            .write_all(&bytes)
            .map_err(|e| CallbackError::file(&self.inner.path, e))
    }

    /// Appends `<now> | <msg>`.
    pub fn line(&self, msg: &str) -> Result<(), CallbackError> {
        self.line_at(&now_local(), msg)
    }

    /// Appends several lines, each with its own current timestamp.
    pub fn lines<S: AsRef<str>>(&self, msgs: &[S]) -> Result<(), CallbackError> {
        msgs.iter().try_for_each(|m| self.line(m.as_ref()))
    }

    /// Appends `<now> | <host> | <text>`.
    pub fn host_line(&self, host: &str, text: &str) -> Result<(), CallbackError> {
        self.line(&format!("{host} | {text}"))
    }

    /// Appends one line streamed from a node's console: `<node ts> | <host> | <text>`, keeping the
    /// node's timestamp when the line carries one; then checks the failure-output regexes.
    pub fn stream_line(&self, host: &str, line: &str) -> Result<(), CallbackError> {
        self.stream_lines(host, &[line])
    }

    /// Appends lines streamed from a node's console in one write call (with O_APPEND a single
    /// write is never interleaved with other writers), then checks the failure-output regexes.
    pub fn stream_lines(&self, host: &str, lines: &[&str]) -> Result<(), CallbackError> {
        let mut bytes = String::new();
        for line in lines {
            let (ts, text) = match line.split_once(" | ") {
                Some((ts, text)) => (ts.to_string(), text),
                None => (now_local(), *line),
            };
            let full = format!("{host} | {text}");
            let (msg, signal) = crate::redact::line(&full);
            if signal {
                self.inner.control.emit(crate::redact::CONTROL);
            }
            bytes.push_str(&ts);
            bytes.push_str(" | ");
            bytes.push_str(msg.trim_end());
            bytes.push('\n');
            // The early-failure line follows the line that matched, so the batch is cut there.
            if let Some(re) = self.failure_match(text) {
                self.write_bytes(&std::mem::take(&mut bytes))?;
                self.signal_failure_output(host, &re)?;
            }
        }
        self.write_bytes(&bytes)
    }

    fn write_bytes(&self, bytes: &str) -> Result<(), CallbackError> {
        if bytes.is_empty() {
            return Ok(());
        }
        (&self.inner.file)
            .write_all(bytes.as_bytes())
            .map_err(|e| CallbackError::file(&self.inner.path, e))
    }

    /// The failure-output regex `text` matches, while no early failure has been signalled.
    fn failure_match(&self, text: &str) -> Option<String> {
        if self.inner.failed.load(Ordering::SeqCst) {
            return None;
        }
        match self.inner.failure_output.read() {
            Ok(regexes) => regexes
                .iter()
                .find(|(_, rx)| rx.is_match(text))
                .map(|(re, _)| re.clone()),
            Err(_) => None,
        }
    }

    /// Logs the early failure right after the line that matched, once.
    fn signal_failure_output(&self, host: &str, re: &str) -> Result<(), CallbackError> {
        if !self.inner.failed.swap(true, Ordering::SeqCst) {
            self.host_line(
                host,
                &format!("Early failure in job, matched regex \"{re}\""),
            )?;
            self.inner.control.emit("RESULT failure");
        }
        Ok(())
    }

    /// Signals an early job failure (`RESULT failure` on stdout), at most once per process.
    /// Returns whether this call emitted it.
    pub fn signal_failure(&self) -> bool {
        if self.inner.failed.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.inner.control.emit("RESULT failure");
        true
    }

    /// Emits any control line.
    pub fn control(&self, line: &str) {
        self.inner.control.emit(line);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Collects control lines for assertions.
    #[derive(Default, Clone)]
    pub(crate) struct Collect(pub Arc<Mutex<Vec<String>>>);

    impl ControlSink for Collect {
        fn emit(&self, line: &str) {
            if let Ok(mut v) = self.0.lock() {
                v.push(line.to_string());
            }
        }
    }

    /// Replaces the timestamp of every line by `TS`.
    pub(crate) fn masked(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| match l.split_once(" | ") {
                Some((_, rest)) => format!("TS | {rest}"),
                None => l.to_string(),
            })
            .collect()
    }

    #[test]
    fn lines_are_stripped_and_blank_lines_keep_the_separator() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job-output.txt");
        let out = JobOutput::open(&path).unwrap();
        out.line("").unwrap();
        out.line("PLAY [all]   ").unwrap();
        out.host_line("node", "ok").unwrap();
        out.stream_line("node", "2026-11-26 04:37:15.236249 | hi")
            .unwrap();
        out.stream_line("node", "no timestamp").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(" | "), "{:?}", lines[0]);
        assert!(lines[1].ends_with(" | PLAY [all]"));
        assert_eq!(lines[3], "2026-11-26 04:37:15.236249 | node | hi");
        assert_eq!(masked(&text)[4], "TS | node | no timestamp");
        // Timestamp shape: `YYYY-MM-DD HH:MM:SS[.ffffff]`.
        let ts = lines[0].split(" | ").next().unwrap();
        assert!(ts.len() == 19 || ts.len() == 26, "{ts}");
    }

    #[test]
    fn failure_output_matches_anchored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job-output.txt");
        let sink = Collect::default();
        let out = JobOutput::with_control(&path, Box::new(sink.clone())).unwrap();
        out.set_failure_output(&["FAIL.*".to_string()]).unwrap();
        out.stream_line("node", "2026-11-26 04:37:15.1 | not FAIL here")
            .unwrap();
        assert!(sink.0.lock().unwrap().is_empty());
        out.stream_line("node", "2026-11-26 04:37:15.2 | FAIL: boom")
            .unwrap();
        out.stream_line("node", "2026-11-26 04:37:15.3 | FAIL again")
            .unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec!["RESULT failure".to_string()]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            masked(&text),
            vec![
                "TS | node | not FAIL here",
                "TS | node | FAIL: boom",
                "TS | node | Early failure in job, matched regex \"FAIL.*\"",
                "TS | node | FAIL again",
            ]
        );
        assert!(!out.signal_failure());
    }

    #[test]
    fn bad_regex_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = JobOutput::open(dir.path().join("x")).unwrap();
        assert!(matches!(
            out.set_failure_output(&["(".into()]),
            Err(CallbackError::Regex { .. })
        ));
    }

    #[test]
    fn concurrent_writers_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job-output.txt");
        let out = JobOutput::open(&path).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let out = out.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        out.host_line(&format!("h{t}"), &"x".repeat(i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 800);
        for l in text.lines() {
            let parts: Vec<&str> = l.split(" | ").collect();
            assert!(
                parts.len() == 3
                    || (parts.len() == 2 && l.ends_with(" | h0 |"))
                    || l.ends_with(" |"),
                "{l}"
            );
        }
    }
}
