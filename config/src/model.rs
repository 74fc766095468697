//! The parsed configuration model: job variants, nodesets, secrets, projects and templates,
//! semaphores, queues and pipelines, each with the source context it was defined in. These are
//! what the loader produces and the layout stores; nothing here is merged or frozen yet.

use std::fmt;

use indexmap::IndexMap;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use crate::errors::SourceLocation;
use crate::frozen::{NodesetGroup, NodesetNode, RequiredProject, Vars};

/// Where an item was defined.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceContext {
    /// Canonical project name (`host/org/repo`).
    pub project: String,
    /// Short project name (`org/repo`).
    pub short_name: String,
    /// Hostname part of the canonical name.
    pub hostname: String,
    /// Branch the file was read from.
    pub branch: String,
    /// File path relative to the repository root.
    pub path: String,
    /// True for a config-project.
    pub trusted: bool,
    /// 1-based line of the item.
    pub line: usize,
    /// 1-based column of the item.
    pub column: usize,
    /// `pragma: implied-branch-matchers` of the file, if set.
    pub implied_branch_matchers: Option<bool>,
    /// `pragma: implied-branches` of the file, if set.
    pub implied_branches: Option<BranchMatcher>,
}

impl SourceContext {
    /// The location of the item.
    pub fn location(&self) -> SourceLocation {
        SourceLocation {
            project: self.project.clone(),
            branch: self.branch.clone(),
            path: self.path.clone(),
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for SourceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}@{}#{}",
            self.project, self.path, self.branch, self.line
        )
    }
}

/// How a tagged attribute combines with the inherited value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MergeControl {
    /// The attribute's own default rule.
    #[default]
    Default,
    /// `!override`: replace.
    Override,
    /// `!inherit`: merge or union.
    Inherit,
}

/// A value with its `!override` / `!inherit` control.
#[derive(Debug, Clone, PartialEq)]
pub struct Controlled<T> {
    /// The value.
    pub value: T,
    /// The merge control tag.
    pub control: MergeControl,
}

/// One regex of a branch or file matcher.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The regex as written.
    pub source: String,
    /// Compiled, anchored at the start (Zuul's "match").
    pub regex: Regex,
    /// `negate: true`.
    pub negate: bool,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.negate == other.negate
    }
}

impl Pattern {
    /// True when the pattern (prefix-)matches `s`, inverted by `negate`.
    pub fn matches(&self, s: &str) -> bool {
        self.regex.is_match(s) != self.negate
    }
}

/// A list of patterns; matches when any does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BranchMatcher {
    /// The patterns.
    pub patterns: Vec<Pattern>,
}

impl BranchMatcher {
    /// True when any pattern matches.
    pub fn matches(&self, branch: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(branch))
    }
}

impl fmt::Display for BranchMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .patterns
            .iter()
            .map(|p| {
                if p.negate {
                    format!("!{}", p.source)
                } else {
                    p.source.clone()
                }
            })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// A job's `parent`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Parent {
    /// Not set: the tenant default parent applies.
    #[default]
    Unset,
    /// `parent: null`: a base job.
    Base,
    /// A named parent.
    Named(String),
}

/// A playbook as written in `pre-run`, `run`, `post-run` or `cleanup-run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookDef {
    /// Path relative to the repository root.
    pub path: String,
    /// Semaphores held while it runs, sorted.
    pub semaphores: Vec<String>,
    /// `cleanup: true` (post-run only).
    pub cleanup: bool,
}

/// An explicit `roles` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDef {
    /// The `zuul:` project as written.
    pub project: String,
    /// The install name (`name`, default the last path component).
    pub name: String,
}

/// A `secrets` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    /// The Ansible variable name.
    pub var_name: String,
    /// The secret's name.
    pub secret: String,
    /// `pass-to-parent`.
    pub pass_to_parent: bool,
}

/// A job semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreUse {
    /// The semaphore.
    pub name: String,
    /// `resources-first`.
    pub resources_first: bool,
}

/// A job dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDependency {
    /// The job depended on.
    pub name: String,
    /// `soft: true`.
    pub soft: bool,
}

