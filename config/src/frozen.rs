//! The frozen job: what the executor receives once variants, inheritance and project-pipeline
//! entries have been applied. Every type here is a serde type with a stable JSON shape, because
//! it crosses from the scheduler (or `sluice job run`) to the executor.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object of Ansible variables.
pub type Vars = Map<String, Value>;

/// A job with every variant applied, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenJob {
    /// The job's name.
    pub name: String,
    /// The nodes (and groups) the job runs on; empty means executor only.
    pub nodeset: Nodeset,
    /// `vars`, deep-merged across the inheritance chain (project/template vars underneath).
    pub vars: Vars,
    /// `extra-vars`, deep-merged.
    pub extra_vars: Vars,
    /// `host-vars`: host name to variables.
    pub host_vars: Map<String, Value>,
    /// `group-vars`: group name to variables.
    pub group_vars: Map<String, Value>,
    /// `pre-run` playbooks, outermost parent first.
    pub pre_run: Vec<PlaybookRef>,
    /// `run` playbooks (the last variant that set `run` wins).
    pub run: Vec<PlaybookRef>,
    /// `post-run` playbooks, innermost child first; legacy `cleanup-run` merged in with
    /// `cleanup = true`.
    pub post_run: Vec<PlaybookRef>,
    /// Seconds for pre-run plus run; `None` is no limit.
    pub timeout: Option<u64>,
    /// Seconds for pre-run alone; `None` falls back to `timeout`.
    pub pre_timeout: Option<u64>,
    /// Seconds for each post-run playbook; `None` is no limit.
    pub post_timeout: Option<u64>,
    /// Total tries when the result is a retry (default 3).
    pub attempts: u32,
    /// `ansible-version` as written (normalised to a string), if any variant set it.
    pub ansible_version: Option<String>,
    /// `ansible-split-streams`.
    pub ansible_split_streams: bool,
    /// `required-projects`, merged by project name.
    pub required_projects: Vec<RequiredProject>,
    /// Job-level `override-branch`.
    pub override_branch: Option<String>,
    /// Job-level `override-checkout`.
    pub override_checkout: Option<String>,
    /// `voting` (default true).
    pub voting: bool,
    /// `tags`, unioned.
    pub tags: Vec<String>,
    /// `failure-output` regexes, unioned.
    pub failure_output: Vec<String>,
    /// `workspace-scheme`: `golang` (default), `flat` or `unique`.
    pub workspace_scheme: String,
    /// `secret-exposure`: `ignore` (default), `redact` or `fail`.
    pub secret_exposure: String,
    /// `post-review`.
    pub post_review: bool,
    /// Secrets the job's playbooks may receive, indexed by `PlaybookRef::secrets`.
    pub secrets: Vec<FrozenSecret>,
    /// One line per applied variant, in application order, Zuul style:
    /// `<Job NAME branches: REGEXES|None source: HOST/ORG/REPO/FILE@BRANCH#LINE>` (project-pipeline
    /// variants say `<Job NAME project-pipeline branches: ...>`).
    pub inheritance_path: Vec<String>,
}

/// A nodeset: nodes and groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nodeset {
    /// The nodeset's name, if it was a named one.
    pub name: Option<String>,
    /// Nodes in declaration order.
    pub nodes: Vec<NodesetNode>,
    /// Groups in declaration order.
    pub groups: Vec<NodesetGroup>,
}

/// One node of a nodeset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesetNode {
    /// Inventory host names for this node (a list name gives several).
    pub names: Vec<String>,
    /// The label the node provider must satisfy.
    pub label: String,
}

/// One group of a nodeset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesetGroup {
    /// The group's name.
    pub name: String,
    /// Inventory host names in the group.
    pub nodes: Vec<String>,
}

/// A required project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequiredProject {
    /// The project's name as written (short `org/repo` or canonical `host/org/repo`).
    pub name: String,
    /// `override-branch` for this project.
    pub override_branch: Option<String>,
    /// `override-checkout` for this project.
    pub override_checkout: Option<String>,
}

/// A playbook bound to the definition that declared it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaybookRef {
    /// Canonical name of the project holding the playbook (`localhost/org/repo`).
    pub project: String,
    /// Branch of the definition that declared the playbook.
    pub branch: String,
    /// Path relative to the repository root.
    pub path: String,
    /// True when the playbook comes from a config-project.
    pub trusted: bool,
    /// Roles visible to the playbook, in role-path order.
    pub roles: Vec<RoleRef>,
    /// Secrets for this playbook: Ansible variable name to an index into `FrozenJob::secrets`.
    pub secrets: Vec<PlaybookSecret>,
    /// 0 for the job itself (and its project-pipeline variants), 1 for its parent, and so on.
    /// Zuul counts the other way (0 = base job): rules written in Zuul's terms ("post
    /// playbooks with nesting level <= the level reached") invert here.
    pub nesting_level: u32,
    /// True for cleanup playbooks (run even after an abort; result ignored).
    pub cleanup: bool,
    /// Semaphore names held while the playbook runs.
    pub semaphores: Vec<String>,
}

/// A role source for a playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleRef {
    /// Canonical name of the project providing the role(s).
    pub project: String,
    /// The name the role is installed as (used when the repo is a bare role).
    pub target_name: String,
    /// True for the defining repo's implicit role entry.
    pub implicit: bool,
}

/// A secret given to a playbook under an Ansible variable name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaybookSecret {
    /// The Ansible variable name.
    pub var_name: String,
    /// Index into `FrozenJob::secrets`.
    pub index: usize,
}

/// A secret as defined, still encrypted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenSecret {
    /// The secret's name.
    pub name: String,
    /// Canonical name of the project that defined it (its key decrypts it).
    pub project: String,
    /// The `data` tree; encrypted leaves are `{"__encrypted__": "pkcs1-oaep", "ciphertext": [..]}`.
    pub data: Value,
}
