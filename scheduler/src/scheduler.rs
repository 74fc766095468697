//! The scheduler: one loop over the store. Each pass polls the git connections, reloads
//! tenant layouts whose branch tips moved, records finished builds (retries included), hands
//! expired leases back as RETRY, turns trigger events into queue items and advances every
//! pipeline (`manager.rs`). Every decision is written in one transaction, and everything it
//! needs is re-read from the store each pass, so a restarted scheduler carries on.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use serde_json::Value;
use sluice_executor::request::{BuildRequest, BuildResult};
use sluice_store::{now_ms, ChangeRef, ChangeRow, ItemRow, NewBuild, Store, TimerFire};

use crate::config::ServeConfig;
use crate::errors::SchedulerError;
use crate::git::{change_url, depends_on, parse_change_url, GitDriver, RepoWatcher, NULL_SHA};
use crate::github::{change_gone, check_run_abort, new_patchset, GithubSource};
use crate::layout::{refresh_layouts, refresh_layouts_of, SharedLayouts, TenantLayout};
use crate::pipeline::{ChangeFacts, Manager, Pipeline, TIMER};
use crate::pipeline_state::PipelineStates;
use crate::tenant::{load_tenants, TenantConfig, TenantProject};

/// The scheduler's state between passes (all of it can be rebuilt from the store and repos).
pub struct Scheduler {
    pub(crate) cfg: ServeConfig,
    pub(crate) store: Store,
    pub(crate) drivers: Vec<GitDriver>,
    pub(crate) tenants: Vec<Arc<TenantLayout>>,
    shared: SharedLayouts,
    pub(crate) tenant_configs: Vec<TenantConfig>,
    pub(crate) github: Vec<Arc<GithubSource>>,
    /// When each `(connection, project)` is due for its interval scan.
    next_poll: HashMap<(String, String), Instant>,
    /// Projects whose refs changed since their tips were last compared with the layouts'.
    layout_dirty: BTreeSet<(String, String)>,
    /// The `HEAD` file of each project the watcher reported, as last read (a changed default
    /// branch changes the layout; a pushed review branch does not).
    heads: HashMap<(String, String), Option<String>>,
    watcher: RepoWatcher,
    /// Next fire time per timer spec and project-branch (`None`: never).
    timers: HashMap<String, Option<DateTime<Local>>>,
    /// The last layout reload error, logged once until it changes (every pass retries).
    layout_error: Option<String>,
    /// Events whose processing failed for a transient reason: `(attempts, next try in ms
    /// since the epoch)`. They stay pending in the store (a restart retries them at once).
    event_retry: HashMap<i64, (u32, i64)>,
    /// When used-up autohold requests were last looked at.
    last_hold_expiry: Option<Instant>,
    /// Consecutive failures and disabled pipelines (`disable-after-consecutive-failures`).
    pub(crate) pipeline_states: PipelineStates,
    /// Active items per (tenant, pipeline) while a pass processes events: read once, then
    /// kept up to date with what each event enqueues and dequeues (each event read them all
    /// again before, so a burst of N events cost N times the queue).
    events_active: std::sync::Mutex<Option<ActiveItems>>,
    /// Set on shutdown: a pass stops between events, builds and queue items.
    stop: Arc<AtomicBool>,
    /// When this pass stops preparing buildsets (merges) and leaves the rest to the next:
    /// set by its first preparation, so every pass prepares at least one whatever the rest
    /// of it took.
    pub(crate) prepare_until: Option<Instant>,
}

/// Active items by (tenant, pipeline), in queue order.
type ActiveItems = HashMap<(String, String), Vec<ItemRow>>;

/// How long one pass may spend preparing buildsets (merges, speculative layouts) before it
/// lets the loop record results, read events and see a shutdown; the rest of the queue is
/// prepared by the next passes, in queue order.
pub(crate) const PREPARE_BUDGET: Duration = Duration::from_secs(1);

impl Scheduler {
    /// Reads the tenant configuration and loads every tenant's layout.
    pub async fn new(cfg: ServeConfig, store: Store) -> Result<Scheduler, SchedulerError> {
        let tenant_configs = load_tenants(&cfg.tenant_config)?;
        let mut drivers: Vec<GitDriver> = Vec::new();
        let mut github = Vec::new();
        for c in &cfg.connections {
            let mut driver = GitDriver::new(c);
            if let Some(gh) = c.github() {
                // GitHub repositories are used through local mirrors.
                let gh = gh?;
                driver.hostname = gh.canonical_hostname.clone();
                github.push(Arc::new(GithubSource::new(gh, c.root.clone())?));
            }
            drivers.push(driver);
        }
        let mut repos: Vec<(&GitDriver, &str)> = Vec::new();
        for tenant in &tenant_configs {
            for p in &tenant.projects {
                // GitHub mirrors move when Sluice fetches them, after webhooks.
                if github.iter().any(|g| g.cfg.name == p.connection) {
                    continue;
                }
                if let Some(d) = drivers.iter().find(|d| d.name == p.connection) {
                    if !repos
                        .iter()
                        .any(|(rd, rp)| rd.name == d.name && *rp == p.name)
                    {
                        repos.push((d, p.name.as_str()));
                    }
                }
            }
        }
        let started = Instant::now();
        let watcher = RepoWatcher::start(&repos, Arc::new(tokio::sync::Notify::new()));
        tracing::info!(
            repositories = repos.len(),
            ms = started.elapsed().as_millis() as u64,
            "repository watcher started"
        );
        let mut s = Scheduler {
            cfg,
            store,
            drivers,
            github,
            tenants: Vec::new(),
            shared: SharedLayouts::default(),
            tenant_configs,
            next_poll: HashMap::new(),
            layout_dirty: BTreeSet::new(),
            heads: HashMap::new(),
            watcher,
            timers: HashMap::new(),
            layout_error: None,
            event_retry: HashMap::new(),
            last_hold_expiry: None,
            pipeline_states: PipelineStates::default(),
            events_active: std::sync::Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            prepare_until: None,
        };
        s.sync_github_mirrors().await;
        let started = Instant::now();
        match s.refresh_layouts() {
            Ok(()) => tracing::info!(
                tenants = s.tenants.len(),
                ms = started.elapsed().as_millis() as u64,
                "layouts loaded"
            ),
            // GitHub mirrors may still be missing (GitHub unreachable): every pass retries.
            Err(e) if !s.github.is_empty() => {
                tracing::error!(error = %e, "cannot load the layouts yet");
            }
            Err(e) => return Err(e),
        }
        Ok(s)
    }

