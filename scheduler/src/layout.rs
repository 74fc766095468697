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
    load_project_lenient, parse_project_files, ConfigError, ConfigErrorKind, ItemContext, Layout,
    ProjectConfig, ProjectSource, SourceLocation, CONFIG_ROOTS,
};
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
            let source = ProjectSource {
                canonical_hostname: hostname_of(project, &p.entry.name),
                name: p.entry.name.clone(),
                root: p.path.clone(),
                trusted: p.entry.trusted,
                branch: branch.clone(),
            };
            let mut config = config_at(&source, project, sha)?;
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
                TenantLayout::load(tc, drivers)
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

/// One project-branch's configuration at commit `sha`, read from the repository's object
/// database (`src.root`) with the file loader's rules: the first of `CONFIG_ROOTS` with content
/// wins, `*.yaml` files of a directory root in path order, symlinks followed inside the
/// repository only, text must be UTF-8.
fn config_at(
    src: &ProjectSource,
    project: &str,
    sha: &str,
) -> Result<ProjectConfig, SchedulerError> {
    let git = |what: &str| {
        let project = project.to_string();
        let what = format!("{what} {sha}");
        move |source| SchedulerError::Git {
            project,
            what,
            source,
        }
    };
    let repo = git2::Repository::open(&src.root).map_err(git("open repository for"))?;
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
                let dir = entry.to_object(&repo).and_then(|o| o.peel_to_tree());
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
        match blob_text(&repo, &tree, &rel) {
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
