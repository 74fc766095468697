//! The layout: every project's configuration combined in load order (config-projects first,
//! then untrusted projects), with tenant-wide uniqueness checks, reference validation
//! (parents, nodesets, secrets, templates, parent cycles) and the project queries the
//! scheduler needs (jobs of a project-pipeline, merge mode, default branch, queue).
//! Freezing lives in `freeze.rs`.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use regex::Regex;

use crate::errors::{ConfigError, ConfigErrorKind as K, ConfigErrors, ItemContext, SourceLocation};
use crate::frozen::{Nodeset, Vars};
use crate::loader::{load_project_lenient, ProjectConfig, ProjectSource};
use crate::model::*;

/// A project known to the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    /// Canonical name.
    pub canonical_name: String,
    /// Short name (`org/repo`).
    pub short_name: String,
    /// Canonical hostname.
    pub hostname: String,
    /// True for a config-project.
    pub trusted: bool,
    /// Branches whose configuration was added, in order.
    pub branches: Vec<String>,
}

/// Every project's configuration combined.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub(crate) default_parent: Option<String>,
    pub(crate) projects: Vec<ProjectInfo>,
    pub(crate) jobs: IndexMap<String, Vec<JobVariant>>,
    pub(crate) nodesets: IndexMap<String, (NodesetDef, Nodeset)>,
    pub(crate) secrets: IndexMap<String, SecretDef>,
    pub(crate) semaphores: IndexMap<String, SemaphoreDef>,
    pub(crate) queues: IndexMap<String, QueueDef>,
    pub(crate) pipelines: IndexMap<String, PipelineDef>,
    pub(crate) stanzas: Vec<ProjectStanza>,
    pub(crate) templates: IndexMap<String, Vec<ProjectStanza>>,
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<String>,
}

fn item_error(item_type: &str, name: &str, location: SourceLocation, kind: K) -> ConfigError {
    ConfigError::new(
        location,
        ItemContext {
            item_type: Some(item_type.to_string()),
            name: Some(name.to_string()),
        },
        kind,
    )
}

impl Layout {
    /// An empty layout; `default_parent` is the tenant's `default-parent` (Zuul's default is
    /// `base`; `None` means jobs without `parent` have none).
    pub fn new(default_parent: Option<String>) -> Self {
        Layout {
            default_parent,
            ..Default::default()
        }
    }

    /// Add one project-branch's configuration. Call for config-projects first, then untrusted
    /// projects, in tenant order. Errors (the configuration's own, duplicates, jobs defined in
    /// another project) are kept: see `errors()` and `check()`; offending items are left out.
    pub fn add(&mut self, config: ProjectConfig) {
        // The errors are recorded in `self.errors` either way.
        let _ = self.add_checked(config);
    }

    /// Like `add`, also returning the errors this addition found (duplicates, jobs defined in
    /// another project). The configuration's own parse errors are kept in `errors()` but not
    /// returned again.
    pub fn add_checked(&mut self, config: ProjectConfig) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        match self
            .projects
            .iter_mut()
            .find(|p| p.canonical_name == config.project)
        {
            Some(p) => {
                if !p.branches.contains(&config.branch) {
                    p.branches.push(config.branch.clone());
                }
            }
            None => self.projects.push(ProjectInfo {
                canonical_name: config.project.clone(),
                short_name: config.short_name.clone(),
                hostname: config.hostname.clone(),
                trusted: config.trusted,
                branches: vec![config.branch.clone()],
            }),
        }
        self.errors.extend(config.errors);
        self.warnings.extend(config.warnings);

        for job in config.jobs {
            if let Some(existing) = self.jobs.get(&job.name) {
                let owner = existing
                    .first()
                    .and_then(|v| v.source.as_ref())
                    .map(|s| s.project.clone())
                    .unwrap_or_default();
                if owner != config.project {
                    errors.push(item_error(
                        "job",
                        &job.name,
                        job.location(),
                        K::JobInOtherProject {
                            name: job.name.clone(),
                            owner,
                        },
                    ));
                    continue;
                }
            }
            self.jobs.entry(job.name.clone()).or_default().push(job);
        }