    /// Notified when a watched repository changed: the scheduler loop runs a pass at once.
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        self.watcher.wake()
    }

    /// The flag that stops a pass early: set it (on shutdown) and the running pass returns
    /// after the event, build or queue item at hand, its decisions committed.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Whether the pass must stop at the next boundary (shutdown).
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn work_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("scheduler")
    }

    /// One pass; says whether anything happened (the caller sleeps otherwise).
    pub async fn pass(&mut self) -> Result<bool, SchedulerError> {
        let started = Instant::now();
        self.prepare_until = None;
        let mut busy = false;
        busy |= self.poll(true).await? > 0;
        busy |= self.sync_github_mirrors().await > 0;
        let polled = started.elapsed();
        match self.refresh_changed_layouts() {
            // The previous layouts stay in use; the same error is not logged every pass.
            Err(e) if self.layout_error.as_deref() != Some(e.to_string().as_str()) => {
                tracing::error!(error = %e, "cannot reload layouts");
                self.layout_error = Some(e.to_string());
            }
            Err(_) => {}
            Ok(()) => self.layout_error = None,
        }
        let layouts = started.elapsed();
        busy |= self.record_finished_builds().await? > 0;
        busy |= self.record_paused_builds().await? > 0;
        busy |= self.store.expire_leases(now_ms()).await? > 0;
        if self
            .last_hold_expiry
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            self.last_hold_expiry = Some(Instant::now());
            // Autohold requests used up longer than their nodes' expiration ago go, with
            // their nodes (Zuul's hold request cleanup).
            let gone = self.store.expire_hold_requests(now_ms() / 1000).await?;
            if gone > 0 {
                tracing::info!(requests = gone, "expired autohold requests deleted");
            }
        }
        busy |= self.fire_timers().await? > 0;
        let recorded = started.elapsed();
        if self.stopping() {
            return Ok(busy);
        }
        busy |= self.process_events().await? > 0;
        busy |= self.flush_github_reports().await > 0;
        let events = started.elapsed();
        for t in 0..self.tenants.len() {
            for p in 0..self.tenants[t].pipelines.len() {
                if self.stopping() {
                    return Ok(busy);
                }
                // A pipeline that cannot advance does not stop the others.
                match self.process_pipeline(t, p).await {
                    Ok(changed) => busy |= changed,
                    Err(e) => tracing::error!(
                        tenant = %self.tenants[t].tenant.name,
                        pipeline = %self.tenants[t].pipelines[p].name,
                        error = %e,
                        "pipeline pass failed"
                    ),
                }
            }
        }
        let pipelines = started.elapsed();
        // The interval scans: what they find is handled by the next pass (which runs at once).
        busy |= self.poll(false).await? > 0;
        if busy {
            // Where a busy pass's time went (milliseconds since it began, cumulative).
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            tracing::debug!(
                polled = ms(polled),
                layouts = ms(layouts),
                recorded = ms(recorded),
                events = ms(events),
                pipelines = ms(pipelines),
                scanned = ms(started.elapsed()),
                "scheduler pass"
            );
        }
        Ok(busy)
    }

    /// How often `project` on `connection` is scanned: `poll-seconds`, or for a repository
    /// whose refs are watched (a push wakes the scheduler at once) a safety-net rescan every
    /// [`WATCHED_RESCAN`] at least.
    fn scan_interval(&self, connection: &str, project: &str) -> Duration {
        let interval = Duration::from_secs_f64(
            self.cfg
                .connection(connection)
                .map(|c| c.poll_seconds)
                .unwrap_or(1.0)
                .clamp(0.01, 86_400.0),
        );
        if self.watcher.is_watched(connection, project) {
            interval.max(WATCHED_RESCAN)
        } else {
            interval
        }
    }

    /// Scans the projects whose repositories the watcher saw change (`pushed`), or the
    /// projects whose scan interval passed (see [`Self::scan_interval`]). A pass scans the
    /// pushed ones first and the due ones after its pipelines, so a push's event does not wait
    /// for the interval scans. The first scans spread the next ones over the interval, so
    /// they do not all fall in one pass.
    async fn poll(&mut self, pushed: bool) -> Result<usize, SchedulerError> {
        let changed = if pushed {
            self.watcher.take_changed()
        } else {
            BTreeSet::new()
        };
        if pushed && changed.is_empty() {
            return Ok(0);
        }
        let now = Instant::now();
        let mut seen = BTreeSet::new();
        // (connection, project, interval, first)
        let mut due = Vec::new();
        for tenant in &self.tenant_configs {
            for p in &tenant.projects {
                let key = (p.connection.clone(), p.name.clone());
                if pushed && !changed.contains(&key) {
                    continue;
                }
                if seen.contains(&key) {
                    continue;
                }
                seen.insert(key.clone());
                let Some(driver) = self.drivers.iter().find(|d| d.name == p.connection) else {
                    continue;
                };
                if self.github_source(&driver.name).is_some() {
                    // Webhooks, not polling.
                    continue;
                }
                let interval = self.scan_interval(&p.connection, &p.name);
                let next = self.next_poll.get(&key);
                if !pushed && next.is_some_and(|t| *t > now) {
                    continue;
                }
                let first = next.is_none();
                due.push((key, interval, first));
            }
        }
        let firsts = due.iter().filter(|d| d.2).count() as u32;
        let mut nth_first = 0;
        let mut n = 0;
        for (key, interval, first) in due {
            let next = if first && !pushed {
                nth_first += 1;
                now + interval * nth_first / firsts.max(1)
            } else {
                now + interval
            };
            self.next_poll.insert(key.clone(), next);
            let Some(driver) = self.drivers.iter().find(|d| d.name == key.0) else {
                continue;
            };
            match driver.poll(&self.store, &key.1).await {
                Ok(outcome) => {
                    n += outcome.events;
                    // A write the watcher saw may be a changed HEAD (the default branch).
                    let head_moved = pushed && {
                        let head = driver.head_file(&key.1);
                        self.heads.insert(key.clone(), head.clone()) != Some(head)
                    };
                    if outcome.branches_moved || head_moved {
                        self.layout_dirty.insert(key);
                    }
                }
                Err(e) => tracing::warn!(project = %key.1, error = %e, "poll failed"),
            }
        }
        Ok(n)
    }

    /// Brings the layouts up to date with the projects whose branches moved since the last
    /// call (and GitHub projects, whose mirrors move without a scan): see
    /// [`refresh_layouts_of`]. Projects whose reload failed are tried again next time.
    fn refresh_changed_layouts(&mut self) -> Result<(), SchedulerError> {
        if self.layout_dirty.is_empty() && self.github.is_empty() && !self.tenants.is_empty() {
            return Ok(());
        }
        let old = std::mem::take(&mut self.tenants);
        let before: Vec<Arc<TenantLayout>> = old.clone();
        let github: Vec<String> = self.github.iter().map(|g| g.cfg.name.clone()).collect();
        let dirty = &self.layout_dirty;
        let changed = |e: &TenantProject| {
            github.contains(&e.connection)
                || dirty.contains(&(e.connection.clone(), e.name.clone()))
        };
        let (tenants, error) =
            refresh_layouts_of(&self.tenant_configs, &self.drivers, old, &changed);
        self.tenants = tenants;
        let same = before.len() == self.tenants.len()
            && before
                .iter()
                .zip(&self.tenants)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            self.shared.publish(self.tenants.clone());
        }
        match error {
            None => {
                self.layout_dirty.clear();
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    /// Reloads the layouts whose branch tips moved (see [`refresh_layouts`]) and publishes
    /// them to the [`SharedLayouts`] readers.
    fn refresh_layouts(&mut self) -> Result<(), SchedulerError> {
        let old = std::mem::take(&mut self.tenants);
        let (tenants, error) = refresh_layouts(&self.tenant_configs, &self.drivers, old);
        self.tenants = tenants;
        self.shared.publish(self.tenants.clone());
        error.map_or(Ok(()), Err)
    }

    /// The handle on which every reload is published (for readers such as the web server).
    pub fn layouts(&self) -> SharedLayouts {
        self.shared.clone()
    }

    /// Publishes reloads on `shared` from now on (created by whoever reads them).
    pub fn share_layouts(&mut self, shared: SharedLayouts) {
        shared.publish(self.tenants.clone());
        self.shared = shared;
    }

    /// Marks builds that paused at their executors (`zuul.pause`) paused, with the data they
    /// returned, so their children can start.
    async fn record_paused_builds(&self) -> Result<usize, SchedulerError> {
        let paused = self.store.newly_paused().await?;
        if paused.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store.begin().await?;
        for p in &paused {
            tx.mark_build_paused(&p.uuid, &p.data).await?;
            tracing::info!(build = %p.uuid, "build paused");
        }
        tx.commit().await?;
        Ok(paused.len())
    }

    /// Turns finished requests into build records; RETRY results get a new try.
    async fn record_finished_builds(&mut self) -> Result<usize, SchedulerError> {
        let finished = self.store.finished_requests().await?;
        let n = finished.len();
        for r in finished {
            if self.stopping() {
                break;
            }
            let Some(build) = self.store.build(&r.uuid).await? else {
                let mut tx = self.store.begin().await?;
                tx.mark_request_processed(&r.uuid).await?;
                tx.commit().await?;
                continue;
            };
            let buildset = self.store.buildset(&build.buildset_uuid).await?;
            let superseded = buildset.as_ref().is_none_or(|b| b.state == "done");
            let req: Option<BuildRequest> = serde_json::from_value(r.request.clone()).ok();
            let max_attempts = req.as_ref().map_or(1, |q| i64::from(q.job.attempts));
            let res: Option<BuildResult> = r
                .result
                .clone()
                .and_then(|v| serde_json::from_value(v).ok());
            let (result, detail, start, end, log_url, data) = if r.state == "canceled" || r.cancel {
                ("CANCELED".to_string(), None, None, None, None, None)
            } else {
                match &res {
                    None if build.attempt >= max_attempts => (
                        "RETRY_LIMIT".into(),
                        Some("executor lost".to_string()),
                        None,
                        None,
                        None,
                        None,
                    ),
                    None => (
                        "RETRY".into(),
                        Some("executor lost".to_string()),
                        None,
                        None,
                        None,
                        None,
                    ),
                    Some(res) => (
                        res.result.as_str().to_string(),
                        res.error_detail.clone(),
                        Some(res.start_time.clone()),
                        Some(res.end_time.clone()),
                        (!res.log_dir.as_os_str().is_empty())
                            .then(|| format!("file://{}/", res.log_dir.display())),
                        Some(res.data.clone()),
                    ),
                }
            };
            let retry = result == "RETRY" && !superseded;
            if build.result.is_some() && !build.final_ {
                // A try reset because a job it depends on was retried: already recorded.
                let mut tx = self.store.begin().await?;
                tx.release_semaphores(&r.uuid).await?;
                tx.mark_request_processed(&r.uuid).await?;
                tx.commit().await?;
                continue;
            }
            let resets = if retry {
                self.dependents_to_reset(&build).await?
            } else {
                Vec::new()
            };
            let mut tx = self.store.begin().await?;
            let outcome = sluice_store::BuildOutcome {
                result: &result,
                final_: result != "RETRY",
                error_detail: detail.as_deref(),
                log_url: log_url.as_deref(),
                start_time: start.as_deref(),
                end_time: end.as_deref(),
                data: data.as_ref(),
            };
            tx.record_build_result(&r.uuid, &outcome).await?;
            tx.touch_buildset_times(&build.buildset_uuid, start.as_deref(), end.as_deref())
                .await?;
            // A finished try gives its semaphores back; a new try takes them again.
            tx.release_semaphores(&r.uuid).await?;
            if retry {
                if let Some(mut req) = req {
                    req.uuid = uuid::Uuid::new_v4().simple().to_string();
                    req.attempt = (build.attempt + 1) as u32;
                    let request = serde_json::to_value(&req).unwrap_or(Value::Null);
                    tx.insert_build(&NewBuild {
                        uuid: req.uuid.clone(),
                        buildset_uuid: build.buildset_uuid.clone(),
                        item_uuid: build.item_uuid.clone(),
                        tenant: build.tenant.clone(),
                        pipeline: build.pipeline.clone(),
                        job_name: build.job_name.clone(),
                        voting: build.voting,
                        attempt: build.attempt + 1,
                        nodeset: build.nodeset.clone(),
                        precedence: r.precedence,
                        request,
                        dependencies: build.dependencies.clone(),
                        ready: req.semaphores.is_empty(),
                    })
                    .await?;
                }
                self.reset_dependents(&mut tx, &build, &resets, r.precedence)
                    .await?;
            }
            tx.mark_request_processed(&r.uuid).await?;
            tx.commit().await?;
            tracing::info!(build = %r.uuid, job = %build.job_name, %result, "build recorded");
        }
        Ok(n)
    }

    fn change_ref(&self, driver: &GitDriver, c: &ChangeRow) -> ChangeRef {
        ChangeRef {
            connection: driver.name.clone(),
            project: driver.canonical(&c.project),
            number: c.number,
            patchset: c.patchset.clone(),
            refname: c.refname.clone(),
            branch: c.branch.clone(),
            topic: c.topic.clone(),
            message: c.message.clone(),
            url: match self.github_source(&driver.name) {
                Some(gh) => gh.cfg.pull_url(&c.project, c.number),
                None => change_url(&driver.hostname, &c.project, &c.refname),
            },
            oldrev: None,
            newrev: None,
        }
    }

    /// Open changes named by `Depends-On` in `message`, resolved recursively, deepest first.
    async fn needed_changes(
        &self,
        message: &str,
        seen: &mut Vec<String>,
    ) -> Result<Vec<ChangeRef>, SchedulerError> {
        let mut out = Vec::new();
        for url in depends_on(message) {
            if let Some((host, project, number)) = sluice_github::parse_pull_url(&url) {
                if let Some(gh) = self.github.iter().find(|g| g.cfg.owns_host(&host)).cloned() {
                    let key = gh.cfg.pull_url(&project, number);
                    if seen.contains(&key) || seen.len() > 50 {
                        continue;
                    }
                    seen.push(key);
                    let row = match self.github_change(&gh, &project, number).await {
                        Ok((row, _)) if row.status == "open" => row,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(%url, error = %e, "Depends-On: cannot read the pull request");
                            continue;
                        }
                    };
                    let deeper = Box::pin(self.needed_changes(&row.message, seen)).await?;
                    for d in deeper {
                        if !out.contains(&d) {
                            out.push(d);
                        }
                    }
                    if let Some(driver) = self.drivers.iter().find(|d| d.name == gh.cfg.name) {
                        let c = self.change_ref(driver, &row);
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                    continue;
                }
            }
            let Some((host, project, refname)) = parse_change_url(&url) else {
                continue;
            };
            let Some(driver) = self.drivers.iter().find(|d| d.hostname == host) else {
                continue;
            };
            let Some(row) = self
                .store
                .change_by_ref(&driver.name, &project, &refname)
                .await?
            else {
                continue;
            };
            let key = format!("{}/{}", driver.canonical(&project), refname);
            if row.status != "open" || seen.contains(&key) || seen.len() > 50 {
                continue;
            }
            seen.push(key);
            let deeper = Box::pin(self.needed_changes(&row.message, seen)).await?;
            for d in deeper {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
            let c = self.change_ref(driver, &row);
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The tenant whose layout an event must wait for: one that has the event's project but
    /// no layout yet (its repositories could not be read). The event stays pending until then.
    fn waits_for_layout(&self, ev: &sluice_store::EventRow) -> Option<&str> {
        if ev.connection == TIMER {
            return None;
        }
        let project = ev.payload.get("project").and_then(Value::as_str)?;
        self.tenant_configs
            .iter()
            .filter(|tc| {
                tc.projects
                    .iter()
                    .any(|p| p.connection == ev.connection && p.name == project)
            })
            .find(|tc| !self.tenants.iter().any(|t| t.tenant.name == tc.name))
            .map(|tc| tc.name.as_str())
    }

    /// Turns pending events into queue items; returns how many were processed. Events for
    /// a tenant whose layout is not loaded yet stay pending (in order) for a later pass. An
    /// event that fails for a transient reason (GitHub 5xx or rate limit, the store) stays
    /// pending and is retried with back-off (1 s doubling to 60 s, or when a rate limit
    /// lifts), and later events of the same change wait behind it; one that fails for a
    /// permanent reason (a deleted pull request, a malformed payload) is logged with the
    /// error and marked processed.
    async fn process_events(&mut self) -> Result<usize, SchedulerError> {
        let events = self.store.pending_events(1000).await?;
        let now = now_ms();
        self.event_retry
            .retain(|id, _| events.iter().any(|e| e.id == *id));
        // Changes with an event waiting for its retry: their later events keep their order.
        let mut held: Vec<String> = Vec::new();
        let mut n = 0;
        self.set_events_active(Some(HashMap::new()));
        let outcome = self
            .process_event_list(events, now, &mut held, &mut n)
            .await;
        self.set_events_active(None);
        outcome.map(|()| n)
    }

    fn set_events_active(&self, value: Option<ActiveItems>) {
        if let Ok(mut cache) = self.events_active.lock() {
            *cache = value;
        }
    }

    /// A pipeline's active items, in queue order: from the cache while events are processed.
    async fn active_items_for_events(
        &self,
        tenant: &str,
        pipeline: &str,
    ) -> Result<Vec<ItemRow>, SchedulerError> {
        let key = (tenant.to_string(), pipeline.to_string());
        if let Ok(cache) = self.events_active.lock() {
            if let Some(items) = cache.as_ref().and_then(|c| c.get(&key)) {
                return Ok(items.clone());
            }
        }
        let items = self.store.active_items(tenant, pipeline).await?;
        if let Ok(mut cache) = self.events_active.lock() {
            if let Some(c) = cache.as_mut() {
                c.insert(key, items.clone());
            }
        }
        Ok(items)
    }

    /// Keeps the events' cache of active items in step with an event's committed decisions.
    fn events_changed_queues(&self, dequeued: &[ItemRow], enqueued: &[ItemRow]) {
        let Ok(mut cache) = self.events_active.lock() else {
            return;
        };
        let Some(c) = cache.as_mut() else {
            return;
        };
        for item in dequeued {
            if let Some(list) = c.get_mut(&(item.tenant.clone(), item.pipeline.clone())) {
                list.retain(|i| i.uuid != item.uuid);
            }
        }
        for item in enqueued {
            if let Some(list) = c.get_mut(&(item.tenant.clone(), item.pipeline.clone())) {
                list.push(item.clone());
            }
        }
    }

    async fn process_event_list(
        &mut self,
        events: Vec<sluice_store::EventRow>,
        now: i64,
        held: &mut Vec<String>,
        n: &mut usize,
    ) -> Result<(), SchedulerError> {
        for ev in events {
            if self.stopping() {
                break;
            }
            if let Some(tenant) = self.waits_for_layout(&ev) {
                tracing::debug!(event = ev.id, kind = %ev.kind, %tenant, "event kept until the tenant's layout is loaded");
                continue;
            }
            let key = event_change_key(&ev);
            let backing_off = self
                .event_retry
                .get(&ev.id)
                .is_some_and(|(_, next)| *next > now);
            if backing_off || key.as_ref().is_some_and(|k| held.contains(k)) {
                held.extend(key);
                continue;
            }
            *n += 1;
            // One bad event must not block the ones after it.
            match self.process_event(&ev).await {
                Ok(()) => {
                    self.event_retry.remove(&ev.id);
                }
                Err(e) if e.is_transient() => {
                    let attempts = self.event_retry.get(&ev.id).map_or(0, |r| r.0) + 1;
                    let backoff = (1000i64 << (attempts - 1).min(6)).min(60_000);
                    let next = e.retry_at().unwrap_or(0).max(now_ms() + backoff);
                    tracing::warn!(
                        event = ev.id,
                        kind = %ev.kind,
                        connection = %ev.connection,
                        change = key.as_deref().unwrap_or(""),
                        attempts,
                        retry_in_ms = next - now_ms(),
                        error = %e,
                        "event failed for a transient reason; kept pending and retried later"
                    );
                    self.event_retry.insert(ev.id, (attempts, next));
                    held.extend(key);
                }
                Err(e) => {
                    tracing::error!(
                        event = ev.id,
                        kind = %ev.kind,
                        connection = %ev.connection,
                        change = key.as_deref().unwrap_or(""),
                        error = %e,
                        "event cannot be processed (permanent error); marked processed without effect"
                    );
                    self.event_retry.remove(&ev.id);
                    let mut tx = self.store.begin().await?;
                    tx.mark_event_processed(ev.id).await?;
                    tx.commit().await?;
                }
            }
        }
        Ok(())
    }

    /// Enqueues (and dequeues) what one event asks for, in one transaction with marking it
    /// processed.
    async fn process_event(&mut self, ev: &sluice_store::EventRow) -> Result<(), SchedulerError> {
        if ev.kind == MANAGEMENT_PROMOTE {
            // Promotion reorders queues: the events after it read them again.
            self.set_events_active(Some(HashMap::new()));
            return self.promote(ev).await;
        }
        let (new_items, dequeue) = if ev.connection == TIMER || ev.kind == "ref-updated" {
            self.ref_event_items(ev).await?
        } else if let Some(gh) = self
            .github_source(&ev.connection)
            .filter(|_| ev.kind == "push")
        {
            // A push refreshes the mirror, then is a ref item like the git driver's
            // `ref-updated` (branch deletions never reach the store).
            self.github_event_views(&gh, ev).await?;
            self.ref_event_items(ev).await?
        } else if let Some(gh) = self.github_source(&ev.connection) {
            // A GitHub event may concern several pull requests (a status on a shared commit).
            let (mut new_items, mut dequeue) = (Vec::new(), Vec::new());
            for view in self.github_event_views(&gh, ev).await? {
                let (n, d) = self.change_event_items(ev, &view).await?;
                new_items.extend(n);
                dequeue.extend(d);
            }
            (new_items, dequeue)
        } else {
            self.change_event_items(ev, &ev.payload).await?
        };
        let mut to_cancel = Vec::new();
        for item in &dequeue {
            if let Some(bs) = &item.buildset_uuid {
                to_cancel.extend(self.store.builds_of_buildset(bs).await?);
            }
        }
        let mut reports = Vec::new();
        for (items, action) in [(&dequeue, "dequeue"), (&new_items, "enqueue")] {
            for item in items {
                if let Some(p) = self.pipeline(&item.tenant, &item.pipeline) {
                    let text = match action {
                        "dequeue" => p.dequeue_message.clone(),
                        _ => p.enqueue_message.clone().unwrap_or_default(),
                    };
                    reports.extend(self.github_reports(p, item, action, &text));
                }
            }
        }
        let mut tx = self.store.begin().await?;
        cancel_builds(&mut tx, &to_cancel).await?;
        for r in &reports {
            tx.insert_report(r).await?;
        }
        for item in &dequeue {
            if let Some(bs) = &item.buildset_uuid {
                let message = self
                    .pipeline(&item.tenant, &item.pipeline)
                    .map_or("Build canceled.", |p| p.dequeue_message.as_str());
                tx.finish_buildset(bs, "DEQUEUED", message).await?;
            }
            tx.finish_item(&item.uuid, "DEQUEUED").await?;
        }
        for item in &new_items {
            tx.insert_item(item).await?;
            tracing::info!(pipeline = %item.pipeline, change = %item.change.url, "enqueued");
        }
        tx.mark_event_processed(ev.id).await?;
        tx.commit().await?;
        self.events_changed_queues(&dequeue, &new_items);
        for item in &new_items {
            if let Some(text) = self
                .pipeline(&item.tenant, &item.pipeline)
                .and_then(|p| p.enqueue_message.clone())
            {
                self.report_note(item, &text);
            }
        }
        Ok(())
    }

    /// Zuul's `promote`: the named items move to the head of their change queue, in the
    /// order given, ahead of the others (which keep their order). Nothing is canceled here:
    /// every item whose items ahead changed is reset by the next pipeline pass (its
    /// unfinished builds canceled, a new buildset on the new items ahead), as Zuul restarts
    /// the jobs of the queue.
    async fn promote(&mut self, ev: &sluice_store::EventRow) -> Result<(), SchedulerError> {
        let text = |key: &str| ev.payload.get(key).and_then(Value::as_str).unwrap_or("");
        let (tenant, pipeline) = (text("tenant"), text("pipeline"));
        let wanted: Vec<&str> = ev
            .payload
            .get("items")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let active = self.store.active_items(tenant, pipeline).await?;
        // Items dequeued since the web checked them are skipped.
        let promoted: Vec<&ItemRow> = wanted
            .iter()
            .filter_map(|u| active.iter().find(|i| i.uuid == *u))
            .collect();
        let mut tx = self.store.begin().await?;
        if let Some(first) = promoted.first() {
            let queue = first.queue.clone();
            let head = active
                .iter()
                .filter(|i| i.queue == queue)
                .map(|i| i.seq)
                .min()
                .unwrap_or(0);
            let n = promoted.len() as i64;
            for (k, item) in promoted.iter().enumerate() {
                if item.queue == queue {
                    tx.set_item_seq(&item.uuid, head - n + k as i64).await?;
                }
            }
            tracing::info!(%tenant, %pipeline, %queue, user = %text("user"),
                changes = ?promoted.iter().map(|i| i.change.url.as_str()).collect::<Vec<_>>(),
                "promoted");
        }
        tx.mark_event_processed(ev.id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A tenant's pipeline by name.
    pub(crate) fn pipeline(&self, tenant: &str, name: &str) -> Option<&Pipeline> {
        self.tenants
            .iter()
            .find(|t| t.tenant.name == tenant)?
            .pipelines
            .iter()
            .find(|p| p.name == name)
    }

    /// Writes `text` as the report note of `item`'s commit for its pipeline (a failure to
    /// write is logged: the records in the store are the report of record).
    pub(crate) fn report_note(&self, item: &ItemRow, text: &str) {
        let Some(driver) = self
            .drivers
            .iter()
            .find(|d| d.name == item.change.connection)
            .filter(|d| self.github_source(&d.name).is_none())
        else {
            return;
        };
        let short = project_short(driver, &item.change.project);
        if let Err(e) = driver.note(short, &item.pipeline, &item.change.patchset, text) {
            tracing::warn!(change = %item.change.url, error = %e, "cannot write the report note");
        }
    }

    /// What pipeline `require`/`reject` entries are checked against, for `cref`.
    pub(crate) async fn change_facts(
        &self,
        cref: &ChangeRef,
    ) -> Result<ChangeFacts, SchedulerError> {
        let Some(driver) = self.drivers.iter().find(|d| d.name == cref.connection) else {
            return Ok(ChangeFacts::default());
        };
        let short = project_short(driver, &cref.project);
        let statuses = self
            .store
            .commit_statuses(&driver.name, short, &cref.patchset)
            .await?
            .into_iter()
            .map(|(context, state)| format!("{STATUS_USER}:{context}:{state}"))
            .collect();
        if !cref.is_change() {
            return Ok(ChangeFacts {
                statuses,
                ..Default::default()
            });
        }
        let row = self
            .store
            .change_by_ref(&driver.name, short, &cref.refname)
            .await?;
        let approved = match &row {
            Some(r) => {
                self.store
                    .approved_patchset(&driver.name, short, r.number)
                    .await?
                    .as_deref()
                    == Some(r.patchset.as_str())
            }
            None => false,
        };
        Ok(ChangeFacts {
            is_change: true,
            open: row.as_ref().is_some_and(|r| r.status == "open"),
            merged: row.as_ref().is_some_and(|r| r.status == "merged"),
            current_patchset: row.as_ref().is_some_and(|r| r.patchset == cref.patchset),
            approved,
            statuses,
        })
    }

    /// Whether `cref` meets pipeline `p`'s `require` and escapes its `reject` (logged if not).
    pub(crate) async fn admitted(
        &self,
        t: &TenantLayout,
        p: &Pipeline,
        cref: &ChangeRef,
    ) -> Result<bool, SchedulerError> {
        if let Some(gh) = self.github_source(&cref.connection) {
            // GitHub's attributes are sluice-github's; pull requests are read from the API.
            return self
                .github_requirements_hold(&gh, &t.tenant.name, p, cref)
                .await;
        }
        if !p.has_requirements(&cref.connection) {
            return Ok(true);
        }
        let facts = self.change_facts(cref).await?;
        let ok = p.admits(&cref.connection, &facts);
        if !ok {
            tracing::info!(
                tenant = %t.tenant.name, pipeline = %p.name, change = %cref.url, ?facts,
                "not enqueued: the pipeline's require/reject says no"
            );
        }
        Ok(ok)
    }

    /// The queue a new item of `pipeline` joins. A supercedent queue keeps its running head:
    /// the waiting items after it are superseded (added to `dequeue`, or dropped from
    /// `new_items`).
    fn queue_for(
        t: &TenantLayout,
        pipeline: &Pipeline,
        cref: &ChangeRef,
        uuid: &str,
        active: &[ItemRow],
        new_items: &mut Vec<ItemRow>,
        dequeue: &mut Vec<ItemRow>,
    ) -> String {
        match pipeline.manager {
            Manager::Independent => uuid.to_string(),
            Manager::Serial | Manager::Dependent => t
                .layout
                .project_queue(&cref.project)
                .unwrap_or_else(|| cref.project.clone()),
            Manager::Supercedent => {
                // One queue per project and branch (per project and ref for ref items).
                let key = if cref.is_change() {
                    &cref.branch
                } else {
                    &cref.refname
                };
                let queue = format!("{}\0{key}", cref.project);
                let in_queue: Vec<&ItemRow> = active.iter().filter(|i| i.queue == queue).collect();
                for waiting in in_queue.iter().skip(1) {
                    if !dequeue.iter().any(|d| d.uuid == waiting.uuid) {
                        dequeue.push((*waiting).clone());
                    }
                }
                new_items.retain(|i| i.queue != queue || in_queue.is_empty());
                queue
            }
        }
    }

    /// Items for a review event (new patchset, approval, abandon) and the items it dequeues.
    async fn change_event_items(
        &self,
        ev: &sluice_store::EventRow,
        payload: &Value,
    ) -> Result<(Vec<ItemRow>, Vec<ItemRow>), SchedulerError> {
        let project = payload.get("project").and_then(Value::as_str).unwrap_or("");
        let refname = payload.get("ref").and_then(Value::as_str).unwrap_or("");
        let gh = self.github_source(&ev.connection);
        let mut new_items: Vec<ItemRow> = Vec::new();
        let mut dequeue: Vec<ItemRow> = Vec::new();
        let Some(driver) = self.drivers.iter().find(|d| d.name == ev.connection) else {
            return Ok((new_items, dequeue));
        };
        let Some(change) = self
            .store
            .change_by_ref(&driver.name, project, refname)
            .await?
        else {
            return Ok((new_items, dequeue));
        };
        let cref = self.change_ref(driver, &change);
        // The web's admin events name one tenant's pipeline: `zuul-enqueue` enqueues the
        // change there whatever its triggers, `zuul-dequeue` takes it out; so does the Abort
        // button of a GitHub check run.
        let dequeue_event = ev.kind == MANAGEMENT_DEQUEUE || check_run_abort(&ev.kind, payload);
        let admin = (dequeue_event || ev.kind == MANAGEMENT_ENQUEUE).then(|| {
            (
                ev.payload
                    .get("tenant")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                ev.payload
                    .get("pipeline")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )
        });
        for t in &self.tenants {
            if t.project(&cref.project).is_none()
                || admin.is_some_and(|(tenant, _)| tenant != t.tenant.name)
            {
                continue;
            }
            let configured = t.layout.project_pipelines(&cref.project, &cref.branch);
            for p in &t.pipelines {
                if admin.is_some_and(|(_, pipeline)| pipeline != p.name) {
                    continue;
                }
                let active = self
                    .active_items_for_events(&t.tenant.name, &p.name)
                    .await?;
                if dequeue_event {
                    dequeue.extend(
                        active
                            .iter()
                            .filter(|i| {
                                i.change.is_change()
                                    && i.change.project == cref.project
                                    && i.change.number == cref.number
                            })
                            .cloned(),
                    );
                    continue;
                }
                // Older patchsets leave the pipeline when a new one arrives; an
                // abandoned change leaves every pipeline.
                for item in &active {
                    let same_change = item.change.is_change()
                        && item.change.project == cref.project
                        && item.change.number == cref.number;
                    if same_change
                        && ((new_patchset(&ev.kind, payload)
                            && p.dequeue_on_new_patchset
                            && item.change.patchset != cref.patchset)
                            || change_gone(&ev.kind, payload))
                    {
                        dequeue.push(item.clone());
                    }
                }
                // GitHub filters need the pull request: checked below.
                let triggered = admin.is_some()
                    || gh.is_some()
                    || p.triggers
                        .iter()
                        .any(|f| f.matches(&ev.connection, &ev.kind, &cref.branch));
                if change.status != "open" || !triggered || !configured.contains(&p.name) {
                    continue;
                }
                if active.iter().any(|i| i.change == cref) {
                    continue;
                }
                if !self.admitted(t, p, &cref).await? {
                    continue;
                }
                let needed = if p.ignore_dependencies {
                    Vec::new()
                } else {
                    self.needed_changes(&cref.message, &mut Vec::new()).await?
                };
                if let (Some(gh), None) = (&gh, admin) {
                    if !self
                        .github_admits(gh, &t.tenant.name, p, &ev.kind, payload, &cref, &needed)
                        .await?
                    {
                        continue;
                    }
                }
                if p.manager == Manager::Dependent {
                    let queue = t
                        .layout
                        .project_queue(&cref.project)
                        .unwrap_or_else(|| cref.project.clone());
                    // Needed changes not ahead yet are enqueued ahead (Zuul's
                    // enqueueChangesAhead) when they share the queue, run jobs in this
                    // pipeline and meet its require/reject; otherwise the change waits.
                    let mut ahead: Vec<ChangeRef> = Vec::new();
                    let mut missing = None;
                    for n in &needed {
                        let present = active.iter().chain(new_items.iter()).any(|i| {
                            i.queue == queue
                                && i.change.project == n.project
                                && i.change.number == n.number
                        });
                        if present {
                            continue;
                        }
                        let n_queue = t
                            .layout
                            .project_queue(&n.project)
                            .unwrap_or_else(|| n.project.clone());
                        let enqueueable = n_queue == queue
                            && t.layout
                                .project_pipelines(&n.project, &n.branch)
                                .contains(&p.name)
                            && self.admitted(t, p, n).await?;
                        if !enqueueable {
                            missing = Some(n);
                            break;
                        }
                        ahead.push(n.clone());
                    }
                    if let Some(m) = missing {
                        tracing::warn!(
                            change = %cref.url, needed = %m.url, pipeline = %p.name,
                            "not enqueued: a needed change is not merged, not ahead in this change queue and cannot be enqueued ahead (another queue, not in the pipeline, or its require/reject says no)"
                        );
                        continue;
                    }
                    for n in ahead {
                        let n_needed = self.needed_changes(&n.message, &mut Vec::new()).await?;
                        let uuid = uuid::Uuid::new_v4().simple().to_string();
                        tracing::info!(change = %n.url, needed_by = %cref.url, pipeline = %p.name, "enqueued ahead");
                        new_items.push(new_item(t, p, uuid, queue.clone(), n, n_needed, ev.id));
                    }
                }
                let uuid = uuid::Uuid::new_v4().simple().to_string();
                let queue =
                    Self::queue_for(t, p, &cref, &uuid, &active, &mut new_items, &mut dequeue);
                let deps = match p.manager {
                    // Merged underneath (independent) or kept to dequeue the item if one of
                    // them fails (dependent).
                    Manager::Independent | Manager::Dependent => needed,
                    Manager::Serial | Manager::Supercedent => Vec::new(),
                };
                new_items.push(new_item(t, p, uuid, queue, cref.clone(), deps, ev.id));
                // `supercedes`: the change leaves the pipelines this one supersedes.
                for other in &p.supercedes {
                    for item in self.active_items_for_events(&t.tenant.name, other).await? {
                        let same = item.change.is_change()
                            && item.change.project == cref.project
                            && item.change.number == cref.number;
                        if same && !dequeue.iter().any(|d| d.uuid == item.uuid) {
                            dequeue.push(item);
                        }
                    }
                }
            }
        }
        Ok((new_items, dequeue))
    }

    /// Items for a `ref-updated` or timer event: ref items (no change), one per matching
    /// pipeline. A timer event names its tenant and pipeline.
    async fn ref_event_items(
        &self,
        ev: &sluice_store::EventRow,
    ) -> Result<(Vec<ItemRow>, Vec<ItemRow>), SchedulerError> {
        let text = |key: &str| ev.payload.get(key).and_then(Value::as_str);
        let timer = ev.connection == TIMER;
        let connection = if timer {
            text("connection").unwrap_or("")
        } else {
            ev.connection.as_str()
        };
        let project = text("project").unwrap_or("");
        let refname = text("ref").unwrap_or("");
        let branch = refname.strip_prefix("refs/heads/");
        let oldrev = text("oldrev").map(str::to_string);
        let newrev = text("newrev").map(str::to_string);
        let deleted = !timer && newrev.as_deref().is_none_or(|r| r == NULL_SHA);
        // The commit the item is about: the new tip, the old one for a deletion, the tip at
        // fire time for a timer.
        let commit = if timer {
            text("commit").map(str::to_string)
        } else if deleted {
            oldrev.clone()
        } else {
            newrev.clone()
        };
        let mut new_items: Vec<ItemRow> = Vec::new();
        let mut dequeue: Vec<ItemRow> = Vec::new();
        let (Some(driver), Some(commit)) =
            (self.drivers.iter().find(|d| d.name == connection), commit)
        else {
            return Ok((new_items, dequeue));
        };
        let canonical = driver.canonical(project);
        for t in &self.tenants {
            if timer && text("tenant") != Some(t.tenant.name.as_str()) {
                continue;
            }
            let Some(resolved) = t.project(&canonical) else {
                continue;
            };
            // A tag has no branch: its project's default branch selects the configuration.
            let layout_branch = branch.unwrap_or(&resolved.default_branch);
            let configured = t.layout.project_pipelines(&canonical, layout_branch);
            for p in &t.pipelines {
                let matched = if timer {
                    text("pipeline") == Some(p.name.as_str())
                        && p.triggers.iter().any(|f| {
                            f.is_timer()
                                && f.timespecs
                                    .iter()
                                    .any(|s| Some(s.text.as_str()) == text("timespec"))
                        })
                } else if self.github_source(connection).is_some() {
                    p.github.triggers.iter().any(|(c, f)| {
                        c == connection
                            && !deleted
                            && f.matches_event(&ev.kind, &ev.payload, branch.unwrap_or(""))
                    })
                } else {
                    p.triggers
                        .iter()
                        .any(|f| f.matches_ref(connection, refname, branch, deleted))
                };
                if !matched || !configured.contains(&p.name) {
                    continue;
                }
                let active = self
                    .active_items_for_events(&t.tenant.name, &p.name)
                    .await?;
                let cref = ChangeRef {
                    connection: driver.name.clone(),
                    project: canonical.clone(),
                    number: 0,
                    patchset: commit.clone(),
                    refname: refname.to_string(),
                    branch: branch.unwrap_or_default().to_string(),
                    url: change_url(&driver.hostname, project, refname),
                    oldrev: oldrev.clone(),
                    newrev: newrev.clone(),
                    ..Default::default()
                };
                // The same ref at the same commit is already in the pipeline.
                if active.iter().chain(new_items.iter()).any(|i| {
                    i.pipeline == p.name
                        && !i.change.is_change()
                        && i.change.project == cref.project
                        && i.change.refname == cref.refname
                        && i.change.patchset == cref.patchset
                }) {
                    continue;
                }
                if !self.admitted(t, p, &cref).await? {
                    continue;
                }
                let uuid = uuid::Uuid::new_v4().simple().to_string();
                let queue =
                    Self::queue_for(t, p, &cref, &uuid, &active, &mut new_items, &mut dequeue);
                new_items.push(new_item(t, p, uuid, queue, cref, Vec::new(), ev.id));
            }
        }
        Ok((new_items, dequeue))
    }

    /// Records a timer event for every project-branch whose configuration runs jobs in a
    /// pipeline with a timer trigger, when that trigger's time comes (plus the project-branch's
    /// jitter). Times missed while the scheduler was busy fire once, late. Each firing is
    /// recorded in the store with its events: a timer new to this process is next due after
    /// its last recorded firing, so a restart neither repeats a run nor skips one that came due
    /// while Sluice was down (that one fires once, at start).
    async fn fire_timers(&mut self) -> Result<usize, SchedulerError> {
        let now = Local::now();
        let mut due_now = Vec::new();
        let mut seen = BTreeSet::new();
        // Last firings from the store, read only when a timer is new to this process.
        let mut recorded: Option<HashMap<String, i64>> = None;
        for tl in &self.tenants {
            for p in &tl.pipelines {
                for f in p.triggers.iter().filter(|f| f.is_timer()) {
                    for spec in &f.timespecs {
                        for (project, branch, sha) in &tl.fingerprint {
                            if !tl
                                .layout
                                .project_pipelines(project, branch)
                                .contains(&p.name)
                            {
                                continue;
                            }
                            let Some(resolved) = tl.project(project) else {
                                continue;
                            };
                            let fire = TimerFire {
                                tenant: tl.tenant.name.clone(),
                                pipeline: p.name.clone(),
                                timespec: spec.text.clone(),
                                project: project.clone(),
                                branch: branch.clone(),
                                fired_at: now.timestamp_millis(),
                            };
                            let key = timer_key(&fire);
                            seen.insert(key.clone());
                            let jitter = spec.jitter_for(&tl.tenant.name, project, branch);
                            if !self.timers.contains_key(&key) {
                                if recorded.is_none() {
                                    recorded = Some(
                                        self.store
                                            .timer_fires()
                                            .await?
                                            .iter()
                                            .map(|f| (timer_key(f), f.fired_at))
                                            .collect(),
                                    );
                                }
                                let last = recorded
                                    .as_ref()
                                    .and_then(|r| r.get(&key))
                                    .and_then(|ms| DateTime::from_timestamp_millis(*ms))
                                    .map(|t| t.with_timezone(&Local));
                                let after = last.unwrap_or(now);
                                self.timers.insert(
                                    key.clone(),
                                    spec.next_after(after).map(|d| d + jitter),
                                );
                            }
                            let due = self.timers.get(&key).copied().flatten();
                            if due.is_some_and(|d| d <= now) {
                                self.timers
                                    .insert(key, spec.next_after(now).map(|d| d + jitter));
                                let mut payload = serde_json::json!({
                                    "tenant": tl.tenant.name,
                                    "pipeline": p.name,
                                    "connection": resolved.entry.connection,
                                    "project": resolved.entry.name,
                                    "branch": branch,
                                    "ref": format!("refs/heads/{branch}"),
                                    "timespec": spec.text,
                                    "commit": sha,
                                });
                                if f.dereference {
                                    payload["newrev"] = serde_json::json!(sha);
                                }
                                due_now.push((payload, fire));
                            }
                        }
                    }
                }
            }
        }
        self.timers.retain(|k, _| seen.contains(k));
        if due_now.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store.begin().await?;
        for (payload, fire) in &due_now {
            tx.insert_event(TIMER, TIMER, payload).await?;
            tx.set_timer_fire(fire).await?;
        }
        tx.commit().await?;
        tracing::info!(events = due_now.len(), "timer fired");
        Ok(due_now.len())
    }
}

/// A timer's key in the scheduler's map of due times.
fn timer_key(f: &TimerFire) -> String {
    format!(
        "{}\0{}\0{}\0{}\0{}",
        f.tenant, f.pipeline, f.timespec, f.project, f.branch
    )
}

/// How often a repository whose refs are watched is scanned anyway (at least), in case the
/// watch missed a change (some filesystems do not report every write).
pub const WATCHED_RESCAN: Duration = Duration::from_secs(60);

/// The user part of commit statuses the scheduler sets (`sluice:<tenant>/<pipeline>:<state>`).
pub const STATUS_USER: &str = "sluice";

/// A project's name on its connection (`org/repo`) from its canonical name.
pub(crate) fn project_short<'a>(driver: &GitDriver, canonical: &'a str) -> &'a str {
    canonical
        .strip_prefix(&driver.hostname)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(canonical)
}

/// A new live item.
fn new_item(
    t: &TenantLayout,
    p: &Pipeline,
    uuid: String,
    queue: String,
    change: ChangeRef,
    deps: Vec<ChangeRef>,
    event_id: i64,
) -> ItemRow {
    ItemRow {
        uuid,
        tenant: t.tenant.name.clone(),
        pipeline: p.name.clone(),
        queue,
        seq: 0,
        state: "active".into(),
        live: true,
        change,
        deps,
        event_id: event_id.to_string(),
        enqueue_time: now_ms(),
        buildset_uuid: None,
        result: None,
    }
}

/// Stops the unfinished builds among `builds`: requested or running ones through their
/// request, waiting ones (no request yet) at once.
pub(crate) async fn cancel_builds(
    tx: &mut sluice_store::Tx,
    builds: &[sluice_store::BuildRow],
) -> Result<(), SchedulerError> {
    for b in builds.iter().filter(|b| b.result.is_none()) {
        if b.pending_request.is_some() {
            let outcome = sluice_store::BuildOutcome::without_run("CANCELED", true, None);
            tx.record_build_result(&b.uuid, &outcome).await?;
        } else {
            tx.cancel_request(&b.uuid).await?;
        }
    }
    Ok(())
}

/// Event kind of the web's `enqueue` admin call (payload: `project`, `ref`, `tenant`,
/// `pipeline`, `user`).
pub const MANAGEMENT_ENQUEUE: &str = "zuul-enqueue";
/// Event kind of the web's `dequeue` admin call (same payload).
pub const MANAGEMENT_DEQUEUE: &str = "zuul-dequeue";

/// Event kind of the web's `promote` admin call (payload: `tenant`, `pipeline`, `items`: the
/// queue items' uuids in their new order, `user`).
pub const MANAGEMENT_PROMOTE: &str = "zuul-promote";

/// Records a `promote` admin event: `items` (uuids of active items of one change queue of
/// `pipeline`) move to the head of their queue in this order. `connection` is the items'.
pub async fn promote_items(
    store: &Store,
    connection: &str,
    tenant: &str,
    pipeline: &str,
    items: &[String],
    user: &str,
) -> Result<i64, SchedulerError> {
    let mut tx = store.begin().await?;
    let id = tx
        .insert_event(
            connection,
            MANAGEMENT_PROMOTE,
            &serde_json::json!({"tenant": tenant, "pipeline": pipeline, "items": items,
                                "user": user}),
        )
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// An admin call on a change, recorded as an event for the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct AdminEvent<'a> {
    /// `MANAGEMENT_ENQUEUE` or `MANAGEMENT_DEQUEUE`.
    pub kind: &'a str,
    /// The change's connection.
    pub connection: &'a str,
    /// The change's project (the connection's name for it).
    pub project: &'a str,
    /// The change's review branch ref.
    pub refname: &'a str,
    /// Tenant.
    pub tenant: &'a str,
    /// Pipeline.
    pub pipeline: &'a str,
    /// Who asked.
    pub user: &'a str,
}

/// Records an admin event; the scheduler acts on it in the event's order.
pub async fn manage_change(store: &Store, ev: AdminEvent<'_>) -> Result<i64, SchedulerError> {
    let mut tx = store.begin().await?;
    let id = tx
        .insert_event(
            ev.connection,
            ev.kind,
            &serde_json::json!({"project": ev.project, "ref": ev.refname, "tenant": ev.tenant,
                                "pipeline": ev.pipeline, "user": ev.user}),
        )
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// Records a `change-approved` event for the change on review branch `refname` of `project`
/// (what `sluice change approve` does).
pub async fn approve_change(
    store: &Store,
    connection: &str,
    project: &str,
    refname: &str,
) -> Result<i64, SchedulerError> {
    let mut tx = store.begin().await?;
    // The approval is a fact of the change (pipeline `require: {approved: true}`) as well as
    // an event for triggers.
    if let Some(change) = tx.change_by_ref(connection, project, refname).await? {
        tx.approve_change(connection, project, change.number, &change.patchset)
            .await?;
    }
    let id = tx
        .insert_event(
            connection,
            "change-approved",
            &serde_json::json!({"project": project, "ref": refname}),
        )
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// `connection/project#number` of the change an event is about, when it names one.
fn event_change_key(ev: &sluice_store::EventRow) -> Option<String> {
    let project = ev.payload.get("project").and_then(Value::as_str)?;
    let number = ev.payload.get("number").and_then(Value::as_i64)?;
    Some(format!("{}/{project}#{number}", ev.connection))
}
