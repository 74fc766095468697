//! Ref items end to end through `sluice serve`: a periodic pipeline fired by the timer trigger
//! (and, across restarts, neither losing a run that came due while it was down nor repeating one),
//! and a post pipeline fed by `ref-updated` events that the repository watcher sees (the scan
//! interval is set to an hour, so only the watcher can notice the push).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Sleeps until the wall clock reads `at` (milliseconds since the epoch).
fn sleep_until(at: i64) {
    let left = at - now_ms();
    if left > 0 {
        std::thread::sleep(Duration::from_millis(left as u64));
    }
}

#[test]
fn a_restarted_scheduler_fires_a_missed_timer_once_and_repeats_none() {
    // Every 20 seconds (the sixth field is seconds); noop items end at once.
    const PERIOD: i64 = 20_000;
    let periodic = "- pipeline:\n    name: periodic\n    manager: independent\n    trigger:\n      timer:\n        - time: '* * * * * */20'\n";
    let jobs = "- project:\n    periodic:\n      jobs:\n        - noop\n";
    let setup = Setup::new(periodic, &[("org/app", &[(".zuul.yaml", jobs)])], 30);
    let enqueued = |h: &Value| -> Vec<i64> {
        pipeline_items(h, "periodic")
            .iter()
            .filter_map(|i| i["enqueue_time"].as_i64())
            .collect()
    };
    let mut serve = setup.serve(1);
    // The first run is over before the kill (a run still in the queue would absorb the next).
    let history = setup.wait_history(&serve, Duration::from_secs(60), |h| {
        pipeline_items(h, "periodic")
            .first()
            .is_some_and(|i| i["state"] == "done")
    });
    serve.kill();
    let first = enqueued(&history)[0];
    let tick1 = first - first % PERIOD + PERIOD;
    let tick2 = tick1 + PERIOD;

    // Down while tick1 passes: the run it owed fires once, as soon as Sluice is back.
    sleep_until(tick1 + 2_000);
    let mut serve = setup.serve(2);
    let history = setup.wait_history(&serve, Duration::from_secs(30), |h| enqueued(h).len() >= 2);
    let times = enqueued(&history);
    assert_eq!(times.len(), 2, "{history:#}");
    assert!(
        times[1] >= tick1 && times[1] < tick2,
        "the missed run fired at {} (tick1 {tick1}, tick2 {tick2}): {history:#}\n{}",
        times[1],
        serve.output()
    );
    serve.kill();

    // Restarted again before the next tick: nothing fires twice.
    let serve = setup.serve(3);
    let up = sluice_tests::wait_for(Duration::from_secs(30), || {
        serve.output().contains("sluice scheduler running")
    });
    assert!(up, "{}", serve.output());
    assert!(
        now_ms() < tick2 - 3_000,
        "the third start took until the next tick; nothing left to check:\n{}",
        serve.output()
    );
    sleep_until(tick2 - 1_000);
    let history = setup.history();
    assert_eq!(
        enqueued(&history).len(),
        2,
        "{history:#}\n{}",
        serve.output()
    );
}
