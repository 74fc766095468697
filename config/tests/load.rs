//! Loading real files: roots, YAML errors with positions, schema errors, tags.

mod common;

use common::repo;
use serde_json::json;
use sluice_config::*;

fn only_error(src: &ProjectSource) -> ConfigError {
    let errs = load_project(src).expect_err("expected errors");
    assert_eq!(errs.len(), 1, "expected exactly one error, got: {errs}");
    errs.0[0].clone()
}

#[test]
fn broken_yaml_reports_file_and_line() {
    let r = repo(
        "org/config",
        true,
        &[
            ("zuul.d/a.yaml", "- job:\n    name: ok\n    run: a.yaml\n"),
            (
                "zuul.d/b.yaml",
                "- job:\n    name: fine\n\n- job:\n    name: broken\n    vars: {a: [1, 2}\n",
            ),
        ],
    );
    let cfg = load_project_lenient(&r.source);
    assert_eq!(cfg.errors.len(), 1, "{:?}", cfg.errors);
    let e = &cfg.errors[0];
    assert_eq!(e.location.path, "zuul.d/b.yaml");
    assert_eq!(e.location.project, "example.com/org/config");
    assert_eq!(e.location.line, 6);
    assert!(matches!(e.kind, ConfigErrorKind::Yaml { .. }), "{e}");
    assert!(e.to_string().starts_with("zuul.d/b.yaml:6:"), "{e}");
    // The other file still loaded.
    assert_eq!(cfg.jobs.len(), 1);
    assert_eq!(cfg.jobs[0].name, "ok");
}

#[test]
fn unknown_key_names_key_file_and_line() {
    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            "- job:\n    name: a\n    run: a.yaml\n\n- job:\n    name: b\n    timeout: 10\n    nodeset-typo: foo\n",
        )],
    );
    let e = only_error(&r.source);
    assert_eq!(
        e.kind,
        ConfigErrorKind::UnknownKey {
            key: "nodeset-typo".into()
        }
    );
    assert_eq!(
        (e.location.path.as_str(), e.location.line, e.location.column),
        ("zuul.yaml", 8, 5)
    );
    assert_eq!(e.item.item_type.as_deref(), Some("job"));
    assert_eq!(e.item.name.as_deref(), Some("b"));
    let text = e.to_string();
    assert!(text.contains("unknown key \"nodeset-typo\""), "{text}");
    assert!(text.contains("job \"b\""), "{text}");
}

#[test]
fn errors_accumulate_and_good_items_load() {
    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            concat!(
                "- job:\n    run: x.yaml\n",                  // 1: missing name
                "- job:\n    name: good\n    run: g.yaml\n",  // 3
                "- job:\n    name: bad\n    timeout: soon\n", // 6: wrong type, line 8
                "- job:\n    name: x\n  nodeset: y\n",        // 9: multi-key item
                "- frobnicate:\n    name: z\n",               // 12: unknown item type
                "- just a string\n",                          // 14
            ),
        )],
    );
    let cfg = load_project_lenient(&r.source);
    let kinds: Vec<(usize, &ConfigErrorKind)> = cfg
        .errors
        .iter()
        .map(|e| (e.location.line, &e.kind))
        .collect();
    assert_eq!(
        cfg.jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        vec!["good"]
    );
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    assert!(matches!(kinds[0], (1, ConfigErrorKind::MissingKey { key }) if key == "name"));
    assert!(matches!(kinds[1], (8, ConfigErrorKind::WrongType { key, .. }) if key == "timeout"));
    assert!(matches!(
        kinds[2],
        (9, ConfigErrorKind::MultiKeyItem { count: 2, .. })
    ));
    assert!(
        matches!(kinds[3], (12, ConfigErrorKind::UnknownItemType { item_type }) if item_type == "frobnicate")
    );
    assert!(matches!(
        kinds[4],
        (14, ConfigErrorKind::ItemNotADict { .. })
    ));
}

#[test]
fn non_list_file_and_duplicate_key() {
    let r = repo("org/config", true, &[("zuul.yaml", "job:\n  name: a\n")]);
    let e = only_error(&r.source);
    assert!(matches!(e.kind, ConfigErrorKind::NotAList { .. }), "{e}");

    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            "- job:\n    name: a\n    run: a.yaml\n    name: b\n",
        )],
    );
    let e = only_error(&r.source);
    assert_eq!(e.kind, ConfigErrorKind::DuplicateKey { key: "name".into() });
    assert_eq!(e.location.line, 4);
}

