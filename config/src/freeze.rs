//! Freezing: selecting a job's variants for a branch, resolving the parent chain, applying
//! variants in order with Zuul's merge rules (playbook order, roles and secrets bound per
//! playbook, nesting levels, deep-merged vars, `!override`/`!inherit`, final/protected/
//! abstract/intermediate), applying project-pipeline entries and project vars, and producing
//! a `FrozenJob` for the executor.

use std::collections::HashSet;

use serde_json::Value as JsonValue;

use crate::errors::{FreezeError, SourceLocation};
use crate::frozen::*;
use crate::layout::Layout;
use crate::model::*;

/// Deep-merge `b` into `a`: nested dicts merge, anything else is replaced by `b`'s value.
pub fn deep_merge(a: &mut Vars, b: &Vars) {
    for (k, bv) in b {
        match (a.get_mut(k), bv) {
            (Some(JsonValue::Object(av)), JsonValue::Object(bo)) => deep_merge(av, bo),
            _ => {
                a.insert(k.clone(), bv.clone());
            }
        }
    }
}

/// A frozen job plus the attributes the scheduler needs that the executor does not.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenJobDetails {
    /// What the executor receives.
    pub job: FrozenJob,
    /// `description` (last set).
    pub description: Option<String>,
    /// `dependencies`.
    pub dependencies: Vec<JobDependency>,
    /// `files` regexes.
    pub files: Vec<String>,
    /// `irrelevant-files` regexes.
    pub irrelevant_files: Vec<String>,
    /// Job semaphores, sorted by name.
    pub semaphores: Vec<SemaphoreUse>,
    /// `provides`.
    pub provides: Vec<String>,
    /// `requires`.
    pub requires: Vec<String>,
    /// `allowed-projects` (`None`: any).
    pub allowed_projects: Option<Vec<String>>,
    /// `success-message`.
    pub success_message: Option<String>,
    /// `failure-message`.
    pub failure_message: Option<String>,
    /// `hold-following-changes`.
    pub hold_following_changes: bool,
    /// `match-on-config-updates` (default true).
    pub match_on_config_updates: bool,
    /// `workspace-checkout` (default true).
    pub workspace_checkout: BoolOrAuto,
    /// `deduplicate` (default auto).
    pub deduplicate: BoolOrAuto,
    /// `type` (default `regular`).
    pub job_type: String,
    /// `include-vars`.
    pub include_vars: Vec<IncludeVars>,
    /// `include-projects` as written.
    pub include_projects: Vec<JsonValue>,
    /// `exclude-projects` as written.
    pub exclude_projects: Vec<JsonValue>,
    /// `preserve-home-paths` as written.
    pub preserve_home_paths: Option<JsonValue>,
    /// `image-build-name`.
    pub image_build_name: Option<String>,
    /// Every nodeset alternative, in order (the first is `job.nodeset`).
    pub nodeset_alternatives: Vec<Nodeset>,
    /// True when the job appears in a project-pipeline list for the project and branch.
    pub listed_in_project: bool,
}

struct Acc {
    name: String,
    abstract_: bool,
    intermediate: bool,
    final_: bool,
    final_attrs: Vec<String>,
    protected_origin: Option<String>,
    description: Option<String>,
    nodeset: Option<(NodesetSpec, SourceLocation)>,
    timeout: Option<u64>,
    pre_timeout: Option<u64>,
    post_timeout: Option<u64>,
    attempts: u32,
    roles: Vec<RoleRef>,
    pre_run: Vec<PlaybookRef>,
    run: Vec<PlaybookRef>,
    post_run: Vec<PlaybookRef>,
    cleanup_run: Vec<PlaybookRef>,
    vars: Vars,
    extra_vars: Vars,
    host_vars: Vars,
    group_vars: Vars,
    required_projects: Vec<RequiredProject>,
    include_vars: Vec<IncludeVars>,
    secrets: Vec<FrozenSecret>,
    semaphores: Vec<SemaphoreUse>,
    ansible_version: Option<String>,
    ansible_split_streams: bool,
    override_branch: Option<String>,
    override_checkout: Option<String>,
    voting: bool,
    hold_following_changes: bool,
    post_review: bool,
    match_on_config_updates: bool,
    tags: Vec<String>,
    provides: Vec<String>,
    requires: Vec<String>,
    failure_output: Vec<String>,
    files: Vec<String>,
    irrelevant_files: Vec<String>,
    dependencies: Vec<JobDependency>,
    allowed_projects: Option<Vec<String>>,
    success_message: Option<String>,
    failure_message: Option<String>,
    workspace_scheme: String,
    workspace_checkout: BoolOrAuto,
    deduplicate: BoolOrAuto,
    job_type: String,
    secret_exposure: String,
    preserve_home_paths: Option<JsonValue>,
    image_build_name: Option<String>,
    include_projects: Vec<JsonValue>,
    exclude_projects: Vec<JsonValue>,
    inheritance_path: Vec<String>,
}

