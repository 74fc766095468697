//! Client for the node console daemon (`zuul_console`, wire protocol v1).
//!
//! One thread per host per streamed task connects to the node, asks for the task's console file
//! and writes each line to `job-output.txt` as soon as its bytes arrive (blocking reads, no
//! polling). The end of a task's log is the content line `[Zuul] Task exit code: N`; after it the
//! client asks a v1+ server to delete the file with `f:<log_id>`. When the task's result arrives
//! the callback calls [`StreamHandle::stop`] with a grace period and [`StreamHandle::join`]:
//! a stream still waiting for a missing log ends once the grace period has passed, and a stream
//! that has not finished within the join timeout is cut off with
//! `[Zuul] Log Stream did not terminate`.

use crate::errors::CallbackError;
use crate::output::JobOutput;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Content line that ends a task's console log.
pub const EXIT_MARKER: &str = "[Zuul] Task exit code";
/// Line the daemon sends while the requested log file does not exist (yet).
pub const NOT_FOUND: &str = "[Zuul] Log not found";
/// Default node console port.
pub const DEFAULT_PORT: u16 = 19885;

/// What to stream and from where.
#[derive(Debug, Clone)]
pub struct StreamRequest {
    /// Inventory hostname, used as the line prefix.
    pub host: String,
    /// Address to connect to (`ansible_host`).
    pub addr: String,
    /// Console port.
    pub port: u16,
    /// The task's `zuul_log_id`.
    pub log_id: String,
}

/// Timing knobs (Zuul's values by default).
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Pause between refused connection attempts.
    pub retry_interval: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            connect_timeout: Duration::from_secs(5),
            retry_interval: Duration::from_millis(100),
        }
    }
}

/// Where the stream thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    WaitingForLog,
    Streaming,
    Done,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When the stream may give up on a missing log (task result time + grace).
    give_up_at: Option<Instant>,
    aborted: bool,
    sock: Option<TcpStream>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn set_phase(&self, phase: Phase) {
        let mut st = self.lock();
        if st.phase != Phase::Done {
            st.phase = phase;
        }
        self.cond.notify_all();
    }

    /// True once the stream should stop waiting for a log that is not there.
    fn should_give_up(&self) -> bool {
        let st = self.lock();
        st.aborted || st.give_up_at.is_some_and(|t| Instant::now() >= t)
    }

    fn aborted(&self) -> bool {
        self.lock().aborted
    }

    fn abort(&self) {
        let mut st = self.lock();
        st.aborted = true;
        if let Some(sock) = st.sock.take() {
            let _ = sock.shutdown(Shutdown::Both);
        }
        self.cond.notify_all();
    }

    /// Sleeps up to `d`, waking early on abort.
    fn pause(&self, d: Duration) {
        let st = self.lock();
        if st.aborted {
            return;
        }
        let _ = self.cond.wait_timeout(st, d);
    }

    fn register(&self, sock: &TcpStream) -> bool {
        let mut st = self.lock();
        if st.aborted {
            return false;
        }
        st.sock = sock.try_clone().ok();
        true
    }
}

/// A running console stream.
#[derive(Debug)]
pub struct StreamHandle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    output: JobOutput,
}

/// Starts streaming `req` into `output` on a new thread.
pub fn spawn(
    output: JobOutput,
    req: StreamRequest,
    opts: StreamOptions,
) -> Result<StreamHandle, CallbackError> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            phase: Phase::Connecting,
            give_up_at: None,
            aborted: false,
            sock: None,
        }),
        cond: Condvar::new(),
    });
    let thread = {
        let shared = shared.clone();
        let output = output.clone();
        std::thread::Builder::new()
            .name(format!("console-{}", req.host))
            .spawn(move || {
                let client = Client {
                    shared: shared.clone(),
                    output,
                    req,
                    opts,
                };
                client.run();
                shared.set_phase(Phase::Done);
            })
            .map_err(CallbackError::Thread)?
    };
    Ok(StreamHandle {
        shared,
        thread: Mutex::new(Some(thread)),
        output,
    })
}

impl StreamHandle {
    /// The task result arrived: a log that is still missing may be given up on after `grace`.
    pub fn stop(&self, grace: Duration) {
        let mut st = self.shared.lock();
        let at = Instant::now() + grace;
        st.give_up_at = Some(st.give_up_at.map_or(at, |t| t.min(at)));
        self.shared.cond.notify_all();
    }

    /// True once the stream thread has finished.
    pub fn is_done(&self) -> bool {
        self.shared.lock().phase == Phase::Done
    }