#[test]
fn reserved_and_invalid_variable_names() {
    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            concat!(
                "- job:\n    name: a\n    vars:\n      ok: 1\n      zuul: 2\n",
                "- job:\n    name: b\n    host-vars:\n      node1:\n        ansible_host: 1.2.3.4\n",
                "- job:\n    name: c\n    extra-vars:\n      bad-name: 1\n",
            ),
        )],
    );
    let cfg = load_project_lenient(&r.source);
    assert!(cfg.jobs.is_empty());
    assert_eq!(cfg.errors.len(), 3, "{:?}", cfg.errors);
    assert_eq!(
        cfg.errors[0].kind,
        ConfigErrorKind::ReservedVarName {
            key: "vars".into(),
            name: "zuul".into()
        }
    );
    assert_eq!(cfg.errors[0].location.line, 5);
    assert_eq!(
        cfg.errors[1].kind,
        ConfigErrorKind::ReservedVarName {
            key: "host-vars".into(),
            name: "ansible_host".into()
        }
    );
    assert_eq!(cfg.errors[1].location.line, 10);
    assert_eq!(
        cfg.errors[2].kind,
        ConfigErrorKind::InvalidVarName {
            key: "extra-vars".into(),
            name: "bad-name".into()
        }
    );
    assert!(cfg.errors[0].to_string().contains("\"zuul\""));
}

#[test]
fn base_job_and_pipeline_rejected_in_untrusted_project() {
    let r = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            "- job:\n    name: mybase\n    parent: null\n- pipeline:\n    name: check\n    manager: independent\n",
        )],
    );
    let cfg = load_project_lenient(&r.source);
    assert!(cfg.jobs.is_empty() && cfg.pipelines.is_empty());
    assert_eq!(cfg.errors.len(), 2, "{:?}", cfg.errors);
    assert!(
        matches!(&cfg.errors[0].kind, ConfigErrorKind::NotPermittedUntrusted { what } if what.contains("base job"))
    );
    assert_eq!(cfg.errors[0].location.line, 3);
    assert!(
        matches!(&cfg.errors[1].kind, ConfigErrorKind::NotPermittedUntrusted { what } if what.contains("pipeline"))
    );
    assert_eq!(cfg.errors[1].location.line, 4);

    // The same content is fine in a config-project.
    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            "- job:\n    name: mybase\n    parent: null\n- pipeline:\n    name: check\n    manager: independent\n",
        )],
    );
    let cfg = load_project(&r.source).expect("valid");
    assert_eq!(cfg.jobs[0].parent, Parent::Base);
    assert_eq!(cfg.pipelines[0].name, "check");
}

#[test]
fn multiple_roots_first_with_content_wins() {
    let r = repo(
        "org/app",
        false,
        &[
            ("zuul.d/b.yaml", "- job:\n    name: from-zuul-d-b\n"),
            ("zuul.d/sub/a.yaml", "- job:\n    name: from-zuul-d-sub-a\n"),
            ("zuul.d/a.yaml", "- job:\n    name: from-zuul-d-a\n"),
            ("zuul.d/notes.txt", "not yaml"),
            (".zuul.yaml", "- job:\n    name: from-dot-zuul\n"),
        ],
    );
    let cfg = load_project(&r.source).expect("valid");
    assert_eq!(
        cfg.files,
        vec!["zuul.d/a.yaml", "zuul.d/b.yaml", "zuul.d/sub/a.yaml"]
    );
    let names: Vec<&str> = cfg.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["from-zuul-d-a", "from-zuul-d-b", "from-zuul-d-sub-a"]
    );
    assert_eq!(cfg.warnings.len(), 1);

    // zuul.yaml beats zuul.d/; an empty zuul.d/ does not count.
    let r = repo(
        "org/app",
        false,
        &[
            ("zuul.yaml", "- job:\n    name: top\n"),
            (".zuul.d/x.yaml", "- job:\n    name: hidden\n"),
        ],
    );
    let cfg = load_project(&r.source).expect("valid");
    assert_eq!(cfg.files, vec!["zuul.yaml"]);
    let r = repo(
        "org/app",
        false,
        &[(".zuul.d/x.yaml", "- job:\n    name: hidden\n")],
    );
    std::fs::create_dir_all(r.dir.path().join("zuul.d")).expect("mkdir");
    let cfg = load_project(&r.source).expect("valid");
    assert_eq!(cfg.files, vec![".zuul.d/x.yaml"]);
}