impl Acc {
    fn new(name: &str) -> Self {
        Acc {
            name: name.to_string(),
            abstract_: false,
            intermediate: false,
            final_: false,
            final_attrs: Vec::new(),
            protected_origin: None,
            description: None,
            nodeset: None,
            timeout: None,
            pre_timeout: None,
            post_timeout: None,
            attempts: 3,
            roles: Vec::new(),
            pre_run: Vec::new(),
            run: Vec::new(),
            post_run: Vec::new(),
            cleanup_run: Vec::new(),
            vars: Vars::new(),
            extra_vars: Vars::new(),
            host_vars: Vars::new(),
            group_vars: Vars::new(),
            required_projects: Vec::new(),
            include_vars: Vec::new(),
            secrets: Vec::new(),
            semaphores: Vec::new(),
            ansible_version: None,
            ansible_split_streams: false,
            override_branch: None,
            override_checkout: None,
            voting: true,
            hold_following_changes: false,
            post_review: false,
            match_on_config_updates: true,
            tags: Vec::new(),
            provides: Vec::new(),
            requires: Vec::new(),
            failure_output: Vec::new(),
            files: Vec::new(),
            irrelevant_files: Vec::new(),
            dependencies: Vec::new(),
            allowed_projects: None,
            success_message: None,
            failure_message: None,
            workspace_scheme: "golang".into(),
            workspace_checkout: BoolOrAuto::True,
            deduplicate: BoolOrAuto::Auto,
            job_type: "regular".into(),
            secret_exposure: "ignore".into(),
            preserve_home_paths: None,
            image_build_name: None,
            include_projects: Vec::new(),
            exclude_projects: Vec::new(),
            inheritance_path: Vec::new(),
        }
    }
}

/// Execution attributes (YAML names) a variant sets; a final job may not have these changed.
fn execution_attrs_set(v: &JobVariant) -> Vec<&'static str> {
    let mut out = Vec::new();
    macro_rules! check {
        ($($field:ident => $name:literal),* $(,)?) => {
            $(if v.$field.is_some() { out.push($name); })*
        };
    }
    check!(
        timeout => "timeout",
        pre_timeout => "pre-timeout",
        post_timeout => "post-timeout",
        nodeset => "nodeset",
        attempts => "attempts",
        pre_run => "pre-run",
        run => "run",
        post_run => "post-run",
        cleanup_run => "cleanup-run",
        roles => "roles",
        required_projects => "required-projects",
        vars => "vars",
        extra_vars => "extra-vars",
        host_vars => "host-vars",
        group_vars => "group-vars",
        include_vars => "include-vars",
        secrets => "secrets",
        semaphores => "semaphores",
        ansible_version => "ansible-version",
        ansible_split_streams => "ansible-split-streams",
        override_branch => "override-branch",
        override_checkout => "override-checkout",
        workspace_scheme => "workspace-scheme",
        workspace_checkout => "workspace-checkout",
        deduplicate => "deduplicate",
        job_type => "type",
        secret_exposure => "secret-exposure",
        preserve_home_paths => "preserve-home-paths",
        allowed_projects => "allowed-projects",
        include_projects => "include-projects",
        exclude_projects => "exclude-projects",
        image_build_name => "image-build-name",
    );
    if v.post_review == Some(true) {
        out.push("post-review");
    }
    out
}

/// Every attribute (YAML names) a variant sets, for `attribute-control` checks.
fn attrs_set(v: &JobVariant) -> Vec<&'static str> {
    let mut out = execution_attrs_set(v);
    macro_rules! check {
        ($($field:ident => $name:literal),* $(,)?) => {
            $(if v.$field.is_some() { out.push($name); })*
        };
    }
    check!(
        tags => "tags",
        provides => "provides",
        requires => "requires",
        files => "files",
        irrelevant_files => "irrelevant-files",
        dependencies => "dependencies",
        failure_output => "failure-output",
        voting => "voting",
    );
    out
}