/// An `include-vars` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeVars {
    /// File name.
    pub name: String,
    /// The project holding it (`None` with `zuul-project: true`).
    pub project: Option<String>,
    /// `required` (default true).
    pub required: bool,
    /// `use-ref` (default true).
    pub use_ref: bool,
}

/// `true`, `false` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoolOrAuto {
    /// true
    True,
    /// false
    False,
    /// auto
    Auto,
}

/// A nodeset definition (named or anonymous).
#[derive(Debug, Clone, PartialEq)]
pub struct NodesetDef {
    /// The name (`None` for an inline nodeset).
    pub name: Option<String>,
    /// Nodes.
    pub nodes: Vec<NodesetNode>,
    /// Groups.
    pub groups: Vec<NodesetGroup>,
    /// `alternatives`, tried in order.
    pub alternatives: Vec<NodesetAlternative>,
    /// Where it was defined.
    pub source: SourceContext,
}

/// One nodeset alternative.
#[derive(Debug, Clone, PartialEq)]
pub enum NodesetAlternative {
    /// A named nodeset.
    Named(String),
    /// An inline nodeset.
    Inline(Box<NodesetDef>),
}

/// A job's `nodeset`.
#[derive(Debug, Clone, PartialEq)]
pub enum NodesetSpec {
    /// A named nodeset.
    Named(String),
    /// An inline nodeset.
    Inline(Box<NodesetDef>),
}

/// One job definition (variant), from a `job` item or a project-pipeline job entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobVariant {
    /// The job's name.
    pub name: String,
    /// Where it was defined.
    pub source: Option<SourceContext>,
    /// True for a variant from a project(-template) pipeline job list.
    pub project_pipeline: bool,
    /// `parent`.
    pub parent: Parent,
    /// `description`.
    pub description: Option<String>,
    /// `variant-description`.
    pub variant_description: Option<String>,
    /// `abstract`.
    pub abstract_: Option<bool>,
    /// `intermediate`.
    pub intermediate: Option<bool>,
    /// `final`.
    pub final_: Option<bool>,
    /// `protected`.
    pub protected: Option<bool>,
    /// `branches` (explicit matcher).
    pub branches: Option<BranchMatcher>,
    /// `nodeset`.
    pub nodeset: Option<NodesetSpec>,
    /// `timeout`.
    pub timeout: Option<u64>,
    /// `pre-timeout`.
    pub pre_timeout: Option<u64>,
    /// `post-timeout`.
    pub post_timeout: Option<u64>,
    /// `attempts`.
    pub attempts: Option<u32>,
    /// `pre-run`.
    pub pre_run: Option<Vec<PlaybookDef>>,
    /// `run`.
    pub run: Option<Vec<PlaybookDef>>,
    /// `post-run`.
    pub post_run: Option<Vec<PlaybookDef>>,
    /// `cleanup-run` (deprecated).
    pub cleanup_run: Option<Vec<PlaybookDef>>,
    /// `roles` (explicit entries only; the implicit role is added when freezing).
    pub roles: Option<Vec<RoleDef>>,
    /// `required-projects`.
    pub required_projects: Option<Controlled<Vec<RequiredProject>>>,
    /// `vars`.
    pub vars: Option<Controlled<Vars>>,
    /// `extra-vars`.
    pub extra_vars: Option<Controlled<Vars>>,
    /// `host-vars`.
    pub host_vars: Option<Controlled<Vars>>,
    /// `group-vars`.
    pub group_vars: Option<Controlled<Vars>>,
    /// `include-vars`.
    pub include_vars: Option<Controlled<Vec<IncludeVars>>>,
    /// `secrets`.
    pub secrets: Option<Vec<SecretUse>>,
    /// `semaphore` / `semaphores`, sorted by name.
    pub semaphores: Option<Vec<SemaphoreUse>>,
    /// `ansible-version`, as a string.
    pub ansible_version: Option<String>,
    /// `ansible-split-streams`.
    pub ansible_split_streams: Option<bool>,
    /// `override-branch`.
    pub override_branch: Option<String>,
    /// `override-checkout`.
    pub override_checkout: Option<String>,
    /// `voting`.
    pub voting: Option<bool>,
    /// `hold-following-changes`.
    pub hold_following_changes: Option<bool>,
    /// `post-review`.
    pub post_review: Option<bool>,
    /// `match-on-config-updates`.
    pub match_on_config_updates: Option<bool>,
    /// `tags`.
    pub tags: Option<Controlled<Vec<String>>>,
    /// `provides`.
    pub provides: Option<Controlled<Vec<String>>>,
    /// `requires`.
    pub requires: Option<Controlled<Vec<String>>>,
    /// `failure-output`.
    pub failure_output: Option<Controlled<Vec<String>>>,
    /// `files`.
    pub files: Option<Controlled<Vec<String>>>,
    /// `irrelevant-files`.
    pub irrelevant_files: Option<Controlled<Vec<String>>>,
    /// `dependencies`.
    pub dependencies: Option<Controlled<Vec<JobDependency>>>,
    /// `allowed-projects`.
    pub allowed_projects: Option<Vec<String>>,
    /// `success-message`.
    pub success_message: Option<String>,
    /// `failure-message`.
    pub failure_message: Option<String>,
    /// `workspace-scheme`.
    pub workspace_scheme: Option<String>,
    /// `workspace-checkout`.
    pub workspace_checkout: Option<BoolOrAuto>,
    /// `deduplicate`.
    pub deduplicate: Option<BoolOrAuto>,
    /// `type`.
    pub job_type: Option<String>,
    /// `secret-exposure`.
    pub secret_exposure: Option<String>,
    /// `preserve-home-paths` (kept as written).
    pub preserve_home_paths: Option<JsonValue>,
    /// `image-build-name`.
    pub image_build_name: Option<String>,
    /// `include-projects` (kept as written).
    pub include_projects: Option<Controlled<Vec<JsonValue>>>,
    /// `exclude-projects` (kept as written).
    pub exclude_projects: Option<Controlled<Vec<JsonValue>>>,
    /// Attributes finalised with `attribute-control: {attr: {final: true}}` (YAML names).
    pub final_attributes: Vec<String>,
}