#[test]
fn encrypted_secret_list_and_scalar_forms() {
    let r = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            concat!(
                "- secret:\n",
                "    name: creds\n",
                "    data:\n",
                "      user: bot\n",
                "      password: !encrypted/pkcs1-oaep\n",
                "        - AAAA+/==\n",
                "        - BBBB\n",
                "          CCCC\n",
                "      token: !encrypted/pkcs1-oaep ZZZZ\n",
            ),
        )],
    );
    let cfg = load_project(&r.source).expect("valid");
    assert_eq!(cfg.secrets.len(), 1);
    assert_eq!(
        cfg.secrets[0].data,
        json!({
            "user": "bot",
            "password": {"__encrypted__": "pkcs1-oaep", "ciphertext": ["AAAA+/==", "BBBBCCCC"]},
            "token": {"__encrypted__": "pkcs1-oaep", "ciphertext": ["ZZZZ"]},
        })
    );

    // Encrypted values outside secrets are errors, with the line.
    let r = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            "- job:\n    name: j\n    vars:\n      x: !encrypted/pkcs1-oaep AAAA\n",
        )],
    );
    let e = only_error(&r.source);
    assert_eq!(
        e.kind,
        ConfigErrorKind::UnexpectedTag {
            tag: "encrypted/pkcs1-oaep".into()
        }
    );
    assert_eq!(e.location.line, 4);
}

#[test]
fn job_attributes_parse() {
    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            r#"
- job:
    name: full
    parent: base
    description: A job
    abstract: false
    final: false
    protected: true
    branches: [main, {regex: "^stable/.*", negate: true}]
    nodeset:
      nodes:
        - name: [a, b]
          label: small
      groups:
        - name: g
          nodes: a
    timeout: 600
    pre-timeout: 60
    post-timeout: 120
    attempts: 2
    pre-run: pre.yaml
    run:
      - name: run.yaml
        semaphores: [z, y]
    post-run:
      - name: post.yaml
        cleanup: true
    roles:
      - zuul: org/roles
        name: myroles
    required-projects:
      - org/a
      - name: org/b
        override-checkout: v1
    vars: !override {a: 1}
    ansible-version: 2.19
    ansible-split-streams: true
    voting: false
    tags: !inherit [t1]
    failure-output: ["^E", "^A"]
    workspace-scheme: flat
    secret-exposure: redact
    semaphores: s1
    dependencies: [{name: other, soft: true}]
    files: ['^src/']
    allowed-projects: [org/a]
    provides: p
    requires: [r]
    workspace-checkout: auto
    deduplicate: false
    type: regular
    match-on-config-updates: false
    hold-following-changes: true
    success-message: yay
    failure-message: nay
    attribute-control:
      vars: {final: true}
    include-vars: [vars.yaml]
"#,
        )],
    );
    let cfg = load_project(&r.source).expect("valid");
    let j = &cfg.jobs[0];
    assert_eq!(j.source.as_ref().map(|s| s.line), Some(2));
    assert_eq!(j.parent, Parent::Named("base".into()));
    assert_eq!(j.ansible_version.as_deref(), Some("2.19"));
    assert_eq!(j.attempts, Some(2));
    let b = j.branches.as_ref().expect("branches");
    assert!(b.matches("main") && b.matches("main-2") && b.matches("feature"));
    assert!(!BranchMatcher {
        patterns: vec![b.patterns[1].clone()]
    }
    .matches("stable/x"));
    assert_eq!(
        j.run.as_ref().map(|r| r[0].semaphores.clone()),
        Some(vec!["y".into(), "z".into()])
    );
    assert_eq!(j.post_run.as_ref().map(|r| r[0].cleanup), Some(true));
    assert_eq!(
        j.vars.as_ref().map(|v| v.control),
        Some(MergeControl::Override)
    );
    assert_eq!(
        j.tags.as_ref().map(|v| v.control),
        Some(MergeControl::Inherit)
    );
    assert_eq!(
        j.failure_output.as_ref().map(|v| v.value.clone()),
        Some(vec!["^A".into(), "^E".into()])
    );
    assert_eq!(j.final_attributes, vec!["vars".to_string()]);
    assert_eq!(
        j.required_projects
            .as_ref()
            .map(|r| r.value[1].override_checkout.clone()),
        Some(Some("v1".into()))
    );
    match &j.nodeset {
        Some(NodesetSpec::Inline(ns)) => {
            assert_eq!(ns.nodes[0].names, vec!["a", "b"]);
            assert_eq!(ns.groups[0].nodes, vec!["a"]);
        }
        other => panic!("nodeset {other:?}"),
    }
}

