//! Workspace preparation around the merges: clone layout per scheme, local branches, checkout
//! order, origin URL, workspace-repos.json and error variants.

mod common;

use common::*;
use git2::{Oid, Repository};
use sluice_merger::{
    prepare_workspace, ItemRef, MergeError, MergeMode, WorkspaceRepos, WorkspaceScheme, NULL_ORIGIN,
};

const P: &str = "localhost/org/repo";

/// master(A), stable(A <- S), feature(A <- F), annotated tag v1 on F's parent A... on S.
struct Branches {
    src: Source,
    a: Oid,
    s: Oid,
    f: Oid,
}

fn branches(dir: &std::path::Path) -> Branches {
    let src = Source::new(dir, "repo", "master");
    let a = src.tip("master");
    let s = src.commit_files(&[a], &[("stable.txt", "s\n")], "Stable\n");
    src.set_branch("stable", s);
    let f = src.commit_files(&[a], &[("feature.txt", "f\n")], "Feature\n");
    src.set_branch("feature", f);
    src.tag("v1", s);
    Branches { src, a, s, f }
}

fn prepare(req: &sluice_merger::WorkspaceRequest) -> (String, String) {
    let state = prepare_workspace(req).expect("prepare");
    let rs = &state.repos[0];
    (rs.checkout.clone(), rs.commit.clone())
}

#[test]
fn every_source_branch_and_tag_exists_in_the_clone_and_files_are_checked_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    let req = request(
        &dir.path().join("src"),
        vec![project(&b.src, P, "master")],
        vec![],
    );
    let state = prepare_workspace(&req).expect("prepare");
    let rs = &state.repos[0];
    assert_eq!(rs.path, dir.path().join("src/localhost/org/repo"));
    assert_eq!(rs.checkout, "master");
    assert_eq!(rs.commit, b.a.to_string());
    let repo = Repository::open(&rs.path).expect("open");
    assert!(!repo.is_bare());
    assert_eq!(
        repo.refname_to_id("refs/heads/stable").expect("stable"),
        b.s
    );
    assert_eq!(
        repo.refname_to_id("refs/heads/feature").expect("feature"),
        b.f
    );
    assert!(repo.find_reference("refs/tags/v1").is_ok());
    let expected: std::collections::BTreeMap<String, String> = [
        ("feature".to_string(), b.f.to_string()),
        ("master".to_string(), b.a.to_string()),
        ("stable".to_string(), b.s.to_string()),
    ]
    .into();
    assert_eq!(rs.branches, expected);
    assert_on_branch_clean(&repo, "master");
    assert_eq!(
        worktree_files(&rs.path),
        files(&[("a.txt", "line 1\nline 2\nline 3\n")])
    );
}

