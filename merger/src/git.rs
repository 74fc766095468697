//! git2 plumbing shared by the workspace and playbook checkouts: local clones with every branch
//! as a local branch, copying one commit (and what it needs) from a source repository, ref
//! lookups and working-tree checkouts.

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{build::CheckoutBuilder, Oid, Repository};

use crate::errors::{io, Cx, MergeError};

/// The URL every workspace repository's `origin` points at once prepared.
pub const NULL_ORIGIN: &str = "file:///dev/null";

/// Opens `source` (bare or not) for reading.
pub(crate) fn open_source(source: &Path, project: &str) -> Result<Repository, MergeError> {
    Repository::open(source)
        .map_err(Cx::new(project, source).git(|| "open source repository".into()))
}

/// Creates `dest` (it must be absent or an empty directory) and clones `source` into it without
/// checking anything out: every source branch becomes a local branch (and
/// `refs/remotes/origin/<branch>`), every tag is copied, and `origin` points at `source`.
/// Branches whose names start with one of `exclude` are left out. The objects come in one
/// pack built from the branches and tags kept (not a fetch: libgit2's local transport packs
/// the objects of every ref the source has, so each clone cost as much as the source had
/// review branches, i.e. changes).
pub(crate) fn clone_local(
    source: &Path,
    dest: &Path,
    project: &str,
    exclude: &[String],
) -> Result<Repository, MergeError> {
    if dest.exists() {
        let mut entries = std::fs::read_dir(dest).map_err(io("read directory", dest))?;
        if entries.next().is_some() {
            return Err(MergeError::DestinationExists {
                path: dest.to_path_buf(),
            });
        }
    }
    std::fs::create_dir_all(dest).map_err(io("create directory", dest))?;
    let source_abs: PathBuf =
        std::fs::canonicalize(source).map_err(io("resolve source path", source))?;
    let url = source_abs.to_string_lossy().into_owned();
    let cx = Cx::new(project, dest);
    let scx = Cx::new(project, &source_abs);
    let src = open_source(&source_abs, project)?;

    // What to copy: the branches kept and every tag, as (full ref name, target).
    let mut branches: Vec<(String, Oid)> = Vec::new();
    let mut tags: Vec<(String, Oid)> = Vec::new();
    let refs = src
        .references()
        .map_err(scx.git(|| "list references".into()))?;
    for r in refs {
        let r = r.map_err(scx.git(|| "read reference".into()))?;
        let (Some(name), Some(target)) = (r.name(), r.target()) else {
            continue;
        };
        if let Some(branch) = name.strip_prefix("refs/heads/") {
            let excluded = exclude
                .iter()
                .any(|prefix| !prefix.is_empty() && branch.starts_with(prefix.as_str()));
            if !excluded {
                branches.push((branch.to_string(), target));
            }
        } else if name.starts_with("refs/tags/") {
            tags.push((name.to_string(), target));
        }
    }

    let repo = Repository::init(dest).map_err(cx.git(|| "init".into()))?;
    repo.remote("origin", &url)
        .map_err(cx.git(|| format!("add remote origin {url}")))?;
    let mut walk = src.revwalk().map_err(scx.git(|| "start revwalk".into()))?;
    let mut pb = src
        .packbuilder()
        .map_err(scx.git(|| "create packbuilder".into()))?;
    for (branch, target) in &branches {
        walk.push(*target)
            .map_err(scx.git(|| format!("walk from branch {branch}")))?;
    }
    for (name, target) in &tags {
        let object = src
            .find_object(*target, None)
            .map_err(scx.git(|| format!("read {name}")))?;
        // The tag object (annotated tags) and what it points at; a commit with its history.
        pb.insert_recursive(*target, None)
            .map_err(scx.git(|| format!("pack {name}")))?;
        if let Ok(commit) = object.peel_to_commit() {
            walk.push(commit.id())
                .map_err(scx.git(|| format!("walk from {name}")))?;
        }
    }
    pb.insert_walk(&mut walk)
        .map_err(scx.git(|| "pack branches and tags".into()))?;
    write_pack(&mut pb, &repo, project, || format!("clone of {url}"))?;
    for (branch, target) in &branches {
        for name in [
            format!("refs/remotes/origin/{branch}"),
            format!("refs/heads/{branch}"),
        ] {
            repo.reference(&name, *target, true, "sluice: clone")
                .map_err(cx.git(|| format!("create {name}")))?;
        }
    }
    for (name, target) in &tags {
        repo.reference(name, *target, true, "sluice: clone")
            .map_err(cx.git(|| format!("create {name}")))?;
    }
    Ok(repo)
}

