//! A client of Sluice's (and Zuul's) console streams, for tests and `bench/stream`; not part of
//! the product.
//!
//! `ws URL UUID` speaks Zuul's websocket protocol with tokio-tungstenite and prints the stream;
//! `finger HOST PORT UUID` is a raw finger client for ports the real `finger` cannot name.
//! With `--watchers N --report`, `ws` opens N sessions at once and prints a JSON report instead:
//! lines per session, marks lost or out of order, and the latency of mark lines
//! (`MARK <seq> <unix ns>`, written by a command on the node) from write to receipt.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Follow a build over the websocket console stream.
    Ws {
        /// `ws://host:port/api/tenant/T/console-stream`.
        url: String,
        /// The build uuid (several: comma-separated, `--watchers` sessions for each).
        uuid: String,
        /// The first frame to send instead of `{"uuid": UUID, "logfile": "console.log"}`.
        #[arg(long)]
        first: Option<String>,
        /// Sessions at once.
        #[arg(long, default_value_t = 1)]
        watchers: usize,
        /// Print a JSON report instead of the stream.
        #[arg(long)]
        report: bool,
        /// Marks the build writes (for the lost count).
        #[arg(long, default_value_t = 0)]
        expect_marks: u64,
        /// Close each session after this many received bytes (an aborted watcher).
        #[arg(long)]
        abort_after: Option<usize>,
    },
    /// A stand-in executor for benchmarks: N builds whose logs a writer thread appends mark
    /// lines to (one write per line, as the callbacks do), served by the real finger server.
    /// Prints the uuids, one a line, then `ready`; starts writing at a line on stdin; exits
    /// when the builds have ended and their watchers are gone.
    SyntheticExecutor {
        /// Finger listen address.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Work root for the build dirs.
        #[arg(long)]
        work_root: std::path::PathBuf,
        /// Builds.
        #[arg(long, default_value_t = 100)]
        builds: usize,
        /// Mark lines per build.
        #[arg(long, default_value_t = 100)]
        lines: u64,
        /// Milliseconds between rounds of lines.
        #[arg(long, default_value_t = 20)]
        gap_ms: u64,
    },
    /// Follow a build over raw finger.
    Finger {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The request line (a build uuid).
        uuid: String,
    },
}

/// Each session's websocket read buffer.
const READ_BUFFER: usize = 8 * 1024;

#[derive(Debug, Default)]
struct Session {
    n_lines: u64,
    /// Text frames received: with `n_lines`, shows how many lines the web joined per frame.
    n_frames: u64,
    n_marks: u64,
    out_of_order: u64,
    duplicate: u64,
    latencies_ms: Vec<f64>,
    close: Option<(u16, String)>,
    error: Option<String>,
}