    /// Waits up to `timeout` for the stream to end. A stream still connecting or waiting for a
    /// missing log is ended as soon as the grace period given to [`stop`](Self::stop) has
    /// passed. On timeout the stream is cut off, `[Zuul] Log Stream did not terminate` is logged
    /// and `false` returned.
    pub fn join(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if st.phase == Phase::Done {
                drop(st);
                self.join_thread();
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                self.shared.abort();
                let _ = self.output.line("[Zuul] Log Stream did not terminate");
                return false;
            }
            let waiting = matches!(st.phase, Phase::Connecting | Phase::WaitingForLog);
            let mut wake = deadline;
            if let Some(give_up) = st.give_up_at {
                if waiting && now >= give_up && !st.aborted {
                    st.aborted = true;
                    if let Some(sock) = st.sock.take() {
                        let _ = sock.shutdown(Shutdown::Both);
                    }
                } else if waiting && give_up > now {
                    wake = wake.min(give_up);
                }
            }
            let d = wake.saturating_duration_since(now);
            st = match self.shared.cond.wait_timeout(st, d) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn join_thread(&self) {
        let handle = match self.thread.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// How a read session ended.
enum End {
    /// Saw the exit-code line.
    Exit,
    /// Connection closed or failed, or the stream gave up on a missing log.
    Closed,
}

struct Client {
    shared: Arc<Shared>,
    output: JobOutput,
    req: StreamRequest,
    opts: StreamOptions,
}

/// Splits a byte stream into `\n`-terminated lines.
/// How much one read from a node console takes at most.
const READ_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    /// Reads once (blocking) and returns the complete lines; `None` at EOF or on error.
    fn read_lines(&mut self, sock: &mut TcpStream) -> Option<Vec<String>> {
        let mut buf = vec![0u8; READ_BYTES];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    // One pass over the buffer, one drain at the end: splitting line by line
                    // would copy the rest of the buffer for every line.
                    let mut lines = Vec::new();
                    let mut start = 0;
                    while let Some(offset) = self.pending[start..].iter().position(|b| *b == b'\n')
                    {
                        lines.push(decode(&self.pending[start..start + offset]));
                        start += offset + 1;
                    }
                    self.pending.drain(..start);
                    return Some(lines);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    }

    /// The unterminated rest, if any.
    fn rest(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            None
        } else {
            Some(decode(&std::mem::take(&mut self.pending)))
        }
    }
}

/// TCP keepalive as Zuul's streamer sets it: idle 30 s, interval 30 s, 9 probes, so a stream
/// from a node that vanished ends instead of blocking forever.
#[cfg(target_os = "linux")]
fn set_keepalive(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `fd` is an open socket owned by `sock` for the duration of the call, and the
        // option value points to a live c_int whose size is passed along.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 30);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 30);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 9);
}

#[cfg(not(target_os = "linux"))]
fn set_keepalive(_sock: &TcpStream) {}

/// UTF-8 decoding with Python's `backslashreplace` for invalid bytes.
pub fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
}

impl Client {
    fn log(&self, msg: &str) {
        let _ = self.output.line(msg);
    }

    fn resolve(&self) -> Option<SocketAddr> {
        (self.req.addr.as_str(), self.req.port)
            .to_socket_addrs()
            .ok()?
            .next()
    }

    /// Connects, retrying refused connections until the stream is told to give up.
    fn connect(&self) -> Option<TcpStream> {
        let mut tries: u64 = 0;
        loop {
            if self.shared.should_give_up() {
                return None;
            }
            let attempt = match self.resolve() {
                Some(sa) => TcpStream::connect_timeout(&sa, self.opts.connect_timeout),
                None => Err(std::io::Error::new(ErrorKind::NotFound, "cannot resolve")),
            };
            match attempt {
                Ok(sock) => {
                    if !self.shared.register(&sock) {
                        return None;
                    }
                    let _ = sock.set_nodelay(true);
                    set_keepalive(&sock);
                    return Some(sock);
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    self.log(&format!(
                        "localhost | Timeout exception waiting for the logger. Please check connectivity to [{}:{}]",
                        self.req.addr, self.req.port
                    ));
                    return None;
                }
                Err(_) => {
                    tries += 1;
                    if tries.is_multiple_of(10) {
                        self.log(&format!("[{}] Waiting on logger", self.req.host));
                    }
                    self.shared.pause(self.opts.retry_interval);
                }
            }
        }
    }