fn union(acc: &mut Vec<String>, new: &[String]) {
    for s in new {
        if !acc.contains(s) {
            acc.push(s.clone());
        }
    }
}

fn merge_list(acc: &mut Vec<String>, c: &Controlled<Vec<String>>, default_union: bool) {
    let union_it = match c.control {
        MergeControl::Override => false,
        MergeControl::Inherit => true,
        MergeControl::Default => default_union,
    };
    if union_it {
        union(acc, &c.value);
    } else {
        *acc = c.value.clone();
    }
}

fn merge_vars(acc: &mut Vars, c: &Controlled<Vars>) {
    if c.control == MergeControl::Override {
        *acc = c.value.clone();
    } else {
        deep_merge(acc, &c.value);
    }
}

/// The implicit role name of a repository: its last path component without leading
/// `ansible-` / `role-` style prefixes.
pub fn implicit_role_name(short_name: &str) -> String {
    let last = short_name.rsplit('/').next().unwrap_or(short_name);
    let mut rest = last;
    for prefix in ["ansible", "role"] {
        while let Some(after) = rest.strip_prefix(prefix) {
            rest = after.trim_start_matches(['-', '_', '.', '+']);
        }
    }
    if rest.is_empty() {
        last.to_string()
    } else {
        rest.to_string()
    }
}

fn add_roles(existing: &[RoleRef], new: &[RoleRef]) -> Vec<RoleRef> {
    let mut out: Vec<RoleRef> = Vec::with_capacity(existing.len() + new.len());
    for e in existing {
        let replacement = new
            .iter()
            .find(|n| e.implicit && !n.implicit && n.project == e.project);
        out.push(replacement.cloned().unwrap_or_else(|| e.clone()));
    }
    for n in new.iter().rev() {
        if !out
            .iter()
            .any(|o| o.project == n.project && o.target_name == n.target_name)
        {
            out.insert(0, n.clone());
        }
    }
    out
}

impl Layout {
    fn role_project(&self, written: &str, src: &SourceContext) -> String {
        if let Some(p) = self.resolve_project(written) {
            return p.canonical_name.clone();
        }
        let first = written.split('/').next().unwrap_or("");
        if written.split('/').count() >= 3 && first.contains('.') {
            written.to_string()
        } else {
            format!("{}/{}", src.hostname, written)
        }
    }

    fn variant_roles(&self, v: &JobVariant, src: &SourceContext) -> Vec<RoleRef> {
        let explicit: Vec<RoleRef> = v
            .roles
            .iter()
            .flatten()
            .map(|r| RoleRef {
                project: self.role_project(&r.project, src),
                target_name: r.name.clone(),
                implicit: false,
            })
            .collect();
        let mut out = Vec::new();
        if !v.project_pipeline && !explicit.iter().any(|r| r.project == src.project) {
            out.push(RoleRef {
                project: src.project.clone(),
                target_name: implicit_role_name(&src.short_name),
                implicit: true,
            });
        }
        out.extend(explicit);
        out
    }

    /// Asks the layout everything the scheduler asks of one, discarding the answers: per project
    /// its merge mode, default branch, queue and variables, every pipeline's jobs frozen in
    /// detail, and the first `job_limit` jobs of the layout frozen on each of its branches.
    /// For the loader fuzzer and its regression replay, which look for panics on these paths.
    pub fn query_everything(&self, job_limit: usize) {
        let jobs: Vec<&str> = self.job_names().take(job_limit).collect();
        for project in self.projects() {
            let name = project.canonical_name.as_str();
            let _ = self.project_merge_mode(name);
            let _ = self.project_default_branch(name);
            let _ = self.project_queue(name);
            for branch in &project.branches {
                let _ = self.project_vars(name, branch);
                for pipeline in self.project_pipelines(name, branch) {
                    for job in self.project_jobs(name, &pipeline, branch) {
                        let _ = self.freeze_detailed(&job, name, branch, Some(&pipeline));
                    }
                }
                for job in &jobs {
                    let _ = self.freeze(job, name, branch);
                }
            }
        }
    }

