//! The executor's half of the restricted module set: before Ansible starts, an untrusted
//! playbook's checkout and its untrusted roles may not ship Ansible plugins.
//!
//! Ansible loads `*_plugins` directories next to a playbook and inside roles, and collections
//! from `collections/` next to a playbook, without being asked; their Python would run in the
//! controller, outside every check of `ansible-plugins/restricted`. Zuul refused such
//! directories with `Ansible plugin dir <dir> found adjacent to playbook <path> in non-trusted
//! repo.`; Sluice does the same and also refuses a playbook-adjacent `collections/` directory.

use std::path::{Path, PathBuf};

/// An untrusted repository ships plugins Ansible would load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Ansible plugin dir {} found adjacent to playbook {} in non-trusted repo.", dir.display(), playbook.display())]
pub struct PluginDirFound {
    /// The offending directory.
    pub dir: PathBuf,
    /// The playbook it would be loaded for.
    pub playbook: PathBuf,
}

fn is_plugin_dir(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    // symlink_metadata: a link named like a plugin dir is refused too (it may point anywhere).
    let is_dir_or_link = std::fs::symlink_metadata(path)
        .map(|m| m.is_dir() || m.file_type().is_symlink())
        .unwrap_or(false);
    is_dir_or_link && name.ends_with("_plugins")
}

fn children(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn real_dirs(dir: &Path) -> Vec<PathBuf> {
    children(dir)
        .into_iter()
        .filter(|p| {
            std::fs::symlink_metadata(p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
        })
        .collect()
}

fn check_level(dir: &Path, playbook: &Path) -> Result<(), PluginDirFound> {
    match children(dir).into_iter().find(|p| is_plugin_dir(p)) {
        Some(found) => Err(PluginDirFound {
            dir: found,
            playbook: playbook.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Checks an untrusted playbook's directory: `*_plugins` in it, in its subdirectories and in
/// `roles/*`, and a `collections/` directory next to it.
pub fn check_playbook(playbook: &Path) -> Result<(), PluginDirFound> {
    let Some(pb_dir) = playbook.parent() else {
        return Ok(());
    };
    check_level(pb_dir, playbook)?;
    let collections = pb_dir.join("collections");
    if std::fs::symlink_metadata(&collections).is_ok() {
        return Err(PluginDirFound {
            dir: collections,
            playbook: playbook.to_path_buf(),
        });
    }
    for sub in real_dirs(pb_dir) {
        check_level(&sub, playbook)?;
    }
    for role in real_dirs(&pb_dir.join("roles")) {
        check_level(&role, playbook)?;
    }
    Ok(())
}

/// Checks an untrusted role repository used by `playbook`: `*_plugins` at a bare role's root or
/// in `roles/*` of a role collection.
pub fn check_role_repo(checkout: &Path, playbook: &Path) -> Result<(), PluginDirFound> {
    check_level(checkout, playbook)?;
    for role in real_dirs(&checkout.join("roles")) {
        check_level(&role, playbook)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dirs: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let pb = tmp.path().join("playbooks/run.yaml");
        std::fs::create_dir_all(pb.parent().unwrap()).unwrap();
        std::fs::write(&pb, "- hosts: all\n").unwrap();
        for d in dirs {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        (tmp, pb)
    }

    #[test]
    fn plugin_dirs_next_to_the_playbook_are_refused_with_zuuls_message() {
        for dir in [
            "playbooks/action_plugins",
            "playbooks/lookup_plugins",
            "playbooks/filter_plugins",
            "playbooks/connection_plugins",
            "playbooks/sub/callback_plugins",
            "playbooks/roles/evil/strategy_plugins",
            "playbooks/collections/ansible_collections",
        ] {
            let (_tmp, pb) = layout(&[dir]);
            let err = check_playbook(&pb).unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.starts_with("Ansible plugin dir ")
                    && shown.ends_with(&format!(
                        "found adjacent to playbook {} in non-trusted repo.",
                        pb.display()
                    )),
                "{shown}"
            );
            assert!(dir.starts_with(err.dir.strip_prefix(_tmp.path()).unwrap().to_str().unwrap()));
        }
    }

    #[test]
    fn ordinary_dirs_pass() {
        let (_tmp, pb) = layout(&[
            "playbooks/library",
            "playbooks/roles/good/tasks",
            "playbooks/templates",
            "playbooks/sub/deeper/action_plugins",
        ]);
        check_playbook(&pb).unwrap();
    }

    #[test]
    fn role_repos_are_checked_at_the_root_and_in_roles() {
        let tmp = tempfile::tempdir().unwrap();
        let pb = tmp.path().join("pb.yaml");
        std::fs::create_dir_all(tmp.path().join("bare/tasks")).unwrap();
        check_role_repo(&tmp.path().join("bare"), &pb).unwrap();
        std::fs::create_dir_all(tmp.path().join("bare/filter_plugins")).unwrap();
        assert!(check_role_repo(&tmp.path().join("bare"), &pb).is_err());
        std::fs::create_dir_all(tmp.path().join("coll/roles/r/action_plugins")).unwrap();
        assert!(check_role_repo(&tmp.path().join("coll"), &pb).is_err());
    }
}
