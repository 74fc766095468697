//! Tenant layouts: every project-branch's configuration read with the one loader
//! (`sluice-config`) from the branch tips, and speculative layouts in which the
//! untrusted projects a queue item changes are read from the scheduler's merge of that item.
//!
//! Branch tips are read straight from each repository's object database (`config_at`): only
//! the configuration files' blobs, no checkout, so a tenant of a thousand projects loads in
//! about a second from the first start (checking each project out cost a minute).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sluice_config::{
    parse_project_files, ConfigError, ConfigErrorKind, ItemContext, Layout, ProjectConfig,
    ProjectSource, SourceLocation, CONFIG_ROOTS,
};
use sluice_executor::request::ProjectSpec;

use crate::errors::SchedulerError;
use crate::git::{GitDriver, REVIEW_PREFIX};
use crate::pipeline::{parse_pipeline, Pipeline};
use crate::tenant::{TenantConfig, TenantProject};

/// A tenant project with where it lives.
#[derive(Debug, Clone)]
pub struct ResolvedProject {
    /// Its tenant entry.
    pub entry: TenantProject,
    /// Canonical name.
    pub canonical: String,
    /// The repository on disk.
    pub path: PathBuf,
    /// Its default branch.
    pub default_branch: String,
}

/// One project-branch's parsed configuration, as loaded.
#[derive(Debug, Clone)]
struct LoadedConfig {
    project_idx: usize,
    branch: String,
    /// The commit it was read from.
    sha: String,
    config: Arc<ProjectConfig>,
}

/// A branch tip: `(project, branch, sha)`.
pub type Tip = (String, String, String);

/// A tenant with its current layout.
#[derive(Debug)]
pub struct TenantLayout {
    /// The tenant's configuration.
    pub tenant: TenantConfig,
    /// Projects in load order.
    pub projects: Vec<ResolvedProject>,
    /// The layout of the branch tips (shared with speculative layouts that change nothing).
    pub layout: Arc<Layout>,
    /// Usable pipelines.
    pub pipelines: Vec<Pipeline>,
    /// `(project, branch, sha)` of every tip loaded: the layout is reloaded when it changes.
    pub fingerprint: Vec<Tip>,
    /// Configuration errors of the branch tips (the items in error are left out of `layout`).
    pub errors: Vec<ConfigError>,
    loaded: Vec<LoadedConfig>,
}

/// A project-branch's configuration in a speculative state (the changes merged), for a
/// speculative layout.
#[derive(Debug, Clone)]
pub struct Override {
    /// Canonical project name.
    pub project: String,
    /// Branch.
    pub branch: String,
    /// The configuration read from the speculative commit (before the tenant's `include` /
    /// `exclude` filter).
    pub config: Arc<ProjectConfig>,
}

/// A tenant project resolved on its connection, with its branch tips `(project, branch, sha)`:
/// the default branch of a config-project, every branch but review branches of an untrusted
/// one. One repository open.
fn read_project(
    entry: &TenantProject,
    driver: &GitDriver,
) -> Result<(ResolvedProject, Vec<Tip>), SchedulerError> {
    let (refs, default_branch) = driver.tips(&entry.name)?;
    let canonical = driver.canonical(&entry.name);
    let mut tips = Vec::new();
    for (refname, sha) in &refs {
        let Some(branch) = refname.strip_prefix("refs/heads/") else {
            continue;
        };
        let wanted = if entry.trusted {
            branch == default_branch
        } else {
            !branch.starts_with(REVIEW_PREFIX)
        };
        if wanted {
            tips.push((canonical.clone(), branch.to_string(), sha.clone()));
        }
    }
    let resolved = ResolvedProject {
        entry: entry.clone(),
        canonical,
        path: driver.repo_path(&entry.name),
        default_branch,
    };
    Ok((resolved, tips))
}