    /// Freeze `job` for `project` (canonical or short name) on `branch`, applying the
    /// project-pipeline entries of the first pipeline that lists the job (if any).
    pub fn freeze(&self, job: &str, project: &str, branch: &str) -> Result<FrozenJob, FreezeError> {
        self.freeze_detailed(job, project, branch, None)
            .map(|d| d.job)
    }

    /// Freeze with every detail, optionally for one pipeline's project-pipeline entries
    /// (`None`: the first pipeline, in order of appearance, that lists the job).
    pub fn freeze_detailed(
        &self,
        job: &str,
        project: &str,
        branch: &str,
        pipeline: Option<&str>,
    ) -> Result<FrozenJobDetails, FreezeError> {
        if !self.jobs.contains_key(job) {
            return Err(FreezeError::UnknownJob {
                job: job.to_string(),
            });
        }
        let stanzas = self.applicable_stanzas(project, branch);

        // Project-pipeline variants of the job.
        let chosen_pipeline: Option<String> = match pipeline {
            Some(p) => Some(p.to_string()),
            None => stanzas.iter().find_map(|st| {
                st.pipelines
                    .iter()
                    .find(|(_, pp)| pp.jobs.iter().any(|v| v.name == job))
                    .map(|(name, _)| name.clone())
            }),
        };
        let mut pp_variants: Vec<&JobVariant> = Vec::new();
        if let Some(pname) = &chosen_pipeline {
            for st in &stanzas {
                if let Some(pp) = st.pipelines.get(pname) {
                    pp_variants.extend(
                        pp.jobs
                            .iter()
                            .filter(|v| v.name == job && self.variant_matches(v, branch)),
                    );
                }
            }
        }
        let listed = !pp_variants.is_empty();

        // Override branch for variant selection (step 1).
        let override_ref = pp_variants.iter().rev().find_map(|v| {
            v.override_checkout
                .clone()
                .or_else(|| v.override_branch.clone())
        });

        // Collect (step 2).
        let mut collected: Vec<(&JobVariant, u32)> = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        let mut visited: HashSet<String> = HashSet::new();
        visited.insert(job.to_string());
        self.collect(
            job,
            job,
            branch,
            override_ref.as_deref(),
            0,
            &mut stack,
            &mut visited,
            &mut collected,
        )?;

        // Apply (step 3), then project-pipeline variants (step 6).
        let mut acc = Acc::new(job);
        for (i, (v, depth)) in collected.iter().enumerate() {
            self.apply(&mut acc, v, *depth, i == 0)?;
        }
        for v in &pp_variants {
            self.apply(&mut acc, v, 0, false)?;
        }

        // Deferred errors (step 7).
        if acc.abstract_ {
            return Err(FreezeError::Abstract {
                job: job.to_string(),
            });
        }
        if acc.run.is_empty() {
            return Err(FreezeError::NoRunPlaybook {
                job: job.to_string(),
            });
        }

        // Project and template vars underneath job vars (step 4).
        let canonical = self.canonical_or_same(project);
        let mut vars = self.project_vars(&canonical, branch);
        deep_merge(&mut vars, &acc.vars);

        // Nodeset.
        let (nodeset, alternatives) = match &acc.nodeset {
            None => (Nodeset::default(), Vec::new()),
            Some((spec, loc)) => self.resolve_nodeset(job, spec, loc)?,
        };

        // Cleanup playbooks go into the post list (executor.md §2 step 8): after the post
        // playbooks of their own inheritance level, before those of outer levels (Zuul counts
        // levels from the base job, this crate from the job itself, hence `>`).
        let mut post_run = acc.post_run.clone();
        for mut pb in acc.cleanup_run.clone() {
            pb.cleanup = true;
            match post_run
                .iter()
                .position(|p| p.nesting_level > pb.nesting_level)
            {
                Some(i) => post_run.insert(i, pb),
                None => post_run.push(pb),
            }
        }

        let frozen = FrozenJob {
            name: job.to_string(),
            nodeset,
            vars,
            extra_vars: acc.extra_vars,
            host_vars: acc.host_vars,
            group_vars: acc.group_vars,
            pre_run: acc.pre_run,
            run: acc.run,
            post_run,
            timeout: acc.timeout,
            pre_timeout: acc.pre_timeout,
            post_timeout: acc.post_timeout,
            attempts: acc.attempts,
            ansible_version: acc.ansible_version,
            ansible_split_streams: acc.ansible_split_streams,
            required_projects: acc.required_projects,
            override_branch: acc.override_branch,
            override_checkout: acc.override_checkout,
            voting: acc.voting,
            tags: acc.tags,
            failure_output: acc.failure_output,
            workspace_scheme: acc.workspace_scheme,
            secret_exposure: acc.secret_exposure,
            post_review: acc.post_review,
            secrets: acc.secrets,
            inheritance_path: acc.inheritance_path,
        };
        Ok(FrozenJobDetails {
            job: frozen,
            description: acc.description,
            dependencies: acc.dependencies,
            files: acc.files,
            irrelevant_files: acc.irrelevant_files,
            semaphores: acc.semaphores,
            provides: acc.provides,
            requires: acc.requires,
            allowed_projects: acc.allowed_projects,
            success_message: acc.success_message,
            failure_message: acc.failure_message,
            hold_following_changes: acc.hold_following_changes,
            match_on_config_updates: acc.match_on_config_updates,
            workspace_checkout: acc.workspace_checkout,
            deduplicate: acc.deduplicate,
            job_type: acc.job_type,
            include_vars: acc.include_vars,
            include_projects: acc.include_projects,
            exclude_projects: acc.exclude_projects,
            preserve_home_paths: acc.preserve_home_paths,
            image_build_name: acc.image_build_name,
            nodeset_alternatives: alternatives,
            listed_in_project: listed,
        })
    }

