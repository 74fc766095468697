//! Supervision of one child: [`run`] spawns a [`ChildCommand`] in its own process group,
//! streams its merged stdout/stderr line by line, enforces the timeout and abort requests,
//! and returns an [`Outcome`].
//!
//! The shape follows nextest's runner: one `select!` loop over output reads, `wait()`, the
//! timeout, abort requests and the termination timers. Termination sends SIGTERM to the whole
//! group (`-pgid`, never the pid), keeps draining output for a grace period in which a second
//! abort request escalates at once, then sends SIGKILL. After the main child exits, the pipe
//! gets a short leak timeout to close; if a straggler still holds it, the group is killed.
//! When `run` returns, or its future is dropped, every process left in the group is killed.
//!
//! For a sandboxed child the group holds only the outer `bwrap` process: bwrap's
//! `--new-session` puts the sandboxed processes in a session of their own, inside a PID
//! namespace. Signalling the group ends the outer bwrap, `--die-with-parent` then SIGKILLs the
//! namespace's init, and the kernel kills every process of the namespace. A sandboxed command
//! therefore gets no grace period, like in Zuul, which SIGKILLs the group straight away.
//!
//! `bwrap --die-with-parent` relies on `PR_SET_PDEATHSIG`, which fires when the spawning
//! *thread* exits. `run` spawns from whichever thread polls it: a runtime worker, which lives
//! as long as the runtime. Do not call it from a thread that exits early (`spawn_blocking`).

use std::{
    collections::VecDeque,
    io,
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::Duration,
};

use nix::sys::signal::Signal;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
    sync::watch,
    task::JoinHandle,
    time::Instant,
};

use crate::{
    command::{ChildCommand, FileFeed},
    errors::{pipe_error, Result, SandboxError},
    linux,
};

/// The most bytes read from the output pipe at once, and the longest line delivered: a longer
/// line arrives as several lines of this size (as in Zuul, which reads `readline(51200)`).
pub const MAX_LINE_BYTES: usize = 51200;

/// Settings of one [`run`].
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Time limit from spawn; `None` means no limit.
    pub timeout: Option<Duration>,
    /// How long the group has between SIGTERM and SIGKILL. Zero means SIGKILL at once.
    pub grace_period: Duration,
    /// How long the output pipe may stay open after the main child exited.
    pub leak_timeout: Duration,
    /// How many of the last output lines the [`Outcome`] keeps.
    pub n_last_lines: usize,
}