        for ns in config.nodesets {
            let Some(name) = ns.name.clone() else {
                continue;
            };
            if let Some((existing, _)) = self.nodesets.get(&name) {
                let same = existing.source.project == ns.source.project
                    && existing.nodes == ns.nodes
                    && existing.groups == ns.groups
                    && existing.alternatives == ns.alternatives;
                if !same {
                    errors.push(duplicate("nodeset", &name, &ns.source, &existing.source));
                }
                continue;
            }
            let frozen = self.freeze_nodeset_def(&ns);
            self.nodesets.insert(name, (ns, frozen));
        }
        for s in config.secrets {
            if let Some(existing) = self.secrets.get(&s.name) {
                let same = existing.source.project == s.source.project
                    && existing.data == s.data
                    && existing.oidc == s.oidc;
                if !same {
                    errors.push(duplicate("secret", &s.name, &s.source, &existing.source));
                }
                continue;
            }
            self.secrets.insert(s.name.clone(), s);
        }
        for s in config.semaphores {
            if let Some(existing) = self.semaphores.get(&s.name) {
                if existing.source.project != s.source.project || existing.max != s.max {
                    errors.push(duplicate("semaphore", &s.name, &s.source, &existing.source));
                }
                continue;
            }
            self.semaphores.insert(s.name.clone(), s);
        }
        for q in config.queues {
            if let Some(existing) = self.queues.get(&q.name) {
                let same = existing.source.project == q.source.project
                    && existing.queue_type == q.queue_type
                    && existing.allow_circular_dependencies == q.allow_circular_dependencies
                    && existing.dependencies_by_topic == q.dependencies_by_topic;
                if !same {
                    errors.push(duplicate("queue", &q.name, &q.source, &existing.source));
                }
                continue;
            }
            self.queues.insert(q.name.clone(), q);
        }
        for p in config.pipelines {
            if let Some(existing) = self.pipelines.get(&p.name) {
                if existing.source.project != p.source.project || existing.raw != p.raw {
                    errors.push(duplicate("pipeline", &p.name, &p.source, &existing.source));
                }
                continue;
            }
            self.pipelines.insert(p.name.clone(), p);
        }
        for t in config.templates {
            let name = t.name.clone().unwrap_or_default();
            self.templates.entry(name).or_default().push(t);
        }
        self.stanzas.extend(config.projects);

