//! Helpers shared by the integration tests: write repositories into a temp dir.

#![allow(dead_code)]

use std::fs;
use std::path::Path;

use sluice_config::ProjectSource;
use tempfile::TempDir;

/// A checkout in a temp dir with the given files.
pub struct Repo {
    pub dir: TempDir,
    pub source: ProjectSource,
}

pub fn repo(name: &str, trusted: bool, files: &[(&str, &str)]) -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        write(dir.path(), path, text);
    }
    let source = ProjectSource {
        canonical_hostname: "example.com".into(),
        name: name.into(),
        root: dir.path().to_path_buf(),
        trusted,
        branch: "main".into(),
    };
    Repo { dir, source }
}

pub fn write(root: &Path, path: &str, text: &str) {
    let full = root.join(path);
    if let Some(parent) = full.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(full, text).expect("write");
}

/// The repository root (fixtures shared with other tools live there).
pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}
