//! Pipeline managers: independent (every item alone, its `Depends-On` changes merged
//! underneath) and dependent (shared change queues; every item is tested on top of the
//! non-failing items ahead of it: the nearest-non-failing-item rule).
//!
//! Each pass walks a pipeline's items in queue order. An item whose current buildset was made
//! for a different set of items ahead is reset: its unfinished builds are canceled and a new
//! buildset is made. A new buildset is prepared once: the scheduler merges the changes in
//! memory (sluice-merger's `merge_in_memory`), loads the speculative layout, freezes the item's
//! jobs and requests one build per job, all in one transaction. The head item is reported once every build is final;
//! a successful item in a pipeline whose success reporter says `merge: true` is merged into
//! its target branch first.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use sluice_config::{FrozenJob, FrozenJobDetails};
use sluice_executor::request::{BuildRequest, ChangeItem, ProjectSpec};
use sluice_merger::{
    merge_in_memory, prepare_workspace, Change, MergeIdentity, ProjectRepo, SpeculativeProject,
    WorkspaceRequest, WorkspaceScheme, WorkspaceState,
};
use sluice_store::{
    now_ms, BuildDependency, BuildOutcome, BuildRow, BuildsetRow, ChangeRef, ItemRow, NewBuild,
};

use crate::errors::SchedulerError;
use crate::git::{NULL_SHA, REVIEW_PREFIX};
use crate::github::{action_of, report_text, MergeOutcome};
use crate::job_graph::JobGraph;
use crate::layout::{Override, ResolvedProject, TenantLayout};
use crate::pipeline::{Manager, Pipeline};
use crate::pipeline_state::ReportOutcome;
use crate::scheduler::{cancel_builds, project_short, Scheduler, PREPARE_BUDGET};

/// The built-in job that succeeds without running anything (unless a tenant defines one).
const NOOP: &str = "noop";

/// Buildset results that end an item without builds.
const EARLY_RESULTS: [&str; 3] = ["MERGE_CONFLICT", "CONFIG_ERROR", "NO_JOBS"];

fn build_failed(b: &BuildRow) -> bool {
    b.voting && b.final_ && !matches!(b.result.as_deref(), Some("SUCCESS") | Some("SKIPPED"))
}

/// What a pipeline pass read about its items in a few statements: their buildsets, the
/// builds of those buildsets, and which items are active.
struct QueueState {
    active: HashSet<String>,
    buildsets: HashMap<String, BuildsetRow>,
    builds: HashMap<String, Vec<BuildRow>>,
}

impl QueueState {
    async fn read(store: &sluice_store::Store, items: &[ItemRow]) -> Result<Self, SchedulerError> {
        let uuids: Vec<String> = items
            .iter()
            .filter_map(|i| i.buildset_uuid.clone())
            .collect();
        let buildsets: HashMap<String, BuildsetRow> = store
            .buildsets_by_uuid(&uuids)
            .await?
            .into_iter()
            .map(|bs| (bs.uuid.clone(), bs))
            .collect();
        let mut builds: HashMap<String, Vec<BuildRow>> = HashMap::new();
        for b in store.builds_of_buildsets(&uuids).await? {
            builds.entry(b.buildset_uuid.clone()).or_default().push(b);
        }
        Ok(QueueState {
            active: items.iter().map(|i| i.uuid.clone()).collect(),
            buildsets,
            builds,
        })
    }
}

/// Prepared jobs, or the buildset result that replaces them.
enum Prepared {
    Builds(Vec<NewBuild>),
    Early(&'static str, String),
}

impl Scheduler {
    /// Advances one pipeline; says whether anything changed.
    pub(crate) async fn process_pipeline(
        &mut self,
        t: usize,
        p: usize,
    ) -> Result<bool, SchedulerError> {
        let tenant = self.tenants[t].tenant.name.clone();
        let pipeline = self.tenants[t].pipelines[p].clone();
        let items = self.store.active_items(&tenant, &pipeline.name).await?;
        // The buildsets and builds of every item are read at once, not item by item: a pass
        // over a queue with nothing new costs the same few statements however long the
        // queue is (an item's own reads happen only when something about it changes).
        let mut known = QueueState::read(&self.store, &items).await?;
        let mut queues: Vec<(String, Vec<ItemRow>)> = Vec::new();
        for item in items {
            match queues.iter_mut().find(|(q, _)| *q == item.queue) {
                Some((_, list)) => list.push(item),
                None => queues.push((item.queue.clone(), vec![item])),
            }
        }
        let mut changed = false;
        for (_, items) in queues {
            if self.stopping() {
                break;
            }
            changed |= self.process_queue(t, &pipeline, items, &mut known).await?;
        }
        Ok(changed)
    }

