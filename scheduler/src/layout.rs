//! Tenant layouts: every project-branch's configuration read with the one loader
//! (`sluice-config`) from checkouts of the branch tips, and speculative layouts in which the
//! untrusted projects a queue item changes are read from the scheduler's merge of that item.
//!
//! Checkouts of branch tips are cached on disk by commit (`<state>/config-cache/`), written to a
//! temporary directory and renamed, so a crash never leaves a half checkout in the cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sluice_config::{load_project_lenient, ConfigError, Layout, ProjectConfig, ProjectSource};
use sluice_executor::request::ProjectSpec;

use crate::errors::SchedulerError;
use crate::git::GitDriver;
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
    config: ProjectConfig,
}

/// A tenant with its current layout.
#[derive(Debug)]
pub struct TenantLayout {
    /// The tenant's configuration.
    pub tenant: TenantConfig,
    /// Projects in load order.
    pub projects: Vec<ResolvedProject>,
    /// The layout of the branch tips.
    pub layout: Layout,
    /// Usable pipelines.
    pub pipelines: Vec<Pipeline>,
    /// `(project, branch, sha)` of every tip loaded: the layout is reloaded when it changes.
    pub fingerprint: Vec<(String, String, String)>,
    /// Configuration errors of the branch tips (the items in error are left out of `layout`).
    pub errors: Vec<ConfigError>,
    loaded: Vec<LoadedConfig>,
}

/// Where a project-branch's configuration comes from for a speculative layout.
#[derive(Debug, Clone)]
pub struct Override {
    /// Canonical project name.
    pub project: String,
    /// Branch.
    pub branch: String,
    /// A checkout of the speculative state.
    pub root: PathBuf,
}

