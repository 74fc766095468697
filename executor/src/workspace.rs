//! The build's repositories: the workspace under `work/src` (through `sluice-merger`), the
//! trusted and untrusted playbook checkouts, and role paths linked for each playbook.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sluice_config::PlaybookRef;
use sluice_merger::{
    checkout_playbook_repo, prepare_workspace, Change, ItemRef, MergeIdentity, MergeMode,
    ProjectRepo, WorkspaceRequest, WorkspaceScheme,
};

use crate::jobdir::JobDir;
use crate::plugin_dirs;
use crate::request::{BuildRequest, ProjectSpec};
use crate::zuul_vars::RepoCheckout;

/// Why the workspace could not be prepared.
#[derive(Debug)]
pub enum WorkspaceFailure {
    /// A change did not merge: MERGE_CONFLICT.
    Conflict(String),
    /// A ref that cannot be fetched: ABORTED.
    Unfetchable(String),
    /// Anything else: ERROR.
    Error(String),
}

fn find_project<'a>(req: &'a BuildRequest, name: &str) -> Option<&'a ProjectSpec> {
    req.projects
        .iter()
        .find(|p| p.canonical_name() == name || p.name == name)
}

/// Clones, merges and checks out the item projects and required projects.
pub fn prepare(req: &BuildRequest, jobdir: &JobDir) -> Result<Vec<RepoCheckout>, WorkspaceFailure> {
    let job = &req.job;
    let mut projects: Vec<(ProjectRepo, bool)> = Vec::new();
    let mut add = |spec: &ProjectSpec, ob: Option<String>, oc: Option<String>, required: bool| {
        let cname = spec.canonical_name();
        if let Some((existing, req_flag)) =
            projects.iter_mut().find(|(p, _)| p.canonical_name == cname)
        {
            existing.override_branch = existing.override_branch.take().or(ob);
            existing.override_checkout = existing.override_checkout.take().or(oc);
            *req_flag |= required;
            return;
        }
        projects.push((
            ProjectRepo {
                canonical_name: cname,
                source: spec.source.clone(),
                default_branch: spec.default_branch.clone(),
                override_branch: ob,
                override_checkout: oc,
                repo_state: Default::default(),
                exclude_branches: spec.exclude_branches.clone(),
            },
            required,
        ));
    };
    for item in &req.items {
        let spec = find_project(req, &item.project).ok_or_else(|| {
            WorkspaceFailure::Error(format!("Project {} of the change is unknown", item.project))
        })?;
        add(spec, None, None, true);
    }
    for rp in &job.required_projects {
        let spec = find_project(req, &rp.name).ok_or_else(|| {
            WorkspaceFailure::Error(format!(
                "Required project {} of job {} is not known to this build",
                rp.name, job.name
            ))
        })?;
        add(
            spec,
            rp.override_branch.clone(),
            rp.override_checkout.clone(),
            true,
        );
    }
    let mut changes = Vec::new();
    // Ref items (periodic, post) are checked out as they are, never merged.
    for item in req.items.iter().filter(|i| i.is_change()) {
        let merge_mode = MergeMode::parse(&item.merge_mode).ok_or_else(|| {
            WorkspaceFailure::Error(format!(
                "merge mode of {}: unknown merge mode {:?}",
                item.project, item.merge_mode
            ))
        })?;
        let project = find_project(req, &item.project)
            .map(ProjectSpec::canonical_name)
            .unwrap_or_else(|| item.project.clone());
        changes.push(Change {
            project,
            branch: item.branch.clone(),
            commit: item.commit.clone(),
            merge_mode,
        });
    }
    let scheme = match job.workspace_scheme.as_str() {
        "flat" => WorkspaceScheme::Flat,
        "unique" => WorkspaceScheme::Unique,
        _ => WorkspaceScheme::Golang,
    };
    let request = WorkspaceRequest {
        src_root: jobdir.src.clone(),
        scheme,
        projects: projects.iter().map(|(p, _)| p.clone()).collect(),
        changes,
        job_override_checkout: job.override_checkout.clone(),
        job_override_branch: job.override_branch.clone(),
        zuul_branch: req
            .items
            .last()
            .filter(|i| i.tag().is_none())
            .map(|i| i.branch.clone()),
        zuul_ref: req.items.last().and_then(|i| {
            let reference = i.refname.clone().filter(|_| i.tag().is_some())?;
            let project = find_project(req, &i.project)
                .map(ProjectSpec::canonical_name)
                .unwrap_or_else(|| i.project.clone());
            Some(ItemRef { project, reference })
        }),
        merge_identity: MergeIdentity {
            name: "Sluice Merger".into(),
            email: "sluice-merger@localhost".into(),
        },
        merge_time: None,
    };
    let state = prepare_workspace(&request).map_err(|e| match e {
        e if e.is_conflict() => WorkspaceFailure::Conflict(e.to_string()),
        e @ sluice_merger::MergeError::UnknownRef { .. } => {
            WorkspaceFailure::Unfetchable(e.to_string())
        }
        e => WorkspaceFailure::Error(e.to_string()),
    })?;
    if let Err(e) = state
        .workspace_repos()
        .write(&jobdir.logs.join("workspace-repos.json"))
    {
        return Err(WorkspaceFailure::Error(e.to_string()));
    }
    Ok(state
        .repos
        .iter()
        .map(|r| RepoCheckout {
            canonical_name: r.canonical_name.clone(),
            src_dir: Path::new("src")
                .join(&r.relative_path)
                .display()
                .to_string(),
            checkout: r.checkout.clone(),
            commit: r.commit.clone(),
            required: projects
                .iter()
                .any(|(p, required)| p.canonical_name == r.canonical_name && *required),
        })
        .collect())
}