    async fn process_queue(
        &mut self,
        t: usize,
        pipeline: &Pipeline,
        items: Vec<ItemRow>,
        known: &mut QueueState,
    ) -> Result<bool, SchedulerError> {
        let mut changed = false;
        let window = self.window_size(pipeline, &items).await?;
        // Live, non-failing items ahead: what the next item is tested on top of.
        let mut ahead: Vec<ItemRow> = Vec::new();
        for (idx, item) in items.iter().enumerate() {
            // Shutdown stops the pass between items (each does at most one merge).
            if self.stopping() {
                break;
            }
            let expected: Vec<String> = match pipeline.manager {
                Manager::Dependent => ahead.iter().map(|i| i.uuid.clone()).collect(),
                Manager::Independent | Manager::Serial | Manager::Supercedent => Vec::new(),
            };
            let mut buildset = item
                .buildset_uuid
                .as_ref()
                .and_then(|uuid| known.buildsets.get(uuid).cloned());
            if pipeline.manager == Manager::Dependent {
                if let Some(needed) = self.unmet_need(t, item, &ahead).await? {
                    // Zuul's texts: a closed (abandoned) needed change is "needed", one that
                    // left the queue otherwise "failed to merge".
                    let reason = if self.need_closed(t, &needed).await? {
                        format!("Change {} is needed.", needed.url)
                    } else {
                        format!(
                            "This change depends on a change that failed to merge.\n\n- {}",
                            needed.url
                        )
                    };
                    self.dequeue_failed(t, pipeline, item, buildset.as_ref(), &reason)
                        .await?;
                    changed = true;
                    continue;
                }
            }
            if pipeline.manager == Manager::Independent && item.live {
                // A needed change closed (abandoned) will never merge: Zuul's "Change X is
                // needed." (in the gate, `unmet_need` above covers it).
                if let Some(gone) = self.closed_need(t, item).await? {
                    let reason = format!("Change {} is needed.", gone.url);
                    self.dequeue_failed(t, pipeline, item, buildset.as_ref(), &reason)
                        .await?;
                    changed = true;
                    continue;
                }
            }
            // Requirements are checked again on every pass (a status, an approval or the
            // change itself may have changed since the item entered).
            if item.live
                && item.change.is_change()
                && !self
                    .admitted(&self.tenants[t], pipeline, &item.change)
                    .await?
            {
                let reason = "This change no longer meets the pipeline's requirements.";
                self.dequeue_failed(t, pipeline, item, buildset.as_ref(), reason)
                    .await?;
                changed = true;
                continue;
            }
            if idx >= window {
                // Outside the window nothing runs: the builds of an item pushed out by a
                // shrinking window are canceled; it restarts when the window reaches it.
                if let Some(bs) = buildset.as_ref().filter(|bs| bs.state == "running") {
                    self.cancel_outside_window(item, bs).await?;
                    changed = true;
                }
                continue;
            }
            let stale = match &buildset {
                None => true,
                Some(bs) if bs.state == "done" && bs.result.as_deref() == Some("DEQUEUED") => true,
                Some(bs) => self.without_merged(&bs.context, known).await? != expected,
            };
            if stale {
                let merge_deps = pipeline.manager == Manager::Independent;
                buildset = Some(
                    self.reset_item(item, &ahead, expected, buildset, merge_deps)
                        .await?,
                );
                changed = true;
            }
            let Some(mut bs) = buildset else {
                continue;
            };
            let mut builds = known.builds.remove(&bs.uuid).unwrap_or_default();
            if bs.state == "new" {
                let until = *self
                    .prepare_until
                    .get_or_insert_with(|| Instant::now() + PREPARE_BUDGET);
                if Instant::now() >= until {
                    // This pass merged long enough: the loop records results, reads events
                    // and sees a shutdown before the next merges (next pass, in queue order).
                    // Items behind a dependent item wait for it.
                    changed = true;
                    if pipeline.manager == Manager::Independent {
                        continue;
                    }
                    break;
                }
                self.prepare_buildset(t, pipeline, item, &bs).await?;
                changed = true;
                bs = match self.store.buildset(&bs.uuid).await? {
                    Some(bs) => bs,
                    None => continue,
                };
                builds = self.store.builds_of_buildset(&bs.uuid).await?;
            }
            if self.release_waiting(pipeline, &builds).await? {
                changed = true;
                builds = self.store.builds_of_buildset(&bs.uuid).await?;
            }
            let early = bs
                .result
                .as_deref()
                .is_some_and(|r| EARLY_RESULTS.contains(&r));
            let failing =
                early && bs.result.as_deref() != Some("NO_JOBS") || builds.iter().any(build_failed);
            // Retried tries are not final; a job is done once one of its tries is.
            let complete = early
                || (!builds.is_empty()
                    && builds
                        .iter()
                        .all(|b| builds.iter().any(|f| f.job_name == b.job_name && f.final_)));
            let at_head = pipeline.manager == Manager::Independent || idx == 0;
            // A GitHub merge refused and tried again on a later pass reports nothing (false):
            // the items behind go on meanwhile.
            if at_head && complete && self.report(t, pipeline, item, &bs, &builds).await? {
                changed = true;
                if pipeline.manager != Manager::Independent {
                    // The items behind are re-examined next pass against the new branch tip.
                    break;
                }
                continue;
            }
            if !failing {
                ahead.push(item.clone());
            }
        }
        Ok(changed)
    }

    /// How many items at the head of the queue are actionable.
    async fn window_size(
        &self,
        pipeline: &Pipeline,
        items: &[ItemRow],
    ) -> Result<usize, SchedulerError> {
        Ok(match pipeline.manager {
            Manager::Independent => usize::MAX,
            Manager::Serial | Manager::Supercedent => 1,
            Manager::Dependent => {
                let Some(first) = items.first() else {
                    return Ok(0);
                };
                let size = self
                    .store
                    .window(&first.tenant, &pipeline.name, &first.queue)
                    .await?
                    .unwrap_or(pipeline.window.size);
                if size <= 0 {
                    usize::MAX
                } else {
                    size as usize
                }
            }
        })
    }

    /// A needed change of a dependent item that is neither merged nor a non-failing item
    /// ahead of it.
    async fn unmet_need(
        &self,
        t: usize,
        item: &ItemRow,
        ahead: &[ItemRow],
    ) -> Result<Option<ChangeRef>, SchedulerError> {
        for need in &item.deps {
            if ahead
                .iter()
                .any(|a| a.change.project == need.project && a.change.number == need.number)
            {
                continue;
            }
            let short = self.tenants[t]
                .project(&need.project)
                .map(|p| p.entry.name.clone())
                .unwrap_or_default();
            let merged = self
                .store
                .change_by_ref(&need.connection, &short, &need.refname)
                .await?
                .is_some_and(|c| c.status == "merged");
            if !merged {
                return Ok(Some(need.clone()));
            }
        }
        Ok(None)
    }

    /// A needed change of the item that was closed (GitHub) or abandoned (git driver).
    async fn closed_need(
        &self,
        t: usize,
        item: &ItemRow,
    ) -> Result<Option<ChangeRef>, SchedulerError> {
        for need in &item.deps {
            if self.need_closed(t, need).await? {
                return Ok(Some(need.clone()));
            }
        }
        Ok(None)
    }

    /// Whether a needed change was closed (GitHub) or abandoned (git driver).
    async fn need_closed(&self, t: usize, need: &ChangeRef) -> Result<bool, SchedulerError> {
        let short = self.tenants[t]
            .project(&need.project)
            .map(|p| p.entry.name.clone())
            .unwrap_or_default();
        Ok(self
            .store
            .change_by_ref(&need.connection, &short, &need.refname)
            .await?
            .is_some_and(|c| matches!(c.status.as_str(), "closed" | "abandoned")))
    }

    /// Dequeues a live item with a failure report saying `reason` (a needed change failed,
    /// the pipeline's requirements are no longer met), Zuul's way: its builds are canceled.
    async fn dequeue_failed(
        &self,
        t: usize,
        pipeline: &Pipeline,
        item: &ItemRow,
        buildset: Option<&BuildsetRow>,
        reason: &str,
    ) -> Result<(), SchedulerError> {
        let message = format!("{}\n\n{reason}", pipeline.failure_message);
        let builds = match buildset {
            Some(bs) => self.store.builds_of_buildset(&bs.uuid).await?,
            None => Vec::new(),
        };
        // Not a job failure: the count stays, but a disabled pipeline reports elsewhere.
        let disabled =
            self.pipeline_states
                .record(&self.tenants[t], pipeline, ReportOutcome::Other);
        let git_reports = !disabled
            || pipeline
                .disabled_reporters
                .contains(&item.change.connection);
        if git_reports {
            self.report_note(item, &with_footer(pipeline, &message));
        }
        let action = if disabled { "disabled" } else { "failure" };
        let reports = self.github_reports(pipeline, item, action, &message);
        let mut tx = self.store.begin().await?;
        for r in &reports {
            tx.insert_report(r).await?;
        }
        cancel_builds(&mut tx, &builds).await?;
        if let Some(bs) = buildset {
            tx.finish_buildset(&bs.uuid, "FAILURE", &message).await?;
        }
        tx.finish_item(&item.uuid, "FAILURE").await?;
        if git_reports {
            self.set_status(&mut tx, t, pipeline, item, "failure")
                .await?;
        }
        tx.commit().await?;
        tracing::info!(change = %item.change.url, reason, "dequeued");
        Ok(())
    }