#[test]
fn checkout_order_first_match_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    let mut n = 0;
    let mut check =
        |configure: &dyn Fn(&mut sluice_merger::WorkspaceRequest), want: &str, sha: Oid| {
            n += 1;
            let mut req = request(
                &dir.path().join(format!("src{n}")),
                vec![project(&b.src, P, "master")],
                vec![],
            );
            configure(&mut req);
            let (checkout, commit) = prepare(&req);
            assert_eq!(
                (checkout.as_str(), commit),
                (want, sha.to_string()),
                "case {n}"
            );
        };

    // Project override-checkout (a tag) beats everything.
    check(
        &|r| {
            r.projects[0].override_checkout = Some("v1".into());
            r.projects[0].override_branch = Some("feature".into());
            r.job_override_checkout = Some("feature".into());
            r.zuul_branch = Some("feature".into());
        },
        "refs/tags/v1",
        b.s,
    );
    // A missing project override-checkout falls through to project override-branch.
    check(
        &|r| {
            r.projects[0].override_checkout = Some("nope".into());
            r.projects[0].override_branch = Some("stable".into());
            r.job_override_checkout = Some("feature".into());
        },
        "stable",
        b.s,
    );
    // Project override-branch beats the job's overrides.
    check(
        &|r| {
            r.projects[0].override_branch = Some("stable".into());
            r.job_override_checkout = Some("feature".into());
        },
        "stable",
        b.s,
    );
    // Job override-checkout beats job override-branch and the zuul branch.
    check(
        &|r| {
            r.job_override_checkout = Some("feature".into());
            r.job_override_branch = Some("stable".into());
            r.zuul_branch = Some("stable".into());
        },
        "feature",
        b.f,
    );
    // Job override-branch beats the zuul branch.
    check(
        &|r| {
            r.job_override_branch = Some("stable".into());
            r.zuul_branch = Some("feature".into());
        },
        "stable",
        b.s,
    );
    // The zuul branch when the repo has it.
    check(&|r| r.zuul_branch = Some("feature".into()), "feature", b.f);
    // ... and the default branch when it does not.
    check(&|r| r.zuul_branch = Some("missing".into()), "master", b.a);
    // The item's tag ref, for the item project, when the item has no branch.
    check(
        &|r| {
            r.zuul_ref = Some(ItemRef {
                project: P.into(),
                reference: "refs/tags/v1".into(),
            })
        },
        "refs/tags/v1",
        b.s,
    );
    // The item's ref is ignored when the item has a branch, or is another project's.
    check(
        &|r| {
            r.zuul_branch = Some("feature".into());
            r.zuul_ref = Some(ItemRef {
                project: P.into(),
                reference: "refs/heads/stable".into(),
            })
        },
        "feature",
        b.f,
    );
    check(
        &|r| {
            r.zuul_ref = Some(ItemRef {
                project: "localhost/other".into(),
                reference: "refs/heads/stable".into(),
            })
        },
        "master",
        b.a,
    );
}

#[test]
fn a_tag_checkout_detaches_head_with_files_present() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    let mut p = project(&b.src, P, "master");
    p.override_checkout = Some("v1".into());
    let state =
        prepare_workspace(&request(&dir.path().join("src"), vec![p], vec![])).expect("prepare");
    let repo = Repository::open(&state.repos[0].path).expect("open");
    assert!(repo.head_detached().expect("head"));
    assert_eq!(repo.head().expect("head").target(), Some(b.s));
    assert!(worktree_files(&state.repos[0].path).contains_key("stable.txt"));
}

#[test]
fn missing_default_branch_is_an_error_with_zuuls_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    let req = request(
        &dir.path().join("src"),
        vec![project(&b.src, P, "main")],
        vec![],
    );
    let err = prepare_workspace(&req).expect_err("no main branch");
    assert!(
        matches!(err, MergeError::MissingDefaultBranch { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Project localhost/org/repo does not have the default branch main"
    );
    assert!(!err.is_conflict());
}

#[test]
fn every_origin_points_at_dev_null() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    let other = Source::new(dir.path(), "other", "main");
    let req = request(
        &dir.path().join("src"),
        vec![
            project(&b.src, P, "master"),
            project(&other, "localhost/org/other", "main"),
        ],
        vec![change(P, "master", b.f, MergeMode::Merge)],
    );
    let state = prepare_workspace(&req).expect("prepare");
    assert_eq!(state.repos.len(), 2);
    for rs in &state.repos {
        let repo = Repository::open(&rs.path).expect("open");
        let origin = repo.find_remote("origin").expect("origin");
        assert_eq!(origin.url(), Some(NULL_ORIGIN), "{}", rs.canonical_name);
        assert_eq!(NULL_ORIGIN, "file:///dev/null");
    }
    assert_eq!(state.repos[1].checkout, "main");
}

