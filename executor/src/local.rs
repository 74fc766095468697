//! `sluice job run`'s side of a build request: project directories on disk become projects,
//! their configuration is loaded with the one loader, the job is frozen, and the checked-out
//! HEAD of the project under test becomes the change.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;
use sluice_config::{load_layout, ProjectSource};

use crate::request::{BuildRequest, ChangeItem, ProjectSpec};

/// Canonical host name of local repositories.
pub const LOCAL_HOSTNAME: &str = "localhost";

/// A repository given on the command line as `[NAME=]DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalProject {
    /// The project name (`org/repo`), if given.
    pub name: Option<String>,
    /// The repository's directory.
    pub dir: PathBuf,
}

impl FromStr for LocalProject {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, dir) = match s.split_once('=') {
            Some((name, dir)) if !name.is_empty() => (Some(name.to_string()), dir),
            _ => (None, s),
        };
        if dir.is_empty() {
            return Err(format!("no directory in {s:?}"));
        }
        Ok(LocalProject {
            name,
            dir: PathBuf::from(dir),
        })
    }
}

/// What `sluice job run` was asked to run.
#[derive(Debug, Clone)]
pub struct LocalJob {
    /// Job name.
    pub job: String,
    /// The project under test (untrusted).
    pub project: LocalProject,
    /// Trusted repositories.
    pub config_projects: Vec<LocalProject>,
    /// Other repositories (untrusted).
    pub required_projects: Vec<LocalProject>,
    /// The branch the change merges onto (default: the checked-out branch).
    pub target_branch: Option<String>,
    /// `--var K=V` (highest-precedence job variables).
    pub vars: Vec<(String, Value)>,
    /// The build uuid.
    pub uuid: String,
}

/// Why a local job could not become a build request.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A directory is not a git repository.
    #[error("{}: not a git repository", dir.display())]
    NotARepo {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: git2::Error,
    },
    /// HEAD is not on a branch and no target branch was given.
    #[error("{}: HEAD is detached; pass --target-branch", dir.display())]
    Detached {
        /// The directory.
        dir: PathBuf,
    },
    /// HEAD has no commit.
    #[error("{}: HEAD has no commit", dir.display())]
    NoCommit {
        /// The directory.
        dir: PathBuf,
    },
    /// No project name could be derived from the path.
    #[error("{}: cannot derive a project name; write NAME=DIR", dir.display())]
    NoName {
        /// The directory.
        dir: PathBuf,
    },
    /// The configuration has errors.
    #[error("{0}")]
    Config(String),
    /// The job cannot be frozen.
    #[error("{0}")]
    Freeze(String),
}

struct RepoFacts {
    spec: ProjectSpec,
    branch: String,
    head: String,
    message: String,
}

fn derive_name(dir: &Path) -> Option<String> {
    let parts: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [.., org, repo] => Some(format!("{org}/{repo}")),
        [repo] => Some(repo.clone()),
        [] => None,
    }
}

fn inspect(
    project: &LocalProject,
    trusted: bool,
    branch_override: Option<&str>,
) -> Result<RepoFacts, LocalError> {
    let dir = std::path::absolute(&project.dir).unwrap_or_else(|_| project.dir.clone());
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let repo = git2::Repository::open(&dir).map_err(|source| LocalError::NotARepo {
        dir: dir.clone(),
        source,
    })?;
    let head = repo
        .head()
        .map_err(|_| LocalError::NoCommit { dir: dir.clone() })?;
    let commit = head
        .peel_to_commit()
        .map_err(|_| LocalError::NoCommit { dir: dir.clone() })?;
    let current = head
        .is_branch()
        .then(|| head.shorthand().map(str::to_string))
        .flatten();
    let branch = match (branch_override, current) {
        (Some(b), _) => b.to_string(),
        (None, Some(b)) => b,
        (None, None) => return Err(LocalError::Detached { dir }),
    };
    let name = match &project.name {
        Some(n) => n.clone(),
        None => derive_name(&dir).ok_or_else(|| LocalError::NoName { dir: dir.clone() })?,
    };
    Ok(RepoFacts {
        spec: ProjectSpec {
            canonical_hostname: LOCAL_HOSTNAME.into(),
            name,
            source: dir,
            default_branch: branch.clone(),
            trusted,
            exclude_branches: Vec::new(),
        },
        branch,
        head: commit.id().to_string(),
        message: commit.message().unwrap_or_default().to_string(),
    })
}

/// Loads configuration, freezes the job and builds the request.
pub fn prepare(local: &LocalJob) -> Result<BuildRequest, LocalError> {
    let mut repos = Vec::new();
    for p in &local.config_projects {
        repos.push(inspect(p, true, None)?);
    }
    for p in &local.required_projects {
        repos.push(inspect(p, false, None)?);
    }
    // The change's own configuration is what runs (speculative configuration): the project
    // under test is loaded last, from its checkout.
    repos.push(inspect(
        &local.project,
        false,
        local.target_branch.as_deref(),
    )?);

    let sources: Vec<ProjectSource> = repos
        .iter()
        .map(|r| ProjectSource {
            canonical_hostname: r.spec.canonical_hostname.clone(),
            name: r.spec.name.clone(),
            root: r.spec.source.clone(),
            trusted: r.spec.trusted,
            branch: r.branch.clone(),
        })
        .collect();
    let layout = load_layout(&sources, Some("base".to_string()))
        .map_err(|errs| LocalError::Config(errs.to_string()))?;
    // Pushed last above.
    let under_test = &repos[repos.len() - 1];
    let cname = under_test.spec.canonical_name();
    let mut job = layout
        .freeze(&local.job, &cname, &under_test.branch)
        .map_err(|e| LocalError::Freeze(e.to_string()))?;
    for (k, v) in &local.vars {
        job.extra_vars.insert(k.clone(), v.clone());
    }
    let merge_mode = layout.project_merge_mode(&cname).to_string();
    let short_sha: String = under_test.head.chars().take(10).collect();
    let item = ChangeItem {
        project: cname,
        branch: under_test.branch.clone(),
        commit: under_test.head.clone(),
        merge_mode,
        change: "1".into(),
        patchset: short_sha,
        message: under_test.message.clone(),
        topic: None,
        change_url: format!("file://{}", under_test.spec.source.display()),
        ..Default::default()
    };
    Ok(BuildRequest {
        uuid: local.uuid.clone(),
        buildset_uuid: uuid::Uuid::new_v4().simple().to_string(),
        tenant: "local".into(),
        pipeline: "check".into(),
        event_id: uuid::Uuid::new_v4().simple().to_string(),
        job,
        projects: repos.into_iter().map(|r| r.spec).collect(),
        items: vec![item],
        attempt: 1,
        parent_data: Default::default(),
        child_jobs: vec![],
        artifacts: vec![],
        post_review: false,
        semaphores: vec![],
        playbook_semaphores: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_argument_forms() {
        assert_eq!(
            "org/repo=/tmp/x".parse::<LocalProject>().unwrap(),
            LocalProject {
                name: Some("org/repo".into()),
                dir: "/tmp/x".into()
            }
        );
        assert_eq!("/a/b/c".parse::<LocalProject>().unwrap().name, None);
        assert!("x=".parse::<LocalProject>().is_err());
    }

    #[test]
    fn name_is_the_last_two_components() {
        assert_eq!(
            derive_name(Path::new("/src/org/repo")).as_deref(),
            Some("org/repo")
        );
        assert_eq!(derive_name(Path::new("/repo")).as_deref(), Some("repo"));
    }
}