/// Every project of `tenant` on a known connection, resolved, with the tips of all of them
/// (in the tenant's project order).
fn read_projects(
    tenant: &TenantConfig,
    drivers: &[GitDriver],
    wanted: &(dyn Fn(&TenantProject) -> bool + Sync),
    previous: Option<&TenantLayout>,
) -> Result<(Vec<ResolvedProject>, Vec<Tip>), SchedulerError> {
    let mut entries = Vec::new();
    for entry in &tenant.projects {
        match drivers.iter().find(|d| d.name == entry.connection) {
            Some(driver) => entries.push((entry, driver)),
            None => {
                tracing::warn!(tenant = %tenant.name, project = %entry.name, connection = %entry.connection, "unknown connection")
            }
        }
    }
    let old: HashMap<&str, (&ResolvedProject, Vec<&Tip>)> = previous
        .map(|t| {
            let mut m: HashMap<&str, (&ResolvedProject, Vec<&Tip>)> = t
                .projects
                .iter()
                .map(|p| (p.canonical.as_str(), (p, Vec::new())))
                .collect();
            for tip in &t.fingerprint {
                if let Some((_, tips)) = m.get_mut(tip.0.as_str()) {
                    tips.push(tip);
                }
            }
            m
        })
        .unwrap_or_default();
    let read = map_parallel(&entries, |(entry, driver)| {
        let canonical = driver.canonical(&entry.name);
        match old.get(canonical.as_str()) {
            Some((resolved, tips)) if !wanted(entry) => Ok((
                (*resolved).clone(),
                tips.iter().map(|t| (*t).clone()).collect(),
            )),
            _ => read_project(entry, driver),
        }
    });
    let mut projects = Vec::new();
    let mut fingerprint = Vec::new();
    for r in read {
        let (resolved, tips) = r?;
        projects.push(resolved);
        fingerprint.extend(tips);
    }
    Ok((projects, fingerprint))
}

/// The configuration of every tip of `fingerprint`, in its order: taken from `previous` where
/// the project-branch is at the same commit, else read from git (projects in parallel).
fn load_configs(
    projects: &[ResolvedProject],
    fingerprint: &[Tip],
    previous: &[LoadedConfig],
) -> Result<Vec<LoadedConfig>, SchedulerError> {
    let index: HashMap<&str, usize> = projects
        .iter()
        .enumerate()
        .map(|(i, p)| (p.canonical.as_str(), i))
        .collect();
    let kept: HashMap<(&str, &str, &str), &Arc<ProjectConfig>> = previous
        .iter()
        .filter_map(|l| {
            let p = projects.get(l.project_idx)?;
            Some((
                (p.canonical.as_str(), l.branch.as_str(), l.sha.as_str()),
                &l.config,
            ))
        })
        .collect();
    // Runs of the same project (fingerprint order keeps a project's branches together), so a
    // repository is opened once for all its branches.
    let mut groups: Vec<(usize, Vec<&Tip>)> = Vec::new();
    for tip in fingerprint {
        let Some(&idx) = index.get(tip.0.as_str()) else {
            continue;
        };
        match groups.last_mut() {
            Some((i, tips)) if *i == idx => tips.push(tip),
            _ => groups.push((idx, vec![tip])),
        }
    }
    let read = map_parallel(&groups, |(idx, tips)| {
        let p = &projects[*idx];
        let mut repo = None;
        let mut out = Vec::new();
        for (project, branch, sha) in tips {
            let config = match kept.get(&(project.as_str(), branch.as_str(), sha.as_str())) {
                Some(config) => Arc::clone(config),
                None => {
                    let repo = match &repo {
                        Some(r) => r,
                        None => repo.insert(git2::Repository::open(&p.path).map_err(|source| {
                            SchedulerError::Git {
                                project: project.clone(),
                                what: format!("open repository for {sha}"),
                                source,
                            }
                        })?),
                    };
                    let source = ProjectSource {
                        canonical_hostname: hostname_of(project, &p.entry.name),
                        name: p.entry.name.clone(),
                        root: p.path.clone(),
                        trusted: p.entry.trusted,
                        branch: branch.clone(),
                    };
                    let mut config = config_in(repo, &source, project, sha)?;
                    p.entry.filter(&mut config);
                    Arc::new(config)
                }
            };
            out.push(LoadedConfig {
                project_idx: *idx,
                branch: branch.clone(),
                sha: sha.clone(),
                config,
            });
        }
        Ok::<_, SchedulerError>(out)
    });
    let mut loaded = Vec::new();
    for r in read {
        loaded.extend(r?);
    }
    Ok(loaded)
}

