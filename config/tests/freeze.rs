//! Building layouts from real files and freezing jobs.

mod common;

use common::{repo, Repo};
use serde_json::json;
use sluice_config::*;

const BASE: &str = r#"
- job:
    name: base
    parent: null
    pre-run: playbooks/base/pre.yaml
    post-run:
      - playbooks/base/post.yaml
      - name: playbooks/base/cleanup.yaml
        cleanup: true
    timeout: 1800
    vars:
      shared:
        from_base: 1
        overridden: base
      base_only: true
    nodeset:
      nodes:
        - name: controller
          label: ubuntu
- nodeset:
    name: pair
    nodes:
      - name: [primary, alias]
        label: big
      - name: secondary
        label: small
    groups:
      - name: all-of-them
        nodes: [primary, secondary]
"#;

const APP: &str = r#"
- job:
    name: middle
    abstract: true
    pre-run: playbooks/middle/pre.yaml
    post-run: playbooks/middle/post.yaml
    vars:
      shared:
        overridden: middle
        from_middle: 2
- job:
    name: unit
    parent: middle
    pre-run: playbooks/unit/pre.yaml
    run: playbooks/unit/run.yaml
    post-run: playbooks/unit/post.yaml
    cleanup-run: playbooks/unit/cleanup.yaml
    nodeset: pair
    roles:
      - zuul: org/roles
    vars:
      shared:
        overridden: unit
- job:
    name: inherits-inline
    run: playbooks/x.yaml
- project:
    vars:
      shared:
        overridden: project
        from_project: 3
      project_only: yes
    check:
      jobs:
        - unit:
            timeout: 99
            vars:
              pp: 1
"#;

fn layout(repos: &[&Repo]) -> Layout {
    let sources: Vec<ProjectSource> = repos.iter().map(|r| r.source.clone()).collect();
    match load_layout(&sources, Some("base".into())) {
        Ok(l) => l,
        Err(e) => panic!("layout errors: {e}"),
    }
}

fn standard() -> (Repo, Repo, Repo) {
    (
        repo("org/config", true, &[("zuul.d/base.yaml", BASE)]),
        repo("org/app", false, &[(".zuul.yaml", APP)]),
        repo("org/roles", false, &[]),
    )
}

#[test]
fn parent_chain_orders_playbooks_with_nesting_levels() {
    let (c, a, r) = standard();
    let l = layout(&[&c, &a, &r]);
    let j = l
        .freeze("unit", "example.com/org/app", "main")
        .expect("freeze");
    let paths = |pbs: &[PlaybookRef]| -> Vec<(String, u32, bool)> {
        pbs.iter()
            .map(|p| (p.path.clone(), p.nesting_level, p.cleanup))
            .collect()
    };
    assert_eq!(
        paths(&j.pre_run),
        vec![
            ("playbooks/base/pre.yaml".into(), 2, false),
            ("playbooks/middle/pre.yaml".into(), 1, false),
            ("playbooks/unit/pre.yaml".into(), 0, false),
        ]
    );
    assert_eq!(
        paths(&j.run),
        vec![("playbooks/unit/run.yaml".into(), 0, false)]
    );
    // Child post first; cleanup-run goes after the post playbooks of its own level and
    // before the parent's, with cleanup = true.
    assert_eq!(
        paths(&j.post_run),
        vec![
            ("playbooks/unit/post.yaml".into(), 0, false),
            ("playbooks/unit/cleanup.yaml".into(), 0, true),
            ("playbooks/middle/post.yaml".into(), 1, false),
            ("playbooks/base/post.yaml".into(), 2, false),
            ("playbooks/base/cleanup.yaml".into(), 2, true),
        ]
    );
    // Trust, project and branch come from the defining project.
    assert!(j.pre_run[0].trusted && !j.run[0].trusted);
    assert_eq!(j.pre_run[0].project, "example.com/org/config");
    assert_eq!(j.run[0].project, "example.com/org/app");
    assert_eq!(j.run[0].branch, "main");
    // Roles: the defining repo is implicit; a child's explicit roles go in front.
    let roles = |pb: &PlaybookRef| -> Vec<(String, String, bool)> {
        pb.roles
            .iter()
            .map(|r| (r.project.clone(), r.target_name.clone(), r.implicit))
            .collect()
    };
    assert_eq!(
        roles(&j.pre_run[0]),
        vec![("example.com/org/config".into(), "config".into(), true)]
    );
    assert_eq!(
        roles(&j.run[0]),
        vec![
            ("example.com/org/roles".into(), "roles".into(), false),
            ("example.com/org/app".into(), "app".into(), true),
            ("example.com/org/config".into(), "config".into(), true),
        ]
    );
    // One inheritance line per applied variant, including the project-pipeline one.
    assert_eq!(j.inheritance_path.len(), 4, "{:?}", j.inheritance_path);
    assert_eq!(
        j.inheritance_path[0],
        "<Job base branches: None source: example.com/org/config/zuul.d/base.yaml@main#2>"
    );
    assert!(
        j.inheritance_path[2].contains("org/app/.zuul.yaml@main#11"),
        "{:?}",
        j.inheritance_path
    );
    assert_eq!(
        j.inheritance_path[3],
        "<Job unit project-pipeline branches: None source: example.com/org/app/.zuul.yaml@main#27>"
    );
    // Defaults and overrides.
    assert_eq!(j.timeout, Some(99));
    assert_eq!(j.attempts, 3);
    assert!(j.voting);
    assert_eq!(j.workspace_scheme, "golang");
    assert_eq!(j.secret_exposure, "ignore");
}