/// Writes what `pb` packed into `dest`'s object database (nothing when it is empty).
fn write_pack(
    pb: &mut git2::PackBuilder<'_>,
    dest: &Repository,
    project: &str,
    what: impl Fn() -> String,
) -> Result<(), MergeError> {
    if pb.object_count() == 0 {
        return Ok(());
    }
    let dcx = Cx::new(project, dest.path());
    let dest_odb = dest
        .odb()
        .map_err(dcx.git(|| "open object database".into()))?;
    let mut writer = dest_odb
        .packwriter()
        .map_err(dcx.git(|| "open pack writer".into()))?;
    let mut write_err: Option<std::io::Error> = None;
    pb.foreach(|buf| match writer.write_all(buf) {
        Ok(()) => true,
        Err(e) => {
            write_err = Some(e);
            false
        }
    })
    .map_err(dcx.git(|| format!("write pack for {}", what())))?;
    if let Some(e) = write_err {
        return Err(MergeError::Io {
            op: "write pack into",
            path: dest.path().to_path_buf(),
            cause: e,
        });
    }
    writer
        .commit()
        .map_err(dcx.git(|| format!("index pack for {}", what())))?;
    Ok(())
}

/// Resolves `reference` (a sha, a full ref, a branch or tag name) to a commit in `repo`.
pub(crate) fn resolve_commit(
    repo: &Repository,
    reference: &str,
    project: &str,
) -> Result<Oid, MergeError> {
    let unknown = |cause| MergeError::UnknownRef {
        project: project.to_string(),
        reference: reference.to_string(),
        source_repo: repo.path().to_path_buf(),
        cause,
    };
    let obj = repo.revparse_single(reference).map_err(unknown)?;
    let commit = obj.peel_to_commit().map_err(unknown)?;
    Ok(commit.id())
}

/// Makes `oid` (a commit in `source`) and everything it needs present in `dest`'s object
/// database. Works for commits no ref points at (e.g. a Gerrit patchset fetched by sha), since
/// it packs straight from the source's object database. Objects reachable from `dest`'s refs
/// are not copied again.
pub(crate) fn copy_commit(
    source: &Repository,
    dest: &Repository,
    oid: Oid,
    project: &str,
) -> Result<(), MergeError> {
    let dest_odb = dest
        .odb()
        .map_err(Cx::new(project, dest.path()).git(|| "open object database".into()))?;
    if dest_odb.exists(oid) {
        return Ok(());
    }
    let scx = Cx::new(project, source.path());
    let source_odb = source
        .odb()
        .map_err(scx.git(|| "open object database".into()))?;
    let mut walk = source
        .revwalk()
        .map_err(scx.git(|| "start revwalk".into()))?;
    walk.push(oid)
        .map_err(scx.git(|| format!("walk from {oid}")))?;
    let refs = dest
        .references()
        .map_err(Cx::new(project, dest.path()).git(|| "list references".into()))?;
    for r in refs.flatten() {
        let Ok(resolved) = r.resolve() else { continue };
        let Some(target) = resolved.target() else {
            continue;
        };
        // Hide only commits the source has: the walk cannot hide what it cannot read.
        if source_odb.exists(target) && source.find_commit(target).is_ok() {
            walk.hide(target)
                .map_err(scx.git(|| format!("hide {target}")))?;
        }
    }
    let mut pb = source
        .packbuilder()
        .map_err(scx.git(|| "create packbuilder".into()))?;
    pb.insert_walk(&mut walk)
        .map_err(scx.git(|| format!("pack objects for {oid}")))?;
    write_pack(&mut pb, dest, project, || oid.to_string())?;
    Ok(())
}

