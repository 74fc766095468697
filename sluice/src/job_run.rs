//! `sluice job run`: one job of local repositories, start to result, with job-output.txt
//! printed as it grows and retries up to the job's `attempts`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use sluice_executor::build::{run_build, BuildAbort, ExecutorConfig};
use sluice_executor::local::{prepare, LocalJob, LocalProject};
use sluice_executor::nodes::load_nodes;
use sluice_executor::request::{BuildResult, BuildResultKind};

use crate::GlobalArgs;

/// Arguments of `sluice job run`.
#[derive(Debug, Args)]
pub struct JobRunArgs {
    /// The job to run.
    job: String,
    /// The repository under test, `[NAME=]DIR` (untrusted): its checked-out HEAD is the change.
    #[arg(long, value_name = "[NAME=]DIR")]
    project: LocalProject,
    /// A trusted repository (base jobs, site roles), `[NAME=]DIR`.
    #[arg(long = "config-project", value_name = "[NAME=]DIR")]
    config_projects: Vec<LocalProject>,
    /// Another repository for roles and required-projects, `[NAME=]DIR`.
    #[arg(long = "required-project", value_name = "[NAME=]DIR")]
    required_projects: Vec<LocalProject>,
    /// Static nodes file (Nodepool static-driver node list).
    #[arg(long, value_name = "FILE")]
    nodes: Option<PathBuf>,
    /// The executor's private key for the nodes (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa).
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// Where build dirs go (default: <state dir>/builds).
    #[arg(long, value_name = "DIR")]
    work_root: Option<PathBuf>,
    /// Ansible version for jobs that name none.
    #[arg(long, value_name = "V")]
    ansible_version: Option<String>,
    /// Extra variable `K=V` (YAML value), above job variables.
    #[arg(long = "var", value_name = "K=V")]
    vars: Vec<String>,
    /// Write the result as JSON here.
    #[arg(long, value_name = "FILE")]
    result_json: Option<PathBuf>,
    /// The branch the change merges onto (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH")]
    target_branch: Option<String>,
    /// Node console port when it is not 19885.
    #[arg(long, env = "SLUICE_CONSOLE_PORT")]
    console_port: Option<u16>,
    /// Keep the build dir when the build ends.
    #[arg(long)]
    keep_jobdir: bool,
    /// Disk limit of the build dir in MiB (DISK_FULL when passed; 0: unlimited).
    #[arg(long, value_name = "MIB", default_value_t = 250)]
    disk_limit_mb: u64,
    /// Console output bytes per command task before it is terminated.
    #[arg(long, value_name = "BYTES", default_value_t = sluice_executor::limits::DEFAULT_OUTPUT_MAX_BYTES)]
    output_max_bytes: u64,
    /// Most processes in the build's sandbox at once (needs cgroups).
    #[arg(long, value_name = "N")]
    pids_max: Option<u64>,
    /// Memory limit of the build's sandbox in MiB (needs cgroups).
    #[arg(long, value_name = "MIB")]
    memory_max_mb: Option<u64>,
    /// Where per-project secret keys are kept (default: <state dir>/keys).
    #[arg(long, value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// Serve the build's live log over finger on this address (Zuul's port is 7900).
    #[arg(long, value_name = "ADDR")]
    finger_listen: Option<std::net::SocketAddr>,
    /// Finger over TLS for --finger-listen.
    #[command(flatten)]
    finger_tls: crate::stream_cmd::FingerTlsArgs,
}

fn parse_var(s: &str) -> anyhow::Result<(String, Value)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("--var {s:?}: expected K=V"))?;
    let value: Value = serde_yaml_ng::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
    Ok((k.to_string(), value))
}

/// Runs the job; the exit status is 0 only for SUCCESS.
pub fn run(global: &GlobalArgs, args: &JobRunArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(global, args))
}