#[test]
fn vars_deep_merge_with_project_vars_underneath() {
    let (c, a, r) = standard();
    let l = layout(&[&c, &a, &r]);
    let j = l
        .freeze("unit", "example.com/org/app", "main")
        .expect("freeze");
    assert_eq!(
        serde_json::Value::Object(j.vars),
        json!({
            "shared": {
                "from_project": 3,
                "overridden": "unit",
                "from_base": 1,
                "from_middle": 2,
            },
            "project_only": true,
            "base_only": true,
            "pp": 1,
        })
    );
}

#[test]
fn nodesets_named_and_inline() {
    let (c, a, r) = standard();
    let l = layout(&[&c, &a, &r]);
    let j = l.freeze("unit", "org/app", "main").expect("freeze");
    assert_eq!(j.nodeset.name.as_deref(), Some("pair"));
    assert_eq!(j.nodeset.nodes.len(), 2);
    assert_eq!(j.nodeset.nodes[0].names, vec!["primary", "alias"]);
    assert_eq!(j.nodeset.nodes[0].label, "big");
    assert_eq!(j.nodeset.groups[0].name, "all-of-them");
    assert_eq!(j.nodeset.groups[0].nodes, vec!["primary", "secondary"]);
    assert_eq!(l.nodeset("pair"), Some(&j.nodeset));

    // The inline nodeset of base is inherited.
    let b = l
        .freeze("inherits-inline", "org/app", "main")
        .expect("freeze");
    assert_eq!(b.nodeset.name, None);
    assert_eq!(b.nodeset.nodes.len(), 1);
    assert_eq!(b.nodeset.nodes[0].names, vec!["controller"]);
    assert_eq!(b.nodeset.nodes[0].label, "ubuntu");
    assert!(b.nodeset.groups.is_empty());
}

#[test]
fn abstract_and_runless_jobs_do_not_freeze() {
    let (c, a, r) = standard();
    let l = layout(&[&c, &a, &r]);
    assert_eq!(
        l.freeze("middle", "org/app", "main"),
        Err(FreezeError::Abstract {
            job: "middle".into()
        })
    );
    assert_eq!(
        l.freeze("base", "org/app", "main"),
        Err(FreezeError::NoRunPlaybook { job: "base".into() })
    );
    assert_eq!(
        l.freeze("nope", "org/app", "main"),
        Err(FreezeError::UnknownJob { job: "nope".into() })
    );
    let msg = l
        .freeze("base", "org/app", "main")
        .expect_err("runless")
        .to_string();
    assert_eq!(msg, "job \"base\" has no run playbook");
}