#[test]
fn project_and_template_parse() {
    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            r#"
- project-template:
    name: tmpl
    check:
      jobs: [lint]
- project:
    name: org/app
    templates: [tmpl]
    merge-mode: squash-merge
    default-branch: develop
    queue: shared
    vars: {pv: 1}
    check:
      jobs:
        - unit
        - integration:
            voting: false
    gate:
      fail-fast: true
      jobs: [unit]
- project:
    name: org/other
    merge-mode: fast-forward
"#,
        )],
    );
    let cfg = load_project_lenient(&r.source);
    assert_eq!(cfg.errors.len(), 1, "{:?}", cfg.errors);
    assert_eq!(cfg.errors[0].location.line, 23);
    assert!(
        matches!(&cfg.errors[0].kind, ConfigErrorKind::InvalidValue { key, .. } if key == "merge-mode")
    );
    let p = &cfg.projects[0];
    assert_eq!(p.merge_mode, Some(MergeMode::SquashMerge));
    assert_eq!(p.templates, vec!["tmpl"]);
    let check = &p.pipelines["check"];
    assert_eq!(check.jobs.len(), 2);
    assert_eq!(check.jobs[1].voting, Some(false));
    assert!(check.jobs[1].project_pipeline);
    assert_eq!(p.pipelines["gate"].fail_fast, Some(true));
    assert_eq!(cfg.templates[0].name.as_deref(), Some("tmpl"));
}

#[test]
fn untrusted_project_may_not_configure_others() {
    let r = repo(
        "org/app",
        false,
        &[(
            ".zuul.yaml",
            "- project:\n    check:\n      jobs: [a]\n- project:\n    name: org/other\n",
        )],
    );
    let cfg = load_project_lenient(&r.source);
    assert_eq!(cfg.projects.len(), 1);
    assert_eq!(cfg.errors.len(), 1);
    assert_eq!(
        cfg.errors[0].kind,
        ConfigErrorKind::ProjectNotPermitted {
            name: "org/other".into()
        }
    );
    assert_eq!(cfg.errors[0].location.line, 5);
}

#[test]
fn nodeset_validation() {
    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            concat!(
                "- nodeset:\n    name: ok\n    nodes:\n      - name: a\n        label: l\n",
                "- nodeset:\n    name: local\n    nodes:\n      - name: localhost\n        label: l\n",
                "- nodeset:\n    name: grp\n    nodes: {name: a, label: l}\n    groups:\n      - name: g\n        nodes: [a, missing]\n",
                "- nodeset:\n    name: alt\n    alternatives: [ok, {nodes: []}]\n",
            ),
        )],
    );
    let cfg = load_project_lenient(&r.source);
    let names: Vec<_> = cfg
        .nodesets
        .iter()
        .map(|n| n.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, vec!["ok", "alt"]);
    assert_eq!(cfg.errors.len(), 2, "{:?}", cfg.errors);
    assert_eq!(cfg.errors[0].location.line, 9);
    assert!(cfg.errors[1].to_string().contains("missing"));
    assert_eq!(cfg.errors[1].location.line, 16);
}