/// Runs `f` on every element of `items` on up to the machine's cores, results in the
/// elements' order (so what is built from them does not depend on the threads).
fn map_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<R>> = Vec::with_capacity(items.len());
    slots.resize_with(items.len(), || None);
    let done: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return out;
                        };
                        out.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| match w.join() {
                Ok(out) => out,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    for (i, r) in done.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots.into_iter().flatten().collect()
}

impl TenantLayout {
    /// The tips a layout for `tenant` would be loaded from.
    pub fn fingerprint_of(
        tenant: &TenantConfig,
        drivers: &[GitDriver],
    ) -> Result<Vec<Tip>, SchedulerError> {
        Ok(read_projects(tenant, drivers, &|_| true, None)?.1)
    }

    /// Loads the layout of the branch tips.
    pub fn load(
        tenant: &TenantConfig,
        drivers: &[GitDriver],
    ) -> Result<TenantLayout, SchedulerError> {
        let (projects, fingerprint) = read_projects(tenant, drivers, &|_| true, None)?;
        let loaded = load_configs(&projects, &fingerprint, &[])?;
        Ok(Self::assemble(tenant, projects, fingerprint, loaded))
    }

    /// The layout built from `loaded` (in fingerprint order), with its pipelines.
    fn assemble(
        tenant: &TenantConfig,
        projects: Vec<ResolvedProject>,
        fingerprint: Vec<Tip>,
        loaded: Vec<LoadedConfig>,
    ) -> TenantLayout {
        let (layout, errors) = build_layout(&tenant.default_parent, &loaded);
        for e in &errors {
            tracing::warn!(tenant = %tenant.name, error = %e, "configuration error");
        }
        let mut pipelines = Vec::new();
        for def in layout.pipelines() {
            match parse_pipeline(def) {
                Ok(p) => pipelines.push(p),
                Err(e) => {
                    tracing::warn!(tenant = %tenant.name, pipeline = %def.name, error = %e, "pipeline not used")
                }
            }
        }
        TenantLayout {
            tenant: tenant.clone(),
            projects,
            layout: Arc::new(layout),
            pipelines,
            fingerprint,
            errors,
            loaded,
        }
    }

    /// This layout after the projects for which `changed` says yes may have moved: their
    /// tips are read again; project-branches whose tip moved are parsed again; the layout is
    /// rebuilt only if a configuration read differs from the one loaded (otherwise only the
    /// recorded tips change). `None` when no tip moved. The result is what [`Self::load`]
    /// would give now.
    fn reload_changed(
        &self,
        drivers: &[GitDriver],
        changed: &(dyn Fn(&TenantProject) -> bool + Sync),
    ) -> Result<Option<TenantLayout>, SchedulerError> {
        let tenant = &self.tenant;
        let (projects, fingerprint) = read_projects(tenant, drivers, changed, Some(self))?;
        let same_projects = projects.len() == self.projects.len()
            && projects.iter().zip(&self.projects).all(|(a, b)| {
                a.canonical == b.canonical
                    && a.path == b.path
                    && a.default_branch == b.default_branch
            });
        if same_projects && fingerprint == self.fingerprint {
            return Ok(None);
        }
        let loaded = load_configs(&projects, &fingerprint, &self.loaded)?;
        let same_configs = same_projects
            && loaded.len() == self.loaded.len()
            && loaded.iter().zip(&self.loaded).all(|(new, old)| {
                new.project_idx == old.project_idx
                    && new.branch == old.branch
                    && (Arc::ptr_eq(&new.config, &old.config) || new.config == old.config)
            });
        if !same_configs {
            tracing::info!(tenant = %tenant.name, "configuration changed: rebuilding the layout");
            return Ok(Some(Self::assemble(tenant, projects, fingerprint, loaded)));
        }
        tracing::debug!(tenant = %tenant.name, "branch tips moved, configuration unchanged");
        Ok(Some(TenantLayout {
            tenant: tenant.clone(),
            projects,
            layout: self.layout.clone(),
            pipelines: self.pipelines.clone(),
            fingerprint,
            errors: self.errors.clone(),
            loaded,
        }))
    }