/// The commit a local branch points at, if the branch exists.
pub(crate) fn branch_tip(repo: &Repository, branch: &str) -> Option<Oid> {
    repo.find_reference(&format!("refs/heads/{branch}"))
        .ok()
        .and_then(|r| r.resolve().ok())
        .and_then(|r| r.target())
}

/// The commit a tag (lightweight or annotated) points at, if the tag exists.
pub(crate) fn tag_commit(repo: &Repository, tag: &str) -> Option<Oid> {
    repo.find_reference(&format!("refs/tags/{tag}"))
        .ok()
        .and_then(|r| r.peel_to_commit().ok())
        .map(|c| c.id())
}

/// Points HEAD at local branch `branch` and makes the index and working tree match it.
pub(crate) fn checkout_branch(
    repo: &Repository,
    branch: &str,
    cx: Cx<'_>,
) -> Result<Oid, MergeError> {
    let refname = format!("refs/heads/{branch}");
    repo.set_head(&refname)
        .map_err(cx.git(|| format!("set HEAD to {refname}")))?;
    force_checkout_head(repo, cx)?;
    branch_tip(repo, branch).ok_or_else(|| MergeError::Git {
        project: cx.project.to_string(),
        op: format!("read {refname} after checkout"),
        path: cx.path.to_path_buf(),
        cause: git2::Error::from_str("branch vanished"),
    })
}

/// Detaches HEAD at `oid` and makes the index and working tree match it.
pub(crate) fn checkout_detached(repo: &Repository, oid: Oid, cx: Cx<'_>) -> Result<(), MergeError> {
    repo.set_head_detached(oid)
        .map_err(cx.git(|| format!("detach HEAD at {oid}")))?;
    force_checkout_head(repo, cx)
}

fn force_checkout_head(repo: &Repository, cx: Cx<'_>) -> Result<(), MergeError> {
    let mut cb = CheckoutBuilder::new();
    cb.force().remove_untracked(true);
    repo.checkout_head(Some(&mut cb))
        .map_err(cx.git(|| "check out HEAD".into()))
}

/// Sets `origin`'s URL to [`NULL_ORIGIN`] so jobs cannot fetch from executor paths.
pub(crate) fn null_origin(repo: &Repository, cx: Cx<'_>) -> Result<(), MergeError> {
    repo.remote_set_url("origin", NULL_ORIGIN)
        .map_err(cx.git(|| format!("set origin url to {NULL_ORIGIN}")))
}

/// Writes `user.name` and `user.email` into the repository's config.
pub(crate) fn set_identity(
    repo: &Repository,
    name: &str,
    email: &str,
    cx: Cx<'_>,
) -> Result<(), MergeError> {
    let mut config = repo.config().map_err(cx.git(|| "open config".into()))?;
    config
        .set_str("user.name", name)
        .map_err(cx.git(|| "set user.name".into()))?;
    config
        .set_str("user.email", email)
        .map_err(cx.git(|| "set user.email".into()))
}

/// All local branches and their tips, sorted by name.
pub(crate) fn local_branches(
    repo: &Repository,
    cx: Cx<'_>,
) -> Result<std::collections::BTreeMap<String, String>, MergeError> {
    let mut out = std::collections::BTreeMap::new();
    let refs = repo
        .references_glob("refs/heads/*")
        .map_err(cx.git(|| "list branches".into()))?;
    for r in refs {
        let r = r.map_err(cx.git(|| "read branch".into()))?;
        if let (Some(name), Some(target)) = (r.name(), r.target()) {
            if let Some(branch) = name.strip_prefix("refs/heads/") {
                out.insert(branch.to_string(), target.to_string());
            }
        }
    }
    Ok(out)
}