async fn run_async(global: &GlobalArgs, args: &JobRunArgs) -> anyhow::Result<ExitCode> {
    let vars = args
        .vars
        .iter()
        .map(|v| parse_var(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let state_dir = global.state_dir();
    let nodes = match &args.nodes {
        Some(path) => load_nodes(path)?,
        None => Vec::new(),
    };
    let work_root = args
        .work_root
        .clone()
        .unwrap_or_else(|| state_dir.join("builds"));
    let cfg = ExecutorConfig {
        state_dir,
        work_root,
        plugin_sources: global.plugin_sources(),
        ssh_key: args.ssh_key.clone(),
        nodes,
        default_ansible_version: args.ansible_version.clone(),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
        keep_jobdir: args.keep_jobdir,
        console_port: args.console_port,
        setup_timeout: Duration::from_secs(60),
        verbose: false,
        keys_dir: args
            .keys_dir
            .clone()
            .unwrap_or_else(|| global.state_dir().join("keys")),
        limits: sluice_executor::limits::ResourceLimits {
            disk_bytes: (args.disk_limit_mb > 0).then(|| args.disk_limit_mb * 1024 * 1024),
            output_max_bytes: args.output_max_bytes,
            pids_max: args.pids_max,
            memory_bytes: args.memory_max_mb.map(|m| m * 1024 * 1024),
        },
    };

    let finger = match args.finger_listen {
        Some(addr) => Some(
            crate::stream_cmd::LocalFinger::start(
                addr,
                &cfg.work_root,
                args.finger_tls.server(None)?,
            )
            .await?,
        ),
        None => None,
    };
    let abort = BuildAbort::new();
    tokio::spawn(forward_signals(abort.clone()));

    let mut attempt = 1;
    let result = loop {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let local = LocalJob {
            job: args.job.clone(),
            project: args.project.clone(),
            config_projects: args.config_projects.clone(),
            required_projects: args.required_projects.clone(),
            target_branch: args.target_branch.clone(),
            vars: vars.clone(),
            uuid: uuid.clone(),
        };
        let mut req = match prepare(&local) {
            Ok(req) => req,
            Err(e) => {
                eprintln!("sluice: {e}");
                let now = chrono::Utc::now().to_rfc3339();
                break BuildResult {
                    uuid,
                    result: BuildResultKind::Error,
                    error_detail: Some(e.to_string()),
                    data: json!({}),
                    log_dir: PathBuf::new(),
                    start_time: now.clone(),
                    end_time: now,
                };
            }
        };
        req.attempt = attempt;
        let log = cfg.work_root.join(&uuid).join("work/logs/job-output.txt");
        let printed = Arc::new(AtomicU64::new(0));
        let follower = tokio::spawn(follow(log.clone(), printed.clone()));
        let registered = finger.as_ref().map(|f| f.register(&uuid, log.clone()));
        let result = run_build(&cfg, &req, &abort).await;
        drop(registered);
        follower.abort();
        let _ = follower.await;
        print_rest(&log, printed.load(Ordering::SeqCst));
        if result.result == BuildResultKind::Retry && !abort.is_requested() {
            eprintln!(
                "sluice: attempt {attempt} of {} ended in RETRY{}; retrying",
                req.job.attempts,
                result
                    .error_detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
            attempt += 1;
            continue;
        }
        break result;
    };
    if let Some(detail) = &result.error_detail {
        eprintln!("sluice: {}: {detail}", result.result);
    }
    if let Some(path) = &args.result_json {
        let text = serde_json::to_string_pretty(&result)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(finger) = finger {
        finger.finish().await;
    }
    println!("RESULT: {}", result.result);
    Ok(if result.result == BuildResultKind::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn forward_signals(abort: BuildAbort) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("sluice: aborting the build");
        abort.request();
    }
}

/// Prints what the file holds past `from`, whole lines only; returns the new offset.
fn print_rest(path: &Path, from: u64) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return from;
    };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return from;
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return from;
    }
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&buf[..end]);
    let _ = out.flush();
    from + end as u64
}

/// Follows job-output.txt, printing lines as they are appended; `printed` says how far.
async fn follow(path: PathBuf, printed: Arc<AtomicU64>) {
    loop {
        let offset = print_rest(&path, printed.load(Ordering::SeqCst));
        printed.store(offset, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