    /// A project by canonical or short name.
    pub fn project(&self, name: &str) -> Option<&ResolvedProject> {
        self.projects
            .iter()
            .find(|p| p.canonical == name || p.entry.name == name)
    }

    /// The repositories a build may use.
    pub fn project_specs(&self) -> Vec<ProjectSpec> {
        self.projects
            .iter()
            .map(|p| ProjectSpec {
                canonical_hostname: hostname_of(&p.canonical, &p.entry.name),
                name: p.entry.name.clone(),
                source: p.path.clone(),
                default_branch: p.default_branch.clone(),
                trusted: p.entry.trusted,
                exclude_branches: vec![REVIEW_PREFIX.to_string()],
            })
            .collect()
    }

    /// The configuration of `project` (canonical or short name) for `branch` at commit `sha`
    /// of `repo`: a speculative commit the merger made in memory, read like the branch tips.
    pub fn config_of_commit(
        &self,
        project: &str,
        branch: &str,
        repo: &git2::Repository,
        sha: &str,
    ) -> Result<ProjectConfig, SchedulerError> {
        let Some(p) = self.project(project) else {
            return Err(SchedulerError::Invalid {
                path: PathBuf::from(project),
                message: "the project is not in the tenant".into(),
            });
        };
        let src = ProjectSource {
            canonical_hostname: hostname_of(&p.canonical, &p.entry.name),
            name: p.entry.name.clone(),
            root: p.path.clone(),
            trusted: p.entry.trusted,
            branch: branch.to_string(),
        };
        config_in(repo, &src, &p.entry.name, sha)
    }

    /// The layout with some untrusted project-branches' configuration from speculative
    /// states, and the configuration errors found in those project-branches (file, line and
    /// item in each). When every override is the configuration loaded from the branch tip (a
    /// change that does not touch configuration), that is the tips' layout itself, not a
    /// rebuild.
    pub fn speculative(&self, overrides: &[Override]) -> (Arc<Layout>, Vec<ConfigError>) {
        let mut loaded = self.loaded.clone();
        let mut changed = false;
        // Config-project changes are validated, but take effect only once merged.
        let mut trusted: Vec<LoadedConfig> = Vec::new();
        let mut any_trusted = false;
        for o in overrides {
            let Some(idx) = self.projects.iter().position(|p| p.canonical == o.project) else {
                continue;
            };
            let p = &self.projects[idx];
            if p.entry.trusted && o.branch != p.default_branch {
                continue;
            }
            let mut config = (*o.config).clone();
            p.entry.filter(&mut config);
            any_trusted |= p.entry.trusted;
            let same = loaded
                .iter()
                .any(|l| l.project_idx == idx && l.branch == o.branch && *l.config == config);
            if same {
                continue;
            }
            let entry = LoadedConfig {
                project_idx: idx,
                branch: o.branch.clone(),
                sha: String::new(),
                config: Arc::new(config),
            };
            if p.entry.trusted {
                trusted.push(entry);
            } else {
                replace_config(&mut loaded, entry);
                changed = true;
            }
        }
        let relevant = |errors: &[ConfigError], trusted_side: bool| -> Vec<ConfigError> {
            errors
                .iter()
                .filter(|e| {
                    overrides.iter().any(|o| {
                        o.project == e.location.project
                            && o.branch == e.location.branch
                            && self
                                .project(&o.project)
                                .is_some_and(|p| p.entry.trusted == trusted_side)
                    })
                })
                .cloned()
                .collect()
        };
        let (layout, errors) = if changed {
            let (layout, errors) = build_layout(&self.tenant.default_parent, &loaded);
            (Arc::new(layout), errors)
        } else {
            (self.layout.clone(), self.errors.clone())
        };
        let mut found = relevant(&errors, false);
        if !trusted.is_empty() {
            let mut validation = loaded.clone();
            for entry in trusted {
                replace_config(&mut validation, entry);
            }
            let (_, errors) = build_layout(&self.tenant.default_parent, &validation);
            found.extend(relevant(&errors, true));
        } else if any_trusted {
            // The config-projects' checkouts are what is loaded: validating them is building
            // the layout above.
            found.extend(relevant(&errors, true));
        }
        (layout, found)
    }
}

