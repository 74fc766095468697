//! Live logs end to end: a real job run by `sluice job run --finger-listen`, the real `finger`
//! client through `sluice fingergw` on port 79, a websocket client in its own process
//! (`sluice-stream-client`, tokio-tungstenite) through `sluice web`, and Zuul's errors.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_tests::{
    build_dir, config_project, job_command, require_tool, sluice_bin, wait_for, GitRepo, Node,
};

const MARKS_JOB: &str = "- job:\n    name: marks\n    run: playbooks/marks.yaml\n";
/// Waits for the go file (or until its directory goes: the test ended without saying go, and
/// nothing is left looping on the node), then writes `n` mark lines `gap` seconds apart.
const MARKS_PLAYBOOK: &str = "- hosts: all\n  tasks:\n    - name: Marks\n      shell: |\n        echo waiting for go\n        while [ ! -e {{ go }} ] && [ -d {{ go | dirname }} ]; do sleep 0.05; done\n        for i in $(seq 1 {{ n }}); do echo \"MARK $i $(date +%s%N)\"; sleep {{ gap }}; done\n";

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Creates the go file on drop, so that a node task never waits forever.
struct GoFile(PathBuf);

impl GoFile {
    fn go(&self) {
        std::fs::write(&self.0, "go").expect("write go file");
    }
}

impl Drop for GoFile {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "go");
    }
}