    fn resolve_nodeset(
        &self,
        job: &str,
        spec: &NodesetSpec,
        loc: &SourceLocation,
    ) -> Result<(Nodeset, Vec<Nodeset>), FreezeError> {
        let unknown = |n: &str| FreezeError::UnknownNodeset {
            job: job.to_string(),
            nodeset: n.to_string(),
            location: Box::new(loc.clone()),
        };
        let def: &NodesetDef = match spec {
            NodesetSpec::Named(n) => self.nodeset_def(n).ok_or_else(|| unknown(n))?,
            NodesetSpec::Inline(def) => def,
        };
        if def.alternatives.is_empty() {
            let ns = self.freeze_nodeset_def(def);
            return Ok((ns.clone(), vec![ns]));
        }
        let mut alts = Vec::new();
        for alt in &def.alternatives {
            match alt {
                NodesetAlternative::Named(n) => {
                    let d = self.nodeset_def(n).ok_or_else(|| unknown(n))?;
                    alts.push(self.freeze_nodeset_def(d));
                }
                NodesetAlternative::Inline(d) => alts.push(self.freeze_nodeset_def(d)),
            }
        }
        let first = alts.first().cloned().unwrap_or_default();
        Ok((first, alts))
    }

    #[allow(clippy::too_many_arguments)]
    fn collect<'a>(
        &'a self,
        top: &str,
        name: &str,
        branch: &str,
        override_ref: Option<&str>,
        depth: u32,
        stack: &mut Vec<String>,
        visited: &mut HashSet<String>,
        out: &mut Vec<(&'a JobVariant, u32)>,
    ) -> Result<(), FreezeError> {
        let Some(variants) = self.jobs.get(name) else {
            return Err(FreezeError::UnknownJob {
                job: name.to_string(),
            });
        };
        stack.push(name.to_string());
        let matched: Vec<&JobVariant> = variants
            .iter()
            .filter(|v| {
                let b = match (override_ref, &v.source) {
                    (Some(o), Some(src))
                        if self
                            .resolve_project(&src.project)
                            .map(|p| p.branches.iter().any(|b| b == o))
                            .unwrap_or(false) =>
                    {
                        o
                    }
                    _ => branch,
                };
                self.variant_matches(v, b)
            })
            .collect();
        if matched.is_empty() {
            return Err(if depth == 0 {
                FreezeError::NoMatchingVariant {
                    job: name.to_string(),
                    branch: branch.to_string(),
                }
            } else {
                FreezeError::ParentNoMatchingVariant {
                    job: top.to_string(),
                    parent: name.to_string(),
                    branch: branch.to_string(),
                }
            });
        }
        for (i, v) in matched.into_iter().enumerate() {
            let parent = match &v.parent {
                Parent::Named(p) => Some(p.clone()),
                Parent::Base => None,
                Parent::Unset if i == 0 => self.default_parent.clone().filter(|d| d != name),
                Parent::Unset => None,
            };
            if let Some(p) = parent {
                if stack.contains(&p) {
                    let mut chain = stack.clone();
                    chain.push(p);
                    return Err(FreezeError::ParentCycle {
                        job: top.to_string(),
                        chain: chain.join(" -> "),
                    });
                }
                if visited.insert(p.clone()) {
                    if !self.jobs.contains_key(&p) {
                        return Err(FreezeError::UnknownParent {
                            job: name.to_string(),
                            parent: p,
                            location: Box::new(v.location()),
                        });
                    }
                    self.collect(
                        top,
                        &p,
                        branch,
                        override_ref,
                        depth + 1,
                        stack,
                        visited,
                        out,
                    )?;
                }
            }
            out.push((v, depth));
        }
        stack.pop();
        Ok(())
    }