#[test]
fn golang_flat_and_unique_layouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    let cases = [
        (WorkspaceScheme::Golang, "localhost/org/repo"),
        (WorkspaceScheme::Flat, "repo"),
        (WorkspaceScheme::Unique, "localhost/org/org%2Frepo"),
    ];
    for (scheme, rel) in cases {
        let root = dir.path().join(scheme.as_str());
        let mut req = request(&root, vec![project(&b.src, P, "master")], vec![]);
        req.scheme = scheme;
        let state = prepare_workspace(&req).expect("prepare");
        assert_eq!(state.repos[0].path, root.join(rel), "{scheme}");
        assert_eq!(state.repos[0].relative_path, std::path::PathBuf::from(rel));
        assert!(root.join(rel).join(".git").is_dir(), "{scheme}");
        assert!(root.join(rel).join("a.txt").is_file(), "{scheme}");
    }
}

#[test]
fn flat_layout_rejects_two_projects_with_the_same_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = Source::new(dir.path(), "one", "master");
    let two = Source::new(dir.path(), "two", "master");
    let mut req = request(
        &dir.path().join("src"),
        vec![
            project(&one, "localhost/a/repo", "master"),
            project(&two, "localhost/b/repo", "master"),
        ],
        vec![],
    );
    req.scheme = WorkspaceScheme::Flat;
    let err = prepare_workspace(&req).expect_err("collision");
    assert!(matches!(err, MergeError::PathCollision { .. }), "{err:?}");
    req.scheme = WorkspaceScheme::Golang;
    assert!(prepare_workspace(&req).is_ok());
}

#[test]
fn changes_fetch_by_unreachable_sha_and_by_ref() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    // A commit no ref points at (only the object database has it).
    let orphan = b.src.commit_files(&[b.a], &[("o.txt", "o\n")], "Orphan\n");
    let state = prepare_workspace(&request(
        &dir.path().join("src1"),
        vec![project(&b.src, P, "master")],
        vec![change(P, "master", orphan, MergeMode::Merge)],
    ))
    .expect("prepare by sha");
    assert_eq!(state.repos[0].commit, orphan.to_string());
    assert!(worktree_files(&state.repos[0].path).contains_key("o.txt"));

    b.src.set_ref("refs/pull/7/head", b.f);
    let state = prepare_workspace(&request(
        &dir.path().join("src2"),
        vec![project(&b.src, P, "master")],
        vec![change(P, "master", "refs/pull/7/head", MergeMode::Merge)],
    ))
    .expect("prepare by ref");
    assert_eq!(state.repos[0].commit, b.f.to_string());
}

#[test]
fn request_errors_are_distinct_variants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    let p = || vec![project(&b.src, P, "master")];

    let err = prepare_workspace(&request(
        &dir.path().join("s1"),
        p(),
        vec![change(
            P,
            "master",
            "refs/changes/99/99/1",
            MergeMode::Merge,
        )],
    ))
    .expect_err("unknown ref");
    assert!(
        matches!(err, MergeError::UnknownRef { ref reference, .. } if reference == "refs/changes/99/99/1"),
        "{err:?}"
    );

    let err = prepare_workspace(&request(
        &dir.path().join("s2"),
        p(),
        vec![change(
            "localhost/org/nope",
            "master",
            b.f,
            MergeMode::Merge,
        )],
    ))
    .expect_err("unknown project");
    assert!(
        matches!(err, MergeError::UnknownProject { ref project, .. } if project == "localhost/org/nope"),
        "{err:?}"
    );

    let err = prepare_workspace(&request(
        &dir.path().join("s3"),
        p(),
        vec![change(P, "nobranch", b.f, MergeMode::Merge)],
    ))
    .expect_err("missing branch");
    assert!(
        matches!(err, MergeError::MissingBranch { ref branch, .. } if branch == "nobranch"),
        "{err:?}"
    );

    let mut twice = p();
    twice.extend(p());
    let err = prepare_workspace(&request(&dir.path().join("s4"), twice, vec![])).expect_err("dup");
    assert!(
        matches!(err, MergeError::DuplicateProject { .. }),
        "{err:?}"
    );

    let mut missing = p();
    missing[0].source = dir.path().join("does-not-exist");
    let err = prepare_workspace(&request(&dir.path().join("s5"), missing, vec![]))
        .expect_err("no source");
    assert!(
        matches!(err, MergeError::Io { .. } | MergeError::Git { .. }),
        "{err:?}"
    );

    let occupied = dir.path().join("s6/localhost/org/repo");
    std::fs::create_dir_all(&occupied).expect("mkdir");
    std::fs::write(occupied.join("junk"), "x").expect("write");
    let err =
        prepare_workspace(&request(&dir.path().join("s6"), p(), vec![])).expect_err("occupied");
    assert!(
        matches!(err, MergeError::DestinationExists { .. }),
        "{err:?}"
    );
}