    fn run(&self) {
        let Some(mut sock) = self.connect() else {
            return;
        };
        let mut reader = LineReader::default();
        // Version handshake: a v1+ server answers `v:0` with its version; a v0 server takes it for
        // a log id and answers `[Zuul] Log not found`.
        if sock.write_all(b"v:0\n").is_err() {
            return;
        }
        let mut version = 0u32;
        loop {
            let Some(lines) = reader.read_lines(&mut sock) else {
                return;
            };
            if let Some(first) = lines.first() {
                if !first.contains(NOT_FOUND) {
                    version = first.trim().parse().unwrap_or(1);
                }
                break;
            }
        }
        let request = if version == 0 {
            let _ = sock.shutdown(Shutdown::Both);
            let Some(s) = self.connect() else { return };
            sock = s;
            reader = LineReader::default();
            format!("{}\n", self.req.log_id)
        } else {
            format!("s:{}\n", self.req.log_id)
        };
        if sock.write_all(request.as_bytes()).is_err() {
            return;
        }
        self.shared.set_phase(Phase::WaitingForLog);
        let end = self.read_stream(&mut sock, &mut reader);
        let _ = sock.shutdown(Shutdown::Both);
        if matches!(end, End::Exit) && version >= 1 && !self.shared.aborted() {
            self.delete_log();
        }
    }