#[test]
fn unknown_parent_reports_line_of_job_item() {
    let c = repo("org/config", true, &[("zuul.yaml", BASE)]);
    let a = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            "- job:\n    name: fine\n    run: a.yaml\n\n# comment\n- job:\n    name: orphan\n    parent: does-not-exist\n    run: b.yaml\n",
        )],
    );
    let err = load_layout(&[c.source.clone(), a.source.clone()], Some("base".into()))
        .expect_err("unknown parent");
    assert_eq!(err.len(), 1, "{err}");
    let e = &err.0[0];
    assert_eq!(
        e.kind,
        ConfigErrorKind::UnknownParent {
            parent: "does-not-exist".into()
        }
    );
    assert_eq!(e.location.path, ".zuul.yaml");
    assert_eq!(e.location.project, "example.com/org/app");
    assert_eq!(e.location.line, 6);
    assert_eq!(e.item.name.as_deref(), Some("orphan"));
}

#[test]
fn parent_cycle_is_an_error() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            "- job:\n    name: a\n    parent: b\n    run: x.yaml\n- job:\n    name: b\n    parent: a\n",
        )],
    );
    let mut l = Layout::new(None);
    l.add(load_project(&c.source).expect("parses"));
    let err = l.check().expect_err("cycle");
    assert!(
        matches!(&err.0[0].kind, ConfigErrorKind::ParentCycle { chain } if chain.contains("a") && chain.contains("b"))
    );
    assert!(matches!(
        l.freeze("a", "org/config", "main"),
        Err(FreezeError::ParentCycle { .. })
    ));
}

#[test]
fn override_tag_replaces_instead_of_merging() {
    let c = repo("org/config", true, &[("zuul.yaml", BASE)]);
    let a = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            r#"
- job:
    name: parent-job
    run: p.yaml
    tags: [a, b]
    required-projects: [org/one, org/two]
- job:
    name: child-override
    parent: parent-job
    vars: !override
      only: this
    tags: !override [c]
    required-projects: !override [org/three]
- job:
    name: child-merge
    parent: parent-job
    vars:
      more: 1
    tags: [c]
    required-projects:
      - name: org/two
        override-checkout: stable
"#,
        )],
    );
    let l = layout(&[&c, &a]);
    let o = l
        .freeze("child-override", "org/app", "main")
        .expect("freeze");
    assert_eq!(serde_json::Value::Object(o.vars), json!({"only": "this"}));
    assert_eq!(o.tags, vec!["c"]);
    assert_eq!(
        o.required_projects
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        vec!["org/three"]
    );

    let m = l.freeze("child-merge", "org/app", "main").expect("freeze");
    assert_eq!(m.tags, vec!["a", "b", "c"]);
    assert_eq!(m.vars.get("base_only"), Some(&json!(true)));
    assert_eq!(m.vars.get("more"), Some(&json!(1)));
    assert_eq!(m.required_projects.len(), 2);
    assert_eq!(
        m.required_projects[1].override_checkout.as_deref(),
        Some("stable")
    );
}

#[test]
fn secrets_bind_to_defining_playbooks_and_pass_to_parent() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            r#"
- job:
    name: base
    parent: null
    pre-run: pre.yaml
- secret:
    name: site-key
    data:
      key: !encrypted/pkcs1-oaep
        - QUJD
        - REVG
- job:
    name: uploader
    post-run: upload.yaml
    secrets:
      - name: upload_creds
        secret: site-key
        pass-to-parent: true
    run: run.yaml