    /// Cancels the builds of an item the window no longer reaches.
    async fn cancel_outside_window(
        &self,
        item: &ItemRow,
        bs: &BuildsetRow,
    ) -> Result<(), SchedulerError> {
        let builds = self.store.builds_of_buildset(&bs.uuid).await?;
        let mut tx = self.store.begin().await?;
        cancel_builds(&mut tx, &builds).await?;
        tx.finish_buildset(
            &bs.uuid,
            "DEQUEUED",
            "Canceled: the item is outside the window.",
        )
        .await?;
        tx.commit().await?;
        tracing::info!(item = %item.uuid, change = %item.change.url, "builds canceled: outside the window");
        Ok(())
    }

    /// Sets the item's commit status for this pipeline (`sluice:<tenant>/<pipeline>:<state>`).
    async fn set_status(
        &self,
        tx: &mut sluice_store::Tx,
        t: usize,
        pipeline: &Pipeline,
        item: &ItemRow,
        state: &str,
    ) -> Result<(), SchedulerError> {
        let Some(driver) = self
            .drivers
            .iter()
            .find(|d| d.name == item.change.connection)
        else {
            return Ok(());
        };
        let context = format!("{}/{}", self.tenants[t].tenant.name, pipeline.name);
        tx.set_commit_status(
            &driver.name,
            project_short(driver, &item.change.project),
            &item.change.patchset,
            &context,
            state,
        )
        .await?;
        Ok(())
    }

    /// `context` without the items that have merged since (their changes are in the branch).
    /// Items still active are not merged: only the others are read.
    async fn without_merged(
        &self,
        context: &[String],
        known: &QueueState,
    ) -> Result<Vec<String>, SchedulerError> {
        let gone: Vec<String> = context
            .iter()
            .filter(|uuid| !known.active.contains(*uuid))
            .cloned()
            .collect();
        let merged: HashSet<String> = if gone.is_empty() {
            HashSet::new()
        } else {
            self.store
                .items_by_uuid(&gone)
                .await?
                .into_iter()
                .filter(|i| i.state == "done" && i.result.as_deref() == Some("SUCCESS"))
                .map(|i| i.uuid)
                .collect()
        };
        Ok(context
            .iter()
            .filter(|uuid| !merged.contains(*uuid))
            .cloned()
            .collect())
    }

    /// Cancels the item's unfinished builds and gives it a new buildset for `ahead`.
    async fn reset_item(
        &self,
        item: &ItemRow,
        ahead: &[ItemRow],
        context: Vec<String>,
        old: Option<BuildsetRow>,
        merge_deps: bool,
    ) -> Result<BuildsetRow, SchedulerError> {
        let mut unfinished = Vec::new();
        if let Some(old) = &old {
            unfinished = self.store.builds_of_buildset(&old.uuid).await?;
            unfinished.retain(|b| b.result.is_none());
        }
        let mut refs: Vec<ChangeRef> = Vec::new();
        for i in ahead {
            refs.push(i.change.clone());
        }
        if merge_deps {
            refs.extend(item.deps.iter().cloned());
        }
        refs.push(item.change.clone());
        let mut bs = BuildsetRow {
            uuid: uuid::Uuid::new_v4().simple().to_string(),
            id: 0,
            tenant: item.tenant.clone(),
            pipeline: item.pipeline.clone(),
            item_uuid: item.uuid.clone(),
            context,
            refs,
            state: "new".into(),
            result: None,
            message: None,
            event_id: item.event_id.clone(),
            event_timestamp: item.enqueue_time,
            created: now_ms(),
            first_build_start_time: None,
            last_build_end_time: None,
        };
        let mut tx = self.store.begin().await?;
        cancel_builds(&mut tx, &unfinished).await?;
        if let Some(old) = old.as_ref().filter(|old| old.state != "done") {
            tx.finish_buildset(
                &old.uuid,
                "DEQUEUED",
                "Reset: the items ahead of this one changed.",
            )
            .await?;
        }
        bs.id = tx.insert_buildset(&bs).await?;
        tx.set_item_buildset(&item.uuid, &bs.uuid).await?;
        tx.commit().await?;
        if old.is_some() {
            tracing::info!(item = %item.uuid, change = %item.change.url, canceled = unfinished.len(), "item reset");
        }
        Ok(bs)
    }

    /// The projects `changes` touch (each once, in order of first appearance) and the merges
    /// they need: one per change; a ref item is its branch as it is, nothing to merge.
    /// Fails with a message for a project that is not in the tenant.
    fn merge_plan<'a>(
        layout: &'a TenantLayout,
        changes: impl Iterator<Item = &'a ChangeRef>,
    ) -> Result<(Vec<&'a ResolvedProject>, Vec<Change>), String> {
        let mut projects: Vec<&ResolvedProject> = Vec::new();
        let mut merges = Vec::new();
        for c in changes {
            let Some(p) = layout.project(&c.project) else {
                return Err(format!("project {} is not in the tenant", c.project));
            };
            if !projects.iter().any(|r| r.canonical == p.canonical) {
                projects.push(p);
            }
            if c.is_change() {
                merges.push(Change {
                    project: p.canonical.clone(),
                    branch: c.branch.clone(),
                    commit: c.patchset.clone(),
                    merge_mode: layout.layout.project_merge_mode(&p.canonical),
                });
            }
        }
        Ok((projects, merges))
    }

    /// Merges `changes` in order in a fresh workspace under `dir` (blocking work off the loop),
    /// for a merge that is pushed to the target branch (gate success); the speculative
    /// states of buildsets are [`Self::speculate`]'s.
    pub(crate) async fn merge(
        &self,
        t: usize,
        changes: &[ChangeRef],
        branch: &str,
        dir: PathBuf,
    ) -> Result<Result<WorkspaceState, String>, SchedulerError> {
        let (projects, merges) = match Self::merge_plan(&self.tenants[t], changes.iter()) {
            Ok(plan) => plan,
            Err(e) => return Ok(Err(e)),
        };
        let projects = projects
            .into_iter()
            .map(|p| ProjectRepo {
                canonical_name: p.canonical.clone(),
                source: p.path.clone(),
                default_branch: p.default_branch.clone(),
                override_branch: None,
                override_checkout: None,
                repo_state: Default::default(),
                // Review branches are changes: a merge clones the branches only.
                exclude_branches: vec![REVIEW_PREFIX.to_string()],
            })
            .collect();
        let request = WorkspaceRequest {
            src_root: dir.clone(),
            scheme: WorkspaceScheme::Golang,
            projects,
            changes: merges,
            job_override_checkout: None,
            job_override_branch: None,
            zuul_branch: (!branch.is_empty()).then(|| branch.to_string()),
            zuul_ref: None,
            merge_identity: merger_identity(),
            merge_time: None,
        };
        let _ = std::fs::remove_dir_all(&dir);
        let done = tokio::task::spawn_blocking(move || prepare_workspace(&request))
            .await
            .map_err(|e| SchedulerError::Join(e.to_string()))?;
        Ok(done.map_err(|e| e.to_string()))
    }