impl Session {
    /// Counts one received line; a mark line is checked against the previous mark (lost,
    /// out of order, duplicated) and its latency recorded.
    fn line(&mut self, line: &str, now: u64, last_seq: &mut u64) {
        self.n_lines += 1;
        if let Some((seq, sent)) = parse_mark(line) {
            self.n_marks += 1;
            if seq == *last_seq {
                self.duplicate += 1;
            } else if seq != *last_seq + 1 {
                self.out_of_order += 1;
            }
            *last_seq = seq;
            self.latencies_ms
                .push(now.saturating_sub(sent) as f64 / 1e6);
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-stream-client: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Finger { host, port, uuid } => finger(&host, port, &uuid).await,
            Command::SyntheticExecutor {
                listen,
                work_root,
                builds,
                lines,
                gap_ms,
            } => synthetic_executor(listen, work_root, builds, lines, gap_ms).await,
            Command::Ws {
                url,
                uuid,
                first,
                watchers,
                report,
                expect_marks,
                abort_after,
            } => {
                let firsts: Vec<String> = uuid
                    .split(',')
                    .map(|uuid| {
                        first.clone().unwrap_or_else(|| {
                            serde_json::json!({"uuid": uuid, "logfile": "console.log"}).to_string()
                        })
                    })
                    .collect();
                let first = firsts.first().cloned().unwrap_or_default();
                if !report {
                    let session = watch(&url, &first, true, abort_after, || {}).await;
                    if let Some(error) = &session.error {
                        eprintln!("error: {error}");
                    }
                    match &session.close {
                        Some((code, reason)) => eprintln!("close: {code} {reason}"),
                        None => eprintln!("close: none"),
                    }
                    return if session.error.is_none() {
                        std::process::ExitCode::SUCCESS
                    } else {
                        std::process::ExitCode::FAILURE
                    };
                }
                let total = firsts.len() * watchers;
                let caught_up = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                // One task per session, so that the runtime spreads the sessions over every
                // core: in one task (a `join_all`), a thousand sessions' frames are handled one
                // after the other on one thread, and that queue shows up as latency.
                let tasks: Vec<_> = firsts
                    .iter()
                    .flat_map(|first| std::iter::repeat_n(first, watchers))
                    .map(|first| {
                        let caught_up = caught_up.clone();
                        let url = url.clone();
                        let first = first.clone();
                        tokio::spawn(async move {
                            watch(&url, &first, false, abort_after, move || {
                                let n =
                                    caught_up.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                                if n == total {
                                    // The bench waits for this line before measuring.
                                    eprintln!("all {total} sessions receiving");
                                }
                            })
                            .await
                        })
                    })
                    .collect();
                let mut sessions = Vec::with_capacity(tasks.len());
                for task in tasks {
                    sessions.push(task.await.unwrap_or_else(|e| Session {
                        error: Some(format!("session task: {e}")),
                        ..Session::default()
                    }));
                }
                println!("{}", report_json(&sessions, expect_marks));
                std::process::ExitCode::SUCCESS
            }
        }
    })
}

async fn synthetic_executor(
    listen: std::net::SocketAddr,
    work_root: std::path::PathBuf,
    n_builds: usize,
    n_lines: u64,
    gap_ms: u64,
) -> std::process::ExitCode {
    use sluice_executor::registry::BuildRegistry;
    let run = async {
        let registry = BuildRegistry::new();
        let mut guards = Vec::new();
        let mut logs = Vec::new();
        for i in 0..n_builds {
            let uuid = format!("{:032x}", i + 1);
            let log = work_root.join(&uuid).join("work/logs/job-output.txt");
            std::fs::create_dir_all(log.parent().unwrap_or(&work_root))?;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            file.write_all(b"synthetic | Job console starting\n")?;
            guards.push(registry.register(&uuid, log));
            logs.push(file);
            println!("{uuid}");
        }
        let watcher = sluice_stream::LogWatcher::new().map_err(std::io::Error::other)?;
        let server = sluice_stream::FingerServer::new(
            sluice_stream::FingerConfig {
                work_root: work_root.clone(),
                max_connections: 100_000,
                tls: None,
            },
            registry,
            watcher,
        );
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.clone().run(listener, async move {
            let _ = stopped.await;
        }));
        println!("ready");
        std::io::stdout().flush()?;
        let mut go = String::new();
        tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut go)).await??;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for seq in 1..=n_lines {
                for file in &mut logs {
                    file.write_all(
                        format!("synthetic | node | MARK {seq} {}\n", now_ns()).as_bytes(),
                    )?;
                }
                std::thread::sleep(Duration::from_millis(gap_ms));
            }
            Ok(())
        })
        .await??;
        drop(guards);
        server.idle().await;
        let _ = stop.send(());
        let _ = task.await;
        Ok::<(), std::io::Error>(())
    };
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn finger(host: &str, port: u16, uuid: &str) -> std::process::ExitCode {
    let run = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.write_all(format!("{uuid}\r\n").as_bytes()).await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut stdout = std::io::stdout();
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            stdout.write_all(&buf[..n])?;
            stdout.flush()?;
        }
    };
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn watch(
    url: &str,
    first: &str,
    print: bool,
    abort_after: Option<usize>,
    on_first_frame: impl FnOnce(),
) -> Session {
    let mut on_first_frame = Some(on_first_frame);
    let mut session = Session::default();
    // A small read buffer: tungstenite zero-fills the free part of it (up to its size) before
    // every read, and its default of 128 KiB makes that a 128 KiB memset per frame for frames
    // that hold a line or a few.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut socket, _) =
        match tokio_tungstenite::connect_async_with_config(url, Some(config), true).await {
            Ok(pair) => pair,
            Err(e) => {
                session.error = Some(format!("connect: {e}"));
                return session;
            }
        };
    if let Err(e) = socket.send(Message::text(first)).await {
        session.error = Some(format!("send: {e}"));
        return session;
    }
    let mut carry = String::new();
    let mut last_seq = 0u64;
    let mut n_bytes = 0usize;
    let mut stdout = std::io::stdout();
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Text(text)) => {
                if let Some(callback) = on_first_frame.take() {
                    callback();
                }
                n_bytes += text.len();
                session.n_frames += 1;
                if print {
                    let _ = stdout.write_all(text.as_bytes());
                    let _ = stdout.flush();
                }
                let now = now_ns();
                // Lines are checked where they lie in the frame; only a line split across
                // frames is copied (into `carry`).
                let mut rest: &str = &text;
                if !carry.is_empty() {
                    match rest.find('\n') {
                        Some(i) => {
                            carry.push_str(&rest[..=i]);
                            rest = &rest[i + 1..];
                            session.line(&carry, now, &mut last_seq);
                            carry.clear();
                        }
                        None => {
                            carry.push_str(rest);
                            rest = "";
                        }
                    }
                }
                while let Some(i) = rest.find('\n') {
                    session.line(&rest[..=i], now, &mut last_seq);
                    rest = &rest[i + 1..];
                }
                carry.push_str(rest);
                if abort_after.is_some_and(|limit| n_bytes >= limit) {
                    // Leave without a close handshake, as a closed browser tab.
                    return session;
                }
            }
            Ok(Message::Close(frame)) => {
                session.close = Some(match frame {
                    Some(frame) => (u16::from(frame.code), frame.reason.to_string()),
                    None => (u16::from(CloseCode::Status), String::new()),
                });
                break;
            }
            Ok(_) => {}
            Err(e) => {
                session.error = Some(format!("receive: {e}"));
                break;
            }
        }
    }
    session
}

