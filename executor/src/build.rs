//! One build from request to result: job dir, nodes, workspace, playbook checkouts, the setup
//! run, then pre-run → run → post-run playbooks, each in bubblewrap, mapped to Zuul's results.
//!
//! The node check (Ansible's setup run) overlaps with preparing repositories: a build does not
//! pay for them one after the other.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_config::PlaybookRef;
use sluice_sandbox::{AbortHandle, Bwrap};

use crate::ansible::{Installation, Installations, PluginSources};
use crate::inventory::{self, AnsibleCfg};
use crate::jobdir::{JobDir, JobOutput};
use crate::nodes::{allocate, AllocatedNode, StaticNode};
use crate::request::{BuildRequest, BuildResult, BuildResultKind};
use crate::runner::{self, ChildEnd, ChildSpec, Sandboxing};
use crate::workspace::{self, Checkouts};
use crate::zuul_vars::{self, RepoCheckout};

/// How an executor runs builds: paths and settings that are not part of a request.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Sluice's state dir (Ansible installations live here).
    pub state_dir: PathBuf,
    /// Where build dirs are created.
    pub work_root: PathBuf,
    /// Plugin tree and native module copied into installations.
    pub plugin_sources: PluginSources,
    /// The executor's private key for the nodes.
    pub ssh_key: Option<PathBuf>,
    /// Static nodes.
    pub nodes: Vec<StaticNode>,
    /// Version used when the job names none (instead of the built-in default).
    pub default_ansible_version: Option<String>,
    /// This executor's host name (`zuul.executor.hostname`).
    pub hostname: String,
    /// Keep the build dir after the build.
    pub keep_jobdir: bool,
    /// Node console port when not 19885.
    pub console_port: Option<u16>,
    /// Setup run time limit.
    pub setup_timeout: Duration,
    /// `-vvv` instead of `-v`.
    pub verbose: bool,
    /// Per-project secret keys (`<state>/keys` by default; see `crate::secrets`).
    pub keys_dir: PathBuf,
    /// Disk, output, pids and memory limits (`crate::limits`).
    pub limits: crate::limits::ResourceLimits,
}

/// The phases of a job, with Zuul's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `pre-run`.
    Pre,
    /// `run`.
    Run,
    /// `post-run`.
    Post,
}

impl Phase {
    fn banner(self) -> &'static str {
        match self {
            Phase::Pre => "PRE-RUN",
            Phase::Run => "RUN",
            Phase::Post => "POST-RUN",
        }
    }

    fn var(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Run => "run",
            Phase::Post => "post",
        }
    }

    fn dir_prefix(self) -> &'static str {
        match self {
            Phase::Pre => "pre_playbook",
            Phase::Run => "playbook",
            Phase::Post => "post_playbook",
        }
    }
}

/// How one playbook ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybookEnd {
    /// Ansible finished with this exit code.
    Normal(i32),
    /// The phase's time ran out.
    TimedOut,
    /// A host could not be reached.
    Unreachable,
    /// Aborted.
    Aborted,
}

impl PlaybookEnd {
    fn status(self) -> &'static str {
        match self {
            PlaybookEnd::Normal(_) => "RESULT_NORMAL",
            PlaybookEnd::TimedOut => "RESULT_TIMED_OUT",
            PlaybookEnd::Unreachable => "RESULT_UNREACHABLE",
            PlaybookEnd::Aborted => "RESULT_ABORTED",
        }
    }

    fn ok(self) -> bool {
        self == PlaybookEnd::Normal(0)
    }
}

/// How a build is stopped: the first request aborts the build (its running playbook is killed,
/// cleanup playbooks still run); a second one also kills a running cleanup playbook.
#[derive(Debug, Clone, Default)]
pub struct BuildAbort {
    build: AbortHandle,
    cleanup: AbortHandle,
}

impl BuildAbort {
    /// A handle with no request yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the build to stop; the second call kills cleanup playbooks too.
    pub fn request(&self) {
        if self.build.is_aborted() {
            self.build.kill();
            self.cleanup.kill();
        } else {
            self.build.abort();
        }
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.build.is_aborted()
    }
}

/// Outcome of a build attempt before retries are counted: `None` means "retry".
type Outcome = (Option<BuildResultKind>, Option<String>);

/// What the caller does when a build pauses: a job whose run phase succeeded and that returned
/// `zuul.pause: true` (`zuul_return`) waits, before its post-run playbooks, until the future
/// this returns (given the data returned so far) resolves. The future should also resolve
/// once the build's abort is requested.
pub type PauseHook<'a> =
    &'a (dyn Fn(Value) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync);