"#,
        )],
    );
    let a = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            "- secret:\n    name: app-secret\n    data: {token: !encrypted/pkcs1-oaep WFla}\n- job:\n    name: deploy\n    run: deploy.yaml\n    secrets: [app-secret]\n",
        )],
    );
    let l = layout(&[&c, &a]);
    let j = l.freeze("uploader", "org/config", "main").expect("freeze");
    assert_eq!(j.secrets.len(), 1);
    assert_eq!(j.secrets[0].name, "site-key");
    assert_eq!(j.secrets[0].project, "example.com/org/config");
    assert_eq!(
        j.secrets[0].data,
        json!({"key": {"__encrypted__": "pkcs1-oaep", "ciphertext": ["QUJD", "REVG"]}})
    );
    let bound = |pb: &PlaybookRef| {
        pb.secrets
            .iter()
            .map(|s| (s.var_name.clone(), s.index))
            .collect::<Vec<_>>()
    };
    assert_eq!(bound(&j.run[0]), vec![("upload_creds".to_string(), 0)]);
    assert_eq!(bound(&j.post_run[0]), vec![("upload_creds".to_string(), 0)]);
    // pass-to-parent: the parent's pre-run gets it too.
    assert_eq!(bound(&j.pre_run[0]), vec![("upload_creds".to_string(), 0)]);

    // An untrusted job using a secret becomes post-review.
    let d = l
        .freeze_detailed("deploy", "org/app", "main", None)
        .expect("freeze");
    assert!(d.job.post_review);
    assert_eq!(
        d.allowed_projects,
        Some(vec!["example.com/org/app".to_string()])
    );
    assert!(
        d.job.pre_run[0].secrets.is_empty(),
        "base playbook must not see the secret"
    );
    assert_eq!(bound(&d.job.run[0]), vec![("app-secret".to_string(), 0)]);
    assert_eq!(d.job.secrets[0].project, "example.com/org/app");
}

#[test]
fn final_protected_and_default_parent_rules() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            r#"
- job:
    name: base
    parent: null
    run: base-run.yaml
- job:
    name: locked
    final: true
    run: locked.yaml
- job:
    name: guarded
    protected: true
    run: guarded.yaml
- project:
    name: org/app
    check:
      jobs:
        - locked:
            voting: false
"#,
        )],
    );
    let a = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            "- job:\n    name: child-of-locked\n    parent: locked\n- job:\n    name: child-of-guarded\n    parent: guarded\n- job:\n    name: plain\n",
        )],
    );
    let l = layout(&[&c, &a]);
    // A project-pipeline variant may change context attributes of a final job.
    let j = l.freeze("locked", "org/app", "main").expect("freeze");
    assert!(!j.voting);
    assert!(matches!(
        l.freeze("child-of-locked", "org/app", "main"),
        Err(FreezeError::InheritFinal { .. })
    ));
    assert!(matches!(
        l.freeze("child-of-guarded", "org/app", "main"),
        Err(FreezeError::Protected { .. })
    ));
    // No parent given: the default parent applies.
    let p = l.freeze("plain", "org/app", "main").expect("freeze");
    assert_eq!(p.run[0].path, "base-run.yaml");
    assert_eq!(p.run[0].nesting_level, 1);
}

#[test]
fn project_queries_and_pipeline_entries() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            r#"
- job:
    name: base
    parent: null
    run: run.yaml
- job: {name: lint}
- job: {name: unit}
- project-template:
    name: common
    check:
      jobs: [lint]
    gate:
      jobs: [lint]
- project:
    name: org/app
    merge-mode: rebase
    templates: [common]
    check:
      jobs:
        - unit:
            voting: false
    gate:
      jobs: [unit]
