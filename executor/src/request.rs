//! The build request and the build result: serde types with a documented JSON shape, since the
//! scheduler hands requests to executors across a process boundary.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_config::{FrozenJob, Vars};

/// Everything an executor needs to run one build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRequest {
    /// Build uuid: 32 hex characters.
    pub uuid: String,
    /// Buildset uuid.
    pub buildset_uuid: String,
    /// Tenant name.
    pub tenant: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Id of the event that enqueued the item.
    pub event_id: String,
    /// The frozen job.
    pub job: FrozenJob,
    /// Every repository the build may use (config-projects, the project under test, required
    /// projects, role repos).
    pub projects: Vec<ProjectSpec>,
    /// Changes to merge: the ones ahead first, the change under test last.
    pub items: Vec<ChangeItem>,
    /// 1-based try number.
    pub attempt: u32,
    /// Data returned by parent jobs (`zuul_return`), lowest-precedence variables.
    pub parent_data: Vars,
    /// Names of the job's direct children.
    pub child_jobs: Vec<String>,
    /// Artifacts returned by parent jobs.
    pub artifacts: Vec<Value>,
    /// The pipeline is post-review (`zuul.post_review`).
    #[serde(default)]
    pub post_review: bool,
    /// Semaphores the scheduler holds for the build while it runs (job `semaphores`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub semaphores: Vec<String>,
    /// `max` of each semaphore the job's playbooks name (playbook `semaphores`, taken by the
    /// executor while the playbook runs), from the scheduler's layout; a missing one is 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub playbook_semaphores: BTreeMap<String, u64>,
}

/// A repository known to the build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectSpec {
    /// Canonical host name (`localhost` for local repositories).
    pub canonical_hostname: String,
    /// Project name (`org/repo`).
    pub name: String,
    /// Where the repository is.
    pub source: PathBuf,
    /// Its default branch.
    pub default_branch: String,
    /// True for config-projects.
    pub trusted: bool,
    /// Branch-name prefixes the workspace and playbook checkouts leave out (the git
    /// driver's review branches, `review/`: changes, not branches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_branches: Vec<String>,
}

impl ProjectSpec {
    /// `<hostname>/<name>`.
    pub fn canonical_name(&self) -> String {
        format!("{}/{}", self.canonical_hostname, self.name)
    }

    /// The last component of the name.
    pub fn short_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// A change to merge speculatively, or a ref (periodic and post items: `change` is empty and
/// `refname` is set) whose branch or tag is checked out as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeItem {
    /// Canonical name of its project.
    pub project: String,
    /// Target branch.
    pub branch: String,
    /// The commit (sha) to merge.
    pub commit: String,
    /// The project's merge mode (`merge`, `cherry-pick`, ...).
    pub merge_mode: String,
    /// Change number, as a string.
    pub change: String,
    /// Patchset, as a string.
    pub patchset: String,
    /// The commit message.
    pub message: String,
    /// Topic, if any.
    pub topic: Option<String>,
    /// Where a person can see the change.
    pub change_url: String,
    /// A ref item's ref (`refs/heads/<branch>`, `refs/tags/<tag>`); `None` for changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refname: Option<String>,
    /// A ref item's previous commit (`zuul.oldrev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldrev: Option<String>,
    /// A ref item's new commit (`zuul.newrev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newrev: Option<String>,
}

impl ChangeItem {
    /// True for a change, false for a ref item.
    pub fn is_change(&self) -> bool {
        self.refname.is_none()
    }

    /// The tag of a `refs/tags/<tag>` ref item.
    pub fn tag(&self) -> Option<&str> {
        self.refname.as_deref()?.strip_prefix("refs/tags/")
    }
}

/// Zuul's build results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildResultKind {
    /// Every run playbook succeeded and post playbooks too.
    Success,
    /// A run playbook failed.
    Failure,
    /// A post-run playbook failed.
    PostFailure,
    /// pre-run plus run exceeded `timeout`.
    TimedOut,
    /// Retry (pre-run failure, unreachable host) with tries left.
    Retry,
    /// Retry wanted but `attempts` used up.
    RetryLimit,
    /// Aborted by a signal or a cancel request.
    Aborted,
    /// The change did not merge.
    MergeConflict,
    /// The nodeset could not be satisfied or its nodes locked.
    NodeFailure,
    /// Sluice could not prepare the build (config, playbooks, installation).
    Error,
    /// Output contained a secret value and the job has `secret-exposure: fail`.
    SecretExposure,
    /// The build dir passed the disk limit.
    DiskFull,
}

impl BuildResultKind {
    /// Zuul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::PostFailure => "POST_FAILURE",
            Self::TimedOut => "TIMED_OUT",
            Self::Retry => "RETRY",
            Self::RetryLimit => "RETRY_LIMIT",
            Self::Aborted => "ABORTED",
            Self::MergeConflict => "MERGE_CONFLICT",
            Self::NodeFailure => "NODE_FAILURE",
            Self::Error => "ERROR",
            Self::SecretExposure => "SECRET_EXPOSURE",
            Self::DiskFull => "DISK_FULL",
        }
    }
}

impl fmt::Display for BuildResultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `--result-json` writes and what an executor reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildResult {
    /// Build uuid.
    pub uuid: String,
    /// The result.
    pub result: BuildResultKind,
    /// Why, for results other than SUCCESS and FAILURE when Sluice knows.
    pub error_detail: Option<String>,
    /// What `zuul_return` returned (`data`).
    pub data: Value,
    /// The build's log dir (`work/logs`).
    pub log_dir: PathBuf,
    /// Start, RFC 3339 UTC.
    pub start_time: String,
    /// End, RFC 3339 UTC.
    pub end_time: String,
}