    fn bind_secrets(
        &self,
        acc: &mut Acc,
        v: &JobVariant,
        src: &SourceContext,
    ) -> Result<(Vec<PlaybookSecret>, Vec<PlaybookSecret>), FreezeError> {
        let mut own = Vec::new();
        let mut to_parent = Vec::new();
        for use_ in v.secrets.iter().flatten() {
            let err = |reason: String| FreezeError::Secret {
                job: acc.name.clone(),
                secret: use_.secret.clone(),
                location: Box::new(src.location()),
                reason,
            };
            let def = self
                .secrets
                .get(&use_.secret)
                .ok_or_else(|| err("not defined".into()))?;
            if def.source.project != src.project {
                return Err(err(format!(
                    "defined in {} and may only be used by jobs of that project",
                    def.source.project
                )));
            }
            let index = match acc
                .secrets
                .iter()
                .position(|s| s.name == def.name && s.project == def.source.project)
            {
                Some(i) => i,
                None => {
                    acc.secrets.push(FrozenSecret {
                        name: def.name.clone(),
                        project: def.source.project.clone(),
                        data: def.data.clone(),
                    });
                    acc.secrets.len() - 1
                }
            };
            let ps = PlaybookSecret {
                var_name: use_.var_name.clone(),
                index,
            };
            if use_.pass_to_parent {
                to_parent.push(ps.clone());
            }
            own.push(ps);
        }
        Ok((own, to_parent))
    }

