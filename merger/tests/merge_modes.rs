//! Every merge mode against real repositories: resulting tree, history shape, messages and
//! identities; stacking; conflicts.

mod common;

use common::*;
use git2::{Oid, Repository};
use sluice_merger::{prepare_workspace, MergeError, MergeMode, WorkspaceState};

const P: &str = "localhost/org/repo";

/// master: A(a.txt) <- B(b.txt); change: A <- C1(c.txt) <- C2(d.txt) at refs/changes/01/1/1.
struct Diverged {
    src: Source,
    a: Oid,
    c1: Oid,
    c2: Oid,
    b: Oid,
}

fn diverged(dir: &std::path::Path) -> Diverged {
    let src = Source::new(dir, "repo", "master");
    let a = src.tip("master");
    let c1 = src.commit_files(&[a], &[("c.txt", "c\n")], "Add c\n\nBody of c.\n");
    let c2 = src.commit_files(&[c1], &[("d.txt", "d\n")], "Add d\n");
    src.set_ref("refs/changes/01/1/1", c2);
    let b = src.commit_on("master", &[("b.txt", "b\n")], "Add b\n");
    Diverged { src, a, c1, c2, b }
}

fn run(
    dir: &std::path::Path,
    src: &Source,
    commit: &str,
    mode: MergeMode,
) -> (WorkspaceState, Repository) {
    let req = request(
        &dir.join("src"),
        vec![project(src, P, "master")],
        vec![change(P, "master", commit, mode)],
    );
    let state = prepare_workspace(&req).expect("prepare workspace");
    let repo = Repository::open(&state.repos[0].path).expect("open workspace repo");
    (state, repo)
}

fn head(repo: &Repository) -> Oid {
    repo.head().expect("head").target().expect("direct head")
}

fn all_files() -> std::collections::BTreeMap<String, String> {
    files(&[
        ("a.txt", "line 1\nline 2\nline 3\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
        ("d.txt", "d\n"),
    ])
}

#[test]
fn merge_makes_a_two_parent_commit_when_the_branch_moved_on() {
    for mode in [
        MergeMode::Merge,
        MergeMode::MergeResolve,
        MergeMode::MergeRecursive,
        MergeMode::MergeOrt,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = diverged(dir.path());
        let (state, repo) = run(dir.path(), &d.src, "refs/changes/01/1/1", mode);
        let h = head(&repo);
        let c = repo.find_commit(h).expect("head commit");
        let parents: Vec<Oid> = c.parent_ids().collect();
        assert_eq!(parents, vec![d.b, d.c2], "{mode}: parents");
        assert_eq!(c.message(), Some("Merge 'refs/changes/01/1/1'\n"), "{mode}");
        assert_eq!(c.author().name(), Some(MERGE_NAME));
        assert_eq!(c.author().email(), Some(MERGE_EMAIL));
        assert_eq!(c.committer().name(), Some(MERGE_NAME));
        assert_eq!(c.time().seconds(), MERGE_TIME);
        assert_eq!(tree_files(&repo, h), all_files(), "{mode}: tree");
        assert_eq!(
            worktree_files(&state.repos[0].path),
            all_files(),
            "{mode}: worktree"
        );
        assert_on_branch_clean(&repo, "master");
        assert_eq!(state.repos[0].commit, h.to_string());
        assert_eq!(state.repos[0].checkout, "master");
        // origin/master is the base the change was merged onto.
        let origin = repo
            .refname_to_id("refs/remotes/origin/master")
            .expect("origin/master");
        assert_eq!(origin, d.b);
    }
}

#[test]
fn merge_fast_forwards_when_the_branch_did_not_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Source::new(dir.path(), "repo", "master");
    let a = src.tip("master");
    let c1 = src.commit_files(&[a], &[("c.txt", "c\n")], "Add c\n");
    let (state, repo) = run(dir.path(), &src, &c1.to_string(), MergeMode::Merge);
    assert_eq!(head(&repo), c1);
    assert_eq!(state.repos[0].commit, c1.to_string());
    assert_on_branch_clean(&repo, "master");
}

#[test]
fn merging_a_change_the_branch_already_contains_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    for mode in [MergeMode::Merge, MergeMode::CherryPick, MergeMode::Rebase] {
        let sub = dir.path().join(mode.as_str());
        let (_, repo) = run(&sub, &d.src, &d.a.to_string(), mode);
        assert_eq!(head(&repo), d.b, "{mode}");
    }
}