    /// Merges `changes` in order over their projects' branch tips in memory
    /// ([`sluice_merger::merge_in_memory`], blocking work off the loop) and reads the
    /// configuration of every project with a change from its speculative commit on `branch`
    /// (its default branch when it has no such branch): the overrides of a speculative
    /// layout. Ref items bring nothing (their branch's configuration is the one loaded).
    pub(crate) async fn speculate(
        &self,
        t: usize,
        changes: &[ChangeRef],
        branch: &str,
    ) -> Result<Result<Vec<Override>, String>, SchedulerError> {
        let tl = self.tenants[t].clone();
        let (projects, merges) =
            match Self::merge_plan(&tl, changes.iter().filter(|c| c.is_change())) {
                Ok(plan) => plan,
                Err(e) => return Ok(Err(e)),
            };
        let projects: Vec<SpeculativeProject> = projects
            .into_iter()
            .map(|p| SpeculativeProject {
                canonical_name: p.canonical.clone(),
                source: p.path.clone(),
            })
            .collect();
        if merges.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let branch = branch.to_string();
        let done = tokio::task::spawn_blocking(move || {
            let repos = merge_in_memory(&projects, &merges, &merger_identity(), None)
                .map_err(|e| e.to_string())?;
            let mut overrides = Vec::with_capacity(repos.len());
            for r in &repos {
                let default_branch = tl
                    .project(&r.canonical_name)
                    .map(|p| p.default_branch.as_str())
                    .unwrap_or_default();
                // What a checkout of the item's branch shows (Zuul's checkout order).
                let Some(tip) = r.tip(&branch).or_else(|| r.tip(default_branch)) else {
                    return Err(format!(
                        "Project {} does not have the default branch {default_branch}",
                        r.canonical_name
                    ));
                };
                let config = tl
                    .config_of_commit(&r.canonical_name, &branch, &r.repo, &tip.to_string())
                    .map_err(|e| format!("cannot read the merged configuration: {e}"))?;
                overrides.push(Override {
                    project: r.canonical_name.clone(),
                    branch: branch.clone(),
                    config: std::sync::Arc::new(config),
                });
            }
            Ok(overrides)
        })
        .await
        .map_err(|e| SchedulerError::Join(e.to_string()))?;
        Ok(done)
    }

    async fn prepare(
        &self,
        t: usize,
        pipeline: &Pipeline,
        item: &ItemRow,
        bs: &BuildsetRow,
    ) -> Result<Prepared, SchedulerError> {
        let started = std::time::Instant::now();
        // Changes bring their own configuration; ref items use the branch's as loaded.
        let overrides = match self.speculate(t, &bs.refs, &item.change.branch).await? {
            Ok(overrides) => overrides,
            Err(e) => return Ok(Prepared::Early("MERGE_CONFLICT", e)),
        };
        let tl = &self.tenants[t];
        let merged = started.elapsed();
        let (layout, errors) = tl.speculative(&overrides);
        let speculated = started.elapsed();
        if !errors.is_empty() {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Ok(Prepared::Early("CONFIG_ERROR", text.join("\n")));
        }
        let project = &item.change.project;
        // A tag has no branch: its project's default branch selects the jobs.
        let branch = match tl.project(project) {
            Some(p) if item.change.branch.is_empty() => &p.default_branch,
            _ => &item.change.branch,
        };
        let jobs = layout.project_jobs(project, &pipeline.name, branch);
        if jobs.is_empty() {
            return Ok(Prepared::Early("NO_JOBS", String::new()));
        }
        let specs = tl.project_specs();
        let change_items: Vec<ChangeItem> = bs
            .refs
            .iter()
            .map(|c| {
                let merge_mode = tl.layout.project_merge_mode(&c.project).to_string();
                if c.is_change() {
                    ChangeItem {
                        project: c.project.clone(),
                        branch: c.branch.clone(),
                        commit: c.patchset.clone(),
                        merge_mode,
                        change: c.number.to_string(),
                        patchset: c.patchset.clone(),
                        message: c.message.clone(),
                        topic: Some(c.topic.clone()),
                        change_url: c.url.clone(),
                        ..Default::default()
                    }
                } else {
                    ChangeItem {
                        project: c.project.clone(),
                        branch: c.branch.clone(),
                        commit: c.patchset.clone(),
                        merge_mode,
                        change_url: c.url.clone(),
                        refname: Some(c.refname.clone()),
                        oldrev: c.oldrev.clone(),
                        newrev: c.newrev.clone(),
                        ..Default::default()
                    }
                }
            })
            .collect();
        let mut frozen = Vec::new();
        let mut noop = false;
        for job in &jobs {
            if job == NOOP && layout.job_variants(NOOP).is_none() {
                noop = true;
                continue;
            }
            match layout.freeze_detailed(job, project, branch, Some(&pipeline.name)) {
                Ok(d) => frozen.push(d),
                Err(e) => return Ok(Prepared::Early("CONFIG_ERROR", format!("job {job}: {e}"))),
            }
        }
        let changed_files = match self
            .drivers
            .iter()
            .find(|d| d.name == item.change.connection)
        {
            Some(driver) => {
                let short = tl
                    .project(&item.change.project)
                    .map(|p| p.entry.name.clone())
                    .unwrap_or_default();
                let c = &item.change;
                if c.is_change() {
                    driver
                        .changed_files(&short, &c.branch, &c.patchset)
                        .unwrap_or_default()
                } else {
                    // A ref update touches what changed between its old and new commits; a
                    // created or deleted ref, or a timer item, runs every job.
                    match (c.oldrev.as_deref(), c.newrev.as_deref()) {
                        (Some(old), Some(new)) if old != NULL_SHA && new != NULL_SHA => driver
                            .changed_files_between(&short, old, new)
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    }
                }
            }
            None => Vec::new(),
        };
        let mut keep = Vec::with_capacity(frozen.len());
        for j in &frozen {
            match files_match(j, &changed_files) {
                Ok(k) => keep.push(k),
                Err(e) => return Ok(Prepared::Early("CONFIG_ERROR", e)),
            }
        }
        self.keep_updated_jobs(
            t,
            pipeline,
            item,
            bs,
            branch,
            &overrides,
            &frozen,
            &changed_files,
            &mut keep,
        )
        .await?;
        let frozen = select_by_files(frozen, keep);
        let mut builds = Vec::new();
        if noop {
            builds.push(NewBuild {
                uuid: uuid::Uuid::new_v4().simple().to_string(),
                buildset_uuid: bs.uuid.clone(),
                item_uuid: item.uuid.clone(),
                tenant: item.tenant.clone(),
                pipeline: pipeline.name.clone(),
                job_name: NOOP.into(),
                voting: true,
                attempt: 1,
                nodeset: String::new(),
                precedence: pipeline.precedence,
                request: serde_json::Value::Null,
                dependencies: vec![],
                ready: false,
            });
        }
        if frozen.is_empty() && builds.is_empty() {
            return Ok(Prepared::Early("NO_JOBS", String::new()));
        }
        let graph = match job_graph(&frozen) {
            Ok(graph) => graph,
            Err(e) => return Ok(Prepared::Early("CONFIG_ERROR", e)),
        };
        let frozen_names: Vec<String> = frozen.iter().map(|d| d.job.name.clone()).collect();
        let children = |name: &str| -> Vec<String> {
            frozen_names
                .iter()
                .zip(&graph)
                .filter(|(_, deps)| deps.iter().any(|d| d.name == name))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let child_jobs: Vec<Vec<String>> =
            frozen_names.iter().map(|n| children(n.as_str())).collect();
        for ((details, dependencies), child_jobs) in frozen.into_iter().zip(graph).zip(child_jobs) {
            let job = details.job.name.clone();
            let semaphores: Vec<String> =
                details.semaphores.iter().map(|s| s.name.clone()).collect();
            let uuid = uuid::Uuid::new_v4().simple().to_string();
            let voting = details.job.voting;
            let nodeset = details.job.nodeset.name.clone().unwrap_or_default();
            let playbook_semaphores = playbook_semaphores(&tl.layout, &details.job);
            let request = BuildRequest {
                uuid: uuid.clone(),
                buildset_uuid: bs.uuid.clone(),
                tenant: item.tenant.clone(),
                pipeline: pipeline.name.clone(),
                event_id: item.event_id.clone(),
                projects: build_projects(&specs, &details.job, &change_items),
                job: details.job,
                items: change_items.clone(),
                attempt: 1,
                parent_data: Default::default(),
                child_jobs,
                artifacts: vec![],
                post_review: pipeline.post_review,
                semaphores: semaphores.clone(),
                playbook_semaphores,
            };
            let request = serde_json::to_value(&request).map_err(|e| SchedulerError::Invalid {
                path: PathBuf::from(&job),
                message: format!("cannot serialize the build request: {e}"),
            })?;
            builds.push(NewBuild {
                uuid,
                buildset_uuid: bs.uuid.clone(),
                item_uuid: item.uuid.clone(),
                tenant: item.tenant.clone(),
                pipeline: pipeline.name.clone(),
                job_name: job,
                voting,
                attempt: 1,
                nodeset,
                precedence: pipeline.precedence,
                request,
                // Builds with dependencies or semaphores wait for the scheduler to release them.
                ready: dependencies.is_empty() && semaphores.is_empty(),
                dependencies,
            });
        }
        // Where preparing the buildset took its time (milliseconds since it began).
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            item = %item.uuid,
            merged = ms(merged),
            speculated = ms(speculated),
            requests = ms(started.elapsed()),
            "buildset prepared"
        );
        Ok(Prepared::Builds(builds))
    }

