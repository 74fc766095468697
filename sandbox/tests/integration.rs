//! Integration tests with real bubblewrap, real processes and a real ssh-agent.
//!
//! Build directories live under `/var/tmp` (not `/tmp`, whose privacy is under test). Tests
//! synchronize on output lines and FIFOs; the only polling is for the kernel to finish
//! reaping killed processes, bounded by [`GONE_TIMEOUT`].

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use nix::{errno::Errno, sys::signal::kill, unistd::Pid};
use sluice_sandbox::{
    run, AbortHandle, Bwrap, ChildCommand, Exit, InMemoryFile, Outcome, RunConfig, SandboxError,
    SandboxSpec, SshAgent,
};

/// How long killed processes may take to disappear (be reaped) after `run` returns.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

async fn bwrap() -> Bwrap {
    match Bwrap::detect().await {
        Ok(bwrap) => bwrap,
        Err(err) => panic!("{err}"),
    }
}

/// A build directory with `work/` and `home/`, removed at the end of the test.
struct Build {
    root: tempfile::TempDir,
}

impl Build {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("sluice-sandbox-test-")
            .tempdir_in("/var/tmp")
            .expect("tempdir in /var/tmp");
        for dir in ["work", "home"] {
            std::fs::create_dir(root.path().join(dir)).expect("mkdir");
        }
        Build { root }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    fn spec(&self) -> SandboxSpec {
        SandboxSpec::new(self.path("work"), self.path("home"))
    }

    fn env(&self) -> BTreeMap<OsString, OsString> {
        BTreeMap::from([
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), self.path("home").into_os_string()),
            ("LC_ALL".into(), "C".into()),
        ])
    }

    fn sandboxed(&self, bwrap: &Bwrap, spec: &SandboxSpec, script: &str) -> ChildCommand {
        bwrap
            .command(spec, sh(script), self.env())
            .expect("valid sandbox spec")
    }

    fn unsandboxed(&self, script: &str) -> ChildCommand {
        ChildCommand::new(sh(script), self.env(), self.path("work")).expect("valid command")
    }
}

fn sh(script: &str) -> Vec<OsString> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Runs `command` with `config`, returning the outcome and every line.
async fn collect(command: ChildCommand, config: &RunConfig) -> (Outcome, Vec<String>) {
    let mut lines = Vec::new();
    let outcome = run(command, config, &AbortHandle::new(), |line| {
        lines.push(String::from_utf8_lossy(line).into_owned())
    })
    .await
    .expect("run");
    (outcome, lines)
}

async fn check(command: ChildCommand) -> Vec<String> {
    let (outcome, lines) = collect(command, &RunConfig::default()).await;
    assert_eq!(outcome.exit, Exit::Exited(0), "output: {lines:#?}");
    lines
}