#[test]
fn squash_merge_makes_exactly_one_commit_with_the_combined_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    let (state, repo) = run(
        dir.path(),
        &d.src,
        "refs/changes/01/1/1",
        MergeMode::SquashMerge,
    );
    let h = head(&repo);
    let c = repo.find_commit(h).expect("head");
    assert_eq!(c.parent_ids().collect::<Vec<_>>(), vec![d.b]);
    assert_eq!(c.message(), Some("Merge 'refs/changes/01/1/1'\n"));
    assert_eq!(c.author().name(), Some(MERGE_NAME));
    assert_eq!(tree_files(&repo, h), all_files());
    assert_eq!(worktree_files(&state.repos[0].path), all_files());
    // The change's own commits are not part of the branch.
    assert!(!repo.graph_descendant_of(h, d.c1).expect("graph"));
}

#[test]
fn squash_merge_does_not_fast_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Source::new(dir.path(), "repo", "master");
    let a = src.tip("master");
    let c1 = src.commit_files(&[a], &[("c.txt", "c\n")], "Add c\n");
    let c2 = src.commit_files(&[c1], &[("d.txt", "d\n")], "Add d\n");
    let (_, repo) = run(dir.path(), &src, &c2.to_string(), MergeMode::SquashMerge);
    let h = head(&repo);
    assert_ne!(h, c2);
    let c = repo.find_commit(h).expect("head");
    assert_eq!(c.parent_ids().collect::<Vec<_>>(), vec![a]);
    assert_eq!(tree_files(&repo, h), tree_files(&repo, c2));
}

#[test]
fn cherry_pick_replays_each_commit_keeping_messages_and_authors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    let (state, repo) = run(
        dir.path(),
        &d.src,
        "refs/changes/01/1/1",
        MergeMode::CherryPick,
    );
    let h = head(&repo);
    assert_eq!(
        first_parent_messages(&repo, h, d.b),
        vec!["Add d".to_string(), "Add c\n\nBody of c.".to_string()]
    );
    let tip = repo.find_commit(h).expect("head");
    assert_eq!(tip.parent_count(), 1);
    assert_eq!(tip.author().name(), Some("Alice Author"));
    assert_eq!(tip.committer().name(), Some(MERGE_NAME));
    assert_eq!(tip.committer().when().seconds(), MERGE_TIME);
    let first = tip.parent(0).expect("parent");
    assert_eq!(first.parent_id(0).expect("grandparent"), d.b);
    assert_eq!(tree_files(&repo, h), all_files());
    assert_eq!(worktree_files(&state.repos[0].path), all_files());
    assert_on_branch_clean(&repo, "master");
}

#[test]
fn cherry_pick_skips_a_commit_already_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Source::new(dir.path(), "repo", "master");
    let a = src.tip("master");
    let change = src.commit_files(&[a], &[("c.txt", "c\n")], "Add c\n");
    // The same content landed on master independently.
    let b = src.commit_on("master", &[("c.txt", "c\n")], "Add c (landed)\n");
    let (state, repo) = run(dir.path(), &src, &change.to_string(), MergeMode::CherryPick);
    assert_eq!(head(&repo), b);
    assert!(state
        .merge_ops
        .iter()
        .any(|op| op.comment.as_deref() == Some(&format!("Already applied {change}"))));
}

#[test]
fn cherry_pick_of_a_merge_commit_merges_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    let side = d.src.commit_files(&[d.a], &[("s.txt", "s\n")], "Side\n");
    let m = d
        .src
        .commit_files(&[d.c2, side], &[("s.txt", "s\n")], "Merge side\n");
    let (_, repo) = run(dir.path(), &d.src, &m.to_string(), MergeMode::CherryPick);
    let c = repo.find_commit(head(&repo)).expect("head");
    assert_eq!(c.parent_ids().collect::<Vec<_>>(), vec![d.b, m]);
    assert_eq!(c.message(), Some(format!("Merge '{m}'\n").as_str()));
}

#[test]
fn rebase_replays_the_change_linearly_onto_the_branch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    let (state, repo) = run(dir.path(), &d.src, "refs/changes/01/1/1", MergeMode::Rebase);
    let h = head(&repo);
    assert_ne!(h, d.c2);
    assert_eq!(
        first_parent_messages(&repo, h, d.b),
        vec!["Add d".to_string(), "Add c\n\nBody of c.".to_string()]
    );
    let tip = repo.find_commit(h).expect("head");
    assert_eq!(tip.parent_count(), 1);
    assert_eq!(
        tip.parent(0).expect("parent").parent_id(0).expect("gp"),
        d.b
    );
    assert_eq!(tip.author().name(), Some("Alice Author"));
    assert_eq!(tip.committer().email(), Some(MERGE_EMAIL));
    assert_eq!(tree_files(&repo, h), all_files());
    assert_eq!(worktree_files(&state.repos[0].path), all_files());
    assert_on_branch_clean(&repo, "master");
    assert!(state
        .merge_ops
        .iter()
        .any(|op| op.cmd.as_deref()
            == Some(&["git".to_string(), "rebase".into(), d.b.to_string()][..])));
}