    fn read_stream(&self, sock: &mut TcpStream, reader: &mut LineReader) -> End {
        loop {
            let Some(lines) = reader.read_lines(sock) else {
                if let Some(rest) = reader.rest() {
                    if !rest.contains(NOT_FOUND) && !rest.contains(EXIT_MARKER) {
                        let _ = self.output.stream_line(&self.req.host, &rest);
                    }
                }
                return End::Closed;
            };
            // The lines of one read are written together: one write call, not one per line.
            let mut batch: Vec<&str> = Vec::with_capacity(lines.len());
            let mut end = None;
            for line in &lines {
                if line.contains(EXIT_MARKER) {
                    end = Some(End::Exit);
                    break;
                }
                if line.contains(NOT_FOUND) {
                    if self.shared.should_give_up() {
                        end = Some(End::Closed);
                        break;
                    }
                    continue;
                }
                batch.push(line);
            }
            if !batch.is_empty() {
                self.shared.set_phase(Phase::Streaming);
                let _ = self.output.stream_lines(&self.req.host, &batch);
            }
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// Asks the server to delete the console file (`f:<log_id>`), on a fresh connection.
    fn delete_log(&self) {
        let Some(sa) = self.resolve() else { return };
        if let Ok(mut s) = TcpStream::connect_timeout(&sa, self.opts.connect_timeout) {
            let _ = s.write_all(format!("f:{}\n", self.req.log_id).as_bytes());
            let _ = s.shutdown(Shutdown::Write);
            // Wait for the server to close so the request is processed before we go.
            let mut sink = [0u8; 64];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{masked, Collect};
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// What the fake daemon does on `s:<id>` (or a bare id for v0).
    type Script = Arc<dyn Fn(&mut TcpStream, &mpsc::Sender<String>) + Send + Sync>;

    /// A tiny protocol-v1 (or v0) console server; every request line is reported on the channel.
    fn server(v1: bool, script: Script) -> (u16, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let tx = tx.clone();
                let script = script.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim().to_string();
                        let _ = tx.send(line.clone());
                        if v1 && line.starts_with("v:") {
                            let _ = conn.write_all(b"1\n");
                        } else if v1 && line.starts_with("f:") {
                            continue;
                        } else if !v1 && line.starts_with("v:") {
                            for _ in 0..3 {
                                let _ = conn.write_all(b"[Zuul] Log not found\n");
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            return;
                        } else {
                            script(&mut conn, &tx);
                            return;
                        }
                    }
                });
            }
        });
        (port, rx)
    }

    fn setup() -> (tempfile::TempDir, JobOutput, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job-output.txt");
        let out = JobOutput::with_control(&path, Box::new(Collect::default())).unwrap();
        (dir, out, path)
    }

    fn req(port: u16) -> StreamRequest {
        StreamRequest {
            host: "node".into(),
            addr: "127.0.0.1".into(),
            port,
            log_id: "abc-1-node".into(),
        }
    }

    fn read(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn wait_for(path: &std::path::Path, needle: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if read(path).contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn lines_are_written_as_they_arrive_then_the_log_is_deleted() {
        let (_d, out, path) = setup();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Arc::new(Mutex::new(go_rx));
        let script: Script = Arc::new(move |conn, _| {
            let _ = conn.write_all(b"[Zuul] Log not found\n");
            let _ =
                conn.write_all(b"2026-11-26 04:37:15.236249 | first\n2026-11-26 04:37:15.3 | part");
            let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
            let _ = conn.write_all(b"ial \xff\n2026-11-26 04:37:17.1 | [Zuul] Task exit code: 0\n");
            std::thread::sleep(Duration::from_secs(1));
        });
        let (port, requests) = server(true, script);
        let h = spawn(out, req(port), StreamOptions::default()).unwrap();
        // The first line is in the file while the task is still running.
        assert!(wait_for(&path, "node | first"), "{}", read(&path));
        assert!(!read(&path).contains("partial"));
        go_tx.send(()).unwrap();
        h.stop(Duration::from_secs(10));
        assert!(h.join(Duration::from_secs(5)));
        assert_eq!(read(&path), "2026-11-26 04:37:15.236249 | node | first\n2026-11-26 04:37:15.3 | node | partial \\xff\n");
        let reqs: Vec<String> = requests.try_iter().collect();
        assert_eq!(reqs, vec!["v:0", "s:abc-1-node", "f:abc-1-node"]);
    }

    #[test]
    fn missing_log_ends_after_grace_without_output() {
        let (_d, out, path) = setup();
        let script: Script = Arc::new(|conn, _| {
            while conn.write_all(b"[Zuul] Log not found\n").is_ok() {
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let (port, requests) = server(true, script);
        let h = spawn(out, req(port), StreamOptions::default()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        h.stop(Duration::ZERO);
        assert!(h.join(Duration::from_secs(30)));
        assert!(
            start.elapsed() < Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(read(&path), "");
        let reqs: Vec<String> = requests.try_iter().collect();
        assert_eq!(reqs, vec!["v:0", "s:abc-1-node"]);
    }

    #[test]
    fn refused_connections_are_retried_with_waiting_messages() {
        let (_d, out, path) = setup();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let opts = StreamOptions {
            retry_interval: Duration::from_millis(10),
            ..Default::default()
        };
        let h = spawn(out, req(port), opts).unwrap();
        assert!(wait_for(&path, "[node] Waiting on logger"));
        h.stop(Duration::ZERO);
        assert!(h.join(Duration::from_secs(5)));
        assert!(masked(&read(&path))
            .iter()
            .all(|l| l == "TS | [node] Waiting on logger"));
    }

    #[test]
    fn v0_server_gets_a_bare_log_id() {
        let (_d, out, path) = setup();
        let script: Script = Arc::new(|conn, _| {
            let _ = conn.write_all(
                b"2026-11-26 04:37:15.1 | old\n2026-11-26 04:37:15.2 | [Zuul] Task exit code: 1\n",
            );
        });
        let (port, requests) = server(false, script);
        let h = spawn(out, req(port), StreamOptions::default()).unwrap();
        h.stop(Duration::from_secs(10));
        assert!(h.join(Duration::from_secs(5)));
        assert_eq!(read(&path), "2026-11-26 04:37:15.1 | node | old\n");
        let reqs: Vec<String> = requests.try_iter().collect();
        assert_eq!(reqs, vec!["v:0", "abc-1-node"]);
    }

    #[test]
    fn a_stalled_stream_is_cut_off() {
        let (_d, out, path) = setup();
        let script: Script = Arc::new(|conn, _| {
            let _ = conn.write_all(b"2026-11-26 04:37:15.1 | started\n");
            std::thread::sleep(Duration::from_secs(3));
        });
        let (port, _requests) = server(true, script);
        let h = spawn(out, req(port), StreamOptions::default()).unwrap();
        assert!(wait_for(&path, "started"));
        h.stop(Duration::ZERO);
        assert!(!h.join(Duration::from_millis(200)));
        assert_eq!(
            masked(&read(&path)),
            vec![
                "TS | node | started",
                "TS | [Zuul] Log Stream did not terminate"
            ]
        );
    }

    #[test]
    fn failure_output_from_a_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job-output.txt");
        let sink = Collect::default();
        let out = JobOutput::with_control(&path, Box::new(sink.clone())).unwrap();
        out.set_failure_output(&["ERROR:".to_string()]).unwrap();
        let script: Script = Arc::new(|conn, _| {
            let _ = conn.write_all(b"2026-11-26 04:37:15.1 | ERROR: x\n2026-11-26 04:37:15.2 | [Zuul] Task exit code: 1\n");
        });
        let (port, _r) = server(true, script);
        let h = spawn(out, req(port), StreamOptions::default()).unwrap();
        h.stop(Duration::from_secs(10));
        assert!(h.join(Duration::from_secs(5)));
        assert_eq!(
            masked(&read(&path)),
            vec![
                "TS | node | ERROR: x",
                "TS | node | Early failure in job, matched regex \"ERROR:\""
            ]
        );
        assert_eq!(*sink.0.lock().unwrap(), vec!["RESULT failure"]);
    }

    #[test]
    fn invalid_utf8_is_backslash_escaped() {
        assert_eq!(decode(b"a\xffb\xc3\xa9"), "a\\xffb\u{e9}");
    }
}