/// Waits until `probe` (a kill(2) with signal 0) reports ESRCH.
async fn wait_gone(what: &str, probe: impl Fn() -> nix::Result<()>) {
    let start = Instant::now();
    loop {
        match probe() {
            Err(Errno::ESRCH) => return,
            _ if start.elapsed() > GONE_TIMEOUT => panic!("{what} still exists"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn wait_group_gone(pgid: u32) {
    wait_gone(&format!("process group {pgid}"), || {
        kill(Pid::from_raw(-(pgid as i32)), None)
    })
    .await;
}

/// Waits until no process has `marker` in its command line.
async fn wait_marker_gone(marker: &str) {
    let start = Instant::now();
    loop {
        let mut alive = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                alive.push(entry.file_name());
            }
        }
        if alive.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < GONE_TIMEOUT,
            "processes with {marker} survive: {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn missing_bwrap_is_reported_with_the_install_hint() {
    let err = Bwrap::detect_at("/nonexistent/bwrap".into())
        .await
        .expect_err("no bwrap there");
    assert!(
        err.to_string()
            .contains("bubblewrap not found: apt-get install bubblewrap"),
        "{err}"
    );
}

#[tokio::test]
async fn host_secrets_are_invisible() {
    let bwrap = bwrap().await;
    let build = Build::new();
    let var_tmp_secret = tempfile::Builder::new()
        .prefix("sluice-test-secret-")
        .tempfile_in("/var/tmp")
        .expect("secret in /var/tmp");
    let root_secret = tempfile::Builder::new()
        .prefix("sluice-test-secret-")
        .tempfile_in("/root")
        .expect("secret in /root");
    let script = format!(
        "cat /etc/shadow && echo shadow-readable; \
         test -e '{}' && echo var-tmp-secret-visible; \
         test -e '{}' && echo root-secret-visible; \
         ls /root && echo root-visible; \
         ls /home && echo home-visible; \
         test -e '{}' && echo build-root-visible; \
         echo done",
        var_tmp_secret.path().display(),
        root_secret.path().display(),
        build.path("other-file").display(),
    );
    std::fs::write(build.path("other-file"), "x").expect("write");
    let lines = check(build.sandboxed(&bwrap, &build.spec(), &script)).await;
    for leak in [
        "shadow-readable",
        "var-tmp-secret-visible",
        "root-secret-visible",
        "root-visible",
        "home-visible",
        "build-root-visible",
    ] {
        assert!(!lines.iter().any(|line| line == leak), "{leak}: {lines:#?}");
    }
    assert!(
        lines.iter().any(|line| line.contains("/etc/shadow")),
        "cat should complain: {lines:#?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("done"));
}

#[tokio::test]
async fn identity_files_name_the_build_home() {
    let bwrap = bwrap().await;
    let build = Build::new();
    let lines = check(build.sandboxed(
        &bwrap,
        &build.spec(),
        "cat /etc/passwd /etc/group; id -u; grep CapEff /proc/self/status; stat -c %a /etc/passwd; \
         cat /proc/self/oom_score_adj",
    ))
    .await;
    let own_oom_score_adj: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .expect("oom_score_adj")
        .trim()
        .parse()
        .expect("number");
    let uid = nix::unistd::Uid::current().as_raw().to_string();
    let home = build.path("home");
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let fields: Vec<&str> = lines[0].split(':').collect();
    assert_eq!(fields[2], uid, "{lines:#?}");
    assert_eq!(fields[5], home.to_str().expect("utf-8"), "{lines:#?}");
    assert_eq!(lines[1].split(':').nth(2), Some(fields[3]), "{lines:#?}");
    assert_eq!(lines[2], uid);
    assert_eq!(lines[3], "CapEff:\t0000000000000000");
    assert_eq!(lines[4], "644");
    assert_eq!(lines[5], (own_oom_score_adj + 200).min(1000).to_string());
}

#[tokio::test]
async fn nested_user_namespaces_are_refused_when_supported() {
    let bwrap = bwrap().await;
    let build = Build::new();
    let lines = check(build.sandboxed(
        &bwrap,
        &build.spec(),
        "unshare --user true 2>/dev/null && echo nested-ok || echo nested-refused",
    ))
    .await;
    if bwrap.isolates_user_namespaces() {
        assert_eq!(lines, ["nested-refused"]);
    }
}

#[tokio::test]
async fn the_network_is_shared_only_on_request() {
    let bwrap = bwrap().await;
    let build = Build::new();
    let interfaces = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
    let mut spec = build.spec();
    spec.share_net = false;
    assert_eq!(
        check(build.sandboxed(&bwrap, &spec, interfaces)).await,
        ["lo"]
    );
    spec.share_net = true;
    let host = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    let n_host_interfaces = host.lines().count() - 2;
    let shared = check(build.sandboxed(&bwrap, &spec, interfaces)).await;
    assert_eq!(shared.len(), n_host_interfaces, "{shared:#?}");
}

#[tokio::test]
async fn writes_land_only_in_work_and_home() {
    let bwrap = bwrap().await;
    let build = Build::new();
    let marker = unique("sluice-marker");
    let script = format!(
        "touch /usr/{marker} 2>/dev/null && echo usr-writable; \
         touch /etc/{marker} 2>/dev/null; touch /{marker} 2>/dev/null; \
         echo in-var-tmp > /var/tmp/{marker}; \
         echo in-tmp > /tmp/{marker}; \
         echo in-work-tmp > tmp/{marker}; \
         touch '{build_root}/{marker}' 2>/dev/null; \
         echo work > work-file && echo home > '{home}/home-file' && echo written",
        build_root = build.root.path().display(),
        home = build.path("home").display(),
    );
    let lines = check(build.sandboxed(&bwrap, &build.spec(), &script)).await;
    assert_eq!(lines, ["written"], "{lines:#?}");
    for host_path in [
        PathBuf::from(format!("/usr/{marker}")),
        PathBuf::from(format!("/etc/{marker}")),
        PathBuf::from(format!("/{marker}")),
        PathBuf::from(format!("/var/tmp/{marker}")),
        PathBuf::from(format!("/tmp/{marker}")),
        build.path(&format!("work/tmp/{marker}")),
        build.path(&marker),
    ] {
        assert!(
            !host_path.exists(),
            "{} exists on the host",
            host_path.display()
        );
    }
    let read = |path: &str| std::fs::read_to_string(build.path(path)).expect("read");
    assert_eq!(read("work/work-file"), "work\n");
    assert_eq!(read("home/home-file"), "home\n");
}

#[tokio::test]
async fn extra_paths_are_bound_read_only_or_read_write() {
    let bwrap = bwrap().await;
    let build = Build::new();
    for dir in ["ro", "rw"] {
        std::fs::create_dir(build.path(dir)).expect("mkdir");
        std::fs::write(build.path(dir).join("file"), dir).expect("write");
    }
    let mut spec = build.spec();
    spec.ro_paths.push(build.path("ro"));
    spec.rw_paths.push(build.path("rw"));
    let script = format!(
        "cat '{ro}/file' '{rw}/file'; echo; \
         touch '{ro}/new' 2>/dev/null && echo ro-writable; touch '{rw}/new' && echo rw-ok",
        ro = build.path("ro").display(),
        rw = build.path("rw").display(),
    );
    let lines = check(build.sandboxed(&bwrap, &spec, &script)).await;
    assert_eq!(lines, ["rorw", "rw-ok"]);
    assert!(!build.path("ro/new").exists());
    assert!(build.path("rw/new").exists());
}

#[tokio::test]
async fn in_memory_files_are_readable_inside_and_never_on_disk() {
    let bwrap = bwrap().await;
    let build = Build::new();
    std::fs::create_dir_all(build.path("ansible/group_vars")).expect("mkdir");
    let secret_path = build.path("ansible/group_vars/all.yaml");
    let big_path = build.path("ansible/group_vars/big.bin");
    // Larger than a pipe buffer, so both files must be fed concurrently.
    let big = vec![b'x'; 300 * 1024];
    let mut spec = build.spec();
    spec.ro_paths.push(build.path("ansible"));
    spec.tmpfs.push(build.path("ansible/group_vars"));
    spec.files = vec![
        InMemoryFile::new(big_path.clone(), big.clone()),
        InMemoryFile::new(secret_path.clone(), b"password: hunter2\n".to_vec()),
    ];
    let script = format!(
        "wc -c < '{big}'; cat '{secret}'; stat -c %a '{secret}'",
        big = big_path.display(),
        secret = secret_path.display()
    );
    let mut lines = Vec::new();
    let mut on_disk_while_running = false;
    let outcome = run(
        build.sandboxed(&bwrap, &spec, &script),
        &RunConfig::default(),
        &AbortHandle::new(),
        |line| {
            on_disk_while_running |= secret_path.exists() || big_path.exists();
            lines.push(String::from_utf8_lossy(line).into_owned());
        },
    )
    .await
    .expect("run");
    assert_eq!(outcome.exit, Exit::Exited(0), "{lines:#?}");
    assert_eq!(lines, ["307200", "password: hunter2", "600"]);
    assert!(!on_disk_while_running);
    assert!(!secret_path.exists() && !big_path.exists());
}

#[tokio::test]
async fn output_is_streamed_in_order_before_exit() {
    let build = Build::new();
    let fifo = build.path("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let script = format!(
        "echo first; echo second >&2; read answer < '{}'; echo \"got $answer\"; printf no-newline",
        fifo.display()
    );
    let mut lines = Vec::new();
    let mut writer = None;
    let outcome = run(
        build.unsandboxed(&script),
        &RunConfig::default(),
        &AbortHandle::new(),
        |line| {
            lines.push(String::from_utf8_lossy(line).into_owned());
            // The child cannot finish before this write: the line arrived while it ran.
            if line == b"second" {
                let fifo = fifo.clone();
                writer = Some(std::thread::spawn(move || std::fs::write(fifo, "go\n")));
            }
        },
    )
    .await
    .expect("run");
    writer
        .expect("second line seen")
        .join()
        .expect("writer thread")
        .expect("write fifo");
    assert_eq!(outcome.exit, Exit::Exited(0));
    assert_eq!(lines, ["first", "second", "got go", "no-newline"]);
    assert_eq!(outcome.last_lines, lines);
    assert!(!outcome.leaked);
}

#[tokio::test]
async fn long_output_is_cut_into_lines_and_the_tail_kept() {
    let build = Build::new();
    let config = RunConfig {
        n_last_lines: 3,
        ..RunConfig::default()
    };
    let (outcome, lines) = collect(
        build.unsandboxed("head -c 120000 /dev/zero | tr '\\0' a; echo; seq 1 1000"),
        &config,
    )
    .await;
    assert_eq!(outcome.exit, Exit::Exited(0));
    assert_eq!(lines[0].len(), sluice_sandbox::MAX_LINE_BYTES);
    assert_eq!(lines[1].len(), sluice_sandbox::MAX_LINE_BYTES);
    assert_eq!(lines[2].len(), 120000 - 2 * sluice_sandbox::MAX_LINE_BYTES);
    assert_eq!(lines.len(), 1003);
    assert_eq!(outcome.last_lines, ["998", "999", "1000"]);
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let build = Build::new();
    let (outcome, _) = collect(build.unsandboxed("exit 3"), &RunConfig::default()).await;
    assert_eq!(outcome.exit, Exit::Exited(3));
    let (outcome, _) = collect(build.unsandboxed("kill -9 $$"), &RunConfig::default()).await;
    assert_eq!(outcome.exit, Exit::Signaled(9));
}

#[tokio::test]
async fn the_environment_is_exactly_the_given_map() {
    let build = Build::new();
    let lines = check(build.unsandboxed("env")).await;
    for line in &lines {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            ["PATH", "HOME", "LC_ALL", "PWD", "SHLVL", "_"].contains(&name),
            "unexpected variable {line}"
        );
    }
}

#[tokio::test]
async fn spawn_failures_are_errors() {
    let build = Build::new();
    let command = ChildCommand::new(
        vec!["/nonexistent/program".into()],
        BTreeMap::new(),
        build.path("work"),
    )
    .expect("command");
    let err = run(command, &RunConfig::default(), &AbortHandle::new(), |_| {})
        .await
        .expect_err("spawn fails");
    assert!(matches!(err, SandboxError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/program"), "{err}");
}

/// A shell that ignores SIGTERM with a grandchild that does too; prints the grandchild's pid.
const TERM_IGNORING_TREE: &str = "trap '' TERM; sleep 1000 & echo $!; sleep 1000";

#[tokio::test]
async fn timeout_kills_a_term_ignoring_tree() {
    let build = Build::new();
    let config = RunConfig {
        timeout: Some(Duration::from_millis(1000)),
        grace_period: Duration::from_millis(300),
        ..RunConfig::default()
    };
    let (outcome, lines) = collect(build.unsandboxed(TERM_IGNORING_TREE), &config).await;
    assert_eq!(outcome.exit, Exit::TimedOut);
    // SIGTERM was ignored, so the group lived through the grace period until SIGKILL.
    assert!(
        outcome.duration >= Duration::from_millis(1300),
        "{outcome:?}"
    );
    let grandchild: i32 = lines[0].parse().expect("grandchild pid");
    wait_group_gone(outcome.pgid.expect("spawned")).await;
    wait_gone("grandchild", || kill(Pid::from_raw(grandchild), None)).await;
}

#[tokio::test]
async fn timeout_kills_a_sandboxed_tree() {
    let bwrap = bwrap().await;
    let build = Build::new();
    let marker = unique("sluice-sandboxed-sleeper");
    // `exec -a` names the sleepers so that they can be found in /proc afterwards.
    let script = format!(
        "trap '' TERM; bash -c 'exec -a {marker} sleep 1000' & echo started; \
         bash -c 'exec -a {marker} sleep 1000'"
    );
    let config = RunConfig {
        timeout: Some(Duration::from_millis(1000)),
        grace_period: Duration::from_millis(300),
        ..RunConfig::default()
    };
    let (outcome, lines) = collect(build.sandboxed(&bwrap, &build.spec(), &script), &config).await;
    assert_eq!(outcome.exit, Exit::TimedOut);
    assert_eq!(lines, ["started"]);
    wait_group_gone(outcome.pgid.expect("spawned")).await;
    wait_marker_gone(&marker).await;
}

#[tokio::test]
async fn abort_terminates_gracefully() {
    let build = Build::new();
    let abort = AbortHandle::new();
    let outcome = run(
        build.unsandboxed("echo ready; sleep 1000"),
        &RunConfig::default(),
        &abort,
        |line| {
            if line == b"ready" {
                abort.abort();
            }
        },
    )
    .await
    .expect("run");
    assert_eq!(outcome.exit, Exit::Aborted);
    // sleep dies of the SIGTERM; the 5 s grace period is not used up.
    assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");
    wait_group_gone(outcome.pgid.expect("spawned")).await;
}

#[tokio::test]
async fn a_second_abort_kills_at_once() {
    let build = Build::new();
    let abort = AbortHandle::new();
    let config = RunConfig {
        grace_period: Duration::from_secs(3600),
        ..RunConfig::default()
    };
    let outcome = run(
        build.unsandboxed(TERM_IGNORING_TREE),
        &config,
        &abort,
        |_| {
            abort.abort();
            abort.abort();
        },
    )
    .await
    .expect("run");
    assert_eq!(outcome.exit, Exit::Aborted);
    wait_group_gone(outcome.pgid.expect("spawned")).await;
}

#[tokio::test]
async fn an_abort_before_the_start_spawns_nothing() {
    let build = Build::new();
    let abort = AbortHandle::new();
    abort.kill();
    let outcome = run(
        build.unsandboxed("touch started"),
        &RunConfig::default(),
        &abort,
        |_| {},
    )
    .await
    .expect("run");
    assert_eq!(outcome.exit, Exit::Aborted);
    assert_eq!(outcome.pgid, None);
    assert!(!build.path("work/started").exists());
}

#[tokio::test]
async fn a_pipe_held_after_exit_is_a_leak_and_the_group_is_killed() {
    let build = Build::new();
    let config = RunConfig {
        leak_timeout: Duration::from_millis(200),
        ..RunConfig::default()
    };
    let (outcome, lines) = collect(
        build.unsandboxed("(trap '' TERM; sleep 1000) & echo $!"),
        &config,
    )
    .await;
    assert_eq!(outcome.exit, Exit::Exited(0));
    assert!(outcome.leaked);
    let straggler: i32 = lines[0].parse().expect("pid");
    wait_gone("straggler", || kill(Pid::from_raw(straggler), None)).await;
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    let build = Build::new();
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel::<u32>();
    let mut pid_tx = Some(pid_tx);
    let config = RunConfig::default();
    let abort = AbortHandle::new();
    let running = run(
        build.unsandboxed("echo $$; sleep 1000"),
        &config,
        &abort,
        |line| {
            let pid = String::from_utf8_lossy(line).parse().expect("pid");
            if let Some(tx) = pid_tx.take() {
                let _ = tx.send(pid);
            }
        },
    );
    let pgid = tokio::select! {
        _ = running => panic!("sleep 1000 finished"),
        pgid = pid_rx => pgid.expect("pid line"),
    };
    wait_group_gone(pgid).await;
}

fn ssh_keygen(dir: &Path) -> PathBuf {
    let key = dir.join("id_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "sluice-test-key",
            "-f",
        ])
        .arg(&key)
        .status()
        .expect("ssh-keygen (install openssh-client)");
    assert!(status.success());
    key
}

#[tokio::test]
async fn ssh_agent_serves_the_key_and_dies_on_drop() {
    let build = Build::new();
    let key = ssh_keygen(build.root.path());
    let agent = SshAgent::start(build.root.path()).await.expect("ssh-agent");
    agent.add_key(&key).await.expect("ssh-add");
    let socket = agent.auth_sock().to_owned();
    let mut env = build.env();
    env.extend(agent.env());
    let command = ChildCommand::new(sh("ssh-add -l"), env, build.path("work")).expect("command");
    let (outcome, lines) = collect(command, &RunConfig::default()).await;
    assert_eq!(outcome.exit, Exit::Exited(0), "{lines:#?}");
    assert!(
        lines.iter().any(|line| line.contains("sluice-test-key")),
        "{lines:#?}"
    );

    let pid = agent.pid();
    drop(agent);
    wait_gone("ssh-agent", || kill(Pid::from_raw(pid as i32), None)).await;
    assert!(!socket.exists());
}

#[tokio::test]
async fn the_agent_socket_works_inside_the_sandbox() {
    let bwrap = bwrap().await;
    let build = Build::new();
    let key = ssh_keygen(build.root.path());
    let agent = SshAgent::start(build.root.path()).await.expect("ssh-agent");
    agent.add_key(&key).await.expect("ssh-add");
    let mut spec = build.spec();
    spec.ssh_auth_sock = Some(agent.auth_sock().to_owned());
    let mut env = build.env();
    env.extend(agent.env());
    let command = bwrap
        .command(&spec, sh("ssh-add -l"), env)
        .expect("command");
    let (outcome, lines) = collect(command, &RunConfig::default()).await;
    assert_eq!(outcome.exit, Exit::Exited(0), "{lines:#?}");
    assert!(
        lines.iter().any(|line| line.contains("sluice-test-key")),
        "{lines:#?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn ssh_add_failures_carry_its_message() {
    let build = Build::new();
    let agent = SshAgent::start(build.root.path()).await.expect("ssh-agent");
    let err = agent
        .add_key(&build.path("missing-key"))
        .await
        .expect_err("no such key");
    let text = err.to_string();
    assert!(text.contains("ssh-add failed for"), "{text}");
    assert!(text.contains("missing-key"), "{text}");
}

/// Keeps `Arc` and `Mutex` in use for callbacks shared across threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_work_on_a_multi_thread_runtime() {
    let bwrap = bwrap().await;
    let build = Build::new();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let task = tokio::spawn(async move {
        let command = build.sandboxed(&bwrap, &build.spec(), "echo $((6 * 7))");
        run(
            command,
            &RunConfig::default(),
            &AbortHandle::new(),
            |line| {
                sink.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(line).into_owned())
            },
        )
        .await
    });
    let outcome = task.await.expect("task").expect("run");
    assert_eq!(outcome.exit, Exit::Exited(0));
    assert_eq!(*lines.lock().expect("lock"), ["42"]);
}