/// Every tenant's current layout, shared read-only with readers in the same process (the
/// web server): the scheduler publishes each reload; a reader takes a snapshot.
#[derive(Debug, Clone, Default)]
pub struct SharedLayouts(Arc<RwLock<Vec<Arc<TenantLayout>>>>);

impl SharedLayouts {
    /// The layouts as last published.
    pub fn snapshot(&self) -> Vec<Arc<TenantLayout>> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// One tenant's layout.
    pub fn tenant(&self, name: &str) -> Option<Arc<TenantLayout>> {
        self.snapshot().into_iter().find(|t| t.tenant.name == name)
    }

    /// Replaces the layouts.
    pub fn publish(&self, layouts: Vec<Arc<TenantLayout>>) {
        match self.0.write() {
            Ok(mut g) => *g = layouts,
            Err(poisoned) => *poisoned.into_inner() = layouts,
        }
    }
}

/// Reloads the layouts of `tenants` whose branch tips moved, keeping the others from `old`.
/// A tenant whose reload fails keeps its previous layout; the first error is returned with
/// the new list, after every tenant was tried.
pub fn refresh_layouts(
    tenants: &[TenantConfig],
    drivers: &[GitDriver],
    old: Vec<Arc<TenantLayout>>,
) -> (Vec<Arc<TenantLayout>>, Option<SchedulerError>) {
    refresh_layouts_of(tenants, drivers, old, &|_| true)
}

/// [`refresh_layouts`], reading again only the tips of the projects for which `changed` says
/// yes (the others are known not to have moved since `old` was loaded). Only the
/// project-branches whose tip moved are parsed again, and a layout is rebuilt only when a
/// configuration differs.
pub fn refresh_layouts_of(
    tenants: &[TenantConfig],
    drivers: &[GitDriver],
    old: Vec<Arc<TenantLayout>>,
    changed: &(dyn Fn(&TenantProject) -> bool + Sync),
) -> (Vec<Arc<TenantLayout>>, Option<SchedulerError>) {
    let mut out = Vec::new();
    let mut old: HashMap<String, Arc<TenantLayout>> = old
        .into_iter()
        .map(|t| (t.tenant.name.clone(), t))
        .collect();
    let mut first_error = None;
    for tc in tenants {
        let previous = old.remove(&tc.name);
        let reloaded = match &previous {
            Some(p) => p.reload_changed(drivers, changed),
            None => {
                tracing::info!(tenant = %tc.name, "loading layout");
                TenantLayout::load(tc, drivers).map(Some)
            }
        };
        match reloaded {
            Ok(Some(t)) => out.push(Arc::new(t)),
            Ok(None) => out.extend(previous),
            Err(e) => {
                out.extend(previous);
                first_error.get_or_insert(e);
            }
        }
    }
    (out, first_error)
}

fn replace_config(loaded: &mut Vec<LoadedConfig>, entry: LoadedConfig) {
    match loaded
        .iter_mut()
        .find(|l| l.project_idx == entry.project_idx && l.branch == entry.branch)
    {
        Some(l) => l.config = entry.config,
        None => loaded.push(entry),
    }
}