    async fn prepare_buildset(
        &self,
        t: usize,
        pipeline: &Pipeline,
        item: &ItemRow,
        bs: &BuildsetRow,
    ) -> Result<(), SchedulerError> {
        let prepared = self.prepare(t, pipeline, item, bs).await?;
        let mut started = false;
        // Zuul reports `start` once per item, when its jobs are first requested.
        let mut start_reports = Vec::new();
        // A disabled pipeline has no start reports (Zuul).
        let disabled = self
            .pipeline_states
            .disabled(&self.tenants[t], &pipeline.name);
        if matches!(prepared, Prepared::Builds(_))
            && !disabled
            && self.github_source(&item.change.connection).is_some()
        {
            let started = self
                .store
                .reports_of_item(&item.uuid)
                .await?
                .iter()
                .any(|r| r.action == "start");
            if !started {
                let text = pipeline
                    .github
                    .start_message
                    .replace("{pipeline.name}", &pipeline.name);
                start_reports = self.github_reports(pipeline, item, "start", &text);
            }
        }
        let mut tx = self.store.begin().await?;
        for r in &start_reports {
            tx.insert_report(r).await?;
        }
        match prepared {
            Prepared::Builds(builds) => {
                for b in &builds {
                    tx.insert_build(b).await?;
                    if b.job_name == NOOP && b.request.is_null() {
                        // Zuul's `noop` succeeds at once, without an executor.
                        let now = chrono::Utc::now().to_rfc3339();
                        let outcome = BuildOutcome {
                            start_time: Some(&now),
                            end_time: Some(&now),
                            ..BuildOutcome::without_run("SUCCESS", true, None)
                        };
                        tx.record_build_result(&b.uuid, &outcome).await?;
                    }
                }
                tx.set_buildset_state(&bs.uuid, "running").await?;
                if !disabled {
                    self.set_status(&mut tx, t, pipeline, item, "pending")
                        .await?;
                }
                tracing::info!(item = %item.uuid, change = %item.change.url, builds = builds.len(), "jobs requested");
                started = true;
            }
            Prepared::Early(result, message) => {
                tracing::info!(item = %item.uuid, change = %item.change.url, result, "no builds");
                tx.finish_buildset(&bs.uuid, result, &message).await?;
            }
        }
        tx.commit().await?;
        if let Some(text) = pipeline
            .start_message
            .as_deref()
            .filter(|_| started && !disabled)
        {
            self.report_note(item, &with_footer(pipeline, text));
        }
        Ok(())
    }

