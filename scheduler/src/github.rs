//! The scheduler's side of GitHub connections (`docs/github.md`): the repositories are local
//! mirrors (so layouts, the merger and executors use them like any git repository), pull
//! requests are refreshed from the API when an event names them and recorded as changes,
//! events are matched against the pipelines' GitHub trigger filters, `require`/`reject` and,
//! for dependent pipelines, `canMerge`; reports are queued in the store and sent from there,
//! and gate merges go through the API with the project's merge method.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_github::reports::{ops_for, MergeRequest, ReportContext, ReportOp};
use sluice_github::rules::permission_at_least;
use sluice_github::{pull, Client, GithubConfig, Mirrors, PullRequest};
use sluice_store::{now_ms, BuildRow, ChangeRef, ChangeRow, EventRow, ItemRow, NewReport};

use crate::errors::SchedulerError;
use crate::pipeline::{Manager, Pipeline};
use crate::scheduler::Scheduler;

/// First pause before a failed mirror fetch is tried again; it doubles with each failure.
const MIRROR_RETRY: Duration = Duration::from_secs(1);
/// Longest pause between tries of a mirror fetch.
const MIRROR_RETRY_MAX: Duration = Duration::from_secs(60);
/// Tries of a gate item's merge before it is a `MERGE_FAILURE`.
const MERGE_ATTEMPTS: u32 = 5;
/// Pause between tries of a merge (other items and pipelines go on meanwhile).
const MERGE_PAUSE: Duration = Duration::from_secs(5);

/// What became of a try to merge a gate item's pull request.
pub(crate) enum MergeOutcome {
    /// Merged (or found merged).
    Merged,
    /// Refused; tried again on a later pass once the pause is over.
    Later,
    /// Refused on the last try (or cannot be tried): GitHub's message.
    Failed(String),
}

/// One GitHub connection as the scheduler uses it.
pub struct GithubSource {
    /// Settings.
    pub cfg: GithubConfig,
    /// API client.
    pub client: Client,
    /// Local mirrors.
    pub mirrors: Mirrors,
    pulls: Mutex<HashMap<(String, i64), PullRequest>>,
    /// When a failed mirror is tried next, and how many times it failed.
    mirror_retry: Mutex<HashMap<String, (Instant, u32)>>,
    /// Gate items whose merge was refused: tries so far and when the next one is due.
    merge_retry: Mutex<HashMap<String, (u32, Instant)>>,
}

impl GithubSource {
    /// The connection with its mirrors under `root`.
    pub fn new(cfg: GithubConfig, root: PathBuf) -> Result<GithubSource, SchedulerError> {
        Ok(GithubSource {
            client: Client::new(&cfg)?,
            cfg,
            mirrors: Mirrors::new(root),
            pulls: Mutex::new(HashMap::new()),
            mirror_retry: Mutex::new(HashMap::new()),
            merge_retry: Mutex::new(HashMap::new()),
        })
    }

    /// The pull request as last read from the API.
    pub fn pull(&self, project: &str, number: i64) -> Option<PullRequest> {
        self.pulls
            .lock()
            .ok()
            .and_then(|m| m.get(&(project.to_string(), number)).cloned())
    }

    /// `org/repo` of a canonical project name.
    pub fn short<'a>(&self, canonical: &'a str) -> &'a str {
        canonical
            .strip_prefix(&format!("{}/", self.cfg.canonical_hostname))
            .unwrap_or(canonical)
    }
}

/// Whether an event brings a new patchset (older ones leave the pipelines).
pub(crate) fn new_patchset(kind: &str, payload: &Value) -> bool {
    kind == "patchset-created"
        || (kind == "pull_request"
            && matches!(
                payload.get("action").and_then(Value::as_str),
                Some("opened" | "changed" | "reopened")
            ))
}

/// Whether an event ends the change (it leaves every pipeline).
pub(crate) fn change_gone(kind: &str, payload: &Value) -> bool {
    kind == "change-abandoned"
        || (kind == "pull_request"
            && payload.get("action").and_then(Value::as_str) == Some("closed"))
}