fn hostname_of(canonical: &str, short: &str) -> String {
    canonical
        .strip_suffix(short)
        .map(|h| h.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "localhost".into())
}

fn build_layout(default_parent: &str, loaded: &[LoadedConfig]) -> (Layout, Vec<ConfigError>) {
    let mut layout = Layout::new(Some(default_parent.to_string()));
    let trusted_first = loaded
        .iter()
        .filter(|l| l.config.trusted)
        .chain(loaded.iter().filter(|l| !l.config.trusted));
    for l in trusted_first {
        layout.add((*l.config).clone());
    }
    let errors = match layout.check() {
        Ok(()) => layout.errors().to_vec(),
        Err(errs) => errs.iter().cloned().collect(),
    };
    (layout, errors)
}

/// One project-branch's configuration at commit `sha`, read from the repository's object
/// database (`src.root`) with the file loader's rules: the first of `CONFIG_ROOTS` with content
/// wins, `*.yaml` files of a directory root in path order, symlinks followed inside the
/// repository only, text must be UTF-8.
#[cfg(test)]
fn config_at(
    src: &ProjectSource,
    project: &str,
    sha: &str,
) -> Result<ProjectConfig, SchedulerError> {
    let repo = git2::Repository::open(&src.root).map_err(crate::git::git_err(
        project,
        &format!("open repository for {sha}"),
    ))?;
    config_in(&repo, src, project, sha)
}

/// [`config_at`] in an open repository.
fn config_in(
    repo: &git2::Repository,
    src: &ProjectSource,
    project: &str,
    sha: &str,
) -> Result<ProjectConfig, SchedulerError> {
    let git = |what: &str| crate::git::git_err(project, &format!("{what} {sha}"));
    let oid = git2::Oid::from_str(sha).map_err(git("parse"))?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(git("read the tree of"))?;

    let mut chosen: Option<Vec<String>> = None;
    let mut warnings = Vec::new();
    for name in CONFIG_ROOTS {
        let mut files = Vec::new();
        match tree.get_path(Path::new(name)) {
            Ok(entry)
                if name.ends_with(".yaml") && entry.kind() == Some(git2::ObjectType::Blob) =>
            {
                files.push(name.to_string());
            }
            Ok(_) if name.ends_with(".yaml") => {}
            Ok(entry) if entry.kind() == Some(git2::ObjectType::Tree) => {
                let dir = entry.to_object(repo).and_then(|o| o.peel_to_tree());
                let dir = dir.map_err(git("read directory at"))?;
                dir.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
                    let file = e.name().unwrap_or_default();
                    if e.kind() == Some(git2::ObjectType::Blob) && file.ends_with(".yaml") {
                        files.push(format!("{name}/{parent}{file}"));
                    }
                    git2::TreeWalkResult::Ok
                })
                .map_err(git("walk directory at"))?;
                files.sort();
            }
            _ => {}
        }
        if files.is_empty() {
            continue;
        }
        if chosen.is_some() {
            warnings.push(format!(
                "multiple project configurations: \"{name}\" is ignored because an earlier root has content"
            ));
        } else {
            chosen = Some(files);
        }
    }

    let mut contents = Vec::new();
    let mut errors = Vec::new();
    for rel in chosen.unwrap_or_default() {
        let io_error = |message: &str| {
            ConfigError::new(
                SourceLocation {
                    project: src.canonical_name(),
                    branch: src.branch.clone(),
                    path: rel.clone(),
                    line: 0,
                    column: 0,
                },
                ItemContext::default(),
                ConfigErrorKind::Io {
                    message: message.to_string(),
                },
            )
        };
        match blob_text(repo, &tree, &rel) {
            Ok(text) => contents.push((rel.clone(), text)),
            Err(message) => errors.push(io_error(message)),
        }
    }
    let mut config = parse_project_files(src, &contents);
    config.warnings.extend(warnings);
    errors.append(&mut config.errors);
    config.errors = errors;
    Ok(config)
}