/// Makes the repository's refs exactly `state` (`{full ref: sha}`), like Zuul's "Restoring repo
/// states": local branches and tags not in `state` are deleted, the others set to the given
/// sha (objects are copied from `source` when missing), and `refs/remotes/origin/*` mirrors
/// the restored branches.
pub(crate) fn restore_refs(
    source: &Repository,
    repo: &Repository,
    state: &std::collections::BTreeMap<String, String>,
    project: &str,
) -> Result<(), MergeError> {
    let cx = Cx::new(project, repo.path());
    let mut wanted = Vec::with_capacity(state.len());
    for (name, sha) in state {
        let unknown = |cause| MergeError::UnknownRef {
            project: project.to_string(),
            reference: format!("{name} at {sha}"),
            source_repo: source.path().to_path_buf(),
            cause,
        };
        if !name.starts_with("refs/")
            || name.contains('\0')
            || !git2::Reference::is_valid_name(name)
        {
            return Err(unknown(git2::Error::from_str("not a full, valid ref name")));
        }
        let oid = Oid::from_str(sha).map_err(unknown)?;
        copy_object(source, repo, oid, project).map_err(|e| match e {
            MergeError::Git { cause, .. } => unknown(cause),
            other => other,
        })?;
        wanted.push((name.as_str(), oid));
    }
    let mut stale = Vec::new();
    for glob in ["refs/heads/*", "refs/tags/*", "refs/remotes/origin/*"] {
        let refs = repo
            .references_glob(glob)
            .map_err(cx.git(|| format!("list {glob}")))?;
        for r in refs {
            let r = r.map_err(cx.git(|| format!("read {glob}")))?;
            if let Some(name) = r.name() {
                let mirrored = name
                    .strip_prefix("refs/remotes/origin/")
                    .map(|b| format!("refs/heads/{b}"));
                let keep = state.contains_key(name)
                    || mirrored.as_ref().is_some_and(|m| state.contains_key(m));
                if !keep {
                    stale.push(name.to_string());
                }
            }
        }
    }
    for name in stale {
        if let Ok(mut r) = repo.find_reference(&name) {
            r.delete().map_err(cx.git(|| format!("delete {name}")))?;
        }
    }
    for (name, oid) in wanted {
        repo.reference(name, oid, true, "sluice: restore repo state")
            .map_err(cx.git(|| format!("set {name} to {oid}")))?;
        if let Some(branch) = name.strip_prefix("refs/heads/") {
            let remote = format!("refs/remotes/origin/{branch}");
            repo.reference(&remote, oid, true, "sluice: restore repo state")
                .map_err(cx.git(|| format!("set {remote} to {oid}")))?;
        }
    }
    Ok(())
}

/// Copies a commit (with its history) or an annotated tag (with its target) from `source`.
fn copy_object(
    source: &Repository,
    dest: &Repository,
    oid: Oid,
    project: &str,
) -> Result<(), MergeError> {
    let scx = Cx::new(project, source.path());
    let dest_odb = dest
        .odb()
        .map_err(Cx::new(project, dest.path()).git(|| "open object database".into()))?;
    if dest_odb.exists(oid) {
        return Ok(());
    }
    let obj = source
        .find_object(oid, None)
        .map_err(scx.git(|| format!("find {oid}")))?;
    match obj.kind() {
        Some(git2::ObjectType::Tag) => {
            let commit = obj
                .peel_to_commit()
                .map_err(scx.git(|| format!("peel tag {oid}")))?;
            copy_commit(source, dest, commit.id(), project)?;
            let raw = source
                .odb()
                .and_then(|odb| odb.read(oid).map(|o| (o.kind(), o.data().to_vec())))
                .map_err(scx.git(|| format!("read tag {oid}")))?;
            dest_odb
                .write(raw.0, &raw.1)
                .map_err(Cx::new(project, dest.path()).git(|| format!("write tag {oid}")))?;
            Ok(())
        }
        _ => copy_commit(source, dest, oid, project),
    }
}