        self.errors.extend(errors.iter().cloned());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Every error found so far (parse errors of added configurations and addition errors),
    /// without the reference checks of `check`.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Non-fatal notes gathered while loading.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// All errors: those of `errors()` plus reference validation over the whole layout
    /// (unknown parents, nodesets, secrets, templates and jobs in project lists; parent
    /// cycles). Call once every project has been added.
    pub fn check(&self) -> Result<(), ConfigErrors> {
        let mut errors = self.errors.clone();
        errors.extend(self.reference_errors());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn reference_errors(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (name, variants) in &self.jobs {
            for v in variants {
                self.check_variant_refs("job", name, v, &mut errors);
            }
        }
        for (name, (ns, _)) in &self.nodesets {
            for alt in &ns.alternatives {
                if let NodesetAlternative::Named(n) = alt {
                    if !self.nodesets.contains_key(n) {
                        errors.push(item_error(
                            "nodeset",
                            name,
                            ns.source.location(),
                            K::UnknownNodeset { nodeset: n.clone() },
                        ));
                    }
                }
            }
        }
        for st in self.stanzas.iter().chain(self.templates.values().flatten()) {
            let item_type = if st.is_template {
                "project-template"
            } else {
                "project"
            };
            let name = st
                .name
                .clone()
                .unwrap_or_else(|| st.source.short_name.clone());
            for t in &st.templates {
                if !self.templates.contains_key(t) {
                    errors.push(item_error(
                        item_type,
                        &name,
                        st.source.location(),
                        K::UnknownTemplate {
                            template: t.clone(),
                        },
                    ));
                }
            }
            for pp in st.pipelines.values() {
                for v in &pp.jobs {
                    if !self.jobs.contains_key(&v.name) && v.name != "noop" {
                        errors.push(item_error(
                            item_type,
                            &name,
                            v.location(),
                            K::UnknownJob {
                                job: v.name.clone(),
                            },
                        ));
                        continue;
                    }
                    self.check_variant_refs(item_type, &name, v, &mut errors);
                }
            }
        }
        errors.extend(self.cycle_errors());
        errors
    }

    fn check_variant_refs(
        &self,
        item_type: &str,
        name: &str,
        v: &JobVariant,
        errors: &mut Vec<ConfigError>,
    ) {
        if let Parent::Named(p) = &v.parent {
            if !self.jobs.contains_key(p) {
                errors.push(item_error(
                    item_type,
                    name,
                    v.location(),
                    K::UnknownParent { parent: p.clone() },
                ));
            }
        }
        if let Some(NodesetSpec::Named(n)) = &v.nodeset {
            if !self.nodesets.contains_key(n) {
                errors.push(item_error(
                    item_type,
                    name,
                    v.location(),
                    K::UnknownNodeset { nodeset: n.clone() },
                ));
            }
        }
        if let Some(NodesetSpec::Inline(ns)) = &v.nodeset {
            for alt in &ns.alternatives {
                if let NodesetAlternative::Named(n) = alt {
                    if !self.nodesets.contains_key(n) {
                        errors.push(item_error(
                            item_type,
                            name,
                            v.location(),
                            K::UnknownNodeset { nodeset: n.clone() },
                        ));
                    }
                }
            }
        }
        for s in v.secrets.iter().flatten() {
            match self.secrets.get(&s.secret) {
                None => errors.push(item_error(
                    item_type,
                    name,
                    v.location(),
                    K::UnknownSecret {
                        secret: s.secret.clone(),
                    },
                )),
                Some(def) => {
                    let own = v.source.as_ref().map(|s| s.project.as_str()).unwrap_or("");
                    if def.source.project != own {
                        errors.push(item_error(
                            item_type,
                            name,
                            v.location(),
                            K::SecretNotPermitted {
                                secret: s.secret.clone(),
                                owner: def.source.project.clone(),
                            },
                        ));
                    }
                }
            }
        }
    }

    /// The parent names a job can have (explicit or the default parent).
    fn parent_names(&self, name: &str) -> Vec<(String, SourceLocation)> {
        let mut out = Vec::new();
        for (i, v) in self.jobs.get(name).into_iter().flatten().enumerate() {
            let p = match &v.parent {
                Parent::Named(p) => Some(p.clone()),
                Parent::Unset if i == 0 => self.default_parent.clone().filter(|d| d != name),
                _ => None,
            };
            if let Some(p) = p {
                if !out.iter().any(|(n, _)| n == &p) {
                    out.push((p, v.location()));
                }
            }
        }
        out
    }

    fn cycle_errors(&self) -> Vec<ConfigError> {
        // Iterative colouring DFS over job names.
        let mut state: HashMap<&str, u8> = HashMap::new();
        let mut errors = Vec::new();
        let mut reported: HashSet<Vec<String>> = HashSet::new();
        for start in self.jobs.keys() {
            if state.contains_key(start.as_str()) {
                continue;
            }
            let mut stack: Vec<(String, usize)> = vec![(start.clone(), 0)];
            let mut path: Vec<String> = vec![start.clone()];
            state.insert(start.as_str(), 1);
            while let Some((node, idx)) = stack.pop() {
                let parents = self.parent_names(&node);
                if idx < parents.len() {
                    stack.push((node.clone(), idx + 1));
                    let (p, loc) = &parents[idx];
                    let Some((key, _)) = self.jobs.get_key_value(p) else {
                        continue;
                    };
                    match state.get(key.as_str()) {
                        Some(1) => {
                            let pos = path.iter().position(|n| n == p).unwrap_or(0);
                            let mut cycle: Vec<String> = path[pos..].to_vec();
                            cycle.push(p.clone());
                            let mut norm = cycle[..cycle.len() - 1].to_vec();
                            norm.sort();
                            if reported.insert(norm) {
                                errors.push(item_error(
                                    "job",
                                    &node,
                                    loc.clone(),
                                    K::ParentCycle {
                                        chain: cycle.join(" -> "),
                                    },
                                ));
                            }
                        }
                        Some(_) => {}
                        None => {
                            state.insert(key.as_str(), 1);
                            path.push(p.clone());
                            stack.push((p.clone(), 0));
                        }
                    }
                } else {
                    if let Some((key, _)) = self.jobs.get_key_value(&node) {
                        state.insert(key.as_str(), 2);
                    }
                    path.pop();
                }
            }
        }
        errors
    }

    /// The projects known to the layout, in load order.
    pub fn projects(&self) -> &[ProjectInfo] {
        &self.projects
    }

    /// Resolve a project name (canonical, or short when unambiguous).
    pub fn resolve_project(&self, name: &str) -> Option<&ProjectInfo> {
        if let Some(p) = self.projects.iter().find(|p| p.canonical_name == name) {
            return Some(p);
        }
        let mut short = self.projects.iter().filter(|p| p.short_name == name);
        match (short.next(), short.next()) {
            (Some(p), None) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn canonical_or_same(&self, name: &str) -> String {
        self.resolve_project(name)
            .map(|p| p.canonical_name.clone())
            .unwrap_or_else(|| name.to_string())
    }

    /// All variants of a job, in load order.
    pub fn job_variants(&self, name: &str) -> Option<&[JobVariant]> {
        self.jobs.get(name).map(|v| v.as_slice())
    }

    /// Job names in load order.
    pub fn job_names(&self) -> impl Iterator<Item = &str> {
        self.jobs.keys().map(|k| k.as_str())
    }

    /// A named nodeset, frozen (for an `alternatives` nodeset: its first alternative).
    pub fn nodeset(&self, name: &str) -> Option<&Nodeset> {
        self.nodesets.get(name).map(|(_, n)| n)
    }

    /// A named nodeset as defined.
    pub fn nodeset_def(&self, name: &str) -> Option<&NodesetDef> {
        self.nodesets.get(name).map(|(d, _)| d)
    }

    /// A secret as defined.
    pub fn secret(&self, name: &str) -> Option<&SecretDef> {
        self.secrets.get(name)
    }

    /// A semaphore.
    pub fn semaphore(&self, name: &str) -> Option<&SemaphoreDef> {
        self.semaphores.get(name)
    }

    /// Every semaphore, in load order.
    pub fn semaphores(&self) -> impl Iterator<Item = &SemaphoreDef> {
        self.semaphores.values()
    }

    /// A queue.
    pub fn queue(&self, name: &str) -> Option<&QueueDef> {
        self.queues.get(name)
    }

    /// Pipelines (raw), in load order.
    pub fn pipelines(&self) -> impl Iterator<Item = &PipelineDef> {
        self.pipelines.values()
    }

    /// Every `project` stanza, in load order.
    pub fn project_stanzas(&self) -> &[ProjectStanza] {
        &self.stanzas
    }

    pub(crate) fn freeze_nodeset_def(&self, ns: &NodesetDef) -> Nodeset {
        if let Some(first) = ns.alternatives.first() {
            let mut frozen = match first {
                NodesetAlternative::Named(n) => self.nodeset(n).cloned().unwrap_or_default(),
                NodesetAlternative::Inline(inner) => self.freeze_nodeset_def(inner),
            };
            if ns.name.is_some() {
                frozen.name = ns.name.clone();
            }
            return frozen;
        }
        Nodeset {
            name: ns.name.clone(),
            nodes: ns.nodes.clone(),
            groups: ns.groups.clone(),
        }
    }

    /// True when an implied branch matcher applies to items from `src`.
    pub(crate) fn implied_applies(&self, src: &SourceContext) -> bool {
        match src.implied_branch_matchers {
            Some(b) => b,
            None => {
                !src.trusted
                    && self
                        .projects
                        .iter()
                        .find(|p| p.canonical_name == src.project)
                        .map(|p| p.branches.len() > 1)
                        .unwrap_or(false)
            }
        }
    }

    fn implied_matches(src: &SourceContext, branch: &str) -> bool {
        match &src.implied_branches {
            Some(m) => m.matches(branch),
            None => src.branch == branch,
        }
    }

    /// Whether a job variant applies to `branch`.
    pub(crate) fn variant_matches(&self, v: &JobVariant, branch: &str) -> bool {
        if let Some(b) = &v.branches {
            return b.matches(branch);
        }
        if v.project_pipeline {
            return true;
        }
        match &v.source {
            Some(src) if self.implied_applies(src) => Self::implied_matches(src, branch),
            _ => true,
        }
    }

    fn stanza_names_project(&self, st: &ProjectStanza, project: &ProjectInfo) -> bool {
        match &st.name {
            None => st.source.project == project.canonical_name,
            Some(n) if n.starts_with('^') => match Regex::new(n) {
                Ok(re) => re.is_match(&project.canonical_name) || re.is_match(&project.short_name),
                Err(_) => false,
            },
            Some(n) => {
                n == &project.canonical_name || self.canonical_or_same(n) == project.canonical_name
            }
        }
    }

    fn stanza_matches_branch(&self, st: &ProjectStanza, branch: &str) -> bool {
        if let Some(b) = &st.branches {
            return b.matches(branch);
        }
        if st.source.trusted {
            return match st.source.implied_branch_matchers {
                Some(true) => Self::implied_matches(&st.source, branch),
                _ => true,
            };
        }
        if st.is_template && !self.implied_applies(&st.source) {
            return true;
        }
        if st.source.implied_branch_matchers == Some(false) {
            return true;
        }
        Self::implied_matches(&st.source, branch)
    }

    /// The project stanzas and templates that apply to `project` on `branch`, in the order
    /// their job lists combine: for each matching stanza, its templates, then itself.
    pub(crate) fn applicable_stanzas(&self, project: &str, branch: &str) -> Vec<&ProjectStanza> {
        let Some(info) = self.resolve_project(project) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for st in &self.stanzas {
            if !self.stanza_names_project(st, info) || !self.stanza_matches_branch(st, branch) {
                continue;
            }
            for t in &st.templates {
                for tv in self.templates.get(t).into_iter().flatten() {
                    if self.stanza_matches_branch(tv, branch) {
                        out.push(tv);
                    }
                }
            }
            out.push(st);
        }
        out
    }

    /// Job names run by `project` in `pipeline` on `branch` (templates included), in order,
    /// each once.
    pub fn project_jobs(&self, project: &str, pipeline: &str, branch: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for st in self.applicable_stanzas(project, branch) {
            if let Some(pp) = st.pipelines.get(pipeline) {
                for v in &pp.jobs {
                    if !out.contains(&v.name) {
                        out.push(v.name.clone());
                    }
                }
            }
        }
        out
    }

    /// Pipelines that `project` has a section for on `branch`, in order of appearance.
    pub fn project_pipelines(&self, project: &str, branch: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for st in self.applicable_stanzas(project, branch) {
            for name in st.pipelines.keys() {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
        out
    }

    fn project_first<T>(
        &self,
        project: &str,
        f: impl Fn(&ProjectStanza) -> Option<T>,
    ) -> Option<T> {
        let info = self.resolve_project(project)?;
        self.stanzas
            .iter()
            .filter(|st| self.stanza_names_project(st, info))
            .find_map(f)
    }

    /// The project's merge mode: the first `merge-mode` set for it, else `merge`.
    pub fn project_merge_mode(&self, project: &str) -> MergeMode {
        self.project_first(project, |st| st.merge_mode)
            .unwrap_or_default()
    }

    /// The project's `default-branch`, if any stanza sets it (first wins).
    pub fn project_default_branch(&self, project: &str) -> Option<String> {
        self.project_first(project, |st| st.default_branch.clone())
    }

    /// The project's `queue`, if any stanza sets it (first wins).
    pub fn project_queue(&self, project: &str) -> Option<String> {
        self.project_first(project, |st| st.queue.clone())
    }

    /// Project and template `vars` for `project` on `branch` (template vars under project
    /// vars; later stanzas over earlier ones).
    pub fn project_vars(&self, project: &str, branch: &str) -> Vars {
        let mut out = Vars::new();
        for st in self.applicable_stanzas(project, branch) {
            if let Some(v) = &st.vars {
                crate::freeze::deep_merge(&mut out, v);
            }
        }
        out
    }
}

fn duplicate(
    item_type: &str,
    name: &str,
    this: &SourceContext,
    other: &SourceContext,
) -> ConfigError {
    item_error(
        item_type,
        name,
        this.location(),
        K::Duplicate {
            item_type: item_type.to_string(),
            name: name.to_string(),
            other: other.location().to_string(),
        },
    )
}

/// Load every source (config-projects first, then untrusted, in the order given), build the
/// layout and check it; any error anywhere fails the whole load with every error listed.
pub fn load_layout(
    sources: &[ProjectSource],
    default_parent: Option<String>,
) -> Result<Layout, ConfigErrors> {
    let mut layout = Layout::new(default_parent);
    let mut ordered: Vec<&ProjectSource> = sources.iter().filter(|s| s.trusted).collect();
    ordered.extend(sources.iter().filter(|s| !s.trusted));
    for src in ordered {
        layout.add(load_project_lenient(src));
    }
    layout.check()?;
    Ok(layout)
}