/// Everything a child printed on stdout so far, read by a thread.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn collect(mut reader: impl Read + Send + 'static) -> Output {
        let out = Output::default();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        out
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn client_bin() -> PathBuf {
    let bin = sluice_bin().with_file_name("sluice-stream-client");
    assert!(
        bin.is_file(),
        "{} not found: build it with `cargo build --workspace`",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_port(port: u16) {
    assert!(
        wait_for(Duration::from_secs(20), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nothing listens on {port}"
    );
}

/// A running `sluice job run marks --finger-listen` and what it needs.
struct LiveBuild {
    _node: Node,
    scratch: tempfile::TempDir,
    job: Proc,
    uuid: String,
    finger_port: u16,
    go: GoFile,
}

impl LiveBuild {
    /// Starts the job and waits until its task runs (the node printed `waiting for go`).
    fn start(n_marks: u32, gap: &str) -> LiveBuild {
        LiveBuild::start_with(n_marks, gap, &[])
    }

    /// The same, with more arguments for `sluice job run`.
    fn start_with(n_marks: u32, gap: &str, extra: &[String]) -> LiveBuild {
        let scratch = tempfile::tempdir().unwrap();
        let node = Node::start();
        let config = config_project(scratch.path());
        let project = GitRepo::init(&scratch.path().join("org/demo"), "main");
        project
            .write(".zuul.yaml", MARKS_JOB)
            .write("playbooks/marks.yaml", MARKS_PLAYBOOK);
        project.commit("Add the marks job");
        let go = GoFile(scratch.path().join("go"));
        let finger_port = free_port();
        let args = [
            format!("--project={}", project.path.display()),
            format!("--config-project=config={}", config.path.display()),
            format!("--nodes={}", node.nodes_file().display()),
            format!("--ssh-key={}", node.key().display()),
            format!("--finger-listen=127.0.0.1:{finger_port}"),
            format!("--var=go={}", go.0.display()),
            format!("--var=n={n_marks}"),
            format!("--var=gap={gap}"),
        ];
        let args: Vec<&str> = args.iter().chain(extra).map(String::as_str).collect();
        let (mut cmd, _) = job_command(scratch.path(), "marks", &args);
        let job = Proc(
            cmd.stdout(Stdio::null())
                .spawn()
                .expect("run sluice job run"),
        );
        let mut dir = None;
        assert!(
            wait_for(Duration::from_secs(60), || {
                dir = build_dir(scratch.path());
                dir.is_some()
            }),
            "no build dir"
        );
        let dir = dir.unwrap();
        let uuid = dir.file_name().unwrap().to_string_lossy().into_owned();
        let build = LiveBuild {
            _node: node,
            scratch,
            job,
            uuid,
            finger_port,
            go,
        };
        assert!(
            wait_for(Duration::from_secs(120), || build
                .log()
                .contains("| node | waiting for go")),
            "the task did not start:\n{}",
            build.log()
        );
        wait_port(finger_port);
        build
    }

    fn log_path(&self) -> PathBuf {
        self.scratch
            .path()
            .join("builds")
            .join(&self.uuid)
            .join("work/logs/job-output.txt")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Writes an executors file: this build's executor in zone `z`, and a gateway of zone `z`.
    fn executors_file(&self, gateway_port: u16) -> PathBuf {
        let path = self.scratch.path().join("executors.yaml");
        std::fs::write(
            &path,
            format!(
                "executors:\n  - name: local\n    host: 127.0.0.1\n    finger_port: {}\n    zone: z\ngateways:\n  - name: gw\n    host: 127.0.0.1\n    port: {gateway_port}\n    zone: z\n",
                self.finger_port
            ),
        )
        .unwrap();
        path
    }

    fn wait_job(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.job.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the job did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn spawn(cmd: &mut Command) -> (Proc, Output, Output) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let out = Output::collect(child.stdout.take().unwrap());
    let err = Output::collect(child.stderr.take().unwrap());
    (Proc(child), out, err)
}

fn gateway(executors: &Path, port: u16, zone: &str) -> Proc {
    let child = Command::new(sluice_bin())
        .args([
            "fingergw",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--zone",
            zone,
        ])
        .arg("--executors")
        .arg(executors)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sluice fingergw");
    wait_port(port);
    Proc(child)
}

fn web(executors: &Path, port: u16) -> Proc {
    let child = Command::new(sluice_bin())
        .args(["web", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--executors")
        .arg(executors)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sluice web");
    wait_port(port);
    Proc(child)
}

fn ws_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/api/tenant/example/console-stream")
}

fn wait_exit(proc: &mut Proc, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Port 79 is the only one the real `finger` client can reach; one test binds it.
fn bind_finger_port_or_fail() -> u16 {
    match TcpListener::bind("127.0.0.1:79") {
        Ok(_) => 79,
        Err(e) => panic!(
            "cannot bind 127.0.0.1:79 ({e}): the real finger client only speaks to port 79; run the tests as root (CI does)"
        ),
    }
}

#[test]
fn real_finger_and_websocket_follow_a_running_build_live_to_its_end() {
    require_tool("finger", "finger");
    let gateway_port = bind_finger_port_or_fail();
    let mut build = LiveBuild::start(20, "0.1");
    let executors = build.executors_file(gateway_port);
    let _gateway = gateway(&executors, gateway_port, "z");
    let web_port = free_port();
    // The web is unzoned and the executor is in zone z: the web goes through the gateway.
    let _web = web(&executors, web_port);

    // finger writes through stdio: line-buffer it, or a pipe gets the stream only at exit.
    let (mut finger, finger_out, _) = spawn(
        Command::new("stdbuf")
            .args(["-oL", "finger"])
            .arg(format!("{}@127.0.0.1", build.uuid)),
    );
    let (mut ws, ws_out, ws_err) =
        spawn(Command::new(client_bin()).args(["ws", &ws_url(web_port), &build.uuid]));
    let (mut raw, raw_out, _) = spawn(Command::new(client_bin()).args([
        "finger",
        "127.0.0.1",
        &build.finger_port.to_string(),
        &build.uuid,
    ]));
    let clients = [&finger_out, &ws_out, &raw_out];
    assert!(
        wait_for(Duration::from_secs(20), || clients
            .iter()
            .all(|c| c.text().contains("| node | waiting for go"))),
        "the clients did not catch up:\nfinger: {}\nws: {}\nraw: {}",
        finger_out.text(),
        ws_out.text(),
        raw_out.text()
    );
    build.go.go();
    // Each client gets the first mark while the task still writes: the 20th is 2 s away.
    for (name, client) in ["finger", "websocket", "raw finger"].iter().zip(clients) {
        assert!(
            wait_for(Duration::from_secs(20), || client
                .text()
                .contains("MARK 1 ")),
            "{name}: no first mark"
        );
        assert!(
            !build.log().contains("MARK 20 "),
            "{name} got the first mark only after the task had written the last one"
        );
    }
    let status = build.wait_job();
    assert!(status.success(), "job failed:\n{}", build.log());
    // The streams close when the build ends.
    for (name, proc) in [
        ("finger", &mut finger),
        ("websocket", &mut ws),
        ("raw finger", &mut raw),
    ] {
        assert!(
            wait_exit(proc, Duration::from_secs(15)).is_some(),
            "{name} stream still open after the build ended"
        );
    }
    let log = build.log();
    for i in 1..=20 {
        assert!(
            log.contains(&format!("| node | MARK {i} ")),
            "mark {i} missing:\n{log}"
        );
    }
    assert!(log.ends_with('\n') && log.contains("POST-RUN END"), "{log}");
    assert_eq!(
        ws_out.text(),
        log,
        "websocket stream differs from job-output.txt"
    );
    assert!(
        ws_err.text().contains("close: 1000 No more data"),
        "{}",
        ws_err.text()
    );
    assert_eq!(
        raw_out.text(),
        log,
        "finger stream differs from job-output.txt"
    );
    // Some finger builds print `[host]` first, then the stream.
    let fingered = finger_out.text();
    let fingered = fingered.strip_prefix("[127.0.0.1]\n").unwrap_or(&fingered);
    assert_eq!(
        fingered, log,
        "finger client output differs from job-output.txt"
    );

    // A finished build: finger sends its whole log and closes; the web serves it too.
    let (mut again, again_out, _) = spawn(Command::new(client_bin()).args([
        "finger",
        "127.0.0.1",
        &gateway_port.to_string(),
        &build.uuid,
    ]));
    assert!(wait_exit(&mut again, Duration::from_secs(15)).is_some());
    // `sluice job run` has exited: its finger server is gone, so the gateway finds no executor.
    assert_eq!(again_out.text(), "Internal streaming error");
}

fn finger_request(port: u16, line: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(line.as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

fn ws_close(web_port: u16, uuid: &str, first: Option<&str>) -> String {
    let mut cmd = Command::new(client_bin());
    cmd.args(["ws", &ws_url(web_port), uuid]);
    if let Some(first) = first {
        cmd.args(["--first", first]);
    }
    let out = cmd.output().expect("run the websocket client");
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix("close: "))
        .unwrap_or_else(|| panic!("no close in {err}"))
        .to_string()
}

fn n_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn errors_follow_zuul_and_aborted_connections_leave_nothing_behind() {
    let mut build = LiveBuild::start(3, "0.01");
    let gateway_port = free_port();
    let executors = build.executors_file(gateway_port);
    let gw = gateway(&executors, gateway_port, "z");
    let web_port = free_port();
    let web = web(&executors, web_port);
    let executor = build.finger_port;

    // Executor finger: Zuul's texts, no newline.
    assert_eq!(
        finger_request(executor, "0123abcd\r\n"),
        "Build ID 0123abcd not found"
    );
    assert_eq!(
        finger_request(executor, "../etc\n"),
        "Build ID ../etc is not valid"
    );
    std::fs::create_dir_all(build.scratch.path().join("builds/00ff")).unwrap();
    assert_eq!(
        finger_request(executor, "00ff\n"),
        "Log not found for build ID 00ff"
    );
    assert_eq!(
        finger_request(executor, &format!("?{}\n", build.uuid)),
        "running\n"
    );
    // Gateway.
    assert_eq!(
        finger_request(gateway_port, "0123abcd\n"),
        "Build not found"
    );
    assert_eq!(finger_request(gateway_port, "../etc\n"), "Build not found");
    // Websocket close codes.
    assert_eq!(ws_close(web_port, "0123abcd", None), "4011 Build not found");
    assert_eq!(
        ws_close(web_port, &build.uuid, Some("{not json")),
        "4011 Unknown error"
    );
    assert_eq!(
        ws_close(web_port, &build.uuid, Some(r#"{"logfile": "console.log"}"#)),
        "4000 'uuid' missing from request payload"
    );
    assert_eq!(
        ws_close(
            web_port,
            &build.uuid,
            Some(&format!(r#"{{"uuid": "{}"}}"#, build.uuid))
        ),
        "4000 'logfile' missing from request payload"
    );
    // HTTP log of a running build: refused with a pointer to the console stream.
    let mut http = TcpStream::connect(("127.0.0.1", web_port)).unwrap();
    write!(
        http,
        "GET /api/tenant/example/build/{}/log HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        build.uuid
    )
    .unwrap();
    let mut reply = String::new();
    http.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 409"), "{reply}");

    // 1,000 aborted connections of each kind; then every process is back to its fds.
    let job_pid = build.job.0.id();
    let before = [n_fds(job_pid), n_fds(gw.0.id()), n_fds(web.0.id())];
    for port in [executor, gateway_port] {
        for i in 0..1000 {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            if i % 2 == 0 {
                // Half of them leave after the first bytes of the stream.
                stream
                    .write_all(format!("{}\n", build.uuid).as_bytes())
                    .unwrap();
                let mut first = [0u8; 1];
                stream.read_exact(&mut first).unwrap();
            }
            // The other half leave before sending a request.
        }
    }
    let out = Command::new(client_bin())
        .args([
            "ws",
            &ws_url(web_port),
            &build.uuid,
            "--watchers",
            "1000",
            "--report",
            "--abort-after",
            "1",
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["closes"]["none"], 1000, "{report}");
    // At most as many as before (a connection of the error checks may have closed since).
    let settled = wait_for(Duration::from_secs(30), || {
        let after = [n_fds(job_pid), n_fds(gw.0.id()), n_fds(web.0.id())];
        after.iter().zip(before).all(|(a, b)| *a <= b)
    });
    assert!(
        settled,
        "fds before {before:?}, after {:?}",
        [n_fds(job_pid), n_fds(gw.0.id()), n_fds(web.0.id())]
    );
    build.go.go();
    assert!(build.wait_job().success(), "{}", build.log());
}

#[test]
fn executor_gone_mid_stream_closes_the_websocket_and_the_gateway_stream() {
    let build = LiveBuild::start(3, "0.01");
    let gateway_port = free_port();
    let executors = build.executors_file(gateway_port);
    let _gw = gateway(&executors, gateway_port, "z");
    let web_port = free_port();
    let _web = web(&executors, web_port);
    let (mut ws, ws_out, ws_err) =
        spawn(Command::new(client_bin()).args(["ws", &ws_url(web_port), &build.uuid]));
    let (mut fg, fg_out, _) = spawn(Command::new(client_bin()).args([
        "finger",
        "127.0.0.1",
        &gateway_port.to_string(),
        &build.uuid,
    ]));
    assert!(wait_for(Duration::from_secs(20), || ws_out
        .text()
        .contains("waiting for go")
        && fg_out.text().contains("waiting for go")));
    let mut build = build;
    // The executor dies: SIGKILL, no goodbye.
    build.job.0.kill().unwrap();
    let _ = build.job.0.wait();
    assert!(
        wait_exit(&mut ws, Duration::from_secs(15)).is_some(),
        "websocket still open"
    );
    assert!(
        wait_exit(&mut fg, Duration::from_secs(15)).is_some(),
        "gateway stream still open"
    );
    let close = ws_err.text();
    assert!(
        close.contains("close: 1000 No more data") || close.contains("close: 1000 Remote error"),
        "{close}"
    );
}

/// A store with builds at each stage a stream can meet, as the scheduler and executors leave
/// them: `0a` waiting for an executor, `0b` claimed by an executor without a finger server,
/// `0c` claimed by one whose finger server is gone; all of tenant `t`.
fn store_with_builds(dir: &Path) -> PathBuf {
    use sluice_store::{now_ms, NewBuild, Store, WorkerInfo};
    let config = dir.join("sluice.yaml");
    std::fs::write(
        &config,
        "tenant-config: main.yaml\nstate-dir: state\nconnections: []\n",
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let store = Store::open_sqlite(&dir.join("state/sluice.db"))
            .await
            .unwrap();
        let mut tx = store.begin().await.unwrap();
        for uuid in ["0a", "0b", "0c"] {
            tx.insert_build(&NewBuild {
                uuid: uuid.into(),
                buildset_uuid: "bs".into(),
                item_uuid: "item".into(),
                tenant: "t".into(),
                pipeline: "check".into(),
                job_name: "job".into(),
                voting: true,
                attempt: 1,
                nodeset: String::new(),
                precedence: 200,
                request: serde_json::json!({"uuid": uuid}),
                dependencies: vec![],
                ready: true,
            })
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let lease = now_ms() + 600_000;
        store.claim("0b", "ze01:p:0", lease).await.unwrap();
        let gone = WorkerInfo {
            hostname: "127.0.0.1".into(),
            finger_port: free_port(),
            zone: None,
        };
        store
            .claim_streaming("0c", "ze02:p:0", lease, &gone)
            .await
            .unwrap();
    });
    config
}

#[test]
fn builds_not_started_or_unreachable_through_the_store_get_zuul_errors() {
    let scratch = tempfile::tempdir().unwrap();
    let config = store_with_builds(scratch.path());
    let gateway_port = free_port();
    // Started as root (the tests run as root, as CI), the gateway drops to `nobody`.
    let gw = Proc(
        Command::new(sluice_bin())
            .args(["fingergw", "--listen", &format!("127.0.0.1:{gateway_port}")])
            .arg("--config")
            .arg(&config)
            .args(["--user", "nobody"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sluice fingergw"),
    );
    wait_port(gateway_port);
    // It listens first and drops to `nobody` once its store is open: wait for that.
    let mut uids = String::new();
    let dropped = wait_for(Duration::from_secs(10), || {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", gw.0.id())).unwrap_or_default();
        uids = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or_default()
            .to_string();
        uids.split_whitespace().skip(1).collect::<Vec<_>>() == ["65534"; 4]
    });
    assert!(dropped, "the gateway still runs as root: {uids}");
    assert_eq!(
        finger_request(gateway_port, "0a\n"),
        "Build did not start yet"
    );
    assert_eq!(
        finger_request(gateway_port, "0b\n"),
        "Internal streaming error"
    );
    assert_eq!(
        finger_request(gateway_port, "0c\n"),
        "Internal streaming error"
    );
    assert_eq!(finger_request(gateway_port, "0d\n"), "Build not found");

    let web_port = free_port();
    let _web = Proc(
        Command::new(sluice_bin())
            .args(["web", "--listen", &format!("127.0.0.1:{web_port}")])
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sluice web"),
    );
    wait_port(web_port);
    let url = format!("ws://127.0.0.1:{web_port}/api/tenant/t/console-stream");
    let close = |uuid: &str, url: &str| {
        let out = Command::new(client_bin())
            .args(["ws", url, uuid])
            .output()
            .expect("run the websocket client");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        err.lines()
            .find_map(|l| l.strip_prefix("close: "))
            .unwrap_or_else(|| panic!("no close in {err}"))
            .to_string()
    };
    assert_eq!(close("0a", &url), "4011 Build did not start yet");
    assert_eq!(close("0c", &url), "4011 Unknown error");
    assert_eq!(close("0d", &url), "4011 Build not found");
    // A build of another tenant is not found, as Zuul.
    assert_eq!(close("0a", &ws_url(web_port)), "4011 Build not found");
}

/// The uids (real, effective, saved, filesystem) a process runs with.
fn uids(pid: u32) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn an_executor_started_as_root_serves_finger_as_its_user() {
    let scratch = tempfile::tempdir().unwrap();
    let config = store_with_builds(scratch.path());
    // What the executor's user must own: its state (the store) and the way to it.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let state = scratch.path().join("state");
    nix::unistd::chown(&state, Some(nobody.uid), None).unwrap();
    for entry in std::fs::read_dir(&state).unwrap() {
        nix::unistd::chown(&entry.unwrap().path(), Some(nobody.uid), None).unwrap();
    }
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let finger_port = free_port();
    let (mut executor, _, err) = spawn(
        Command::new(sluice_bin())
            .arg("executor")
            .arg("--config")
            .arg(&config)
            .args(["--finger-listen", &format!("127.0.0.1:{finger_port}")])
            .args(["--user", "nobody"]),
    );
    wait_port(finger_port);
    assert_eq!(
        finger_request(finger_port, "0d\n"),
        "Build ID 0d not found",
        "{}",
        err.text()
    );
    // The finger server answers as soon as it is bound; the drop follows the other listeners.
    assert!(
        wait_for(Duration::from_secs(20), || uids(executor.0.id())
            == ["65534"; 4]),
        "the executor still runs as root: {:?}\n{}",
        uids(executor.0.id()),
        err.text()
    );
    assert!(
        executor.0.try_wait().unwrap().is_none(),
        "the executor exited: {}",
        err.text()
    );
}

/// What a server sends to `line` until it closes or fails, as text.
fn raw_request(port: u16, line: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(line.as_bytes());
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A throwaway CA and certificates signed by it, made with the `openssl` CLI.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        require_tool("openssl", "openssl");
        std::fs::create_dir_all(dir).unwrap();
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        pki.ca("ca");
        pki
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed CA `NAME.pem` / `NAME.key`.
    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    /// A certificate `NAME.pem` / `NAME.key` for `san` (e.g. `IP:127.0.0.1`), signed by `ca`.
    fn cert(&self, name: &str, san: &str, ca: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        std::fs::write(
            self.dir.join(format!("{name}.ext")),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"),
        )
        .unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-days",
            "2",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// Sluice's TLS options with certificate `name` and the CA.
    fn args(&self, name: &str) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.path(&format!("{name}.pem"))),
            format!("--tls-key={}", self.path(&format!("{name}.key"))),
            format!("--tls-ca={}", self.path("ca.pem")),
        ]
    }
}

/// `openssl s_client` asking `port` for `uuid` with `args` (certificate options); it runs until
/// the server closes.
fn s_client(port: u16, uuid: &str, args: &[String]) -> (Proc, Output, Output) {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-ign_eof", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(format!("{uuid}\n").as_bytes());
    drop(stdin);
    let out = Output::collect(child.stdout.take().unwrap());
    let err = Output::collect(child.stderr.take().unwrap());
    (Proc(child), out, err)
}

fn tls_gateway(executors: &Path, port: u16, zone: Option<&str>, tls: &[String]) -> Proc {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["fingergw", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--executors")
        .arg(executors)
        .args(tls)
        .stdin(Stdio::null());
    if let Some(zone) = zone {
        cmd.args(["--zone", zone]);
    }
    let child = cmd.spawn().expect("spawn sluice fingergw");
    wait_port(port);
    Proc(child)
}

#[test]
fn finger_over_tls_needs_the_ca_s_certificates_and_the_right_host_names() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::new(&scratch.path().join("pki"));
    // Every finger process's certificate names 127.0.0.1, except `elsewhere`; `rogue` is
    // signed by another CA.
    pki.cert("finger", "IP:127.0.0.1", "ca");
    pki.cert("elsewhere", "DNS:elsewhere.example", "ca");
    pki.ca("rogue-ca");
    pki.cert("rogue", "IP:127.0.0.1", "rogue-ca");
    let mut build = LiveBuild::start_with(3, "0.01", &pki.args("finger"));
    // Zone z's gateway `gz` reaches the executor directly; `bad`, also of zone z, presents a
    // certificate for another host; the unzoned gateways go through `bad`.
    let gz_port = free_port();
    let bad_port = free_port();
    let executors = build.executors_file(bad_port);
    let _gz = tls_gateway(&executors, gz_port, Some("z"), &pki.args("finger"));
    let _bad = tls_gateway(&executors, bad_port, Some("z"), &pki.args("elsewhere"));
    let client_only = [pki.args("finger"), vec!["--tls-client-only".into()]].concat();
    let checked_port = free_port();
    let _checked = tls_gateway(&executors, checked_port, None, &client_only);
    let unchecked_port = free_port();
    let unchecked = [client_only, vec!["--tls-verify-hostnames=false".into()]].concat();
    let _unchecked = tls_gateway(&executors, unchecked_port, None, &unchecked);

    let client_cert = [
        "-cert".to_string(),
        pki.path("finger.pem"),
        "-key".into(),
        pki.path("finger.key"),
    ];
    let verify_server = [
        "-CAfile".to_string(),
        pki.path("ca.pem"),
        "-verify_return_error".into(),
    ];
    // A real TLS client with a certificate of the CA, through gateway and executor over TLS.
    let (mut good, good_out, good_err) = s_client(
        gz_port,
        &build.uuid,
        &[client_cert.as_slice(), &verify_server].concat(),
    );
    // Refused: no certificate; a certificate of another CA; plaintext.
    let (mut anonymous, anonymous_out, _) = s_client(gz_port, &build.uuid, &verify_server);
    let rogue_cert = [
        "-cert".to_string(),
        pki.path("rogue.pem"),
        "-key".into(),
        pki.path("rogue.key"),
    ];
    let (mut rogue, rogue_out, _) = s_client(
        gz_port,
        &build.uuid,
        &[rogue_cert.as_slice(), &verify_server].concat(),
    );
    let plain = raw_request(gz_port, &format!("{}\n", build.uuid));
    assert!(
        !plain.contains("waiting for go"),
        "a plaintext client got the log: {plain}"
    );
    // Plaintext clients of the client-only gateways: through `bad`, whose certificate does not
    // name 127.0.0.1, only when host names are not checked.
    let (mut unchecked_client, unchecked_out, _) = spawn(Command::new(client_bin()).args([
        "finger",
        "127.0.0.1",
        &unchecked_port.to_string(),
        &build.uuid,
    ]));
    assert_eq!(
        finger_request(checked_port, &format!("{}\n", build.uuid)),
        "Internal streaming error",
        "a gateway reached another whose certificate names another host"
    );
    assert!(
        wait_for(Duration::from_secs(20), || good_out
            .text()
            .contains("| node | waiting for go")
            && unchecked_out.text().contains("| node | waiting for go")),
        "no stream over TLS:\ns_client: {}\n{}\nunchecked: {}",
        good_out.text(),
        good_err.text(),
        unchecked_out.text()
    );
    build.go.go();
    assert!(build.wait_job().success(), "{}", build.log());
    for (name, proc) in [
        ("s_client", &mut good),
        ("s_client without a certificate", &mut anonymous),
        ("s_client with another CA's certificate", &mut rogue),
        (
            "finger through a gateway not checking names",
            &mut unchecked_client,
        ),
    ] {
        assert!(
            wait_exit(proc, Duration::from_secs(15)).is_some(),
            "{name} still connected after the build ended"
        );
    }
    let log = build.log();
    assert!(log.contains("| node | MARK 3 "), "{log}");
    assert_eq!(
        good_out.text(),
        log,
        "the TLS stream differs from job-output.txt"
    );
    assert_eq!(unchecked_out.text(), log);
    for (name, out) in [
        ("no certificate", &anonymous_out),
        ("another CA", &rogue_out),
    ] {
        assert!(
            !out.text().contains("waiting for go"),
            "a client with {name} got the log: {}",
            out.text()
        );
    }
}

/// What `openssl s_client` with certificate `cert` gets from `port` for `uuid`.
fn tls_request(port: u16, uuid: &str, pki: &Pki, cert: &str) -> String {
    let args = [
        "-cert".to_string(),
        pki.path(&format!("{cert}.pem")),
        "-key".into(),
        pki.path(&format!("{cert}.key")),
        "-CAfile".into(),
        pki.path("ca.pem"),
        "-verify_return_error".into(),
    ];
    let (mut client, out, err) = s_client(port, uuid, &args);
    assert!(
        wait_exit(&mut client, Duration::from_secs(20)).is_some(),
        "s_client to {port} still connected: {}",
        err.text()
    );
    out.text().trim().to_string()
}

#[test]
fn finger_tls_comes_from_the_configuration_file() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::new(&scratch.path().join("pki"));
    pki.cert("finger", "IP:127.0.0.1", "ca");
    let config = store_with_builds(scratch.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("finger-tls:\n  cert: pki/finger.pem\n  key: pki/finger.key\n  ca: pki/ca.pem\n");
    std::fs::write(&config, text).unwrap();

    let finger_port = free_port();
    let (_executor, _, executor_err) = spawn(
        Command::new(sluice_bin())
            .arg("executor")
            .arg("--config")
            .arg(&config)
            .args(["--finger-listen", &format!("127.0.0.1:{finger_port}")]),
    );
    wait_port(finger_port);
    let gateway_port = free_port();
    let (_gateway, _, gateway_err) = spawn(
        Command::new(sluice_bin())
            .args(["fingergw", "--listen", &format!("127.0.0.1:{gateway_port}")])
            .arg("--config")
            .arg(&config),
    );
    wait_port(gateway_port);
    // Both speak TLS with the file's certificates, relative to the file's directory.
    assert_eq!(
        tls_request(finger_port, "0d", &pki, "finger"),
        "Build ID 0d not found",
        "{}",
        executor_err.text()
    );
    // (`0a` may be claimed by the executor meanwhile; `0b`'s claim holds.)
    assert_eq!(
        tls_request(gateway_port, "0b", &pki, "finger"),
        "Internal streaming error",
        "{}",
        gateway_err.text()
    );
    for port in [finger_port, gateway_port] {
        let plain = raw_request(port, "0a\n");
        assert!(
            !plain.contains("not") && !plain.contains("Build"),
            "a plaintext client of {port} got an answer: {plain}"
        );
    }
}