/// `... | MARK <seq> <unix ns>` → (seq, ns).
fn parse_mark(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("MARK ")? + 5..];
    let mut words = rest.split_whitespace();
    let seq = words.next()?.parse().ok()?;
    let sent = words.next()?.parse().ok()?;
    Some((seq, sent))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report_json(sessions: &[Session], expect_marks: u64) -> serde_json::Value {
    let mut latencies: Vec<f64> = sessions
        .iter()
        .flat_map(|s| s.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let lost: u64 = sessions
        .iter()
        .map(|s| expect_marks.saturating_sub(s.n_marks))
        .sum();
    let mut closes = std::collections::BTreeMap::<String, u64>::new();
    for s in sessions {
        let key = match (&s.close, &s.error) {
            (Some((code, reason)), _) => format!("{code} {reason}"),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => "none".into(),
        };
        *closes.entry(key).or_default() += 1;
    }
    serde_json::json!({
        "watchers": sessions.len(),
        "lines_min": sessions.iter().map(|s| s.n_lines).min().unwrap_or(0),
        "lines_max": sessions.iter().map(|s| s.n_lines).max().unwrap_or(0),
        "text_frames": sessions.iter().map(|s| s.n_frames).sum::<u64>(),
        "lines": sessions.iter().map(|s| s.n_lines).sum::<u64>(),
        "marks_expected_per_watcher": expect_marks,
        "marks_lost": lost,
        "marks_out_of_order": sessions.iter().map(|s| s.out_of_order).sum::<u64>(),
        "marks_duplicated": sessions.iter().map(|s| s.duplicate).sum::<u64>(),
        "latency_ms_p50": percentile(&latencies, 0.5),
        "latency_ms_p99": percentile(&latencies, 0.99),
        "latency_ms_max": latencies.last().copied().unwrap_or(f64::NAN),
        "latency_samples": latencies.len(),
        "closes": closes,
        "cpu_ticks": own_cpu_ticks(),
    })
}

/// This process's user + system CPU time in clock ticks, from `/proc/self/stat`.
fn own_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}