    /// Reports the item (merging it first where the pipeline says so) and dequeues it; false
    /// when a refused GitHub merge is to be tried again on a later pass (nothing reported).
    async fn report(
        &self,
        t: usize,
        pipeline: &Pipeline,
        item: &ItemRow,
        bs: &BuildsetRow,
        builds: &[BuildRow],
    ) -> Result<bool, SchedulerError> {
        let finals: Vec<&BuildRow> = builds.iter().filter(|b| b.final_).collect();
        let mut result = match bs.result.as_deref() {
            Some(r) if EARLY_RESULTS.contains(&r) => r.to_string(),
            _ if finals.iter().any(|b| build_failed(b)) => "FAILURE".into(),
            _ => "SUCCESS".into(),
        };
        let mut lines = vec![match result.as_str() {
            "SUCCESS" => pipeline.success_message.clone(),
            "MERGE_CONFLICT" => pipeline.merge_conflict_message.clone(),
            "NO_JOBS" => pipeline.no_jobs_message.clone(),
            "CONFIG_ERROR" => format!(
                "Zuul encountered a syntax error while parsing its configuration in the repo {} on branch {}.\n\n{}",
                item.change.project,
                item.change.branch,
                bs.message.clone().unwrap_or_default()
            ),
            _ => pipeline.failure_message.clone(),
        }];
        lines.push(String::new());
        for b in &finals {
            lines.push(format!(
                "- {} {} : {}{}{}",
                b.job_name,
                b.log_url.clone().unwrap_or_default(),
                b.result.clone().unwrap_or_default(),
                b.error_detail
                    .as_deref()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default(),
                if b.voting { "" } else { " (non-voting)" }
            ));
        }
        let mut merged = false;
        let github = self.github_source(&item.change.connection).is_some();
        let item_url = self.item_url(item, Some(&bs.uuid));
        let mut reports = Vec::new();
        let outcome = match result.as_str() {
            "SUCCESS" => ReportOutcome::Success,
            "FAILURE" => ReportOutcome::JobFailure,
            _ => ReportOutcome::Other,
        };
        // A disabled pipeline reports to its `disabled` reporters instead (not for NO_JOBS: the
        // project is not in the pipeline).
        let disabled = self
            .pipeline_states
            .record(&self.tenants[t], pipeline, outcome)
            && result != "NO_JOBS";
        let action = |normal: &'static str| if disabled { "disabled" } else { normal };
        let merges = if disabled {
            pipeline.merge_when_disabled
        } else {
            pipeline.merge_on_success
        };
        if result == "SUCCESS"
            && merges
            && pipeline.manager == Manager::Dependent
            && item.change.is_change()
        {
            let outcome = if github {
                // Phase 1 (statuses, comments) goes out before the merge.
                let text = report_text(&lines[0], item_url.as_deref(), &finals);
                let success = self.github_reports(pipeline, item, action("success"), &text);
                match self.github_merge(t, item, &success).await {
                    MergeOutcome::Merged => Ok(()),
                    MergeOutcome::Later => return Ok(false),
                    MergeOutcome::Failed(e) => Err(e),
                }
            } else {
                self.merge_change(t, item).await
            };
            match outcome {
                Ok(()) => merged = true,
                Err(e) => {
                    tracing::warn!(change = %item.change.url, error = %e, "merge failed");
                    result = "MERGE_FAILURE".into();
                    lines.push(format!("\nThe change could not be merged: {e}"));
                    if github {
                        let header = format!(
                            "{}\n\nThe change could not be merged: {e}",
                            pipeline.failure_message
                        );
                        let text = report_text(&header, item_url.as_deref(), &finals);
                        reports = self.github_reports(pipeline, item, action("failure"), &text);
                    }
                }
            }
        } else if github {
            let text = report_text(&lines[0], item_url.as_deref(), &finals);
            reports = self.github_reports(pipeline, item, action(action_of(&result)), &text);
        }
        let message = with_footer(pipeline, &lines.join("\n"));
        // The git driver reports with a note and a commit status.
        let git_reports = !disabled
            || pipeline
                .disabled_reporters
                .contains(&item.change.connection);
        if git_reports {
            self.report_note(item, &message);
        }
        // Read before the transaction: the store may have a single connection.
        let mut new_window = None;
        if pipeline.manager == Manager::Dependent && pipeline.window.size > 0 {
            let current = self
                .store
                .window(&item.tenant, &pipeline.name, &item.queue)
                .await?
                .unwrap_or(pipeline.window.size);
            let next = match result.as_str() {
                "SUCCESS" => pipeline.window.grow(current),
                // A merge failure of a successful item does not shrink the window.
                "MERGE_FAILURE" => current,
                _ => pipeline.window.shrink(current),
            };
            new_window = (next != current).then_some(next);
        }
        let mut tx = self.store.begin().await?;
        for r in &reports {
            tx.insert_report(r).await?;
        }
        if bs.state != "done" {
            tx.finish_buildset(&bs.uuid, &result, &message).await?;
        }
        tx.finish_item(&item.uuid, &result).await?;
        if let Some(next) = new_window {
            tx.set_window(&item.tenant, &pipeline.name, &item.queue, next)
                .await?;
        }
        let state = if result == "SUCCESS" {
            "success"
        } else {
            "failure"
        };
        if git_reports {
            self.set_status(&mut tx, t, pipeline, item, state).await?;
        }
        if merged {
            let short = self.tenants[t]
                .project(&item.change.project)
                .map(|p| p.entry.name.clone())
                .unwrap_or_default();
            tx.set_change_status(
                &item.change.connection,
                &short,
                item.change.number,
                "merged",
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(pipeline = %pipeline.name, change = %item.change.url, %result, "reported");
        Ok(true)
    }

    /// Merges the item's change into its target branch with the project's merge mode.
    async fn merge_change(&self, t: usize, item: &ItemRow) -> Result<(), String> {
        let tl = &self.tenants[t];
        let change = &item.change;
        let Some(project) = tl.project(&change.project) else {
            return Err(format!("project {} is not in the tenant", change.project));
        };
        let Some(driver) = self.drivers.iter().find(|d| d.name == change.connection) else {
            return Err(format!("no connection {}", change.connection));
        };
        let short = project.entry.name.clone();
        if driver.is_merged(&short, &change.branch, &change.patchset) {
            return Ok(());
        }
        let refs = driver.refs(&short).map_err(|e| e.to_string())?;
        let Some(old) = refs.get(&format!("refs/heads/{}", change.branch)).cloned() else {
            return Err(format!("branch {} does not exist", change.branch));
        };
        let dir = self
            .work_dir()
            .join("merge")
            .join(format!("{}-submit", item.uuid));
        let state = self
            .merge(t, std::slice::from_ref(change), &change.branch, dir.clone())
            .await
            .map_err(|e| e.to_string())??;
        let outcome = (|| {
            let repo = state
                .repo(&project.canonical)
                .ok_or_else(|| "the merger did not prepare the project".to_string())?;
            let new = repo
                .branches
                .get(&change.branch)
                .ok_or_else(|| "the merger did not produce the branch".to_string())?;
            driver
                .update_branch(&short, &change.branch, &repo.path, new, &old)
                .map_err(|e| e.to_string())
        })();
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }
}

/// The identity of the scheduler's merge commits.
fn merger_identity() -> MergeIdentity {
    MergeIdentity {
        name: "Sluice Merger".into(),
        email: "sluice-merger@localhost".into(),
    }
}

/// A report text with the pipeline's `footer-message`.
fn with_footer(pipeline: &Pipeline, text: &str) -> String {
    if pipeline.footer_message.is_empty() {
        text.to_string()
    } else {
        format!("{text}\n\n{}", pipeline.footer_message)
    }
}

/// The repositories one build may use, out of the tenant's: config-projects, the items'
/// projects, its required projects and the projects of its playbooks and roles (what the
/// executor looks up, by canonical or short name as it does). Not every project of the
/// tenant: with a thousand projects that made each build request some 150 KB, written,
/// read and parsed on the way to every claim.
fn build_projects(
    specs: &[ProjectSpec],
    job: &FrozenJob,
    items: &[ChangeItem],
) -> Vec<ProjectSpec> {
    let mut names: Vec<&str> = Vec::new();
    names.extend(items.iter().map(|i| i.project.as_str()));
    names.extend(job.required_projects.iter().map(|r| r.name.as_str()));
    for pb in job.pre_run.iter().chain(&job.run).chain(&job.post_run) {
        names.push(pb.project.as_str());
        names.extend(pb.roles.iter().map(|r| r.project.as_str()));
    }
    specs
        .iter()
        .filter(|s| {
            s.trusted || {
                let canonical = s.canonical_name();
                names.iter().any(|n| *n == canonical || *n == s.name)
            }
        })
        .cloned()
        .collect()
}

/// Whether a job's `files` / `irrelevant-files` let it run for a change touching `files`.
fn files_match(job: &FrozenJobDetails, files: &[String]) -> Result<bool, String> {
    let compile = |patterns: &[String]| -> Result<Vec<regex::Regex>, String> {
        patterns
            .iter()
            .map(|p| {
                regex::Regex::new(&format!("^(?:{p})"))
                    .map_err(|e| format!("job {}: bad file matcher {p:?}: {e}", job.job.name))
            })
            .collect()
    };
    let files: Vec<&String> = files.iter().filter(|f| *f != "/COMMIT_MSG").collect();
    let wanted = compile(&job.files)?;
    if !wanted.is_empty()
        && !files.is_empty()
        && !files.iter().any(|f| wanted.iter().any(|r| r.is_match(f)))
    {
        return Ok(false);
    }
    let irrelevant = compile(&job.irrelevant_files)?;
    if !irrelevant.is_empty()
        && !files.is_empty()
        && files
            .iter()
            .all(|f| irrelevant.iter().any(|r| r.is_match(f)))
    {
        return Ok(false);
    }
    Ok(true)
}

/// The jobs to `keep` (their file matchers match, or they are updated by the change), plus
/// every hard dependency of a job that runs.
fn select_by_files(jobs: Vec<FrozenJobDetails>, mut keep: Vec<bool>) -> Vec<FrozenJobDetails> {
    loop {
        let mut grew = false;
        for idx in 0..jobs.len() {
            if !keep[idx] {
                continue;
            }
            for d in jobs[idx].dependencies.iter().filter(|d| !d.soft) {
                if let Some(dep) = jobs.iter().position(|j| j.job.name == d.name) {
                    if !keep[dep] {
                        keep[dep] = true;
                        grew = true;
                    }
                }
            }
        }
        if !grew {
            break;
        }
    }
    jobs.into_iter()
        .zip(keep)
        .filter_map(|(j, k)| k.then_some(j))
        .collect()
}

/// Each job's dependencies within the buildset: soft ones on jobs that do not run are dropped,
/// hard ones on jobs that do not run and cycles are configuration errors.
fn job_graph(jobs: &[FrozenJobDetails]) -> Result<Vec<Vec<BuildDependency>>, String> {
    let names: Vec<&str> = jobs.iter().map(|j| j.job.name.as_str()).collect();
    let mut graph = Vec::new();
    for j in jobs {
        let mut deps = Vec::new();
        for d in &j.dependencies {
            if names.contains(&d.name.as_str()) {
                deps.push(BuildDependency {
                    name: d.name.clone(),
                    soft: d.soft,
                });
            } else if !d.soft {
                return Err(format!(
                    "Job {} depends on {} which was not run.",
                    j.job.name, d.name
                ));
            }
        }
        graph.push(deps);
    }
    // Cycle check: depth-first, with the path on a stack.
    fn visit(
        idx: usize,
        names: &[&str],
        graph: &[Vec<BuildDependency>],
        state: &mut [u8],
    ) -> Result<(), String> {
        match state[idx] {
            1 => return Err(format!("Dependency cycle detected in job {}", names[idx])),
            2 => return Ok(()),
            _ => {}
        }
        state[idx] = 1;
        for d in &graph[idx] {
            if let Some(next) = names.iter().position(|n| *n == d.name) {
                visit(next, names, graph, state)?;
            }
        }
        state[idx] = 2;
        Ok(())
    }
    let mut state = vec![0u8; jobs.len()];
    for idx in 0..jobs.len() {
        visit(idx, &names, &graph, &mut state)?;
    }
    Ok(graph)
}

impl Scheduler {
    /// Advances the buildset's job graph (`job_graph.rs`): skips waiting builds whose
    /// dependencies failed or were deselected by `zuul.child_jobs`, requests those whose
    /// dependencies all succeeded or paused (with their returned data as `parent_data`), and
    /// resumes paused builds whose dependents are all done. Says whether anything moved.
    async fn release_waiting(
        &self,
        pipeline: &Pipeline,
        builds: &[BuildRow],
    ) -> Result<bool, SchedulerError> {
        let decisions = JobGraph::new(builds).decide();
        if decisions == Default::default() {
            return Ok(false);
        }
        let mut tx = self.store.begin().await?;
        let mut released = 0;
        for (uuid, reason) in &decisions.skip {
            let outcome = BuildOutcome::without_run("SKIPPED", true, Some(reason));
            tx.record_build_result(uuid, &outcome).await?;
        }
        for (uuid, parent_data) in &decisions.release {
            let Some(b) = builds.iter().find(|b| &b.uuid == uuid) else {
                continue;
            };
            let Some(pending) = &b.pending_request else {
                continue;
            };
            let mut request: BuildRequest = match serde_json::from_value(pending.clone()) {
                Ok(r) => r,
                Err(e) => {
                    let detail = format!("unreadable build request: {e}");
                    let outcome = BuildOutcome::without_run("ERROR", true, Some(&detail));
                    tx.record_build_result(uuid, &outcome).await?;
                    continue;
                }
            };
            if !self
                .acquire_semaphores(&mut tx, b, &request.semaphores)
                .await?
            {
                // Another build holds one of them: wait for the next pass.
                continue;
            }
            request.parent_data = parent_data.clone();
            let doc = serde_json::to_value(&request).unwrap_or_else(|_| pending.clone());
            tx.release_build(b, pipeline.precedence, &doc).await?;
            released += 1;
        }
        for uuid in &decisions.resume {
            tx.resume_build(uuid).await?;
            tracing::info!(build = %uuid, "resuming paused build");
        }
        tx.commit().await?;
        // Builds only waiting for a semaphore change nothing.
        Ok(released > 0 || !decisions.skip.is_empty() || !decisions.resume.is_empty())
    }

    /// The builds a retry of `retried` resets (`JobGraph::started_dependents`), each with the
    /// request document it was started with (read before the caller's transaction).
    pub(crate) async fn dependents_to_reset(
        &self,
        retried: &BuildRow,
    ) -> Result<Vec<(BuildRow, serde_json::Value)>, SchedulerError> {
        let builds = self
            .store
            .builds_of_buildset(&retried.buildset_uuid)
            .await?;
        let mut out = Vec::new();
        for b in JobGraph::new(&builds).started_dependents(&retried.job_name) {
            let doc = match &b.pending_request {
                Some(doc) => Some(doc.clone()),
                None => self.store.request(&b.uuid).await?.map(|r| r.request),
            };
            match doc {
                Some(doc) => out.push((b.clone(), doc)),
                None => {
                    tracing::warn!(build = %b.uuid, job = %b.job_name, "cannot reset a build without its request document")
                }
            }
        }
        Ok(out)
    }

    /// Resets builds (`dependents_to_reset`) because `retried` is retried, Zuul's way: a
    /// running one is canceled, each try stops being final and a new try of the job waits for
    /// its dependencies again (same attempt number: a reset is not a retry of that job).
    pub(crate) async fn reset_dependents(
        &self,
        tx: &mut sluice_store::Tx,
        retried: &BuildRow,
        resets: &[(BuildRow, serde_json::Value)],
        precedence: i64,
    ) -> Result<(), SchedulerError> {
        let detail = format!("reset: job {} is retried", retried.job_name);
        for (b, doc) in resets {
            let mut request: BuildRequest = match serde_json::from_value(doc.clone()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(build = %b.uuid, error = %e, "cannot reset a build with an unreadable request");
                    continue;
                }
            };
            if b.result.is_none() {
                tx.cancel_request(&b.uuid).await?;
                tx.release_semaphores(&b.uuid).await?;
                let outcome = BuildOutcome::without_run("CANCELED", false, Some(&detail));
                tx.record_build_result(&b.uuid, &outcome).await?;
            } else {
                let outcome = BuildOutcome {
                    result: b.result.as_deref().unwrap_or("CANCELED"),
                    final_: false,
                    error_detail: Some(&detail),
                    log_url: b.log_url.as_deref(),
                    start_time: b.start_time.as_deref(),
                    end_time: b.end_time.as_deref(),
                    data: b.data.as_ref(),
                };
                tx.record_build_result(&b.uuid, &outcome).await?;
            }
            request.uuid = uuid::Uuid::new_v4().simple().to_string();
            request.parent_data = Default::default();
            tx.insert_build(&NewBuild {
                uuid: request.uuid.clone(),
                buildset_uuid: b.buildset_uuid.clone(),
                item_uuid: b.item_uuid.clone(),
                tenant: b.tenant.clone(),
                pipeline: b.pipeline.clone(),
                job_name: b.job_name.clone(),
                voting: b.voting,
                attempt: b.attempt,
                nodeset: b.nodeset.clone(),
                precedence,
                request: serde_json::to_value(&request).unwrap_or(serde_json::Value::Null),
                dependencies: b.dependencies.clone(),
                ready: false,
            })
            .await?;
            tracing::info!(build = %b.uuid, job = %b.job_name, retried = %retried.job_name, "dependent build reset");
        }
        Ok(())
    }

    /// Takes every one of `names` for build `b` if each has room (all or nothing), inside
    /// `tx`. A semaphore's `max` comes from the tenant's layout of the branch tips (semaphores
    /// are not changed speculatively); an undefined one allows one holder.
    async fn acquire_semaphores(
        &self,
        tx: &mut sluice_store::Tx,
        b: &BuildRow,
        names: &[String],
    ) -> Result<bool, SchedulerError> {
        let layout = self.tenants.iter().find(|t| t.tenant.name == b.tenant);
        let wanted: Vec<(String, u64)> = names
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    semaphore_max(layout.map(|t| &*t.layout), name),
                )
            })
            .collect();
        Ok(tx.take_semaphores(&b.tenant, &b.uuid, &wanted).await?)
    }
}