impl JobVariant {
    /// Where the variant was defined (every loaded variant has a source).
    pub fn location(&self) -> SourceLocation {
        self.source
            .as_ref()
            .map(SourceContext::location)
            .unwrap_or_else(|| SourceLocation {
                project: String::new(),
                branch: String::new(),
                path: String::new(),
                line: 0,
                column: 0,
            })
    }
}

/// A secret, still encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretDef {
    /// Name.
    pub name: String,
    /// The `data` tree; encrypted leaves are `{"__encrypted__": "pkcs1-oaep", "ciphertext": [..]}`.
    pub data: JsonValue,
    /// `oidc` (14.x), kept as written.
    pub oidc: Option<JsonValue>,
    /// Where it was defined.
    pub source: SourceContext,
}

/// A semaphore.
#[derive(Debug, Clone, PartialEq)]
pub struct SemaphoreDef {
    /// Name.
    pub name: String,
    /// `max` (default 1).
    pub max: u64,
    /// Where it was defined.
    pub source: SourceContext,
}

/// A shared change queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDef {
    /// Name.
    pub name: String,
    /// `type`: `all-branches` (default), `per-branch` or `branch-assigned`.
    pub queue_type: String,
    /// `allow-circular-dependencies`.
    pub allow_circular_dependencies: bool,
    /// `dependencies-by-topic`.
    pub dependencies_by_topic: bool,
    /// Where it was defined.
    pub source: SourceContext,
}

/// A pipeline, kept as raw configuration for now.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineDef {
    /// Name.
    pub name: String,
    /// The whole item, converted to JSON.
    pub raw: JsonValue,
    /// Where it was defined.
    pub source: SourceContext,
}