/// Playbook-level `semaphores` (Zuul): the executor takes a playbook's semaphores before it
/// starts (waiting while another build holds them) and gives them back when it ends. The
/// caller says where semaphores live (the store, for `sluice serve` and `sluice executor`).
pub trait PlaybookSemaphores: Send + Sync {
    /// Tries once to take every one of `names` (all or nothing); says whether the build now
    /// holds them.
    fn take<'a>(
        &'a self,
        names: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;
    /// Gives `names` back.
    fn release<'a>(
        &'a self,
        names: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// What the caller hooks into a build: the pause (see [`PauseHook`]) and playbook semaphores
/// (without them, playbook `semaphores` are not taken: nothing else runs builds).
#[derive(Clone, Copy, Default)]
pub struct BuildHooks<'a> {
    /// Called when the job pauses after its run phase.
    pub pause: Option<PauseHook<'a>>,
    /// Where playbook semaphores are taken.
    pub semaphores: Option<&'a dyn PlaybookSemaphores>,
}

/// How long a playbook waiting for its semaphores waits between tries.
const SEMAPHORE_RETRY: Duration = Duration::from_millis(500);

/// Runs one build to its result. Never panics on bad input: every failure becomes a result.
/// A job asking to pause goes on at once (nobody waits for it): see [`run_build_pausable`].
pub async fn run_build(
    cfg: &ExecutorConfig,
    req: &BuildRequest,
    abort: &BuildAbort,
) -> BuildResult {
    run_build_pausable(cfg, req, abort, None).await
}

/// [`run_build`], with `pause` called when the job pauses after its run phase.
pub async fn run_build_pausable(
    cfg: &ExecutorConfig,
    req: &BuildRequest,
    abort: &BuildAbort,
    pause: Option<PauseHook<'_>>,
) -> BuildResult {
    let hooks = BuildHooks {
        pause,
        semaphores: None,
    };
    run_build_hooked(cfg, req, abort, hooks).await
}

/// [`run_build`] with the caller's [`BuildHooks`].
pub async fn run_build_hooked(
    cfg: &ExecutorConfig,
    req: &BuildRequest,
    abort: &BuildAbort,
    hooks: BuildHooks<'_>,
) -> BuildResult {
    let start_time = chrono::Utc::now();
    let mut log_dir = cfg.work_root.join(&req.uuid).join("work/logs");
    let (kind, detail, data) = match JobDir::create(&cfg.work_root, &req.uuid) {
        Err(e) => (
            Some(BuildResultKind::Error),
            Some(format!(
                "cannot create build dir under {}: {e}",
                cfg.work_root.display()
            )),
            Value::Null,
        ),
        Ok(jobdir) => {
            log_dir = jobdir.logs.clone();
            // Resource guards: the sandbox's cgroup and the build dir's disk watch.
            let cgroup = crate::limits::BuildCgroup::create(&req.uuid, &cfg.limits);
            let cgroup_procs = cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
            let disk_watch = cfg.limits.disk_bytes.map(|limit| {
                let abort = abort.clone();
                crate::limits::DiskWatch::start(jobdir.root.clone(), limit, move || abort.request())
            });
            match JobOutput::create(&jobdir.job_output()) {
                Err(e) => (
                    Some(BuildResultKind::Error),
                    Some(format!("cannot write job output: {e}")),
                    Value::Null,
                ),
                Ok(out) => {
                    let mut build = Build {
                        cfg,
                        req,
                        jobdir,
                        out,
                        abort: abort.clone(),
                        bwrap: None,
                        installation: None,
                        nodes: Vec::new(),
                        agent_sock: None,
                        unreachable: Vec::new(),
                        early_failure: false,
                        checkouts: Checkouts::default(),
                        repos: Vec::new(),
                        redact: Vec::new(),
                        secret_exposed: false,
                        cgroup_procs,
                        pause: hooks.pause,
                        semaphores: hooks.semaphores,
                    };
                    let (mut kind, mut detail) = match &cgroup {
                        Ok(_) => build.execute().await,
                        Err(e) => (Some(BuildResultKind::Error), Some(e.to_string())),
                    };
                    if disk_watch.as_ref().is_some_and(|w| w.exceeded()) {
                        kind = Some(BuildResultKind::DiskFull);
                        detail = Some(format!(
                            "the build dir used more than {} bytes",
                            cfg.limits.disk_bytes.unwrap_or_default()
                        ));
                    }
                    if build.secret_exposed && req.job.secret_exposure == "fail" {
                        kind = Some(BuildResultKind::SecretExposure);
                        detail = Some("a secret value appeared in the output".into());
                    }
                    let data = build.returned_data();
                    if !cfg.keep_jobdir {
                        build.jobdir.remove_all_but_logs();
                    }
                    (kind, detail, data)
                }
            }
        }
    };
    let result = match kind {
        Some(kind) => kind,
        None if req.attempt >= req.job.attempts => BuildResultKind::RetryLimit,
        None => BuildResultKind::Retry,
    };
    BuildResult {
        uuid: req.uuid.clone(),
        result,
        error_detail: detail,
        data,
        log_dir,
        start_time: start_time.to_rfc3339(),
        end_time: chrono::Utc::now().to_rfc3339(),
    }
}