#[test]
fn odd_inputs_give_errors_not_panics() {
    let inputs = [
        "",
        "# only a comment\n",
        "---\n- job:\n    name: a\n---\n- job:\n    name: b\n",
        "- job:\n",
        "- job: []\n",
        "- job: {name: [x]}\n",
        "- job:\n\tname: tab\n",
        "- job: &a {name: anchored}\n- job: *a\n",
        "- job:\n    <<: {name: merged, run: x.yaml}\n",
        "- job:\n    name: k\n    ? [complex, key]\n    : v\n",
        "- job:\n    name: n\n    timeout: 99999999999999999999999\n",
        "- job:\n    name: n\n    timeout: -1\n",
        "- job:\n    name: n\n    vars: !override !inherit {a: 1}\n",
        "- job:\n    name: n\n    run: {semaphores: x}\n",
        "- job:\n    name: n\n    nodeset: {alternatives: [{alternatives: []}]}\n",
        "- job:\n    name: n\n    secrets: [{name: 1bad, secret: s}]\n",
        "- job:\n    name: n\n    branches: '('\n",
        "- job:\n    name: n\n    failure-output: ['[']\n",
        "- project:\n    check: []\n",
        "- project:\n    check:\n      jobs: [{a: 1, b: 2}]\n",
        "- project:\n    check:\n      jobs:\n        - x:\n            name: no\n",
        "- secret:\n    name: s\n    data: {k: !encrypted/pkcs1-oaep {not: list}}\n",
        "- secret:\n    name: s\n    data: {k: !encrypted/pkcs1-oaep 'not base64!'}\n",
        "- nodeset:\n    name: n\n    nodes: [{name: a, label: l}, {name: a, label: l}]\n",
        "- pragma:\n    implied-branches: [{regex: main, negate: yes, extra: 1}]\n",
        "[1, 2, 3]\n",
        "- {job: {name: flow, run: x.yaml}}\n",
        "\u{feff}- job:\n    name: bom\n",
        "- job:\n    name: \"unterminated\n",
    ];
    for (i, text) in inputs.iter().enumerate() {
        let src = ProjectSource {
            canonical_hostname: "example.com".into(),
            name: "org/odd".into(),
            root: std::path::PathBuf::from("/nonexistent"),
            trusted: true,
            branch: "main".into(),
        };
        let cfg = parse_project_files(&src, &[(format!("zuul.d/{i}.yaml"), text.to_string())]);
        for e in &cfg.errors {
            assert_eq!(e.location.path, format!("zuul.d/{i}.yaml"));
            assert!(!e.to_string().is_empty());
        }
    }
    // A few of them must be errors with a real line number.
    let src = ProjectSource {
        canonical_hostname: "example.com".into(),
        name: "org/odd".into(),
        root: std::path::PathBuf::from("/nonexistent"),
        trusted: true,
        branch: "main".into(),
    };
    let cfg = parse_project_files(
        &src,
        &[(
            "x.yaml".into(),
            "- job:\n    name: n\n    branches: '('\n".into(),
        )],
    );
    assert_eq!(cfg.errors.len(), 1);
    assert_eq!(cfg.errors[0].location.line, 3);
    assert!(matches!(
        cfg.errors[0].kind,
        ConfigErrorKind::InvalidRegex { .. }
    ));
    // File matchers are only checked at load (compiled when matched): the same patterns are
    // refused, with the message compiling them gives.
    // Built at run time: the pattern is invalid on purpose.
    let anchored = format!("^(?:{})", "src/(x");
    let compiled = regex::Regex::new(&anchored).unwrap_err().to_string();
    let cfg = parse_project_files(
        &src,
        &[(
            "x.yaml".into(),
            "- job:\n    name: n\n    files:\n      - ok/.*\n      - src/(x\n    irrelevant-files: '[z-a]'\n".into(),
        )],
    );
    assert_eq!(cfg.errors.len(), 2, "{:?}", cfg.errors);
    match &cfg.errors[0].kind {
        ConfigErrorKind::InvalidRegex {
            key,
            pattern,
            message,
        } => {
            assert_eq!((key.as_str(), pattern.as_str()), ("files", "src/(x"));
            assert_eq!(
                Some(message.as_str()),
                compiled.lines().last().map(str::trim)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.errors[0].location.line, 5);
    assert!(matches!(
        &cfg.errors[1].kind,
        ConfigErrorKind::InvalidRegex { key, .. } if key == "irrelevant-files"
    ));
    let cfg = parse_project_files(
        &src,
        &[(
            "x.yaml".into(),
            "- job: &a {name: anchored}\n- job: *a\n".into(),
        )],
    );
    assert_eq!(cfg.jobs.len(), 2, "{:?}", cfg.errors);
    let cfg = parse_project_files(
        &src,
        &[(
            "x.yaml".into(),
            "- job:\n    <<: {name: merged, run: x.yaml}\n".into(),
        )],
    );
    assert_eq!(cfg.jobs.len(), 1, "{:?}", cfg.errors);
    assert_eq!(cfg.jobs[0].name, "merged");
}

#[test]
fn symlinks_out_of_the_checkout_are_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    common::write(outside.path(), "secret.yaml", "- job:\n    name: leaked\n");
    let r = repo(
        "org/app",
        false,
        &[("zuul.d/ok.yaml", "- job:\n    name: fine\n")],
    );
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        r.dir.path().join("zuul.d/z.yaml"),
    )
    .expect("symlink");
    let cfg = load_project_lenient(&r.source);
    assert_eq!(cfg.jobs.len(), 1);
    assert_eq!(cfg.jobs[0].name, "fine");
    assert_eq!(cfg.errors.len(), 1);
    assert_eq!(cfg.errors[0].location.path, "zuul.d/z.yaml");
    assert!(matches!(cfg.errors[0].kind, ConfigErrorKind::Io { .. }));
}

#[test]
fn flow_style_files_still_get_exact_positions() {
    let r = repo(
        "org/config",
        true,
        &[(
            "zuul.yaml",
            "[{job: {name: a, run: a.yaml}},\n {job: {name: b,\n         bogus: 1}}]\n",
        )],
    );
    let e = only_error(&r.source);
    assert_eq!(
        e.kind,
        ConfigErrorKind::UnknownKey {
            key: "bogus".into()
        }
    );
    assert_eq!((e.location.line, e.location.column), (3, 10));
    assert_eq!(e.item.name.as_deref(), Some("b"));
}