/// A semaphore's `max` in `layout` (the branch tips': semaphores are not changed
/// speculatively); an undefined one allows one holder.
fn semaphore_max(layout: Option<&sluice_config::Layout>, name: &str) -> u64 {
    layout.and_then(|l| l.semaphore(name)).map_or(1, |s| s.max)
}

/// The `max` of every semaphore `job`'s playbooks name, for the executor that takes them.
fn playbook_semaphores(
    layout: &sluice_config::Layout,
    job: &sluice_config::FrozenJob,
) -> std::collections::BTreeMap<String, u64> {
    job.pre_run
        .iter()
        .chain(&job.run)
        .chain(&job.post_run)
        .flat_map(|pb| &pb.semaphores)
        .map(|name| (name.clone(), semaphore_max(Some(layout), name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::{parse_project_files, Layout, ProjectSource};

    fn source(name: &str, trusted: bool) -> ProjectSource {
        ProjectSource {
            canonical_hostname: "localhost".into(),
            name: name.into(),
            root: PathBuf::from("/nonexistent"),
            trusted,
            branch: "main".into(),
        }
    }

    fn spec(name: &str, trusted: bool) -> ProjectSpec {
        ProjectSpec {
            canonical_hostname: "localhost".into(),
            name: name.into(),
            source: PathBuf::from(format!("/repos/{name}")),
            default_branch: "main".into(),
            trusted,
            exclude_branches: Vec::new(),
        }
    }

    #[test]
    fn a_build_request_names_the_projects_the_build_uses_only() {
        let mut layout = Layout::new(Some("base".into()));
        let base = "- job:\n    name: base\n    parent: null\n    pre-run: playbooks/pre.yaml\n";
        layout.add(parse_project_files(
            &source("org/config", true),
            &[("zuul.yaml".into(), base.into())],
        ));
        let app = "- job:\n    name: unit\n    run: playbooks/unit.yaml\n    required-projects:\n      - org/lib\n    roles:\n      - zuul: localhost/org/roles\n";
        layout.add(parse_project_files(
            &source("org/app", false),
            &[(".zuul.yaml".into(), app.into())],
        ));
        for p in ["org/lib", "org/roles", "org/other"] {
            layout.add(parse_project_files(&source(p, false), &[]));
        }
        let job = layout
            .freeze("unit", "localhost/org/app", "main")
            .expect("job freezes");
        let specs: Vec<ProjectSpec> =
            ["org/config", "org/app", "org/lib", "org/roles", "org/other"]
                .iter()
                .map(|p| spec(p, *p == "org/config"))
                .collect();
        let items = [ChangeItem {
            project: "localhost/org/app".into(),
            ..Default::default()
        }];
        let names: Vec<String> = build_projects(&specs, &job, &items)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["org/config", "org/app", "org/lib", "org/roles"]);
    }
}