/// Playbook and role checkouts, keyed by trust, project and branch.
#[derive(Debug, Default, Clone)]
pub struct Checkouts {
    dirs: HashMap<(bool, String, String), PathBuf>,
}

impl Checkouts {
    fn dir(&self, trusted: bool, project: &str, branch: &str) -> Option<&PathBuf> {
        self.dirs
            .get(&(trusted, project.to_string(), branch.to_string()))
    }

    /// The playbook file inside its checkout (`.yaml`/`.yml` appended when the path has none).
    pub fn playbook_path(&self, pb: &PlaybookRef) -> Option<PathBuf> {
        let dir = self.dir(pb.trusted, &pb.project, &pb.branch)?;
        let exact = dir.join(&pb.path);
        if exact.is_file() {
            return Some(exact);
        }
        ["yaml", "yml"]
            .iter()
            .map(|ext| dir.join(format!("{}.{ext}", pb.path)))
            .find(|p| p.is_file())
    }
}

fn role_branch(req: &BuildRequest, pb: &PlaybookRef, project: &str) -> String {
    if project == pb.project {
        return pb.branch.clone();
    }
    find_project(req, project)
        .map(|p| p.default_branch.clone())
        .unwrap_or_else(|| pb.branch.clone())
}

/// Checks out every playbook's and role's repository into `trusted/` or `untrusted/`. An
/// untrusted project that is in the workspace shows its speculative state.
pub fn checkout_playbooks(
    req: &BuildRequest,
    jobdir: &JobDir,
    repos: &[RepoCheckout],
) -> Result<Checkouts, String> {
    let job = &req.job;
    let mut wanted: Vec<(bool, String, String)> = Vec::new();
    for pb in job.pre_run.iter().chain(&job.run).chain(&job.post_run) {
        let mut push = |key: (bool, String, String)| {
            if !wanted.contains(&key) {
                wanted.push(key);
            }
        };
        push((pb.trusted, pb.project.clone(), pb.branch.clone()));
        for role in &pb.roles {
            push((
                pb.trusted,
                role.project.clone(),
                role_branch(req, pb, &role.project),
            ));
        }
    }
    let mut checkouts = Checkouts::default();
    let mut counters = (0usize, 0usize);
    for (trusted, project, branch) in wanted {
        let spec = find_project(req, &project)
            .ok_or_else(|| format!("Project {project} is not known to this build"))?;
        let cname = spec.canonical_name();
        let (root, n) = if trusted {
            counters.0 += 1;
            (&jobdir.trusted, counters.0 - 1)
        } else {
            counters.1 += 1;
            (&jobdir.untrusted, counters.1 - 1)
        };
        let dest = root.join(format!("project_{n}")).join(&cname);
        let workspace_repo = repos
            .iter()
            .find(|r| r.canonical_name == cname)
            .map(|r| jobdir.work.join(&r.src_dir));
        let source = match (&workspace_repo, trusted) {
            (Some(path), false) => path.clone(),
            _ => spec.source.clone(),
        };
        checkout_playbook_repo(&source, &dest, &branch, &spec.exclude_branches)
            .map_err(|e| format!("cannot check out {cname}@{branch} for playbooks: {e}"))?;
        checkouts
            .dirs
            .insert((trusted, cname.clone(), branch.clone()), dest.clone());
        if cname != project {
            checkouts.dirs.insert((trusted, project, branch), dest);
        }
    }
    for pb in job.pre_run.iter().chain(&job.run).chain(&job.post_run) {
        let Some(path) = checkouts.playbook_path(pb) else {
            return Err(format!("Unable to find playbook {}", pb.path));
        };
        if !pb.trusted {
            refuse_plugin_dirs(&checkouts, req, pb, &path).map_err(|e| e.to_string())?;
        }
    }
    Ok(checkouts)
}

/// An untrusted playbook and its roles may not ship Ansible plugins (`crate::plugin_dirs`).
fn refuse_plugin_dirs(
    checkouts: &Checkouts,
    req: &BuildRequest,
    pb: &PlaybookRef,
    playbook: &Path,
) -> Result<(), plugin_dirs::PluginDirFound> {
    plugin_dirs::check_playbook(playbook)?;
    for role in &pb.roles {
        let branch = role_branch(req, pb, &role.project);
        if let Some(checkout) = checkouts.dir(false, &role.project, &branch) {
            plugin_dirs::check_role_repo(checkout, playbook)?;
        }
    }
    Ok(())
}

/// Makes the playbook's roles visible: a repo with `roles/` adds that dir to the role path; a
/// bare role repo is linked as `role_<k>/<name>`. Returns `roles_path`.
pub fn link_roles(
    checkouts: &Checkouts,
    req: &BuildRequest,
    pb: &PlaybookRef,
    playbook_dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    let mut roles_path = Vec::new();
    for (k, role) in pb.roles.iter().enumerate() {
        let branch = role_branch(req, pb, &role.project);
        let Some(checkout) = checkouts.dir(pb.trusted, &role.project, &branch) else {
            continue;
        };
        if checkout.join("roles").is_dir() {
            roles_path.push(checkout.join("roles"));
        } else if checkout.join("tasks").is_dir() {
            let link_dir = playbook_dir.join(format!("role_{k}"));
            std::fs::create_dir_all(&link_dir)
                .map_err(|e| format!("cannot create {}: {e}", link_dir.display()))?;
            let link = link_dir.join(&role.target_name);
            if !link.exists() {
                std::os::unix::fs::symlink(checkout, &link)
                    .map_err(|e| format!("cannot link role {}: {e}", role.target_name))?;
            }
            roles_path.push(link_dir);
        } else if !role.implicit {
            return Err(format!(
                "Project {} is not a role repository (no roles/ or tasks/ directory)",
                role.project
            ));
        }
    }
    Ok(roles_path)
}