#[test]
fn rebase_of_a_change_already_on_the_tip_keeps_its_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Source::new(dir.path(), "repo", "master");
    let a = src.tip("master");
    let c1 = src.commit_files(&[a], &[("c.txt", "c\n")], "Add c\n");
    let (_, repo) = run(dir.path(), &src, &c1.to_string(), MergeMode::Rebase);
    assert_eq!(head(&repo), c1);
}

#[test]
fn rebase_drops_merge_commits_but_rebase_first_parent_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    // change: A <- C1 <- M(C1, S) <- C3, with S: A <- S(s.txt).
    let s = d.src.commit_files(&[d.a], &[("s.txt", "s\n")], "Side\n");
    let m = d
        .src
        .commit_files(&[d.c1, s], &[("s.txt", "s\n")], "Merge side\n");
    let c3 = d.src.commit_files(&[m], &[("e.txt", "e\n")], "Add e\n");
    let expected = files(&[
        ("a.txt", "line 1\nline 2\nline 3\n"),
        ("b.txt", "b\n"),
        ("c.txt", "c\n"),
        ("s.txt", "s\n"),
        ("e.txt", "e\n"),
    ]);

    let (_, repo) = run(
        &dir.path().join("rfp"),
        &d.src,
        &c3.to_string(),
        MergeMode::RebaseFirstParent,
    );
    let h = head(&repo);
    assert_eq!(tree_files(&repo, h), expected);
    assert_eq!(
        first_parent_messages(&repo, h, d.b),
        vec!["Add e", "Merge side", "Add c\n\nBody of c."]
    );
    let m2 = repo.find_commit(h).expect("head").parent(0).expect("merge");
    assert_eq!(m2.parent_count(), 2);
    assert_eq!(
        m2.parent_id(1).expect("second parent"),
        s,
        "side parent kept"
    );
    assert_ne!(m2.id(), m);

    let (_, repo) = run(
        &dir.path().join("rebase"),
        &d.src,
        &c3.to_string(),
        MergeMode::Rebase,
    );
    let h = head(&repo);
    assert_eq!(tree_files(&repo, h), expected);
    let mut walk = repo.revwalk().expect("walk");
    walk.push(h).expect("push");
    walk.hide(d.b).expect("hide");
    let new: Vec<Oid> = walk.map(|r| r.expect("oid")).collect();
    assert_eq!(new.len(), 3, "C1, S and C3 replayed linearly");
    for id in new {
        assert_eq!(repo.find_commit(id).expect("commit").parent_count(), 1);
    }
}

#[test]
fn two_changes_on_the_same_branch_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    let other = d.src.commit_files(&[d.a], &[("x.txt", "x\n")], "Add x\n");
    let req = request(
        &dir.path().join("src"),
        vec![project(&d.src, P, "master")],
        vec![
            change(P, "master", "refs/changes/01/1/1", MergeMode::Merge),
            change(P, "master", other, MergeMode::Merge),
        ],
    );
    let state = prepare_workspace(&req).expect("prepare");
    let repo = Repository::open(&state.repos[0].path).expect("open");
    let h = head(&repo);
    let tip = repo.find_commit(h).expect("head");
    assert_eq!(tip.parent_id(1).expect("second parent"), other);
    let first = tip.parent(0).expect("first merge");
    assert_eq!(first.parent_ids().collect::<Vec<_>>(), vec![d.b, d.c2]);
    let mut expected = all_files();
    expected.insert("x.txt".into(), "x\n".into());
    assert_eq!(tree_files(&repo, h), expected);
    assert_eq!(state.repos[0].branches.get("master"), Some(&h.to_string()));
    // origin/master is the base of the last change: the first change's result.
    assert_eq!(
        repo.refname_to_id("refs/remotes/origin/master")
            .expect("origin/master"),
        first.id()
    );
}