/// The text of the file at `rel` in `tree`, following symlinks that stay inside the tree.
fn blob_text(
    repo: &git2::Repository,
    tree: &git2::Tree,
    rel: &str,
) -> Result<String, &'static str> {
    const OUTSIDE: &str = "file resolves outside the repository";
    let mut path = rel.to_string();
    // A bounded number of hops, as the kernel bounds symlink chains.
    for _ in 0..40 {
        let entry = tree.get_path(Path::new(&path)).map_err(|_| OUTSIDE)?;
        let blob = entry
            .to_object(repo)
            .and_then(|o| o.peel_to_blob())
            .map_err(|_| "cannot read the file from git")?;
        if entry.filemode() != 0o120000 {
            return String::from_utf8(blob.content().to_vec())
                .map_err(|_| "file is not valid UTF-8");
        }
        let target = std::str::from_utf8(blob.content()).map_err(|_| OUTSIDE)?;
        if target.starts_with('/') {
            return Err(OUTSIDE);
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        parts.pop();
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop().ok_or(OUTSIDE)?;
                }
                p => parts.push(p),
            }
        }
        path = parts.join("/");
    }
    Err(OUTSIDE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::load_project_lenient;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn reading_from_git_matches_reading_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |rel: &str, bytes: &[u8]| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        };
        git(root, &["init", "-q", "-b", "main"]);
        write("zuul.d/b.yaml", b"- job:\n    name: b\n");
        write(
            "zuul.d/sub/a.yaml",
            b"- job:\n    name: a\n    colour: red\n",
        );
        write("zuul.d/notes.txt", b"not configuration");
        write("zuul.d/latin1.yaml", b"- job:\n    name: caf\xe9\n");
        write("shared/jobs.yaml", b"- job:\n    name: linked\n");
        write(".zuul.yaml", b"- job:\n    name: ignored\n");
        std::os::unix::fs::symlink("../shared/jobs.yaml", root.join("zuul.d/link.yaml")).unwrap();
        std::os::unix::fs::symlink("../../../etc/hostname", root.join("zuul.d/escape.yaml"))
            .unwrap();
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", "config"]);
        let sha = git(root, &["rev-parse", "HEAD"]);
        let src = ProjectSource {
            canonical_hostname: "localhost".into(),
            name: "org/a".into(),
            root: root.to_path_buf(),
            trusted: false,
            branch: "main".into(),
        };

        let from_git = config_at(&src, "localhost/org/a", &sha).unwrap();
        let from_checkout = load_project_lenient(&src);
        let errors = |c: &ProjectConfig| c.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        let jobs = |c: &ProjectConfig| c.jobs.iter().map(|j| j.name.clone()).collect::<Vec<_>>();
        assert_eq!(from_git.files, from_checkout.files);
        assert_eq!(errors(&from_git), errors(&from_checkout));
        assert_eq!(from_git.warnings, from_checkout.warnings);
        assert_eq!(jobs(&from_git), jobs(&from_checkout));
        // And what both say: sorted `*.yaml` files of the first root, the symlink inside the
        // repository followed, the one leading out refused, bad UTF-8 and bad keys reported.
        assert_eq!(
            from_git.files,
            ["zuul.d/b.yaml", "zuul.d/link.yaml", "zuul.d/sub/a.yaml"]
        );
        assert_eq!(jobs(&from_git), ["b", "linked"]);
        let text = errors(&from_git).join("\n");
        assert!(
            text.contains("zuul.d/escape.yaml") && text.contains("outside the repository"),
            "{text}"
        );
        assert!(
            text.contains("zuul.d/latin1.yaml") && text.contains("UTF-8"),
            "{text}"
        );
        assert!(text.contains("colour"), "{text}");
        assert_eq!(from_git.warnings.len(), 1, "{:?}", from_git.warnings);
    }
}