impl TenantLayout {
    /// The tips a layout for `tenant` would be loaded from.
    pub fn fingerprint_of(
        tenant: &TenantConfig,
        drivers: &[GitDriver],
    ) -> Result<Vec<(String, String, String)>, SchedulerError> {
        let mut out = Vec::new();
        for entry in &tenant.projects {
            let Some(driver) = drivers.iter().find(|d| d.name == entry.connection) else {
                continue;
            };
            let refs = driver.refs(&entry.name)?;
            let branches = if entry.trusted {
                vec![driver.default_branch(&entry.name)]
            } else {
                driver.branches(&entry.name)?
            };
            for b in branches {
                if let Some(sha) = refs.get(&format!("refs/heads/{b}")) {
                    out.push((driver.canonical(&entry.name), b, sha.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Loads the layout of the branch tips.
    pub fn load(
        tenant: &TenantConfig,
        drivers: &[GitDriver],
        cache_dir: &Path,
    ) -> Result<TenantLayout, SchedulerError> {
        let fingerprint = Self::fingerprint_of(tenant, drivers)?;
        let mut projects = Vec::new();
        for entry in &tenant.projects {
            let Some(driver) = drivers.iter().find(|d| d.name == entry.connection) else {
                tracing::warn!(tenant = %tenant.name, project = %entry.name, connection = %entry.connection, "unknown connection");
                continue;
            };
            projects.push(ResolvedProject {
                entry: entry.clone(),
                canonical: driver.canonical(&entry.name),
                path: driver.repo_path(&entry.name),
                default_branch: driver.default_branch(&entry.name),
            });
        }
        let mut loaded = Vec::new();
        for (project, branch, sha) in &fingerprint {
            let Some(idx) = projects.iter().position(|p| &p.canonical == project) else {
                continue;
            };
            let p = &projects[idx];
            let root = cached_checkout(cache_dir, &p.path, project, sha)?;
            let mut config = load_project_lenient(&ProjectSource {
                canonical_hostname: hostname_of(project, &p.entry.name),
                name: p.entry.name.clone(),
                root,
                trusted: p.entry.trusted,
                branch: branch.clone(),
            });
            p.entry.filter(&mut config);
            loaded.push(LoadedConfig {
                project_idx: idx,
                branch: branch.clone(),
                config,
            });
        }
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
        Ok(TenantLayout {
            tenant: tenant.clone(),
            projects,
            layout,
            pipelines,
            fingerprint,
            errors,
            loaded,
        })
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
            })
            .collect()
    }

    /// The layout with some untrusted project-branches read from other checkouts, and the
    /// configuration errors found in those project-branches (file, line and item in each).
    pub fn speculative(&self, overrides: &[Override]) -> (Layout, Vec<ConfigError>) {
        let mut loaded = self.loaded.clone();
        // Config-project changes are validated, but take effect only once merged.
        let mut trusted: Vec<LoadedConfig> = Vec::new();
        for o in overrides {
            let Some(idx) = self.projects.iter().position(|p| p.canonical == o.project) else {
                continue;
            };
            let p = &self.projects[idx];
            if p.entry.trusted && o.branch != p.default_branch {
                continue;
            }
            let mut config = load_project_lenient(&ProjectSource {
                canonical_hostname: hostname_of(&p.canonical, &p.entry.name),
                name: p.entry.name.clone(),
                root: o.root.clone(),
                trusted: p.entry.trusted,
                branch: o.branch.clone(),
            });
            p.entry.filter(&mut config);
            let entry = LoadedConfig {
                project_idx: idx,
                branch: o.branch.clone(),
                config,
            };
            if p.entry.trusted {
                trusted.push(entry);
            } else {
                replace_config(&mut loaded, entry);
            }
        }
        let relevant = |errors: Vec<ConfigError>, trusted_side: bool| -> Vec<ConfigError> {
            errors
                .into_iter()
                .filter(|e| {
                    overrides.iter().any(|o| {
                        o.project == e.location.project
                            && o.branch == e.location.branch
                            && self
                                .project(&o.project)
                                .is_some_and(|p| p.entry.trusted == trusted_side)
                    })
                })
                .collect()
        };
        let (layout, errors) = build_layout(&self.tenant.default_parent, &loaded);
        let mut found = relevant(errors, false);
        if !trusted.is_empty() {
            let mut validation = loaded.clone();
            for entry in trusted {
                replace_config(&mut validation, entry);
            }
            let (_, errors) = build_layout(&self.tenant.default_parent, &validation);
            found.extend(relevant(errors, true));
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
    cache_dir: &Path,
    old: Vec<Arc<TenantLayout>>,
) -> (Vec<Arc<TenantLayout>>, Option<SchedulerError>) {
    let mut out = Vec::new();
    let mut old: HashMap<String, Arc<TenantLayout>> = old
        .into_iter()
        .map(|t| (t.tenant.name.clone(), t))
        .collect();
    let mut first_error = None;
    for tc in tenants {
        let previous = old.remove(&tc.name);
        let reloaded = match TenantLayout::fingerprint_of(tc, drivers) {
            Ok(fp) if previous.as_ref().is_some_and(|t| t.fingerprint == fp) => {
                out.extend(previous);
                continue;
            }
            Ok(_) => {
                tracing::info!(tenant = %tc.name, "loading layout");
                TenantLayout::load(tc, drivers, cache_dir)
            }
            Err(e) => Err(e),
        };
        match reloaded {
            Ok(t) => out.push(Arc::new(t)),
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
        layout.add(l.config.clone());
    }
    let errors = match layout.check() {
        Ok(()) => layout.errors().to_vec(),
        Err(errs) => errs.iter().cloned().collect(),
    };
    (layout, errors)
}

/// A checkout of `sha` of `source` under the cache, made once.
fn cached_checkout(
    cache_dir: &Path,
    source: &Path,
    project: &str,
    sha: &str,
) -> Result<PathBuf, SchedulerError> {
    let dest = cache_dir.join(project).join(sha);
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = cache_dir
        .join(project)
        .join(format!(".tmp-{sha}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|source| SchedulerError::Read {
        path: tmp.clone(),
        source,
    })?;
    sluice_merger::checkout_playbook_repo(source, &tmp, sha).map_err(|e| {
        SchedulerError::Invalid {
            path: source.to_path_buf(),
            message: format!("cannot check out {sha}: {e}"),
        }
    })?;
    std::fs::rename(&tmp, &dest).map_err(|source| SchedulerError::Read {
        path: dest.clone(),
        source,
    })?;
    Ok(dest)
}