#[test]
fn stacked_changes_with_different_modes_and_branches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    let stable = d
        .src
        .commit_files(&[d.a], &[("st.txt", "st\n")], "Stable\n");
    d.src.set_branch("stable", stable);
    let on_stable = d
        .src
        .commit_files(&[stable], &[("fix.txt", "fix\n")], "Fix\n");
    let mut req = request(
        &dir.path().join("src"),
        vec![project(&d.src, P, "master")],
        vec![
            change(P, "master", d.c1, MergeMode::CherryPick),
            change(P, "stable", on_stable, MergeMode::SquashMerge),
            change(P, "master", d.c2, MergeMode::CherryPick),
        ],
    );
    req.zuul_branch = Some("stable".into());
    let state = prepare_workspace(&req).expect("prepare");
    let repo = Repository::open(&state.repos[0].path).expect("open");
    let rs = &state.repos[0];
    assert_eq!(rs.checkout, "stable");
    let master = repo.refname_to_id("refs/heads/master").expect("master");
    // c1 is picked, then c2's range (c1 again, already applied, and c2) on top.
    assert_eq!(
        first_parent_messages(&repo, master, d.b),
        vec!["Add d", "Add c\n\nBody of c."]
    );
    let st = repo.refname_to_id("refs/heads/stable").expect("stable");
    assert_eq!(st.to_string(), rs.commit);
    assert_eq!(
        repo.find_commit(st)
            .expect("stable")
            .parent_ids()
            .collect::<Vec<_>>(),
        vec![stable]
    );
    assert!(worktree_files(&rs.path).contains_key("fix.txt"));
}

#[test]
fn conflicts_are_reported_for_every_mode() {
    for mode in MergeMode::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Source::new(dir.path(), "repo", "master");
        let a = src.tip("master");
        let ch = src.commit_files(&[a], &[("a.txt", "line 1\nCHANGE\nline 3\n")], "Change a\n");
        src.commit_on(
            "master",
            &[("a.txt", "line 1\nBRANCH\nline 3\n")],
            "Branch a\n",
        );
        let req = request(
            &dir.path().join("src"),
            vec![project(&src, P, "master")],
            vec![change(P, "master", ch, mode)],
        );
        let err = prepare_workspace(&req).expect_err("must conflict");
        assert!(err.is_conflict(), "{mode}: {err}");
        match &err {
            MergeError::Conflict {
                project,
                branch,
                commit,
                mode: m,
                paths,
            } => {
                assert_eq!(project, P);
                assert_eq!(branch, "master");
                assert_eq!(commit, &ch.to_string());
                assert_eq!(*m, mode);
                assert_eq!(paths, &vec!["a.txt".to_string()], "{mode}");
            }
            other => panic!("{mode}: unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(P) && msg.contains("master") && msg.contains("a.txt"),
            "{msg}"
        );
    }
}

#[test]
fn same_request_gives_the_same_shas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = diverged(dir.path());
    let mut shas = Vec::new();
    for sub in ["one", "two"] {
        let (state, _) = run(
            &dir.path().join(sub),
            &d.src,
            "refs/changes/01/1/1",
            MergeMode::Merge,
        );
        shas.push(state.repos[0].commit.clone());
    }
    assert_eq!(shas[0], shas[1]);
}

#[test]
fn merge_follows_renames_but_merge_resolve_does_not() {
    let body: String = (1..=20).map(|i| format!("line {i}\n")).collect();
    let modified = body.replace("line 2\n", "line two\n");
    for (mode, conflicts) in [
        (MergeMode::Merge, false),
        (MergeMode::MergeOrt, false),
        (MergeMode::MergeResolve, true),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Source::new(dir.path(), "repo", "master");
        let a = src.commit_on("master", &[("big.txt", &body)], "Big\n");
        let ch = src.commit_files(&[a], &[("big.txt", &modified)], "Modify big\n");
        src.commit_on(
            "master",
            &[("big.txt", ""), ("moved.txt", &body)],
            "Rename big\n",
        );
        let req = request(
            &dir.path().join("src"),
            vec![project(&src, P, "master")],
            vec![change(P, "master", ch, mode)],
        );
        match prepare_workspace(&req) {
            Ok(state) => {
                assert!(!conflicts, "{mode} should conflict");
                let wt = worktree_files(&state.repos[0].path);
                assert_eq!(wt.get("moved.txt"), Some(&modified), "{mode}");
                assert!(!wt.contains_key("big.txt"), "{mode}");
            }
            Err(e) => assert!(conflicts && e.is_conflict(), "{mode}: {e}"),
        }
    }
}