/// How a change is put onto its branch (Zuul's `merge-mode` project attribute); its serde
/// form is the configuration spelling (`"merge-resolve"`). The merger (`sluice-merger`)
/// carries each mode out as the git command named here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeMode {
    /// `merge` (the default): `git merge FETCH_HEAD`, a fast-forward when possible, else a
    /// two-parent merge commit.
    #[default]
    Merge,
    /// `merge-resolve`: `git merge -s resolve FETCH_HEAD`, like `merge` with a single merge
    /// base and no rename detection.
    MergeResolve,
    /// `cherry-pick`: the change's commits picked onto the branch (a merge-commit tip is
    /// merged with `resolve` instead, as Zuul does).
    CherryPick,
    /// `squash-merge`: `git merge --squash` and one commit `Merge '<ref>'` with the combined
    /// content.
    SquashMerge,
    /// `rebase`: the change's commits rebased onto the branch tip, the branch moved there.
    Rebase,
    /// `rebase-first-parent`: like `rebase`, following the change's first-parent chain and
    /// keeping merge commits, each replayed relative to its first parent.
    RebaseFirstParent,
    /// `merge-recursive`: `git merge -s recursive FETCH_HEAD` (the same algorithm as `merge`).
    MergeRecursive,
    /// `merge-ort`: `git merge -s ort FETCH_HEAD` (the same algorithm as `merge`).
    MergeOrt,
}

impl MergeMode {
    /// Every mode, in documentation order.
    pub const ALL: [MergeMode; 8] = [
        MergeMode::Merge,
        MergeMode::MergeResolve,
        MergeMode::CherryPick,
        MergeMode::SquashMerge,
        MergeMode::Rebase,
        MergeMode::RebaseFirstParent,
        MergeMode::MergeRecursive,
        MergeMode::MergeOrt,
    ];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMode::Merge => "merge",
            MergeMode::MergeResolve => "merge-resolve",
            MergeMode::CherryPick => "cherry-pick",
            MergeMode::SquashMerge => "squash-merge",
            MergeMode::Rebase => "rebase",
            MergeMode::RebaseFirstParent => "rebase-first-parent",
            MergeMode::MergeRecursive => "merge-recursive",
            MergeMode::MergeOrt => "merge-ort",
        }
    }

    /// Parse the configuration spelling.
    pub fn parse(s: &str) -> Option<MergeMode> {
        MergeMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for MergeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pipeline section of a project or template.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProjectPipeline {
    /// `debug`.
    pub debug: Option<bool>,
    /// `fail-fast`.
    pub fail_fast: Option<bool>,
    /// The job list, as project-pipeline variants, in order.
    pub jobs: Vec<JobVariant>,
}

/// A `project` stanza (or, with `is_template`, a `project-template`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectStanza {
    /// The name as written (`None`: the defining project). Templates always have one.
    pub name: Option<String>,
    /// True for a `project-template`.
    pub is_template: bool,
    /// `description`.
    pub description: Option<String>,
    /// `templates`.
    pub templates: Vec<String>,
    /// `vars`.
    pub vars: Option<Vars>,
    /// `merge-mode`.
    pub merge_mode: Option<MergeMode>,
    /// `default-branch`.
    pub default_branch: Option<String>,
    /// `queue`.
    pub queue: Option<String>,
    /// `branches` (explicit matcher).
    pub branches: Option<BranchMatcher>,
    /// Pipelines in order of appearance.
    pub pipelines: IndexMap<String, ProjectPipeline>,
    /// Where it was defined.
    pub source: SourceContext,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_mode_names_round_trip_through_parse_and_serde() {
        for mode in MergeMode::ALL {
            assert_eq!(MergeMode::parse(mode.as_str()), Some(mode));
            let json = serde_json::to_string(&mode).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
            let back: Option<MergeMode> = serde_json::from_str(&json).ok();
            assert_eq!(back, Some(mode));
        }
        assert_eq!(
            MergeMode::parse("squash-merge"),
            Some(MergeMode::SquashMerge)
        );
        assert_eq!(
            MergeMode::parse("rebase-first-parent"),
            Some(MergeMode::RebaseFirstParent)
        );
        assert_eq!(MergeMode::parse("fast-forward"), None);
    }
}