    fn apply(
        &self,
        acc: &mut Acc,
        v: &JobVariant,
        depth: u32,
        first: bool,
    ) -> Result<(), FreezeError> {
        let Some(src) = v.source.as_ref() else {
            return Ok(());
        };
        let loc = src.location();

        // Inheritance (the name changes from parent to child) versus a variant.
        if !first && v.name != acc.name {
            if acc.final_ {
                return Err(FreezeError::InheritFinal {
                    job: v.name.clone(),
                    parent: acc.name.clone(),
                    location: Box::new(loc),
                });
            }
            if acc.intermediate && v.abstract_ != Some(true) {
                return Err(FreezeError::Intermediate {
                    job: v.name.clone(),
                    parent: acc.name.clone(),
                    location: Box::new(loc),
                });
            }
            if let Some(origin) = &acc.protected_origin {
                if origin != &src.project {
                    return Err(FreezeError::Protected {
                        job: acc.name.clone(),
                        origin: origin.clone(),
                        location: Box::new(loc),
                    });
                }
            }
            acc.name = v.name.clone();
            acc.abstract_ = v.abstract_.unwrap_or(false);
            acc.intermediate = v.intermediate.unwrap_or(false);
        } else {
            if first {
                acc.name = v.name.clone();
            }
            acc.abstract_ |= v.abstract_.unwrap_or(false);
            acc.intermediate |= v.intermediate.unwrap_or(false);
        }

        // Final / protected / attribute-control checks.
        let exec = execution_attrs_set(v);
        if let Some(attr) = exec.first() {
            if acc.final_ {
                return Err(FreezeError::Final {
                    job: acc.name.clone(),
                    attribute: attr.to_string(),
                    location: Box::new(loc),
                });
            }
            if let Some(origin) = &acc.protected_origin {
                if origin != &src.project {
                    return Err(FreezeError::Protected {
                        job: acc.name.clone(),
                        origin: origin.clone(),
                        location: Box::new(loc),
                    });
                }
            }
        }
        if let Some(attr) = attrs_set(v)
            .into_iter()
            .find(|a| acc.final_attrs.iter().any(|f| f == a))
        {
            return Err(FreezeError::Final {
                job: acc.name.clone(),
                attribute: attr.to_string(),
                location: Box::new(loc),
            });
        }
        if v.final_ == Some(true) {
            acc.final_ = true;
        }
        match v.protected {
            Some(true) if acc.protected_origin.is_none() => {
                acc.protected_origin = Some(src.project.clone())
            }
            Some(false) if acc.protected_origin.is_some() => {
                return Err(FreezeError::Protected {
                    job: acc.name.clone(),
                    origin: acc.protected_origin.clone().unwrap_or_default(),
                    location: Box::new(loc),
                });
            }
            _ => {}
        }
        union(&mut acc.final_attrs, &v.final_attributes);

        // Simple replacements.
        if let Some(d) = &v.description {
            acc.description = Some(d.clone());
        }
        if let Some(ns) = &v.nodeset {
            acc.nodeset = Some((ns.clone(), loc.clone()));
        }
        macro_rules! replace {
            ($($field:ident),*) => { $(if let Some(x) = &v.$field { acc.$field = Some(x.clone()); })* };
        }
        replace!(
            timeout,
            pre_timeout,
            post_timeout,
            ansible_version,
            override_branch,
            override_checkout,
            success_message,
            failure_message,
            preserve_home_paths,
            image_build_name
        );
        macro_rules! replace_plain {
            ($($field:ident),*) => { $(if let Some(x) = &v.$field { acc.$field = x.clone(); })* };
        }
        replace_plain!(
            attempts,
            ansible_split_streams,
            voting,
            hold_following_changes,
            match_on_config_updates,
            workspace_scheme,
            workspace_checkout,
            deduplicate,
            job_type,
            secret_exposure
        );
        if v.post_review == Some(true) {
            acc.post_review = true;
        }
        if let Some(ap) = &v.allowed_projects {
            let ap: Vec<String> = ap.iter().map(|p| self.canonical_or_same(p)).collect();
            acc.allowed_projects = Some(match acc.allowed_projects.take() {
                None => ap,
                Some(cur) => cur.into_iter().filter(|p| ap.contains(p)).collect(),
            });
        }

        // Roles, then secrets, then playbooks bound to both.
        let new_roles = self.variant_roles(v, src);
        if !new_roles.is_empty() {
            acc.roles = add_roles(&acc.roles, &new_roles);
        }
        let (own_secrets, to_parent) = self.bind_secrets(acc, v, src)?;
        if !own_secrets.is_empty() && !src.trusted {
            acc.post_review = true;
            let own = src.project.clone();
            acc.allowed_projects = Some(match acc.allowed_projects.take() {
                None => vec![own],
                Some(cur) => cur.into_iter().filter(|p| p == &own).collect(),
            });
        }
        let make = |defs: &Vec<PlaybookDef>, roles: &Vec<RoleRef>| -> Vec<PlaybookRef> {
            defs.iter()
                .map(|d| PlaybookRef {
                    project: src.project.clone(),
                    branch: src.branch.clone(),
                    path: d.path.clone(),
                    trusted: src.trusted,
                    roles: roles.clone(),
                    secrets: own_secrets.clone(),
                    nesting_level: depth,
                    cleanup: d.cleanup,
                    semaphores: d.semaphores.clone(),
                })
                .collect()
        };
        if let Some(run) = &v.run {
            acc.run = make(run, &acc.roles);
        }
        if let Some(pre) = &v.pre_run {
            let new = make(pre, &acc.roles);
            acc.pre_run.extend(new);
        }
        if let Some(post) = &v.post_run {
            let mut new = make(post, &acc.roles);
            new.append(&mut acc.post_run);
            acc.post_run = new;
        }
        if let Some(cleanup) = &v.cleanup_run {
            let mut new = make(cleanup, &acc.roles);
            new.append(&mut acc.cleanup_run);
            acc.cleanup_run = new;
        }
        for ps in &to_parent {
            for pb in acc
                .pre_run
                .iter_mut()
                .chain(acc.run.iter_mut())
                .chain(acc.post_run.iter_mut())
                .chain(acc.cleanup_run.iter_mut())
            {
                if !pb.secrets.iter().any(|s| s.var_name == ps.var_name) {
                    pb.secrets.push(ps.clone());
                }
            }
        }

        // Merged attributes.
        if let Some(c) = &v.vars {
            merge_vars(&mut acc.vars, c);
        }
        if let Some(c) = &v.extra_vars {
            merge_vars(&mut acc.extra_vars, c);
        }
        if let Some(c) = &v.host_vars {
            merge_vars(&mut acc.host_vars, c);
        }
        if let Some(c) = &v.group_vars {
            merge_vars(&mut acc.group_vars, c);
        }
        if let Some(c) = &v.required_projects {
            if c.control == MergeControl::Override {
                acc.required_projects.clear();
            }
            for rp in &c.value {
                match acc.required_projects.iter_mut().find(|p| p.name == rp.name) {
                    Some(existing) => *existing = rp.clone(),
                    None => acc.required_projects.push(rp.clone()),
                }
            }
        }
        if let Some(c) = &v.include_vars {
            if c.control == MergeControl::Override {
                acc.include_vars.clear();
            }
            for iv in &c.value {
                if !acc.include_vars.contains(iv) {
                    acc.include_vars.push(iv.clone());
                }
            }
        }
        if let Some(sems) = &v.semaphores {
            for s in sems {
                if !acc.semaphores.iter().any(|x| x.name == s.name) {
                    acc.semaphores.push(s.clone());
                }
            }
            acc.semaphores.sort_by(|a, b| a.name.cmp(&b.name));
        }
        if let Some(c) = &v.tags {
            merge_list(&mut acc.tags, c, true);
        }
        if let Some(c) = &v.provides {
            merge_list(&mut acc.provides, c, true);
        }
        if let Some(c) = &v.requires {
            merge_list(&mut acc.requires, c, true);
        }
        if let Some(c) = &v.failure_output {
            merge_list(&mut acc.failure_output, c, true);
            acc.failure_output.sort();
        }
        if let Some(c) = &v.files {
            merge_list(&mut acc.files, c, false);
        }
        if let Some(c) = &v.irrelevant_files {
            merge_list(&mut acc.irrelevant_files, c, false);
        }
        if let Some(c) = &v.dependencies {
            if c.control == MergeControl::Inherit {
                for d in &c.value {
                    if !acc.dependencies.iter().any(|x| x.name == d.name) {
                        acc.dependencies.push(d.clone());
                    }
                }
            } else {
                acc.dependencies = c.value.clone();
            }
        }
        for (control, slot) in [
            (&v.include_projects, &mut acc.include_projects),
            (&v.exclude_projects, &mut acc.exclude_projects),
        ] {
            if let Some(c) = control {
                if c.control == MergeControl::Inherit {
                    for x in &c.value {
                        if !slot.contains(x) {
                            slot.push(x.clone());
                        }
                    }
                } else {
                    *slot = c.value.clone();
                }
            }
        }

        let branches = v
            .branches
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_else(|| "None".into());
        let kind = if v.project_pipeline {
            "project-pipeline "
        } else {
            ""
        };
        acc.inheritance_path.push(format!(
            "<Job {} {}branches: {} source: {}>",
            v.name, kind, branches, src
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_role_names_strip_prefixes() {
        assert_eq!(implicit_role_name("org/ansible-role-foo"), "foo");
        assert_eq!(implicit_role_name("org/role-bar"), "bar");
        assert_eq!(implicit_role_name("org/zuul-jobs"), "zuul-jobs");
        assert_eq!(implicit_role_name("org/ansible"), "ansible");
    }

    #[test]
    fn deep_merge_merges_nested_dicts() {
        let mut a: Vars = serde_json::from_str(r#"{"x": {"a": 1, "b": 2}, "y": 1}"#).unwrap();
        let b: Vars = serde_json::from_str(r#"{"x": {"b": 3, "c": 4}, "y": {"z": 1}}"#).unwrap();
        deep_merge(&mut a, &b);
        assert_eq!(
            JsonValue::Object(a),
            serde_json::json!({"x": {"a": 1, "b": 3, "c": 4}, "y": {"z": 1}})
        );
    }

    #[test]
    fn add_roles_puts_new_first_and_replaces_implicit() {
        let r = |p: &str, t: &str, i: bool| RoleRef {
            project: p.into(),
            target_name: t.into(),
            implicit: i,
        };
        let existing = vec![r("h/a", "a", true), r("h/b", "b", false)];
        let new = vec![r("h/c", "c", true), r("h/a", "a", false)];
        let out = add_roles(&existing, &new);
        assert_eq!(
            out,
            vec![
                r("h/c", "c", true),
                r("h/a", "a", false),
                r("h/b", "b", false)
            ]
        );
    }
}
