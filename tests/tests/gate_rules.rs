//! Pipeline options end to end through `sluice serve`: a gate that requires the check
//! pipeline's success status and rejects its failure status, and a gate whose window shrinks
//! below its running items after a failure (the items pushed out have their builds canceled),
//! and pipelines disabled after consecutive failures (`disable-after-consecutive-failures`).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_tests::scenario::*;

const JOBS: &str = "- job:\n    name: test\n    run: playbooks/test.yaml\n\n- project:\n    check:\n      jobs:\n        - test\n    gate:\n      jobs:\n        - test\n";

/// Fails when the change message says `please-fail`, else works for `seconds`.
fn test_playbook(seconds: u32) -> String {
    format!("- hosts: all\n  tasks:\n    - name: Fail when the change asks for it\n      fail:\n        msg: the change asked to fail\n      when: \"'please-fail' in zuul.change_message\"\n    - name: Work\n      shell: sleep {seconds}\n")
}

#[test]
fn gate_requires_the_check_success_status_and_rejects_a_failure() {
    let gate = "- pipeline:\n    name: gate\n    manager: dependent\n    require:\n      git:\n        open: true\n        status: 'sluice:t/check:success'\n    reject:\n      git:\n        status: '.*:failure'\n    trigger:\n      git:\n        - event: change-approved\n    success:\n      git:\n        merge: true\n";
    let playbook = test_playbook(1);
    let setup = Setup::new(
        &format!("{CHECK}{gate}"),
        &[(
            "org/app",
            &[(".zuul.yaml", JOBS), ("playbooks/test.yaml", &playbook)],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "bad", "Bad\n\nplease-fail", &[("b.txt", "b\n")]);
    setup.push_change("org/app", "good", "Good", &[("g.txt", "g\n")]);
    let history = setup.wait_reported(&serve, "check", &["bad", "good"], Duration::from_secs(240));
    assert_eq!(items(&history, "check", "bad")[0]["result"], "FAILURE");
    assert_eq!(
        items(&history, "check", "good")[0]["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    // Events are processed in order: once the good change is in the gate, the bad change's
    // approval has been considered (and refused).
    setup.approve("org/app", "bad");
    setup.approve("org/app", "good");
    let history = setup.wait_reported(&serve, "gate", &["good"], Duration::from_secs(240));
    assert_eq!(
        items(&history, "gate", "good")[0]["result"],
        "SUCCESS",
        "{history:#}"
    );
    assert!(
        items(&history, "gate", "bad").is_empty(),
        "the failed change entered the gate: {history:#}"
    );
    let log = setup.branch_log("org/app");
    assert!(log.contains("Good") && !log.contains("Bad"), "{log}");
}

#[test]
fn a_shrinking_window_cancels_the_builds_of_the_items_it_leaves_out() {
    let gate = "- pipeline:\n    name: gate\n    manager: dependent\n    window: 3\n    window-floor: 1\n    window-decrease-type: exponential\n    window-decrease-factor: 2\n    trigger:\n      git:\n        - event: change-approved\n    success:\n      git:\n        merge: true\n";
    let playbook = test_playbook(12);
    let setup = Setup::new(
        gate,
        &[(
            "org/app",
            &[(".zuul.yaml", JOBS), ("playbooks/test.yaml", &playbook)],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "a", "A\n\nplease-fail", &[("a.txt", "a\n")]);
    setup.push_change("org/app", "b", "B", &[("b.txt", "b\n")]);
    setup.push_change("org/app", "c", "C", &[("c.txt", "c\n")]);
    let known = sluice_tests::wait_for(Duration::from_secs(60), || {
        setup.sluice(&["change", "list"]).lines().count() == 3
    });
    assert!(known, "{}", serve.output());
    for topic in ["a", "b", "c"] {
        setup.approve("org/app", topic);
    }
    let history = setup.wait_reported(&serve, "gate", &["a", "b", "c"], Duration::from_secs(300));
    let result = |topic: &str| items(&history, "gate", topic)[0]["result"].clone();
    assert_eq!(result("a"), "FAILURE", "{history:#}");
    assert_eq!(
        result("b"),
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    assert_eq!(result("c"), "SUCCESS", "{history:#}");
    // A's failure shrank the window from 3 to 1: C, behind B, was left out and its running
    // build (on top of A and B) was canceled instead of running to its end.
    let c = items(&history, "gate", "c")[0];
    let sets = buildsets_of(&history, &c["id"]);
    let left_out: Vec<&Value> = sets
        .iter()
        .copied()
        .filter(|s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("outside the window"))
        })
        .collect();
    assert_eq!(left_out.len(), 1, "{history:#}");
    assert_eq!(
        left_out[0]["builds"][0]["result"], "CANCELED",
        "{history:#}"
    );
    // C ran again only once B had merged and the window grew back.
    let b = items(&history, "gate", "b")[0];
    let b_end = buildsets_of(&history, &b["id"])
        .last()
        .and_then(|s| s["last_build_end_time"].as_str().map(str::to_string))
        .unwrap_or_default();
    let c_last = sets.last().copied().cloned().unwrap_or_default();
    assert_eq!(c_last["result"], "SUCCESS", "{history:#}");
    assert!(
        c_last["first_build_start_time"]
            .as_str()
            .unwrap_or_default()
            >= b_end.as_str(),
        "{history:#}"
    );
}

/// The report note of `pipeline` on the change pushed as `topic` (empty: none).
fn note(setup: &Setup, project: &str, pipeline: &str, topic: &str) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(setup.bare(project))
        .args(["notes", "--ref", &format!("sluice-{pipeline}"), "show"])
        .arg(format!("review/main/{topic}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_pipeline_disabled_after_consecutive_failures_reports_only_to_its_disabled_reporters() {
    // check: disabled after 2 failures in a row, with no disabled reporters (it goes quiet);
    // audit: disabled after 1, its disabled reporter is the git connection (it keeps reporting).
    let pipelines = "- pipeline:\n    name: check\n    manager: independent\n    disable-after-consecutive-failures: 2\n    trigger:\n      git:\n        - event: patchset-created\n    success:\n      git: {}\n    failure:\n      git: {}\n\n- pipeline:\n    name: audit\n    manager: independent\n    disable-after-consecutive-failures: 1\n    trigger:\n      git:\n        - event: patchset-created\n    success:\n      git: {}\n    failure:\n      git: {}\n    disabled:\n      git: {}\n";
    let jobs = "- job:\n    name: test\n    run: playbooks/test.yaml\n\n- project:\n    check:\n      jobs:\n        - test\n    audit:\n      jobs:\n        - test\n";
    let playbook = test_playbook(0);
    let setup = Setup::new(
        pipelines,
        &[(
            "org/app",
            &[(".zuul.yaml", jobs), ("playbooks/test.yaml", &playbook)],
        )],
        30,
    );
    let mut serve = setup.serve(1);
    // One change at a time: "consecutive" is the order of the reports.
    let changes = [
        ("ok1", "Passes"),
        ("f1", "Fails\n\nplease-fail"),
        ("f2", "Fails\n\nplease-fail"),
        ("f3", "Fails\n\nplease-fail"),
        ("ok2", "Passes"),
    ];
    for (topic, message) in changes {
        setup.push_change(
            "org/app",
            topic,
            message,
            &[(&format!("{topic}.txt"), "x\n")],
        );
        setup.wait_reported(&serve, "check", &[topic], Duration::from_secs(120));
        setup.wait_reported(&serve, "audit", &[topic], Duration::from_secs(120));
    }
    let history = setup.history();
    for (topic, message) in changes {
        let wanted = if message.contains("please-fail") {
            "FAILURE"
        } else {
            "SUCCESS"
        };
        for pipeline in ["check", "audit"] {
            // Disabled or not, the jobs run and the records say how they went.
            assert_eq!(
                items(&history, pipeline, topic)[0]["result"],
                wanted,
                "{pipeline} {topic}: {history:#}"
            );
        }
    }
    // check reported the success and both failures up to the limit (the second one still
    // normally), then nothing: not the third failure, not the success after it.
    assert!(note(&setup, "org/app", "check", "ok1").contains("Build succeeded."));
    assert!(note(&setup, "org/app", "check", "f1").contains("Build failed."));
    assert!(note(&setup, "org/app", "check", "f2").contains("Build failed."));
    assert_eq!(
        note(&setup, "org/app", "check", "f3"),
        "",
        "{}",
        serve.output()
    );
    assert_eq!(note(&setup, "org/app", "check", "ok2"), "");
    // audit was disabled after f1 and reports everything since to its disabled reporter.
    assert!(note(&setup, "org/app", "audit", "f2").contains("Build failed."));
    assert!(note(&setup, "org/app", "audit", "ok2").contains("Build succeeded."));
    assert!(
        serve
            .output()
            .contains("pipeline disabled after consecutive failures"),
        "{}",
        serve.output()
    );

    // A restart enables the pipeline again.
    serve.kill();
    let serve = setup.serve(2);
    setup.push_change("org/app", "ok3", "Passes", &[("ok3.txt", "x\n")]);
    setup.wait_reported(&serve, "check", &["ok3"], Duration::from_secs(120));
    assert!(
        note(&setup, "org/app", "check", "ok3").contains("Build succeeded."),
        "{}",
        serve.output()
    );
}

#[test]
fn a_needed_change_is_enqueued_ahead_only_when_it_meets_the_gate_requirements() {
    let gate = "- pipeline:\n    name: gate\n    manager: dependent\n    require:\n      git:\n        status: 'sluice:t/check:success'\n    trigger:\n      git:\n        - event: change-approved\n    success:\n      git:\n        merge: true\n";
    let playbook = test_playbook(0);
    let setup = Setup::new(
        &format!("{CHECK}{gate}"),
        &[(
            "org/app",
            &[(".zuul.yaml", JOBS), ("playbooks/test.yaml", &playbook)],
        )],
        30,
    );
    let serve = setup.serve(1);
    let depends_on =
        |topic: &str| format!("Depends-On: git://localhost/org/app/review/main/{topic}\n");
    // good passes check; uses-good needs it. bad fails check; uses-bad needs it.
    setup.push_change("org/app", "good", "Good", &[("g.txt", "g\n")]);
    setup.push_change("org/app", "bad", "Bad\n\nplease-fail", &[("b.txt", "b\n")]);
    setup.push_change(
        "org/app",
        "uses-good",
        &format!("Uses good\n\n{}", depends_on("good")),
        &[("ug.txt", "ug\n")],
    );
    setup.push_change(
        "org/app",
        "uses-bad",
        &format!("Uses bad\n\n{}", depends_on("bad")),
        &[("ub.txt", "ub\n")],
    );
    let history = setup.wait_reported(
        &serve,
        "check",
        &["good", "bad", "uses-good", "uses-bad"],
        Duration::from_secs(300),
    );
    assert_eq!(items(&history, "check", "bad")[0]["result"], "FAILURE");
    for topic in ["good", "uses-good", "uses-bad"] {
        assert_eq!(
            items(&history, "check", topic)[0]["result"],
            "SUCCESS",
            "{topic}: {history:#}\n{}",
            job_outputs(&history)
        );
    }
    // Only the dependents are approved: each needed change is checked against the gate's
    // require/reject before it is enqueued ahead. Events are processed in order, so once
    // uses-good is reported, uses-bad's approval has been considered.
    setup.approve("org/app", "uses-bad");
    setup.approve("org/app", "uses-good");
    let history = setup.wait_reported(
        &serve,
        "gate",
        &["good", "uses-good"],
        Duration::from_secs(300),
    );
    assert_eq!(
        items(&history, "gate", "good")[0]["result"],
        "SUCCESS",
        "{history:#}"
    );
    assert_eq!(
        items(&history, "gate", "uses-good")[0]["result"],
        "SUCCESS",
        "{history:#}"
    );
    for topic in ["bad", "uses-bad"] {
        assert!(
            items(&history, "gate", topic).is_empty(),
            "{topic} entered the gate though bad has no check success: {history:#}"
        );
    }
    let log = setup.branch_log("org/app");
    assert!(log.contains("Good") && log.contains("Uses good"), "{log}");
    assert!(!log.contains("Bad") && !log.contains("Uses bad"), "{log}");
    assert!(
        serve.output().contains("cannot be enqueued ahead"),
        "{}",
        serve.output()
    );
}