/// Whether an event is the Abort button of a check run: the item it names leaves its
/// pipeline, like the web's `dequeue`.
pub(crate) fn check_run_abort(kind: &str, payload: &Value) -> bool {
    kind == "check_run" && payload.get("action").and_then(Value::as_str) == Some("abort")
}

fn duration_text(b: &BuildRow) -> String {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let (Some(start), Some(end)) = (parse(&b.start_time), parse(&b.end_time)) else {
        return String::new();
    };
    let secs = (end - start).num_seconds().max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!(" in {h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!(" in {m}m {s:02}s")
    } else {
        format!(" in {s}s")
    }
}

/// Zuul's report text, GitHub flavour: the pipeline's message, the item's page, one line per
/// job with an emoji, a link to its logs and the result (bold when not a success).
pub(crate) fn report_text(header: &str, item_url: Option<&str>, builds: &[&BuildRow]) -> String {
    let mut out = header.trim_end().to_string();
    if let Some(url) = item_url {
        out.push_str(&format!("\n\n{url}"));
    }
    if !builds.is_empty() {
        out.push('\n');
    }
    for b in builds {
        let result = b.result.clone().unwrap_or_default();
        let ok = matches!(result.as_str(), "SUCCESS" | "SKIPPED");
        let emoji = if ok {
            ":heavy_check_mark:"
        } else if !b.voting {
            ":warning:"
        } else {
            ":x:"
        };
        let job = match &b.log_url {
            Some(url) if !url.is_empty() => format!("[{}]({url})", b.job_name),
            _ => b.job_name.clone(),
        };
        let result = if ok { result } else { format!("**{result}**") };
        let detail = b
            .error_detail
            .as_deref()
            .map(|d| format!(" {d}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n- {emoji} {job} : {result}{detail}{}{}",
            duration_text(b),
            if b.voting { "" } else { " (non-voting)" }
        ));
    }
    out
}

/// The reporter action for an item result.
pub(crate) fn action_of(result: &str) -> &'static str {
    match result {
        "SUCCESS" => "success",
        "MERGE_CONFLICT" => "merge-conflict",
        "CONFIG_ERROR" => "config-error",
        "NO_JOBS" => "no-jobs",
        "DEQUEUED" => "dequeue",
        _ => "failure",
    }
}

impl Scheduler {
    /// The GitHub connection named `connection`, if it is one.
    pub(crate) fn github_source(&self, connection: &str) -> Option<Arc<GithubSource>> {
        self.github
            .iter()
            .find(|g| g.cfg.name == connection)
            .cloned()
    }

    fn github_projects(&self, connection: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.tenant_configs {
            for p in t.projects.iter().filter(|p| p.connection == connection) {
                if !out.contains(&p.name) {
                    out.push(p.name.clone());
                }
            }
        }
        out
    }

