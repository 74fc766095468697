//! `sluice quickstart DIR`: a complete working setup in one directory: bare git repositories
//! for a config-project (pipelines `check` and `gate`, a base job on `zuul-jobs` roles),
//! `sluice/zuul-jobs` and a demo project, Zuul's `main.yaml`, and the `sluice serve` config
//! file pointing at a local SSH node (started by the caller).

use std::path::{Path, PathBuf};

use crate::errors::SchedulerError;

/// Pipelines of the quickstart tenant: `check` on new patchsets, `gate` on approval, merging.
pub const PIPELINES: &str = r#"# check runs on every new patchset of a review branch (review/<branch>/<topic>);
# gate runs when a change is approved (`sluice change approve`) and merges it on success.
- pipeline:
    name: check
    manager: independent
    trigger:
      git:
        - event: patchset-created
    success:
      git: {}
    failure:
      git: {}

- pipeline:
    name: gate
    manager: dependent
    precedence: high
    trigger:
      git:
        - event: change-approved
    success:
      git:
        merge: true
    failure:
      git: {}

"#;

/// Where the setup's pieces come from.
#[derive(Debug, Clone)]
pub struct QuickstartSources {
    /// The example config-project (`examples/quickstart/config`).
    pub config_project: PathBuf,
    /// The example demo project (`examples/quickstart/demo`).
    pub demo_project: PathBuf,
    /// Sluice's `zuul-jobs`.
    pub zuul_jobs: PathBuf,
    /// The node dir (`sshd-node start` output: `nodes.yaml`, `client_key`).
    pub node_dir: PathBuf,
}

/// Writes the setup into `dir`; returns the config file's path.
pub fn write_quickstart(dir: &Path, src: &QuickstartSources) -> Result<PathBuf, SchedulerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SchedulerError::Read { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let repos = dir.join("repos");
    let mut extra_config = vec![("zuul.d/pipelines.yaml".to_string(), PIPELINES.to_string())];
    // The example keeps its jobs in zuul.yaml; zuul.d/ would then be ignored, so the
    // pipelines go into the same root.
    let example_root = src.config_project.join("zuul.yaml");
    if example_root.is_file() {
        let jobs = std::fs::read_to_string(&example_root).map_err(io(&example_root))?;
        extra_config = vec![("zuul.yaml".to_string(), format!("{PIPELINES}{jobs}"))];
    }
    bare_repo_from_dir(
        &src.config_project,
        &repos.join("sluice/config.git"),
        &extra_config,
    )?;
    bare_repo_from_dir(&src.zuul_jobs, &repos.join("sluice/zuul-jobs.git"), &[])?;
    bare_repo_from_dir(&src.demo_project, &repos.join("org/demo.git"), &[])?;
    let main_yaml = dir.join("main.yaml");
    std::fs::write(
        &main_yaml,
        "- tenant:\n    name: quickstart\n    source:\n      git:\n        config-projects:\n          - sluice/config\n        untrusted-projects:\n          - sluice/zuul-jobs:\n              include: []\n          - org/demo\n",
    )
    .map_err(io(&main_yaml))?;
    let config = dir.join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "# sluice serve --config {cfg}\n# Format: docs/serve.md\ntenant-config: main.yaml\nstate-dir: state\nconnections:\n  - name: git\n    driver: git\n    root: repos\n    poll-seconds: 1\nexecutor:\n  workers: 2\n  nodes: {nodes}\n  ssh-key: {key}\n  # A one-machine setup shares its disk with everything else on it: stop taking work\n  # only when it is nearly full (a dedicated executor keeps the default, 5%).\n  governor:\n    min-avail-hdd: 1\n",
            cfg = config.display(),
            nodes = src.node_dir.join("nodes.yaml").display(),
            key = src.node_dir.join("client_key").display(),
        ),
    )
    .map_err(io(&config))?;
    Ok(config)
}

fn git_err(path: &Path) -> impl FnOnce(git2::Error) -> SchedulerError {
    let project = path.display().to_string();
    move |source| SchedulerError::Git {
        project,
        what: "create repository".into(),
        source,
    }
}

/// Creates (or replaces) a bare repository at `dest` whose `main` branch holds one commit with
/// the files of `src` plus `extra` (relative path, content).
pub fn bare_repo_from_dir(
    src: &Path,
    dest: &Path,
    extra: &[(String, String)],
) -> Result<(), SchedulerError> {
    let _ = std::fs::remove_dir_all(dest);
    let mut opts = git2::RepositoryInitOptions::new();
    opts.bare(true).initial_head("main");
    let repo = git2::Repository::init_opts(dest, &opts).map_err(git_err(dest))?;
    let mut index = repo.index().map_err(git_err(dest))?;
    let mut files = Vec::new();
    collect_files(src, src, &mut files).map_err(|source| SchedulerError::Read {
        path: src.to_path_buf(),
        source,
    })?;
    for (rel, content, exec) in files {
        if extra.iter().any(|(p, _)| *p == rel) {
            continue;
        }
        add(&mut index, &rel, &content, exec).map_err(git_err(dest))?;
    }
    for (rel, content) in extra {
        add(&mut index, rel, content.as_bytes(), false).map_err(git_err(dest))?;
    }
    let tree_id = index.write_tree_to(&repo).map_err(git_err(dest))?;
    let tree = repo.find_tree(tree_id).map_err(git_err(dest))?;
    let sig = git2::Signature::now("Sluice", "sluice@localhost").map_err(git_err(dest))?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        &format!("Import {name}"),
        &tree,
        &[],
    )
    .map_err(git_err(dest))?;
    Ok(())
}

fn add(index: &mut git2::Index, rel: &str, content: &[u8], exec: bool) -> Result<(), git2::Error> {
    let entry = git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: if exec { 0o100755 } else { 0o100644 },
        uid: 0,
        gid: 0,
        file_size: content.len() as u32,
        id: git2::Oid::zero(),
        flags: 0,
        flags_extended: 0,
        path: rel.as_bytes().to_vec(),
    };
    index.add_frombuffer(&entry, content)
}

fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, Vec<u8>, bool)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name() == ".git" {
            continue;
        }
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let exec = meta.permissions().mode() & 0o111 != 0;
            out.push((rel, std::fs::read(&path)?, exec));
        }
    }
    Ok(())
}