impl Default for RunConfig {
    /// No timeout, a 5 s grace period, a 1 s leak timeout, and the last 200 lines (the size of
    /// Zuul's error buffer).
    fn default() -> Self {
        RunConfig {
            timeout: None,
            grace_period: Duration::from_secs(5),
            leak_timeout: Duration::from_secs(1),
            n_last_lines: 200,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The child exited on its own with this code.
    Exited(i32),
    /// The child was killed by this signal, not sent by the runner.
    Signaled(i32),
    /// The timeout expired and the group was terminated (even if the child exited on its own
    /// during the termination).
    TimedOut,
    /// An abort request terminated the group (or arrived before the spawn).
    Aborted,
}

/// The result of a [`run`]: how it ended and what it last said. A failed, timed-out or aborted
/// child is an `Outcome`, not an error.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// The last [`RunConfig::n_last_lines`] lines, without newlines, decoded lossily.
    pub last_lines: Vec<String>,
    /// From spawn to the end of the output.
    pub duration: Duration,
    /// The child's process group id, `None` when an abort came before the spawn.
    pub pgid: Option<u32>,
    /// The output pipe was still open [`RunConfig::leak_timeout`] after the main child exited
    /// (a straggler held it), so the group was killed.
    pub leaked: bool,
    /// Errors reading the output; reading stops at the first one.
    pub read_errors: Vec<Arc<io::Error>>,
}

/// Requests termination of the runs it was passed to. Cheap to clone; all clones are one
/// handle.
///
/// The first [`abort`](Self::abort) terminates gracefully (SIGTERM, grace period, SIGKILL); a
/// second one, or [`kill`](Self::kill), sends SIGKILL at once. A handle aborted before
/// [`run`] starts makes `run` return [`Exit::Aborted`] without spawning.
#[derive(Debug, Clone)]
pub struct AbortHandle {
    n_requests: Arc<watch::Sender<u32>>,
}

impl AbortHandle {
    /// A handle with no request yet.
    pub fn new() -> Self {
        AbortHandle {
            n_requests: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Requests termination; the second request escalates to SIGKILL.
    pub fn abort(&self) {
        self.n_requests.send_modify(|n| *n = n.saturating_add(1));
    }

    /// Requests SIGKILL without a grace period.
    pub fn kill(&self) {
        self.n_requests.send_modify(|n| *n = (*n).max(2));
    }

    /// Whether any request was made.
    pub fn is_aborted(&self) -> bool {
        *self.n_requests.borrow() > 0
    }
}

impl Default for AbortHandle {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `command` to completion under `config`, calling `on_line` for every output line (no
/// trailing newline) as soon as it is read.
///
/// `on_line` runs inside the supervision loop: keep it short (send to a channel).
/// `Err` means the child could not be spawned or waited for; every way the child itself can
/// end is an [`Outcome`].
pub async fn run(
    command: ChildCommand,
    config: &RunConfig,
    abort: &AbortHandle,
    mut on_line: impl FnMut(&[u8]),
) -> Result<Outcome> {
    let ChildCommand {
        argv,
        env,
        cwd,
        feeds,
        oom_score_adj,
        cgroup_procs,
    } = command;
    let Some((program, args)) = argv.split_first() else {
        return Err(SandboxError::EmptyArgv);
    };
    let mut abort_requests = abort.n_requests.subscribe();
    if *abort_requests.borrow_and_update() > 0 {
        return Ok(Outcome {
            exit: Exit::Aborted,
            last_lines: Vec::new(),
            duration: Duration::ZERO,
            pgid: None,
            leaked: false,
            read_errors: Vec::new(),
        });
    }

    // One pipe for both streams keeps their relative order. std's pipe is O_CLOEXEC, so only
    // this child gets the write end (as its fds 1 and 2).
    let (out_read, out_write) = linux::cloexec_pipe().map_err(pipe_error("child output"))?;
    let out_write_err = out_write.try_clone().map_err(pipe_error("child output"))?;
    let mut reader = pipe::Receiver::from_owned_fd(out_read).map_err(pipe_error("child output"))?;

    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(&env)
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_write))
        .stderr(Stdio::from(out_write_err))
        .process_group(0);
    linux::inherit_in_child(&mut command, feeds.iter().map(FileFeed::child_fd).collect());
    if let Some(value) = oom_score_adj {
        linux::set_oom_score_adj_in_child(&mut command, value);
    }
    if !cgroup_procs.is_empty() {
        linux::join_cgroups_in_child(&mut command, &cgroup_procs);
    }
    let spawned = command.spawn();
    // The command holds our copies of the output pipe's write end; only the child may keep
    // it open, or the end of output would never be seen.
    drop(command);
    let start = Instant::now();
    let mut child = spawned.map_err(|source| SandboxError::Spawn {
        argv0: program.clone(),
        source: Arc::new(source),
    })?;
    let Some(pid) = child.id() else {
        return Err(SandboxError::Wait {
            argv0: program.clone(),
            source: Arc::new(io::Error::other("child reaped before its pid was read")),
        });
    };
    let pgid = pid as i32;
    let _group_guard = KillGroupOnDrop { pgid };
    let _feeders = feed_files(feeds);

    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    let mut last_lines = LastLines::new(config.n_last_lines);
    let mut deliver = |line: &[u8]| {
        on_line(line);
        last_lines.push(line);
    };
    let mut buf = vec![0_u8; MAX_LINE_BYTES];
    let deadline = config.timeout.map(|timeout| start + timeout);
    let mut status: Option<ExitStatus> = None;
    let mut reason: Option<Exit> = None;
    let mut eof = false;
    let mut abort_open = true;
    let mut kill_at: Option<Instant> = None;
    let mut leak_at: Option<Instant> = None;
    let mut give_up_at: Option<Instant> = None;
    let mut leaked = false;
    let mut read_errors = Vec::new();

    let status = loop {
        if let (Some(status), true) = (status, eof) {
            break status;
        }
        tokio::select! {
            read = reader.read(&mut buf), if !eof => match read {
                Ok(0) => eof = true,
                Ok(n_read) => splitter.push(&buf[..n_read], &mut deliver),
                Err(err) => {
                    read_errors.push(Arc::new(err));
                    eof = true;
                }
            },
            waited = child.wait(), if status.is_none() => {
                let exit_status = waited.map_err(|source| SandboxError::Wait {
                    argv0: program.clone(),
                    source: Arc::new(source),
                })?;
                status = Some(exit_status);
                if !eof && kill_at.is_none() {
                    leak_at = Some(Instant::now() + config.leak_timeout);
                }
            }
            () = sleep_until(deadline), if deadline.is_some() && status.is_none() && reason.is_none() => {
                tracing::debug!(pgid, "timeout expired, terminating process group");
                reason = Some(Exit::TimedOut);
                kill_at = terminate(pgid, config.grace_period);
            }
            changed = abort_requests.changed(), if abort_open => {
                if changed.is_err() {
                    abort_open = false;
                    continue;
                }
                let n_requests = *abort_requests.borrow_and_update();
                if status.is_some() {
                    // Only stragglers are left; the exit is already decided.
                    linux::signal_group(pgid, Signal::SIGKILL);
                } else if n_requests >= 2 || reason.is_some() {
                    tracing::debug!(pgid, "repeated abort, killing process group");
                    reason.get_or_insert(Exit::Aborted);
                    linux::signal_group(pgid, Signal::SIGKILL);
                    kill_at = None;
                } else {
                    tracing::debug!(pgid, "abort requested, terminating process group");
                    reason = Some(Exit::Aborted);
                    kill_at = terminate(pgid, config.grace_period);
                }
            }
            () = sleep_until(kill_at), if kill_at.is_some() => {
                tracing::debug!(pgid, "grace period over, killing process group");
                linux::signal_group(pgid, Signal::SIGKILL);
                kill_at = None;
                if status.is_some() && !eof {
                    give_up_at = Some(Instant::now() + config.leak_timeout);
                }
            }
            () = sleep_until(leak_at), if leak_at.is_some() => {
                tracing::warn!(pgid, "output pipe still open after the child exited, killing process group");
                leaked = true;
                linux::signal_group(pgid, Signal::SIGKILL);
                leak_at = None;
                give_up_at = Some(Instant::now() + config.leak_timeout);
            }
            () = sleep_until(give_up_at), if give_up_at.is_some() => {
                // Something outside the group (a daemon that called setsid) holds the pipe.
                tracing::warn!(pgid, "output pipe held open outside the process group, no longer reading");
                leaked = true;
                eof = true;
                give_up_at = None;
            }
        }
    };
    splitter.finish(&mut deliver);
    let duration = start.elapsed();

    let exit = reason.unwrap_or_else(|| match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Exited(code),
        (None, Some(signal)) => Exit::Signaled(signal),
        // wait(2) reports only exits and kills here (no WUNTRACED); keep the raw value.
        (None, None) => Exit::Exited(status.into_raw()),
    });
    Ok(Outcome {
        exit,
        last_lines: last_lines.into_vec(),
        duration,
        pgid: Some(pid),
        leaked,
        read_errors,
    })
}

/// SIGTERM now and the SIGKILL deadline, or SIGKILL now when there is no grace period.
fn terminate(pgid: i32, grace_period: Duration) -> Option<Instant> {
    if grace_period.is_zero() {
        linux::signal_group(pgid, Signal::SIGKILL);
        None
    } else {
        linux::signal_group(pgid, Signal::SIGTERM);
        Some(Instant::now() + grace_period)
    }
}

/// Sleeps until `deadline`; never completes for `None` (the branch is disabled anyway).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// SIGKILLs the whole process group when dropped: at the end of [`run`], and when its future
/// is dropped mid-run.
struct KillGroupOnDrop {
    pgid: i32,
}

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        linux::signal_group(self.pgid, Signal::SIGKILL);
    }
}