"#,
        )],
    );
    let a = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            "- job: {name: app-job}\n- project:\n    merge-mode: cherry-pick\n    check:\n      jobs: [unit, app-job]\n",
        )],
    );
    let l = layout(&[&c, &a]);
    assert_eq!(
        l.project_jobs("example.com/org/app", "check", "main"),
        vec!["lint", "unit", "app-job"]
    );
    assert_eq!(
        l.project_jobs("org/app", "gate", "main"),
        vec!["lint", "unit"]
    );
    assert!(l.project_jobs("org/app", "post", "main").is_empty());
    assert!(l.project_jobs("org/config", "check", "main").is_empty());
    // First merge-mode seen wins (config-projects load first); default is merge.
    assert_eq!(l.project_merge_mode("org/app"), MergeMode::Rebase);
    assert_eq!(l.project_merge_mode("org/config"), MergeMode::Merge);
    assert_eq!(MergeMode::Rebase.to_string(), "rebase");
    // Pipeline-specific freezing applies only that pipeline's entries.
    let check = l
        .freeze_detailed("unit", "org/app", "main", Some("check"))
        .expect("check");
    assert!(!check.job.voting);
    assert!(check.listed_in_project);
    let gate = l
        .freeze_detailed("unit", "org/app", "main", Some("gate"))
        .expect("gate");
    assert!(gate.job.voting);
    // An untrusted project's own stanza applies to its own branch only.
    assert_eq!(
        l.project_jobs("org/app", "check", "other"),
        vec!["lint", "unit"]
    );
    // Without a pipeline, the first pipeline listing the job is used (check here).
    let first = l
        .freeze_detailed("unit", "org/app", "main", None)
        .expect("first");
    assert!(!first.job.voting);
    // Jobs not listed anywhere still freeze.
    let lint = l.freeze("lint", "org/config", "main").expect("lint");
    assert_eq!(lint.run[0].path, "run.yaml");
}

#[test]
fn branch_variants_are_selected() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            r#"
- job:
    name: base
    parent: null
    run: run.yaml
- job:
    name: build
    timeout: 10
- job:
    name: build
    branches: ^stable/.*
    timeout: 20
- job:
    name: only-feature
    branches: feature
"#,
        )],
    );
    let l = layout(&[&c]);
    assert_eq!(
        l.freeze("build", "org/config", "main")
            .expect("main")
            .timeout,
        Some(10)
    );
    let s = l
        .freeze("build", "org/config", "stable/1.0")
        .expect("stable");
    assert_eq!(s.timeout, Some(20));
    assert_eq!(s.inheritance_path.len(), 3);
    assert!(s.inheritance_path[2].contains("branches: ^stable/.*"));
    assert!(matches!(
        l.freeze("only-feature", "org/config", "main"),
        Err(FreezeError::NoMatchingVariant { .. })
    ));
}

#[test]
fn job_in_two_projects_is_an_error() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            "- job:\n    name: dup\n    parent: null\n    run: a.yaml\n",
        )],
    );
    let a = repo(
        "org/app",
        false,
        &[(".zuul.yaml", "\n- job:\n    name: dup\n")],
    );
    let mut l = Layout::new(None);
    l.add(load_project(&c.source).expect("c"));
    let err = l
        .add_checked(load_project(&a.source).expect("a"))
        .expect_err("dup");
    assert_eq!(err.0[0].location.line, 2);
    assert!(
        matches!(&err.0[0].kind, ConfigErrorKind::JobInOtherProject { owner, .. } if owner == "example.com/org/config")
    );
    assert!(l.check().is_err());
}

