//! Ref items end to end through `sluice serve`: a periodic pipeline fired by the timer trigger,
//! and a post pipeline fed by `ref-updated` events that the repository watcher sees (the scan
//! interval is set to an hour, so only the watcher can notice the push).

use std::time::Duration;

use serde_json::Value;
use sluice_tests::scenario::*;

/// Items of `pipeline` (any ref), oldest first.
fn pipeline_items<'a>(history: &'a Value, pipeline: &str) -> Vec<&'a Value> {
    history["items"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["pipeline"] == pipeline).collect())
        .unwrap_or_default()
}

const PERIODIC: &str = "- pipeline:\n    name: periodic\n    manager: independent\n    trigger:\n      timer:\n        - time: '* * * * * */2'\n";
const REF_VARS: &str = "- hosts: all\n  tasks:\n    - name: A ref item has ref fields and no change fields\n      assert:\n        that:\n          - zuul.ref == 'refs/heads/main'\n          - zuul.branch == 'main'\n          - zuul.change is not defined\n          - zuul.patchset is not defined\n    - name: Show the revisions\n      debug:\n        msg: \"oldrev={{ zuul.oldrev | default('none') }} newrev={{ zuul.newrev | default('none') }}\"\n";

#[test]
fn a_timer_trigger_enqueues_each_branch_and_its_build_is_recorded() {
    let jobs = "- job:\n    name: nightly\n    run: playbooks/ref.yaml\n\n- project:\n    periodic:\n      jobs:\n        - nightly\n";
    let setup = Setup::new(
        PERIODIC,
        &[(
            "org/app",
            &[(".zuul.yaml", jobs), ("playbooks/ref.yaml", REF_VARS)],
        )],
        30,
    );
    let serve = setup.serve(1);
    let history = setup.wait_history(&serve, Duration::from_secs(180), |h| {
        pipeline_items(h, "periodic")
            .iter()
            .any(|i| i["state"] == "done")
    });
    let item = pipeline_items(&history, "periodic")
        .into_iter()
        .find(|i| i["state"] == "done")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        item["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    let reference = &item["refs"][0];
    assert_eq!(reference["ref"], "refs/heads/main", "{history:#}");
    assert_eq!(reference["project_canonical"], "localhost/org/app");
    assert!(reference["change"].is_null(), "{history:#}");
    let sets = buildsets_of(&history, &item["id"]);
    let builds = sets[0]["builds"].as_array().cloned().unwrap_or_default();
    assert_eq!(builds.len(), 1, "{history:#}");
    assert_eq!(builds[0]["job_name"], "nightly");
    assert_eq!(builds[0]["result"], "SUCCESS");
    assert_eq!(builds[0]["pipeline"], "periodic");
    // One periodic item per branch at a time: firing every two seconds never piles them up.
    let active = pipeline_items(&setup.history(), "periodic")
        .iter()
        .filter(|i| i["state"] == "active")
        .count();
    assert!(active <= 1, "{:#}", setup.history());
}

#[test]
fn a_branch_push_runs_the_post_pipeline_with_oldrev_and_newrev() {
    let post = "- pipeline:\n    name: post\n    manager: supercedent\n    post-review: true\n    trigger:\n      git:\n        - event: ref-updated\n          ref: ^refs/heads/.*$\n";
    let jobs = "- job:\n    name: publish\n    run: playbooks/ref.yaml\n\n- project:\n    post:\n      jobs:\n        - publish\n";
    let setup = Setup::new(
        post,
        &[(
            "org/app",
            &[(".zuul.yaml", jobs), ("playbooks/ref.yaml", REF_VARS)],
        )],
        30,
    );
    // Only the repository watcher can see the pushes in time.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("poll-seconds: 0.3", "poll-seconds: 3600"),
    )
    .unwrap();
    let serve = setup.serve(1);
    let up = sluice_tests::wait_for(Duration::from_secs(30), || {
        serve.output().contains("sluice scheduler running")
    });
    assert!(up, "{}", serve.output());
    // Let the first scan record the branches as they are.
    std::thread::sleep(Duration::from_secs(2));
    // Neither a review branch nor a tag matches `^refs/heads/.*$` for post.
    setup.push_change("org/app", "not-post", "A change", &[("c.txt", "c\n")]);
    let tagged = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(setup.bare("org/app"))
        .args(["tag", "v1", "main"])
        .status()
        .unwrap();
    assert!(tagged.success());
    let sha = setup.push_branch("org/app", "Publish me", &[("p.txt", "p\n")]);
    let history = setup.wait_history(&serve, Duration::from_secs(180), |h| {
        pipeline_items(h, "post")
            .iter()
            .any(|i| i["state"] == "done")
    });
    let items = pipeline_items(&history, "post");
    assert_eq!(items.len(), 1, "{history:#}");
    let item = items[0];
    assert_eq!(
        item["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    assert_eq!(item["refs"][0]["ref"], "refs/heads/main");
    assert_eq!(item["refs"][0]["newrev"], sha.as_str(), "{history:#}");
    let output = job_outputs(&history);
    assert!(
        output.contains(&format!("newrev={sha}")) && !output.contains("oldrev=none"),
        "{output}"
    );
}
