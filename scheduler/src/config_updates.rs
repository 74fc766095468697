//! `match-on-config-updates` (Zuul's job attribute, default true): a job whose `files` /
//! `irrelevant-files` do not match a change still runs when the change updates the job
//! itself, so that a change to a job with file matchers tests itself. A change updates a job
//! when it edits one of the job's playbooks in the change's own project, or when the job
//! frozen in the change's speculative layout differs from the job frozen in the layout
//! without the change (the layout of the items ahead), or does not exist there. Where a
//! definition is written (its line) is not part of it: moving a job within a file does not
//! update it.

use std::sync::Arc;

use sluice_config::{FrozenJobDetails, Layout, CONFIG_ROOTS};
use sluice_store::{BuildsetRow, ItemRow};

use crate::errors::SchedulerError;
use crate::layout::Override;
use crate::pipeline::Pipeline;
use crate::scheduler::Scheduler;

impl Scheduler {
    /// Sets `keep` for the jobs whose file matchers did not match but that the item's change
    /// updates (and that keep `match-on-config-updates`). `overrides` are the project
    /// configurations the item's speculative layout was loaded with.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn keep_updated_jobs(
        &self,
        t: usize,
        pipeline: &Pipeline,
        item: &ItemRow,
        bs: &BuildsetRow,
        branch: &str,
        overrides: &[Override],
        jobs: &[FrozenJobDetails],
        files: &[String],
        keep: &mut [bool],
    ) -> Result<(), SchedulerError> {
        if !item.change.is_change() {
            return Ok(());
        }
        let Some(project) = self.tenants[t].project(&item.change.project) else {
            return Ok(());
        };
        let project = project.canonical.clone();
        let config = touches_config(files);
        // Loaded at most once, when a job needs it.
        let mut ahead: Option<Option<Arc<Layout>>> = None;
        for (j, keep) in jobs.iter().zip(keep.iter_mut()) {
            if *keep || !j.match_on_config_updates {
                continue;
            }
            if touches_playbooks(j, &project, files) {
                tracing::debug!(job = %j.job.name, change = %item.change.url, "the change edits the job's playbooks: file matchers ignored");
                *keep = true;
                continue;
            }
            if !config {
                continue;
            }
            if ahead.is_none() {
                ahead = Some(self.layout_ahead(t, item, bs, overrides).await?);
            }
            let Some(Some(layout)) = &ahead else {
                continue;
            };
            if definition_changed(j, layout, &item.change.project, branch, &pipeline.name) {
                tracing::debug!(job = %j.job.name, change = %item.change.url, "the change updates the job's configuration: file matchers ignored");
                *keep = true;
            }
        }
        Ok(())
    }

    /// The item's layout without its own change: the configuration of the items ahead (and
    /// `Depends-On` changes) over the branch tips. `None` when it cannot be had (the changes
    /// ahead no longer merge alone).
    async fn layout_ahead(
        &self,
        t: usize,
        item: &ItemRow,
        bs: &BuildsetRow,
        overrides: &[Override],
    ) -> Result<Option<Arc<Layout>>, SchedulerError> {
        let tl = &self.tenants[t];
        let ahead = &bs.refs[..bs.refs.len().saturating_sub(1)];
        let shares_project = ahead
            .iter()
            .any(|c| c.is_change() && c.project == item.change.project);
        if !shares_project {
            // The other projects' speculative configurations hold exactly the changes ahead.
            let kept: Vec<Override> = overrides
                .iter()
                .filter(|o| o.project != item.change.project)
                .cloned()
                .collect();
            if kept.is_empty() {
                // Nothing ahead brings configuration: the branch tips' layout.
                return Ok(Some(tl.layout.clone()));
            }
            return Ok(Some(tl.speculative(&kept).0));
        }
        match self.speculate(t, ahead, &item.change.branch).await? {
            Ok(kept) => Ok(Some(tl.speculative(&kept).0)),
            Err(e) => {
                tracing::warn!(change = %item.change.url, error = %e, "cannot merge the changes ahead alone: match-on-config-updates sees no update");
                Ok(None)
            }
        }
    }
}

/// Whether one of `files` (repository-relative) is read by the configuration loader.
pub(crate) fn touches_config(files: &[String]) -> bool {
    files.iter().any(|f| {
        CONFIG_ROOTS
            .iter()
            .any(|root| f == root || f.strip_prefix(root).is_some_and(|r| r.starts_with('/')))
    })
}

/// Whether the change to `project` (canonical name) touching `files` edits one of the job's
/// playbooks.
pub(crate) fn touches_playbooks(job: &FrozenJobDetails, project: &str, files: &[String]) -> bool {
    let j = &job.job;
    j.pre_run
        .iter()
        .chain(&j.run)
        .chain(&j.post_run)
        .any(|pb| pb.project == project && files.contains(&pb.path))
}

/// Whether `job` (frozen in the change's layout) is a different job in `ahead`, the layout
/// without the change, for the same project, branch and pipeline.
pub(crate) fn definition_changed(
    job: &FrozenJobDetails,
    ahead: &Layout,
    project: &str,
    branch: &str,
    pipeline: &str,
) -> bool {
    match ahead.freeze_detailed(&job.job.name, project, branch, Some(pipeline)) {
        // Not a job (or not a valid one) without the change: the change made it.
        Err(_) => true,
        Ok(old) => without_lines(old) != without_lines(job.clone()),
    }
}

/// The job with the line numbers dropped from its inheritance path
/// (`source: HOST/ORG/REPO/FILE@BRANCH#LINE>`).
fn without_lines(mut job: FrozenJobDetails) -> FrozenJobDetails {
    for entry in &mut job.job.inheritance_path {
        if let Some(hash) = entry.rfind('#') {
            let tail = &entry[hash + 1..];
            if tail.len() > 1
                && tail.ends_with('>')
                && tail[..tail.len() - 1].bytes().all(|b| b.is_ascii_digit())
            {
                entry.replace_range(hash..entry.len() - 1, "");
            }
        }
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_roots_and_files_below_them_are_config() {
        let f = |s: &[&str]| touches_config(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(f(&[".zuul.yaml"]));
        assert!(f(&["src/a.c", "zuul.d/jobs.yaml"]));
        assert!(f(&[".zuul.d/sub/x.yaml"]));
        assert!(!f(&["zuul.yaml.orig", "zuul.dx/a.yaml", "docs/.zuul.yaml"]));
    }
}