    /// Creates the mirrors of tenant projects that have none yet (a failed fetch is tried
    /// again after a pause); returns how many were made.
    pub(crate) async fn sync_github_mirrors(&self) -> usize {
        let mut made = 0;
        for gh in &self.github {
            for project in self.github_projects(&gh.cfg.name) {
                if gh.mirrors.path(&project).join("HEAD").is_file()
                    && gh
                        .mirrors
                        .path(&project)
                        .join("refs/heads")
                        .read_dir()
                        .is_ok_and(|mut d| d.next().is_some())
                {
                    continue;
                }
                let due = gh
                    .mirror_retry
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&project).copied())
                    .is_none_or(|(at, _)| at <= Instant::now());
                if !due {
                    continue;
                }
                match gh.mirrors.fetch(&gh.client, &project, &[]).await {
                    Ok(()) => {
                        if let Ok(mut m) = gh.mirror_retry.lock() {
                            m.remove(&project);
                        }
                        tracing::info!(connection = %gh.cfg.name, %project, "mirror created");
                        made += 1;
                    }
                    Err(e) => {
                        tracing::warn!(connection = %gh.cfg.name, %project, error = %e, "cannot mirror the repository; will retry");
                        if let Ok(mut m) = gh.mirror_retry.lock() {
                            let failures = m.get(&project).map_or(0, |(_, f)| *f);
                            let pause = MIRROR_RETRY
                                .saturating_mul(1 << failures.min(16))
                                .min(MIRROR_RETRY_MAX);
                            m.insert(project.clone(), (Instant::now() + pause, failures + 1));
                        }
                    }
                }
            }
        }
        made
    }

    /// Reads pull request `number` of `project` from the API, fetches its head into the
    /// mirror and records it as a change (status `open`, `merged` or `closed`).
    pub(crate) async fn github_change(
        &self,
        gh: &GithubSource,
        project: &str,
        number: i64,
    ) -> Result<(ChangeRow, PullRequest), SchedulerError> {
        let pr = pull::fetch_pull(&gh.client, project, number).await?;
        let refname = format!("refs/pull/{number}/head");
        gh.mirrors
            .fetch(&gh.client, project, &[format!("+{refname}:{refname}")])
            .await?;
        let row = ChangeRow {
            connection: gh.cfg.name.clone(),
            project: project.to_string(),
            number,
            refname,
            branch: pr.base_branch.clone(),
            topic: String::new(),
            patchset: pr.head_sha.clone(),
            message: pr.message(),
            status: if pr.merged {
                "merged".into()
            } else if pr.is_open() {
                "open".into()
            } else {
                "closed".into()
            },
        };
        let mut tx = self.store.begin().await?;
        tx.put_change(&row).await?;
        tx.commit().await?;
        if let Ok(mut m) = gh.pulls.lock() {
            m.insert((project.to_string(), number), pr.clone());
        }
        Ok((row, pr))
    }

    /// The payloads to process for a GitHub event, one per pull request it concerns (each
    /// refreshed and recorded); a push refreshes the mirror and concerns none.
    pub(crate) async fn github_event_views(
        &self,
        gh: &GithubSource,
        ev: &EventRow,
    ) -> Result<Vec<Value>, SchedulerError> {
        let payload = &ev.payload;
        let project = payload
            .get("project")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !self.github_projects(&gh.cfg.name).contains(&project) {
            tracing::debug!(connection = %gh.cfg.name, %project, "event for a project no tenant has");
            return Ok(Vec::new());
        }
        if let Some(id) = payload.get("installation").and_then(Value::as_u64) {
            gh.client.note_installation(&project, id);
        }
        if ev.kind == "push" {
            gh.mirrors.fetch(&gh.client, &project, &[]).await?;
            return Ok(Vec::new());
        }
        let mut numbers: Vec<i64> = Vec::new();
        if let Some(n) = payload.get("number").and_then(Value::as_i64) {
            numbers.push(n);
        } else {
            numbers.extend(
                payload
                    .get("numbers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_i64),
            );
            if numbers.is_empty() {
                if let Some(sha) = payload.get("sha").and_then(Value::as_str) {
                    numbers = pull::pulls_of_commit(&gh.client, &project, sha).await?;
                }
            }
        }
        let mut views = Vec::new();
        for n in numbers {
            let (row, _) = self.github_change(gh, &project, n).await?;
            let mut view = payload.clone();
            view["number"] = json!(n);
            view["ref"] = json!(row.refname);
            view["branch"] = json!(row.branch);
            views.push(view);
        }
        Ok(views)
    }

    /// Whether a GitHub event enqueues `cref` into pipeline `p` of tenant `t`: a trigger
    /// filter matches (with its permission, `require` and `reject`), the pipeline's `require`
    /// and `reject` hold, and a dependent pipeline can merge the change and its needed ones.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn github_admits(
        &self,
        gh: &GithubSource,
        tenant: &str,
        p: &Pipeline,
        kind: &str,
        payload: &Value,
        cref: &ChangeRef,
        needed: &[ChangeRef],
    ) -> Result<bool, SchedulerError> {
        let conn = &gh.cfg.name;
        let project = gh.short(&cref.project).to_string();
        let Some(pr) = gh.pull(&project, cref.number) else {
            return Ok(false);
        };
        let now = now_ms();
        let patchset = payload.get("patchset").and_then(Value::as_str);
        let mut matched = false;
        for (c, f) in &p.github.triggers {
            if c != conn || !f.matches_event(kind, payload, &cref.branch) {
                continue;
            }
            if let Some(need) = &f.permission {
                let account = payload.get("account").and_then(Value::as_str).unwrap_or("");
                let have = pull::permission(&gh.client, &project, account).await?;
                if !permission_at_least(&have, need) {
                    continue;
                }
            }
            if f.require
                .as_ref()
                .and_then(|r| r.unmet(&pr, patchset, now))
                .is_some()
                || f.reject
                    .as_ref()
                    .and_then(|r| r.rejects(&pr, now))
                    .is_some()
            {
                continue;
            }
            matched = true;
            break;
        }
        if !matched {
            return Ok(false);
        }
        for (c, r) in &p.github.require {
            if let Some(why) = (c == conn).then(|| r.unmet(&pr, patchset, now)).flatten() {
                tracing::info!(change = %cref.url, pipeline = %p.name, %why, "not enqueued: pipeline requirement");
                return Ok(false);
            }
        }
        for (c, r) in &p.github.reject {
            if let Some(why) = (c == conn).then(|| r.rejects(&pr, now)).flatten() {
                tracing::info!(change = %cref.url, pipeline = %p.name, %why, "not enqueued: pipeline reject");
                return Ok(false);
            }
        }
        if p.manager == Manager::Dependent {
            let own = if p.github.sets_status(conn) {
                vec![format!("{tenant}/{}", p.name)]
            } else {
                Vec::new()
            };
            let mut all = vec![(cref.url.clone(), pr)];
            for n in needed {
                if let Some(other) = self.github_source(&n.connection) {
                    if let Some(npr) = other.pull(other.short(&n.project), n.number) {
                        all.push((n.url.clone(), npr));
                    }
                }
            }
            for (url, pr) in all {
                if let Err(why) = pr.can_merge(&own) {
                    tracing::warn!(change = %cref.url, blocking = %url, pipeline = %p.name, %why, "not enqueued: can not be merged");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Whether pull request `cref` meets pipeline `p`'s GitHub `require` and escapes its
    /// `reject` now, and in a dependent pipeline can still be merged (`canMerge`: not a
    /// draft, no conflict, required checks, approvals). Checked again on every pass while it
    /// is queued: a label removed, an approval dismissed, a conversion to draft or a new head
    /// dequeue it. The pull request is the one last read from the API (every webhook about
    /// it refreshes it); if it cannot be read, it holds.
    pub(crate) async fn github_requirements_hold(
        &self,
        gh: &GithubSource,
        tenant: &str,
        p: &Pipeline,
        cref: &ChangeRef,
    ) -> Result<bool, SchedulerError> {
        let conn = &gh.cfg.name;
        let applies = |list: &[(String, sluice_github::rules::Requirement)]| {
            list.iter().any(|(c, _)| c == conn)
        };
        let dependent = p.manager == Manager::Dependent;
        if !cref.is_change()
            || !(dependent || applies(&p.github.require) || applies(&p.github.reject))
        {
            return Ok(true);
        }
        let project = gh.short(&cref.project).to_string();
        let pr = match gh.pull(&project, cref.number) {
            Some(pr) => pr,
            None => match pull::fetch_pull(&gh.client, &project, cref.number).await {
                Ok(pr) => {
                    if let Ok(mut m) = gh.pulls.lock() {
                        m.insert((project.clone(), cref.number), pr.clone());
                    }
                    pr
                }
                Err(e) => {
                    tracing::warn!(change = %cref.url, error = %e, "cannot read the pull request to check the requirements again");
                    return Ok(true);
                }
            },
        };
        let now = now_ms();
        for (c, r) in p.github.require.iter().filter(|(c, _)| c == conn) {
            if let Some(why) = r.unmet(&pr, Some(&cref.patchset), now) {
                tracing::info!(change = %cref.url, pipeline = %p.name, connection = %c, %why, "pipeline requirement not met");
                return Ok(false);
            }
        }
        for (c, r) in p.github.reject.iter().filter(|(c, _)| c == conn) {
            if let Some(why) = r.rejects(&pr, now) {
                tracing::info!(change = %cref.url, pipeline = %p.name, connection = %c, %why, "pipeline reject matches");
                return Ok(false);
            }
        }
        // A closed pull request leaves through its `closed` event (DEQUEUED), not here.
        if dependent && pr.is_open() {
            let own = if p.github.sets_status(conn) {
                vec![format!("{tenant}/{}", p.name)]
            } else {
                Vec::new()
            };
            if let Err(why) = pr.can_merge(&own) {
                tracing::info!(change = %cref.url, pipeline = %p.name, %why, "can no longer be merged");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `<web-root>/t/<tenant>/buildset/<uuid>` (or the change's status page before a result).
    pub(crate) fn item_url(&self, item: &ItemRow, buildset: Option<&str>) -> Option<String> {
        let root = self.cfg.web.root.as_deref()?.trim_end_matches('/');
        Some(match buildset {
            Some(bs) => format!("{root}/t/{}/buildset/{bs}", item.tenant),
            None => format!(
                "{root}/t/{}/status/change/{},{}",
                item.tenant, item.change.number, item.change.patchset
            ),
        })
    }

    /// The reports `pipeline`'s `action` reporters make for `item` on its GitHub connection
    /// (none for other connections).
    pub(crate) fn github_reports(
        &self,
        pipeline: &Pipeline,
        item: &ItemRow,
        action: &str,
        message: &str,
    ) -> Vec<NewReport> {
        let Some(gh) = self.github_source(&item.change.connection) else {
            return Vec::new();
        };
        let ctx = ReportContext {
            tenant: item.tenant.clone(),
            pipeline: pipeline.name.clone(),
            project: gh.short(&item.change.project).to_string(),
            number: item.change.number,
            sha: item.change.patchset.clone(),
            message: message.to_string(),
            item_url: self.item_url(
                item,
                item.buildset_uuid.as_deref().filter(|_| action != "start"),
            ),
            can_check: gh.client.can_check(),
        };
        pipeline
            .github
            .reporters_for(action, &gh.cfg.name)
            .into_iter()
            .flat_map(|r| ops_for(r, &ctx))
            // A ref item (a push) has no pull request to comment on, label or review.
            .filter(|op| {
                item.change.is_change()
                    || matches!(op, ReportOp::Status { .. } | ReportOp::Check { .. })
            })
            .filter_map(|op| serde_json::to_value(op).ok())
            .map(|op| NewReport {
                connection: gh.cfg.name.clone(),
                item_uuid: item.uuid.clone(),
                action: action.to_string(),
                op,
            })
            .collect()
    }

    /// Sends the success reports (statuses first, as branch protection may require them),
    /// then merges the pull request through the API with the project's merge method.
    pub(crate) async fn github_merge(
        &self,
        t: usize,
        item: &ItemRow,
        success_reports: &[NewReport],
    ) -> MergeOutcome {
        let Some(gh) = self.github_source(&item.change.connection) else {
            return MergeOutcome::Failed(format!(
                "no GitHub connection {}",
                item.change.connection
            ));
        };
        let tried = gh
            .merge_retry
            .lock()
            .ok()
            .and_then(|m| m.get(&item.uuid).copied());
        if tried.is_some_and(|(_, next)| Instant::now() < next) {
            return MergeOutcome::Later;
        }
        let tries = tried.map_or(0, |(n, _)| n);
        let outcome = self
            .github_merge_once(&gh, t, item, success_reports, tries)
            .await;
        let Ok(mut retry) = gh.merge_retry.lock() else {
            return MergeOutcome::Failed("internal: merge state lock poisoned".into());
        };
        match outcome {
            Ok(()) => {
                retry.remove(&item.uuid);
                MergeOutcome::Merged
            }
            Err(e) if tries + 1 < MERGE_ATTEMPTS => {
                tracing::warn!(change = %item.change.url, attempt = tries + 1, error = %e, "merge refused; tried again in a later pass");
                retry.insert(item.uuid.clone(), (tries + 1, Instant::now() + MERGE_PAUSE));
                MergeOutcome::Later
            }
            Err(e) => {
                retry.remove(&item.uuid);
                MergeOutcome::Failed(e)
            }
        }
    }

    /// One try of a merge (`tries` made before it); the first sends the success reports
    /// (statuses, comments) before merging.
    async fn github_merge_once(
        &self,
        gh: &GithubSource,
        t: usize,
        item: &ItemRow,
        success_reports: &[NewReport],
        tries: u32,
    ) -> Result<(), String> {
        let project = gh.short(&item.change.project).to_string();
        // The success reports are queued once: a scheduler restarted between two tries
        // (the tries are counted in memory) finds them in the store and does not send them
        // again; it checks whether the pull request merged meanwhile before trying.
        let queued_before = match self.store.reports_of_item(&item.uuid).await {
            Ok(rows) => rows.iter().any(|r| r.action == "success"),
            Err(e) => return Err(format!("cannot read the item's reports: {e}")),
        };
        if tries > 0 || queued_before {
            return self.github_merge_put(gh, t, item, &project, true).await;
        }
        let queued = async {
            let mut tx = self.store.begin().await?;
            for r in success_reports {
                tx.insert_report(r).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = queued {
            return Err(format!("cannot queue the reports: {e}"));
        }
        if let Err(e) = sluice_github::reports::flush(&gh.client, &self.store).await {
            tracing::warn!(change = %item.change.url, error = %e, "reports before the merge not sent");
        }
        self.github_merge_put(gh, t, item, &project, false).await
    }

    /// `PUT .../merge` for the item, with the pull request's title, body and reviewers.
    async fn github_merge_put(
        &self,
        gh: &GithubSource,
        t: usize,
        item: &ItemRow,
        project: &str,
        retry: bool,
    ) -> Result<(), String> {
        let project = project.to_string();
        let pr = match gh.pull(&project, item.change.number) {
            Some(pr) => pr,
            None => pull::fetch_pull(&gh.client, &project, item.change.number)
                .await
                .map_err(|e| e.to_string())?,
        };
        let mode = self.tenants[t]
            .layout
            .project_merge_mode(&item.change.project)
            .to_string();
        let request = MergeRequest {
            project: project.clone(),
            number: item.change.number,
            sha: item.change.patchset.clone(),
            mode,
            title: pr.title.clone(),
            body: pr.body.clone(),
            reviewers: pr
                .reviews
                .iter()
                .filter(|r| r.state == "approved")
                .map(|r| match &r.email {
                    Some(e) => format!("{} <{e}>", r.username),
                    None => r.username.clone(),
                })
                .collect(),
            retry,
        };
        sluice_github::reports::merge(&gh.client, &request).await?;
        // The branch moved: the layouts and later merges read the mirror.
        if let Err(e) = gh.mirrors.fetch(&gh.client, &project, &[]).await {
            tracing::warn!(%project, error = %e, "cannot refresh the mirror after the merge");
        }
        Ok(())
    }

    /// Sends every GitHub connection's due reports; returns how many went out.
    pub(crate) async fn flush_github_reports(&self) -> usize {
        let mut sent = 0;
        for gh in &self.github {
            match sluice_github::reports::flush(&gh.client, &self.store).await {
                Ok(n) => sent += n,
                Err(e) => tracing::warn!(connection = %gh.cfg.name, error = %e, "report queue"),
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines() {
        let b = BuildRow {
            uuid: "u".into(),
            id: 1,
            buildset_uuid: "b".into(),
            item_uuid: "i".into(),
            tenant: "t".into(),
            pipeline: "check".into(),
            job_name: "lint".into(),
            voting: true,
            attempt: 1,
            nodeset: String::new(),
            result: Some("FAILURE".into()),
            final_: true,
            error_detail: None,
            log_url: Some("https://logs/1/".into()),
            start_time: Some("2024-01-01T00:00:00Z".into()),
            end_time: Some("2024-01-01T00:01:02Z".into()),
            data: None,
            dependencies: vec![],
            pending_request: None,
            paused: false,
            held: false,
        };
        let text = report_text("Build failed.", Some("https://ci/t/t/buildset/b"), &[&b]);
        assert_eq!(
            text,
            "Build failed.\n\nhttps://ci/t/t/buildset/b\n\n- :x: [lint](https://logs/1/) : **FAILURE** in 1m 02s"
        );
        assert!(new_patchset("pull_request", &json!({"action": "changed"})));
        assert!(!new_patchset("pull_request", &json!({"action": "labeled"})));
        assert!(change_gone("pull_request", &json!({"action": "closed"})));
    }
}