#[test]
fn workspace_repos_json_records_state_and_ops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    let master2 = b
        .src
        .commit_on("master", &[("m.txt", "m\n")], "Master moves\n");
    let state = prepare_workspace(&request(
        &dir.path().join("src"),
        vec![project(&b.src, P, "master")],
        vec![change(P, "master", b.f, MergeMode::MergeResolve)],
    ))
    .expect("prepare");
    let record = state.workspace_repos();
    let out = dir.path().join("workspace-repos.json");
    record.write(&out).expect("write");
    let text = std::fs::read_to_string(&out).expect("read");
    let back: WorkspaceRepos = serde_json::from_str(&text).expect("parse");
    assert_eq!(back, record);
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["merge_name"], MERGE_NAME);
    assert_eq!(value["merge_email"], MERGE_EMAIL);
    assert_eq!(
        value["repo_state"][P]["master"],
        state.repos[0].commit.as_str()
    );
    assert_eq!(value["repo_state"][P]["stable"], b.s.to_string().as_str());
    assert_ne!(state.repos[0].commit, master2.to_string());
    let cmds: Vec<Vec<String>> = record
        .merge_ops
        .iter()
        .filter_map(|o| o.cmd.clone())
        .collect();
    assert_eq!(cmds[0], vec!["git", "checkout", "master"]);
    assert_eq!(
        cmds[1],
        vec!["git", "fetch", "origin", b.f.to_string().as_str()]
    );
    let merge_msg = format!("Merge '{}'", b.f);
    assert_eq!(
        cmds[2],
        vec![
            "git",
            "merge",
            "-m",
            merge_msg.as_str(),
            "-s",
            "resolve",
            "FETCH_HEAD"
        ]
    );
    assert_eq!(record.merge_ops[2].path.as_deref(), Some(P));
    assert_eq!(record.merge_ops[2].timestamp, Some(MERGE_TIME));
}

#[test]
fn repo_state_is_restored_before_merging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    // The source moved on after the scheduler computed its state.
    let later = b
        .src
        .commit_on("master", &[("later.txt", "l\n")], "Later\n");
    let ch = b.src.commit_files(&[b.a], &[("c.txt", "c\n")], "Change\n");
    let mut p = project(&b.src, P, "master");
    p.repo_state = [
        ("refs/heads/master".to_string(), b.a.to_string()),
        ("refs/heads/stable".to_string(), b.s.to_string()),
        ("refs/tags/v1".to_string(), {
            let repo = Repository::open(&b.src.path).expect("open source");
            let id = repo.refname_to_id("refs/tags/v1").expect("tag");
            id.to_string()
        }),
    ]
    .into();
    let state = prepare_workspace(&request(
        &dir.path().join("src"),
        vec![p.clone()],
        vec![change(P, "master", ch, MergeMode::Merge)],
    ))
    .expect("prepare");
    let rs = &state.repos[0];
    // Restored master was A, so the change fast-forwards; `later` is not there.
    assert_eq!(rs.commit, ch.to_string());
    let repo = Repository::open(&rs.path).expect("open");
    assert!(!repo.graph_descendant_of(ch, later).expect("graph"));
    // feature is not in the state, so it is gone; the tag survives.
    let names: Vec<&String> = rs.branches.keys().collect();
    assert_eq!(names, vec!["master", "stable"]);
    assert!(repo.find_reference("refs/remotes/origin/feature").is_err());
    assert_eq!(
        repo.refname_to_id("refs/remotes/origin/stable")
            .expect("origin/stable"),
        b.s
    );
    assert!(repo.find_reference("refs/tags/v1").is_ok());

    // A state naming an object the source lacks is an error naming the ref.
    p.repo_state = [(
        "refs/heads/master".to_string(),
        "1111111111111111111111111111111111111111".to_string(),
    )]
    .into();
    let err = prepare_workspace(&request(&dir.path().join("src2"), vec![p], vec![]))
        .expect_err("bad state");
    assert!(
        matches!(err, MergeError::UnknownRef { ref reference, .. } if reference.starts_with("refs/heads/master")),
        "{err:?}"
    );
}