struct Build<'a> {
    cfg: &'a ExecutorConfig,
    req: &'a BuildRequest,
    jobdir: JobDir,
    out: JobOutput,
    abort: BuildAbort,
    bwrap: Option<Bwrap>,
    installation: Option<Installation>,
    nodes: Vec<AllocatedNode>,
    agent_sock: Option<PathBuf>,
    unreachable: Vec<String>,
    early_failure: bool,
    checkouts: Checkouts,
    repos: Vec<RepoCheckout>,
    /// Secret values redacted from what the executor itself writes (`secret-exposure`).
    redact: Vec<String>,
    /// A callback reported a secret value in the output (`RESULT secret_exposure`).
    secret_exposed: bool,
    /// `cgroup.procs` files every sandboxed child joins (pids/memory limits).
    cgroup_procs: Vec<PathBuf>,
    /// Called when the job pauses after its run phase.
    pause: Option<PauseHook<'a>>,
    /// Where playbook semaphores are taken.
    semaphores: Option<&'a dyn PlaybookSemaphores>,
}

impl Build<'_> {
    fn line(&self, msg: &str) {
        let msg = if self.redact.iter().any(|v| msg.contains(v.as_str())) {
            crate::secret_files::NOTICE
        } else {
            msg
        };
        if let Err(e) = self.out.line(msg) {
            tracing::warn!(error = %e, "cannot write job output");
        }
    }

    fn aborted(&self) -> bool {
        self.abort.is_requested()
    }

    fn returned_data(&self) -> Value {
        match self.jobdir.read_build_file(&self.jobdir.results()) {
            Ok(Some(text)) => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("data").cloned())
                .unwrap_or_else(|| json!({})),
            _ => json!({}),
        }
    }

    async fn execute(&mut self) -> Outcome {
        let job = &self.req.job;
        let installations = Installations::new(&self.cfg.state_dir);
        let requested = job
            .ansible_version
            .as_deref()
            .or(self.cfg.default_ansible_version.as_deref());
        let installation = match installations.resolve(requested) {
            Ok(i) => i,
            Err(e) => return (Some(BuildResultKind::Error), Some(e.to_string())),
        };
        let installation =
            match installations.install_plugins(&installation, &self.cfg.plugin_sources) {
                Ok(i) => i,
                Err(e) => return (Some(BuildResultKind::Error), Some(e.to_string())),
            };
        self.installation = Some(installation);
        match Bwrap::detect().await {
            Ok(bwrap) => self.bwrap = Some(bwrap),
            Err(e) => return (Some(BuildResultKind::Error), Some(e.to_string())),
        }

        self.nodes = match allocate(&job.nodeset, &self.cfg.nodes) {
            Ok(nodes) => nodes,
            Err(e) => return (Some(BuildResultKind::NodeFailure), Some(e.to_string())),
        };
        let known = inventory::known_hosts(&self.nodes);
        if let Err(e) = std::fs::write(self.jobdir.home.join(".ssh/known_hosts"), known) {
            return (
                Some(BuildResultKind::Error),
                Some(format!("cannot write known_hosts: {e}")),
            );
        }
        let agent = if self.nodes.is_empty() {
            None
        } else {
            match runner::start_agent(&self.jobdir, self.cfg.ssh_key.as_deref()).await {
                Ok(agent) => {
                    self.agent_sock = Some(agent.auth_sock().to_path_buf());
                    Some(agent)
                }
                Err(e) => return (Some(BuildResultKind::Error), Some(e.to_string())),
            }
        };

        // The node check runs while repositories are prepared.
        let setup = self.setup_run();
        let repos = self.prepare_repos();
        let (setup_end, repos_result) = tokio::join!(setup, repos);
        match repos_result {
            Ok(repos) => self.repos = repos,
            Err(outcome) => return outcome,
        }
        self.line("Preparing playbooks");
        if let Err(outcome) = self.prepare_playbooks().await {
            return outcome;
        }
        // Every secret must decrypt before anything runs: a bad one is an ERROR, not a retry.
        let keys = crate::secrets::KeyStore::new(&self.cfg.keys_dir);
        if let Err(e) = crate::secrets::check_job(&self.req.job, &keys) {
            return (Some(BuildResultKind::Error), Some(e.to_string()));
        }
        if !self.nodes.is_empty() {
            self.line("Running Ansible setup");
            match setup_end {
                Ok(ChildEnd::Exited(0)) => {}
                Ok(ChildEnd::TimedOut) => return (None, Some("Ansible setup timeout".into())),
                Ok(ChildEnd::Aborted) => return (Some(BuildResultKind::Aborted), None),
                Ok(_) => return (None, Some("Host unreachable".into())),
                Err(e) => return (Some(BuildResultKind::Error), Some(e)),
            }
        }
        if self.aborted() {
            return (Some(BuildResultKind::Aborted), None);
        }
        let outcome = self.run_phases().await;
        if let Some(agent) = agent {
            agent.stop().await;
        }
        outcome
    }

    /// Workspace repos: clone, merge the items, check out.
    async fn prepare_repos(&self) -> Result<Vec<RepoCheckout>, Outcome> {
        self.line("Updating git repos");
        self.line("Cloning repos into workspace");
        self.line("Restoring repo states");
        self.line("Merging changes");
        let req = self.req.clone();
        let jobdir = self.jobdir.clone();
        let prepared = tokio::task::spawn_blocking(move || workspace::prepare(&req, &jobdir)).await;
        match prepared {
            Err(e) => Err((
                Some(BuildResultKind::Error),
                Some(format!("workspace preparation failed: {e}")),
            )),
            Ok(Err(workspace::WorkspaceFailure::Conflict(detail))) => {
                Err((Some(BuildResultKind::MergeConflict), Some(detail)))
            }
            Ok(Err(workspace::WorkspaceFailure::Unfetchable(detail))) => {
                Err((Some(BuildResultKind::Aborted), Some(detail)))
            }
            Ok(Err(workspace::WorkspaceFailure::Error(detail))) => {
                Err((Some(BuildResultKind::Error), Some(detail)))
            }
            Ok(Ok(repos)) => {
                self.line("Checking out repos");
                Ok(repos)
            }
        }
    }

    async fn prepare_playbooks(&mut self) -> Result<(), Outcome> {
        let job = &self.req.job;
        if job.run.is_empty() {
            return Err((
                Some(BuildResultKind::Error),
                Some("No playbook specified".into()),
            ));
        }
        let req = self.req.clone();
        let jobdir = self.jobdir.clone();
        let repos = self.repos.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            workspace::checkout_playbooks(&req, &jobdir, &repos)
        })
        .await;
        match prepared {
            Ok(Ok(checkouts)) => {
                self.checkouts = checkouts;
                Ok(())
            }
            Ok(Err(detail)) => Err((Some(BuildResultKind::Error), Some(detail))),
            Err(e) => Err((
                Some(BuildResultKind::Error),
                Some(format!("playbook preparation failed: {e}")),
            )),
        }
    }

    fn base_env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| !k.starts_with("ZUUL_") && !k.starts_with("ANSIBLE_"))
            .collect();
        env.insert("HOME".into(), self.jobdir.home.display().to_string());
        env.insert("TMP".into(), self.jobdir.tmp.display().to_string());
        env.insert("ZUUL_JOBDIR".into(), self.jobdir.root.display().to_string());
        env.insert(
            "ZUUL_JOB_FAILURE_OUTPUT".into(),
            serde_json::to_string(&self.req.job.failure_output).unwrap_or_else(|_| "[]".into()),
        );
        env.insert(
            "ZUUL_OUTPUT_MAX_BYTES".into(),
            self.cfg.limits.output_max_bytes.to_string(),
        );
        env.insert(
            "ZUUL_ANSIBLE_SPLIT_STREAMS".into(),
            if self.req.job.ansible_split_streams {
                "True"
            } else {
                "False"
            }
            .into(),
        );
        if let Some(port) = self.cfg.console_port.filter(|p| *p != 19885) {
            env.insert("ZUUL_CONSOLE_PORT".into(), port.to_string());
        }
        if let Some(sock) = &self.agent_sock {
            env.insert("SSH_AUTH_SOCK".into(), sock.display().to_string());
        }
        if let Some(inst) = &self.installation {
            // The native module of this executor's own plugin copy, ahead of anything else.
            let mut path = inst.native_dir.display().to_string();
            if let Some(rest) = env.get("PYTHONPATH").filter(|p| !p.is_empty()) {
                path = format!("{path}:{rest}");
            }
            env.insert("PYTHONPATH".into(), path);
        }
        env
    }

    fn sandboxing(&self, extra_ro: Vec<PathBuf>) -> Sandboxing {
        let mut ro = Vec::new();
        if let Some(inst) = &self.installation {
            ro.push(inst.plugin_root.clone());
            ro.push(inst.venv.clone());
            ro.extend(inst.python_prefix.clone());
        }
        ro.push(self.jobdir.ansible.clone());
        ro.push(self.jobdir.trusted.clone());
        ro.push(self.jobdir.untrusted.clone());
        ro.extend(extra_ro);
        Sandboxing {
            work_dir: self.jobdir.work.clone(),
            home_dir: self.jobdir.home.clone(),
            ro_paths: ro,
            rw_paths: vec![self.jobdir.dot_ansible.clone()],
            ssh_auth_sock: self.agent_sock.clone(),
            tmpfs: Vec::new(),
            files: Vec::new(),
            cgroup_procs: self.cgroup_procs.clone(),
        }
    }

    /// Ansible's setup module on every node, priming the fact cache.
    async fn setup_run(&self) -> Result<ChildEnd, String> {
        if self.nodes.is_empty() {
            return Ok(ChildEnd::Exited(0));
        }
        let Some(inst) = &self.installation else {
            return Err("no Ansible installation".into());
        };
        let dir = self.jobdir.ansible.join("setup_playbook");
        let inventory = inventory::setup_inventory(&self.nodes);
        let cfg = AnsibleCfg {
            playbook_dir: &dir,
            jobdir: &self.jobdir.root,
            plugin_dir: &inst.plugin_dir,
            roles_path: &[],
            has_secrets: false,
            stdout_callback: false,
        };
        write_config(&dir, &inventory, &cfg.render()).map_err(|e| e.to_string())?;
        let mut env = self.base_env();
        env.insert(
            "ANSIBLE_CONFIG".into(),
            dir.join("ansible.cfg").display().to_string(),
        );
        let argv = vec![
            inst.venv.join("bin/ansible").display().to_string(),
            "*".into(),
            "-v".into(),
            "-m".into(),
            // gather_facts (not bare setup) marks the cache as gathered, so `gathering = smart`
            // plays do not gather again.
            "gather_facts".into(),
            "-a".into(),
            "gather_subset=!all".into(),
        ];
        let spec = ChildSpec {
            argv,
            env,
            cwd: self.jobdir.work.clone(),
            timeout: Some(self.cfg.setup_timeout),
            sandbox: Some(self.sandboxing(vec![])),
        };
        let bwrap = self.bwrap.as_ref().ok_or("bubblewrap not probed")?;
        let run = runner::run(bwrap, spec, &self.abort.build, |_| {})
            .await
            .map_err(|e| e.to_string())?;
        if run.end != ChildEnd::Exited(0) {
            for line in run.last_lines.iter().rev().take(20).rev() {
                tracing::info!(target: "setup", "{line}");
            }
        }
        Ok(run.end)
    }

    async fn run_phases(&mut self) -> Outcome {
        let job = self.req.job.clone();
        let started = Instant::now();
        let mut result: Option<BuildResultKind> = None;
        let mut detail: Option<String> = None;
        // Whether an earlier phase already decided the result (post can't change it).
        let mut fixed = false;
        let mut pre_failed = false;
        // Nesting levels count from the job itself (0) towards its base: when a pre-run
        // playbook fails, only post-run playbooks of that job level and its ancestors (whose
        // pre-run ran) run.
        let mut failed_pre_level = 0;

        for (index, pb) in job.pre_run.iter().enumerate() {
            let budget = remaining(job.pre_timeout.or(job.timeout), started);
            let end = self.run_playbook(Phase::Pre, index, pb, budget, None).await;
            if !end.ok() {
                pre_failed = true;
                fixed = true;
                failed_pre_level = pb.nesting_level;
                result = match end {
                    PlaybookEnd::TimedOut => Some(BuildResultKind::TimedOut),
                    PlaybookEnd::Aborted => Some(BuildResultKind::Aborted),
                    _ if self.retry_refused() => Some(BuildResultKind::Failure),
                    _ => None,
                };
                break;
            }
        }

        if !pre_failed {
            result = Some(BuildResultKind::Success);
            for (index, pb) in job.run.iter().enumerate() {
                let budget = remaining(job.timeout, started);
                let end = self.run_playbook(Phase::Run, index, pb, budget, None).await;
                match end {
                    PlaybookEnd::Normal(0) => {}
                    PlaybookEnd::Normal(_) => {
                        result = Some(BuildResultKind::Failure);
                        break;
                    }
                    PlaybookEnd::TimedOut => {
                        result = Some(BuildResultKind::TimedOut);
                        fixed = true;
                        break;
                    }
                    PlaybookEnd::Unreachable => {
                        result = if self.early_failure {
                            Some(BuildResultKind::Failure)
                        } else {
                            None
                        };
                        fixed = true;
                        break;
                    }
                    PlaybookEnd::Aborted => {
                        result = Some(BuildResultKind::Aborted);
                        fixed = true;
                        break;
                    }
                }
            }
            if result == Some(BuildResultKind::Success) && self.early_failure {
                result = Some(BuildResultKind::Failure);
            }
        }

        // `zuul.pause`: after a successful run phase the job waits here while the jobs that
        // depend on it run; its post-run playbooks run once it is resumed.
        if result == Some(BuildResultKind::Success) && !self.aborted() {
            if let Some(pause) = self.pause {
                let data = self.returned_data();
                let wants_pause = data
                    .get("zuul")
                    .and_then(|z| z.get("pause"))
                    .and_then(Value::as_bool)
                    == Some(true);
                if wants_pause {
                    tracing::info!(build = %self.req.uuid, "build paused");
                    pause(data).await;
                    tracing::info!(build = %self.req.uuid, "build resumed");
                }
            }
        }

        let aborted = result == Some(BuildResultKind::Aborted);
        for (index, pb) in job.post_run.iter().enumerate() {
            if pre_failed && pb.nesting_level < failed_pre_level {
                continue;
            }
            // After an abort only cleanup playbooks run.
            if (aborted || self.aborted()) && !pb.cleanup {
                continue;
            }
            let success = result == Some(BuildResultKind::Success);
            let will_retry = result.is_none() && self.req.attempt < job.attempts;
            let budget = job.post_timeout.map(Duration::from_secs);
            let end = self
                .run_playbook(Phase::Post, index, pb, budget, Some((success, will_retry)))
                .await;
            if pb.cleanup || end.ok() {
                continue;
            }
            if fixed {
                continue;
            }
            match end {
                PlaybookEnd::Unreachable if !self.early_failure => {
                    result = None;
                }
                PlaybookEnd::Aborted => {
                    result = Some(BuildResultKind::Aborted);
                }
                _ => {
                    result = Some(BuildResultKind::PostFailure);
                    detail.get_or_insert_with(|| format!("post-run playbook {} failed", pb.path));
                }
            }
        }
        if self.aborted() && result != Some(BuildResultKind::TimedOut) {
            result = Some(BuildResultKind::Aborted);
        }
        (result, detail)
    }

    /// True when the job returned `zuul.retry: false` (a pre-run failure is then final).
    fn retry_refused(&self) -> bool {
        self.returned_data()
            .get("zuul")
            .and_then(|z| z.get("retry"))
            .and_then(Value::as_bool)
            == Some(false)
    }

    async fn run_playbook(
        &mut self,
        phase: Phase,
        index: usize,
        pb: &PlaybookRef,
        timeout: Option<Duration>,
        post_flags: Option<(bool, bool)>,
    ) -> PlaybookEnd {
        let description = format!(
            "[{} : {}/{}@{}]",
            if pb.trusted { "trusted" } else { "untrusted" },
            pb.project,
            pb.path,
            pb.branch
        );
        let semaphores = self.semaphores.filter(|_| !pb.semaphores.is_empty());
        if let Some(hook) = semaphores {
            if let Err(end) = self.take_semaphores(hook, pb).await {
                return end;
            }
        }
        self.line(&format!("{} START: {description}", phase.banner()));
        let end = match self
            .invoke_playbook(phase, index, pb, timeout, post_flags)
            .await
        {
            Ok(end) => end,
            Err(e) => {
                self.line(&format!("Error running playbook: {e}"));
                PlaybookEnd::Normal(1)
            }
        };
        self.line(&format!(
            "{} END {}: {description}",
            phase.banner(),
            end.status()
        ));
        if let Some(hook) = semaphores {
            if let Err(e) = hook.release(&pb.semaphores).await {
                // The scheduler gives every semaphore of the build back with its result.
                tracing::warn!(build = %self.req.uuid, error = %e, "cannot release playbook semaphores");
            }
        }
        end
    }

    /// Waits until the build holds `pb`'s semaphores; an abort (for a cleanup playbook, the
    /// second request) ends the wait.
    async fn take_semaphores(
        &self,
        hook: &dyn PlaybookSemaphores,
        pb: &PlaybookRef,
    ) -> Result<(), PlaybookEnd> {
        let stop = if pb.cleanup {
            &self.abort.cleanup
        } else {
            &self.abort.build
        };
        let mut waiting = false;
        loop {
            if stop.is_aborted() {
                return Err(PlaybookEnd::Aborted);
            }
            match hook.take(&pb.semaphores).await {
                Ok(true) => {
                    if waiting {
                        self.line(&format!(
                            "Semaphores acquired for playbook {}: {}",
                            pb.path,
                            pb.semaphores.join(", ")
                        ));
                    }
                    return Ok(());
                }
                Ok(false) if !waiting => {
                    self.line(&format!(
                        "Waiting for semaphores for playbook {}: {}",
                        pb.path,
                        pb.semaphores.join(", ")
                    ));
                    waiting = true;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(build = %self.req.uuid, error = %e, "cannot take playbook semaphores; trying again")
                }
            }
            tokio::time::sleep(SEMAPHORE_RETRY).await;
        }
    }

    async fn invoke_playbook(
        &mut self,
        phase: Phase,
        index: usize,
        pb: &PlaybookRef,
        timeout: Option<Duration>,
        post_flags: Option<(bool, bool)>,
    ) -> Result<PlaybookEnd, String> {
        if timeout == Some(Duration::ZERO) {
            return Ok(PlaybookEnd::TimedOut);
        }
        let inst = self
            .installation
            .clone()
            .ok_or_else(|| "no Ansible installation".to_string())?;
        let playbook = self
            .checkouts
            .playbook_path(pb)
            .ok_or_else(|| format!("Unable to find playbook {}", pb.path))?;
        let dir = self
            .jobdir
            .ansible
            .join(format!("{}_{index}", phase.dir_prefix()));
        let roles_path = workspace::link_roles(&self.checkouts, self.req, pb, &dir)?;
        let inv = inventory::inventory(
            &self.req.job,
            &self.nodes,
            &self.req.parent_data,
            &self.unreachable,
            &pb.secrets
                .iter()
                .map(|s| s.var_name.clone())
                .collect::<Vec<_>>(),
        );
        let cfg = AnsibleCfg {
            playbook_dir: &dir,
            jobdir: &self.jobdir.root,
            plugin_dir: &inst.plugin_dir,
            roles_path: &roles_path,
            has_secrets: !pb.secrets.is_empty(),
            stdout_callback: true,
        };
        write_config(&dir, &inv, &cfg.render()).map_err(|e| e.to_string())?;
        let zuul = zuul_vars::zuul_vars(
            self.req,
            &self.jobdir,
            &self.repos,
            &inst.version,
            &self.cfg.hostname,
        );
        let zuul_vars_path = self.jobdir.ansible.join("zuul_vars.yaml");
        let blacklist_path = self.jobdir.ansible.join("vars_blacklist.yaml");
        write_json(&zuul_vars_path, &zuul_vars::zuul_vars_file(zuul)).map_err(|e| e.to_string())?;
        write_json(&blacklist_path, &inventory::vars_blacklist()).map_err(|e| e.to_string())?;
        // Files a previous playbook left that would change how ssh connects are removed.
        let _ = std::fs::remove_file(self.jobdir.home.join(".ssh/config"));

        // Untrusted playbooks run under the restricted module set (ansible-plugins/restricted).
        let mut argv = if pb.trusted {
            vec![inst.ansible_playbook().display().to_string()]
        } else {
            vec![
                inst.python().display().to_string(),
                inst.plugin_dir
                    .join("restricted/run_playbook.py")
                    .display()
                    .to_string(),
            ]
        };
        argv.push(if self.cfg.verbose { "-vvv" } else { "-v" }.into());
        argv.push(playbook.display().to_string());
        let mut extra = |k: &str, v: String| {
            argv.push("-e".into());
            argv.push(format!("{k}={v}"));
        };
        if let Some((success, will_retry)) = post_flags {
            extra("zuul_success", py_bool(success));
            extra("zuul_will_retry", py_bool(will_retry));
        }
        extra("zuul_execution_phase", phase.var().into());
        extra("zuul_execution_phase_index", index.to_string());
        extra("zuul_execution_trusted", py_bool(pb.trusted));
        extra(
            "zuul_execution_canonical_name_and_path",
            format!("{}/{}", pb.project, pb.path),
        );
        extra("zuul_execution_branch", pb.branch.clone());
        if !pb.trusted {
            argv.push("-e".into());
            argv.push(format!("@{}", blacklist_path.display()));
        }
        argv.push("-e".into());
        argv.push(format!("@{}", zuul_vars_path.display()));

        let mut env = self.base_env();
        env.insert(
            "ANSIBLE_CONFIG".into(),
            dir.join("ansible.cfg").display().to_string(),
        );
        let mut sandbox = self.sandboxing(vec![]);
        // Secrets reach the sandbox as in-memory files (crate::secret_files), never the disk.
        let keys = crate::secrets::KeyStore::new(&self.cfg.keys_dir);
        if let Some(files) = crate::secret_files::for_playbook(&self.req.job, pb, &keys, &dir)
            .map_err(|e| e.to_string())?
        {
            for value in &files.redact {
                if !self.redact.contains(value) {
                    self.redact.push(value.clone());
                }
            }
            files.apply(&mut sandbox, &mut env);
        }
        let spec = ChildSpec {
            argv,
            env,
            cwd: self.jobdir.work.clone(),
            timeout,
            sandbox: Some(sandbox),
        };
        let mut early_failure = false;
        let mut unreachable_signal = false;
        let mut secret_exposed = false;
        let bwrap = self.bwrap.as_ref().ok_or("bubblewrap not probed")?;
        // Cleanup playbooks run even after an abort; only a second request stops them.
        let abort = if pb.cleanup {
            &self.abort.cleanup
        } else {
            &self.abort.build
        };
        let run = runner::run(bwrap, spec, abort, |line: &str| match line.trim_end() {
            "RESULT failure" => early_failure = true,
            "RESULT unreachable" => unreachable_signal = true,
            crate::secret_files::CONTROL => secret_exposed = true,
            _ => {}
        })
        .await
        .map_err(|e| e.to_string())?;
        self.secret_exposed |= secret_exposed;
        if early_failure && phase != Phase::Pre {
            self.early_failure = true;
        }
        let unreachable_file = self.jobdir.read_build_file(&self.jobdir.unreachable());
        if let Ok(Some(text)) = &unreachable_file {
            for host in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if !self.unreachable.iter().any(|h| h == host) {
                    self.unreachable.push(host.to_string());
                }
            }
        }
        let end = match run.end {
            ChildEnd::TimedOut => {
                self.line("This playbook timed out.");
                PlaybookEnd::TimedOut
            }
            ChildEnd::Aborted | ChildEnd::Signaled(9) => PlaybookEnd::Aborted,
            ChildEnd::Signaled(_) => PlaybookEnd::Normal(-1),
            ChildEnd::Exited(3) => PlaybookEnd::Unreachable,
            ChildEnd::Exited(_) if unreachable_signal => PlaybookEnd::Unreachable,
            ChildEnd::Exited(rc) => {
                self.copy_ansible_errors(rc, &run.last_lines);
                PlaybookEnd::Normal(rc)
            }
        };
        Ok(end)
    }

    /// Puts what Ansible printed about an error of its own into the job output, where users look.
    fn copy_ansible_errors(&self, rc: i32, lines: &[String]) {
        let is_error = |l: &String| l.starts_with("ERROR!") || l.starts_with("[ERROR]");
        match rc {
            1 | 2 => {
                if let Some(start) = lines.iter().position(is_error) {
                    for l in &lines[start..] {
                        self.line(l);
                    }
                }
            }
            4 => {
                self.line("ANSIBLE PARSE ERROR");
                for l in lines {
                    self.line(l);
                }
            }
            250 => {
                self.line("UNEXPECTED ANSIBLE ERROR");
                let start = lines
                    .iter()
                    .position(|l| l.contains("Unexpected Exception"))
                    .unwrap_or(0);
                for l in &lines[start..] {
                    self.line(l);
                }
            }
            _ => {}
        }
    }
}

fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

fn remaining(limit_secs: Option<u64>, started: Instant) -> Option<Duration> {
    limit_secs.map(|s| Duration::from_secs(s).saturating_sub(started.elapsed()))
}

fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

fn write_config(dir: &Path, inventory: &Value, cfg: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_json(&dir.join("inventory.yaml"), inventory)?;
    std::fs::write(dir.join("ansible.cfg"), cfg)
}