/// Writes each in-memory file into its pipe, concurrently (bwrap reads them one after the
/// other, and a file larger than the pipe buffer would otherwise block the next). Closing our
/// read ends first makes a writer fail with EPIPE instead of hanging if the child dies.
fn feed_files(feeds: Vec<FileFeed>) -> AbortOnDrop {
    let mut tasks = Vec::with_capacity(feeds.len());
    for feed in feeds {
        let FileFeed {
            path,
            read,
            write,
            content,
        } = feed;
        drop(read);
        tasks.push(tokio::spawn(async move {
            let written = async {
                let mut sender = pipe::Sender::from_owned_fd(write)?;
                sender.write_all(&content).await
            }
            .await;
            if let Err(err) = written {
                tracing::warn!(path = %path.display(), %err, "error feeding an in-memory file");
            }
        }));
    }
    AbortOnDrop(tasks)
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Splits a byte stream into lines of at most `max_len` bytes, newlines removed.
struct LineSplitter {
    pending: Vec<u8>,
    max_len: usize,
}

impl LineSplitter {
    fn new(max_len: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max_len: max_len.max(1),
        }
    }

    fn push(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(&[u8])) {
        while !chunk.is_empty() {
            let room = self.max_len - self.pending.len();
            let window = &chunk[..chunk.len().min(room)];
            if let Some(newline) = window.iter().position(|&byte| byte == b'\n') {
                if self.pending.is_empty() {
                    emit(&window[..newline]);
                } else {
                    self.pending.extend_from_slice(&window[..newline]);
                    emit(&self.pending);
                    self.pending.clear();
                }
                chunk = &chunk[newline + 1..];
            } else {
                self.pending.extend_from_slice(window);
                chunk = &chunk[window.len()..];
                if self.pending.len() == self.max_len {
                    emit(&self.pending);
                    self.pending.clear();
                }
            }
        }
    }

    /// Delivers a last line that had no newline.
    fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// A ring buffer of the last lines.
struct LastLines {
    lines: VecDeque<String>,
    capacity: usize,
}

impl LastLines {
    fn new(capacity: usize) -> Self {
        LastLines {
            lines: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    fn push(&mut self, line: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines
            .push_back(String::from_utf8_lossy(line).into_owned());
    }

    fn into_vec(self) -> Vec<String> {
        self.lines.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max_len: usize) -> Vec<Vec<u8>> {
        let mut splitter = LineSplitter::new(max_len);
        let mut lines = Vec::new();
        let mut emit = |line: &[u8]| lines.push(line.to_vec());
        for chunk in chunks {
            splitter.push(chunk, &mut emit);
        }
        splitter.finish(&mut emit);
        lines
    }

    #[test]
    fn lines_are_split_across_chunks() {
        let lines = split(&[b"one\ntw", b"o\n\nthr", b"ee"], 100);
        assert_eq!(lines, [&b"one"[..], b"two", b"", b"three"]);
    }

    #[test]
    fn long_lines_are_cut_at_the_maximum() {
        let lines = split(&[b"abcdefg\nhi", b"jklm\n"], 3);
        assert_eq!(lines, [&b"abc"[..], b"def", b"g", b"hij", b"klm", b""]);
    }

    #[test]
    fn last_lines_keep_the_tail() {
        let mut last = LastLines::new(2);
        for line in [&b"a"[..], b"b", b"\xffc"] {
            last.push(line);
        }
        assert_eq!(last.into_vec(), ["b", "\u{fffd}c"]);
        let mut none = LastLines::new(0);
        none.push(b"x");
        assert!(none.into_vec().is_empty());
    }

    #[test]
    fn abort_requests_escalate() {
        let handle = AbortHandle::new();
        assert!(!handle.is_aborted());
        let clone = handle.clone();
        clone.abort();
        assert!(handle.is_aborted());
        assert_eq!(*handle.n_requests.borrow(), 1);
        handle.kill();
        assert_eq!(*handle.n_requests.borrow(), 2);
    }
}