#[test]
fn branches_with_slashes_merge_and_check_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    b.src.set_branch("release/2024.1", b.s);
    let ch = b.src.commit_files(&[b.a], &[("c.txt", "c\n")], "Change\n");
    let mut req = request(
        &dir.path().join("src"),
        vec![project(&b.src, P, "master")],
        vec![change(P, "release/2024.1", ch, MergeMode::Merge)],
    );
    req.zuul_branch = Some("release/2024.1".into());
    let state = prepare_workspace(&req).expect("prepare");
    let rs = &state.repos[0];
    assert_eq!(rs.checkout, "release/2024.1");
    let repo = Repository::open(&rs.path).expect("open");
    assert_on_branch_clean(&repo, "release/2024.1");
    let tip = repo
        .find_commit(repo.head().expect("head").target().expect("oid"))
        .expect("tip");
    assert_eq!(tip.parent_ids().collect::<Vec<_>>(), vec![b.s, ch]);
    assert_eq!(
        repo.refname_to_id("refs/remotes/origin/release/2024.1")
            .expect("origin"),
        b.s
    );
    assert!(worktree_files(&rs.path).contains_key("c.txt"));
    assert!(worktree_files(&rs.path).contains_key("stable.txt"));
}

#[test]
fn excluded_branches_are_not_cloned_and_their_commits_still_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = branches(dir.path());
    // Review branches (changes, not branches) next to the real ones.
    let review = b.src.commit_files(&[b.a], &[("r.txt", "r\n")], "Review\n");
    for n in 0..20 {
        b.src.set_branch(&format!("review/master/c{n}"), review);
    }
    let mut p = project(&b.src, P, "master");
    p.exclude_branches = vec!["review/".into()];
    let state = prepare_workspace(&request(
        &dir.path().join("src"),
        vec![p],
        vec![change(P, "master", review, MergeMode::Merge)],
    ))
    .expect("prepare");
    let rs = &state.repos[0];
    let names: Vec<&str> = rs.branches.keys().map(String::as_str).collect();
    assert_eq!(names, ["feature", "master", "stable"]);
    let repo = Repository::open(&rs.path).expect("open");
    let remote: Vec<String> = repo
        .references_glob("refs/remotes/origin/review/*")
        .expect("glob")
        .flatten()
        .filter_map(|r| r.name().map(str::to_string))
        .collect();
    assert!(remote.is_empty(), "review branches fetched: {remote:?}");
    assert!(repo.find_reference("refs/tags/v1").is_ok());
    assert!(worktree_files(&rs.path).contains_key("r.txt"));

    // Without the exclusion every branch is there (what a source's real branches get).
    let state = prepare_workspace(&request(
        &dir.path().join("src2"),
        vec![project(&b.src, P, "master")],
        vec![],
    ))
    .expect("prepare");
    assert_eq!(state.repos[0].branches.len(), 23);
}
