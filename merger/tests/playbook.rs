//! Playbook checkouts: a branch tip, a commit no branch contains, a tag, and the speculative
//! state of a prepared workspace repository.

mod common;

use common::*;
use git2::Repository;
use sluice_merger::{
    checkout_playbook_repo, prepare_workspace, MergeError, MergeMode, NULL_ORIGIN,
};

#[test]
fn branch_checkout_is_on_the_branch_with_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Source::new(dir.path(), "config", "master");
    let a = src.tip("master");
    let s = src.commit_files(&[a], &[("playbook.yaml", "- hosts: all\n")], "Playbook\n");
    src.set_branch("stable", s);
    let dest = dir.path().join("trusted/project_0/localhost/config");
    let out = checkout_playbook_repo(&src.path, &dest, "stable", &[]).expect("checkout");
    assert_eq!(out.checkout, "stable");
    assert_eq!(out.commit, s.to_string());
    assert_eq!(out.path, dest);
    let repo = Repository::open(&dest).expect("open");
    assert_on_branch_clean(&repo, "stable");
    assert_eq!(
        std::fs::read_to_string(dest.join("playbook.yaml")).expect("read"),
        "- hosts: all\n"
    );
    assert_eq!(
        repo.find_remote("origin").expect("origin").url(),
        Some(NULL_ORIGIN)
    );
}

#[test]
fn commit_and_tag_checkouts_detach_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Source::new(dir.path(), "config", "master");
    let a = src.tip("master");
    let orphan = src.commit_files(&[a], &[("x.yaml", "x\n")], "Not on a branch\n");
    let out = checkout_playbook_repo(&src.path, &dir.path().join("c1"), &orphan.to_string(), &[])
        .expect("sha");
    assert_eq!(out.commit, orphan.to_string());
    let repo = Repository::open(dir.path().join("c1")).expect("open");
    assert!(repo.head_detached().expect("head"));
    assert!(dir.path().join("c1/x.yaml").is_file());

    src.tag("v2", orphan);
    let out = checkout_playbook_repo(&src.path, &dir.path().join("c2"), "v2", &[]).expect("tag");
    assert_eq!(
        (out.checkout.as_str(), out.commit),
        ("refs/tags/v2", orphan.to_string())
    );

    let err = checkout_playbook_repo(&src.path, &dir.path().join("c3"), "no-such-thing", &[])
        .expect_err("unknown");
    assert!(matches!(err, MergeError::UnknownRef { .. }), "{err:?}");
}

#[test]
fn untrusted_checkout_from_the_workspace_shows_the_speculative_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Source::new(dir.path(), "repo", "master");
    let a = src.tip("master");
    let ch = src.commit_files(&[a], &[("run.yaml", "- hosts: all\n")], "Add playbook\n");
    src.commit_on("master", &[("b.txt", "b\n")], "Branch moves\n");
    let p = "localhost/org/repo";
    let state = prepare_workspace(&request(
        &dir.path().join("work/src"),
        vec![project(&src, p, "master")],
        vec![change(p, "master", ch, MergeMode::Merge)],
    ))
    .expect("prepare");
    let ws = &state.repos[0];
    let dest = dir.path().join("untrusted/project_0/localhost/org/repo");
    let out = checkout_playbook_repo(&ws.path, &dest, "master", &[]).expect("checkout");
    assert_eq!(out.commit, ws.commit);
    assert_ne!(out.commit, src.tip("master").to_string());
    assert!(dest.join("run.yaml").is_file() && dest.join("b.txt").is_file());
}

#[test]
fn playbook_checkouts_leave_excluded_branches_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Source::new(dir.path(), "repo", "master");
    let a = src.tip("master");
    let r = src.commit_files(&[a], &[("r.txt", "r\n")], "Review\n");
    src.set_branch("review/master/x", r);
    let dest = dir.path().join("c");
    let out = checkout_playbook_repo(&src.path, &dest, "master", &["review/".to_string()])
        .expect("checkout");
    assert_eq!(out.commit, a.to_string());
    let repo = Repository::open(&dest).expect("open");
    let names: Vec<String> = repo
        .references()
        .expect("refs")
        .flatten()
        .filter_map(|r| r.name().map(str::to_string))
        .collect();
    assert!(
        repo.find_reference("refs/heads/review/master/x").is_err(),
        "{names:?}"
    );
    // A commit of an excluded branch is still reachable by sha.
    let out = checkout_playbook_repo(
        &src.path,
        &dir.path().join("c2"),
        &r.to_string(),
        &["review/".to_string()],
    )
    .expect("by sha");
    assert_eq!(out.commit, r.to_string());
}