#[test]
fn implied_branch_matchers_for_multi_branch_untrusted_projects() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            "- job:\n    name: base\n    parent: null\n    run: run.yaml\n",
        )],
    );
    let main = repo(
        "org/app",
        false,
        &[(".zuul.yaml", "- job:\n    name: build\n    timeout: 10\n")],
    );
    let mut stable = repo(
        "org/app",
        false,
        &[(".zuul.yaml", "- job:\n    name: build\n    timeout: 20\n")],
    );
    stable.source.branch = "stable".into();

    // One branch loaded: no implied matcher, the definition applies to any branch.
    let l = layout(&[&c, &main]);
    assert_eq!(
        l.freeze("build", "org/app", "stable").expect("any").timeout,
        Some(10)
    );

    // Two branches loaded: each definition only applies to its own branch.
    let l = layout(&[&c, &main, &stable]);
    let m = l.freeze("build", "org/app", "main").expect("main");
    assert_eq!(m.timeout, Some(10));
    assert_eq!(m.run[0].branch, "main");
    let s = l.freeze("build", "org/app", "stable").expect("stable");
    assert_eq!(s.timeout, Some(20));
    assert_eq!(s.inheritance_path.len(), 2);
    assert!(s.inheritance_path[1].contains("@stable#"));
    assert!(matches!(
        l.freeze("build", "org/app", "feature"),
        Err(FreezeError::NoMatchingVariant { .. })
    ));

    // A pragma turns the implied matcher off for its file.
    let mut stable2 = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            "- job:\n    name: build\n    timeout: 30\n- pragma:\n    implied-branch-matchers: false\n",
        )],
    );
    stable2.source.branch = "stable".into();
    let l = layout(&[&c, &main, &stable2]);
    assert_eq!(
        l.freeze("build", "org/app", "feature")
            .expect("pragma")
            .timeout,
        Some(30)
    );
}

#[test]
fn final_attributes_and_intermediate_jobs() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            r#"
- job:
    name: base
    parent: null
    run: run.yaml
- job:
    name: locked-vars
    vars: {a: 1}
    attribute-control:
      vars: {final: true}
- job:
    name: locked-vars
    branches: main
    timeout: 5
- job:
    name: locked-vars-child
    parent: locked-vars
    vars: {a: 2}
- job:
    name: locked-variant
    final: true
- job:
    name: locked-variant
    timeout: 9
- job:
    name: inter
    abstract: true
    intermediate: true
- job:
    name: inter-concrete
    parent: inter
- job:
    name: inter-abstract
    parent: inter
    abstract: true
- job:
    name: inter-grandchild
    parent: inter-abstract
"#,
        )],
    );
    let l = layout(&[&c]);
    // A variant may change other attributes.
    assert_eq!(
        l.freeze("locked-vars", "org/config", "main")
            .expect("ok")
            .timeout,
        Some(5)
    );
    match l.freeze("locked-vars-child", "org/config", "main") {
        Err(FreezeError::Final {
            attribute,
            location,
            ..
        }) => {
            assert_eq!(attribute, "vars");
            assert_eq!(location.line, 15);
        }
        other => panic!("expected final error, got {other:?}"),
    }
    match l.freeze("locked-variant", "org/config", "main") {
        Err(FreezeError::Final { attribute, .. }) => assert_eq!(attribute, "timeout"),
        other => panic!("expected final error, got {other:?}"),
    }
    assert!(matches!(
        l.freeze("inter-concrete", "org/config", "main"),
        Err(FreezeError::Intermediate { .. })
    ));
    assert!(l.freeze("inter-grandchild", "org/config", "main").is_ok());
}

#[test]
fn abstract_base_is_reset_by_inheritance_and_final_base_blocks_children() {
    let c = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            "- job:\n    name: base\n    parent: null\n    abstract: true\n    run: run.yaml\n- job:\n    name: child\n- job:\n    name: fbase\n    parent: null\n    final: true\n    run: run.yaml\n- job:\n    name: fchild\n    parent: fbase\n",
        )],
    );
    let l = layout(&[&c]);
    let j = l
        .freeze("child", "org/config", "main")
        .expect("child of abstract base");
    assert_eq!(j.run[0].nesting_level, 1);
    assert_eq!(
        l.freeze("base", "org/config", "main"),
        Err(FreezeError::Abstract { job: "base".into() })
    );
    match l.freeze("fchild", "org/config", "main") {
        Err(FreezeError::InheritFinal {
            job,
            parent,
            location,
        }) => {
            assert_eq!((job.as_str(), parent.as_str()), ("fchild", "fbase"));
            assert_eq!(location.line, 13);
        }
        other => panic!("expected inherit-final error, got {other:?}"),
    }
}
