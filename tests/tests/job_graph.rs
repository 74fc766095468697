//! Job graphs end to end through `sluice serve`: a parent job returns `zuul.child_jobs`
//! selecting one of its two children, pauses (`zuul.pause`) while its children run, and passes
//! its returned data to them as variables; a soft dependent of the deselected child still runs.
//! A paused parent whose executor dies is retried, and its children that already ran run again
//! against the new try.

use std::time::Duration;

use sluice_tests::wait_for;

use serde_json::Value;
use sluice_tests::scenario::*;

const JOBS: &str = "- job:
    name: parent
    run: playbooks/parent.yaml

- job:
    name: child-a
    run: playbooks/child.yaml

- job:
    name: child-b
    run: playbooks/child.yaml

- job:
    name: after-b
    run: playbooks/child.yaml

- project:
    check:
      jobs:
        - parent
        - child-a:
            dependencies: [parent]
        - child-b:
            dependencies: [parent]
        - after-b:
            dependencies:
              - name: child-b
                soft: true
";

const PARENT: &str = "- hosts: all
  tasks:
    - name: Pick one child, hand it data and pause for it
      zuul_return:
        data:
          zuul:
            pause: true
            child_jobs:
              - child-a
          greeting: hello from the parent
";

const CHILD: &str = "- hosts: all
  tasks:
    - name: The parent's data is a variable here
      assert:
        that:
          - greeting == 'hello from the parent'
    - name: Take a moment while the parent waits
      shell: sleep 2
";

#[test]
fn child_jobs_select_a_child_the_paused_parent_waits_for_it_and_passes_its_data() {
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[
                (".zuul.yaml", JOBS),
                ("playbooks/parent.yaml", PARENT),
                ("playbooks/child.yaml", CHILD),
            ],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "graph", "Run the graph", &[("x.txt", "x\n")]);
    let history = setup.wait_reported(&serve, "check", &["graph"], Duration::from_secs(300));
    let outputs = job_outputs(&history);
    let item = items(&history, "check", "graph")[0];
    assert_eq!(item["result"], "SUCCESS", "{history:#}\n{outputs}");
    let sets = buildsets_of(&history, &item["id"]);
    let builds: Vec<Value> = sets[0]["builds"].as_array().cloned().unwrap_or_default();
    let build = |job: &str| -> Value {
        let found: Vec<&Value> = builds.iter().filter(|b| b["job_name"] == job).collect();
        assert_eq!(found.len(), 1, "{job}: {history:#}");
        found[0].clone()
    };
    let text = |b: &Value, key: &str| b[key].as_str().unwrap_or_default().to_string();

    let parent = build("parent");
    let child_a = build("child-a");
    let child_b = build("child-b");
    let after_b = build("after-b");
    assert_eq!(parent["result"], "SUCCESS", "{history:#}\n{outputs}");
    // Only the selected child ran, and it saw the parent's data (its assert passed).
    assert_eq!(child_a["result"], "SUCCESS", "{history:#}\n{outputs}");
    assert_eq!(child_b["result"], "SKIPPED", "{history:#}");
    assert_eq!(
        child_b["error_detail"],
        "Skipped due to child_jobs return value in job parent"
    );
    assert!(child_b["start_time"].is_null(), "{history:#}");
    // A soft dependency on a skipped job does not block; the data still reaches it.
    assert_eq!(after_b["result"], "SUCCESS", "{history:#}\n{outputs}");
    // The parent paused: its children started before it ended, and it ended after them.
    for child in [&child_a, &after_b] {
        assert!(
            text(child, "start_time") < text(&parent, "end_time")
                && text(child, "end_time") <= text(&parent, "end_time"),
            "the parent did not wait for its children: {history:#}"
        );
    }
}

#[test]
fn a_retried_paused_parent_runs_its_children_again() {
    let jobs = "- job:\n    name: parent\n    run: playbooks/parent.yaml\n\n- job:\n    name: quick\n    run: playbooks/quick.yaml\n\n- job:\n    name: slow\n    run: playbooks/slow.yaml\n\n- project:\n    check:\n      jobs:\n        - parent\n        - quick:\n            dependencies: [parent]\n        - slow:\n            dependencies: [parent]\n";
    let parent = "- hosts: all\n  tasks:\n    - name: Pause for the children\n      zuul_return:\n        data:\n          zuul:\n            pause: true\n";
    let quick = "- hosts: all\n  tasks:\n    - name: Done at once\n      shell: 'true'\n";
    // slow runs until the test creates the go file (at most 120 s), keeping the parent paused.
    let go_dir = tempfile::tempdir().unwrap();
    let go = go_dir.path().join("go");
    let slow = format!(
        "- hosts: all\n  tasks:\n    - name: Wait for the go file\n      shell: for i in $(seq 1 1200); do [ -e {} ] && break; sleep 0.1; done\n",
        go.display()
    );
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[
                (".zuul.yaml", jobs),
                ("playbooks/parent.yaml", parent),
                ("playbooks/quick.yaml", quick),
                ("playbooks/slow.yaml", &slow),
            ],
        )],
        3,
    );
    let scheduler = setup.start("scheduler", "scheduler");
    let up = wait_for(Duration::from_secs(30), || {
        scheduler.output().contains("sluice scheduler running")
    });
    assert!(up, "{}", scheduler.output());
    let mut executors = [
        setup.start("executor", "executor-0"),
        setup.start("executor", "executor-1"),
    ];
    setup.push_change("org/app", "graph", "Run the graph", &[("x.txt", "x\n")]);
    let builds_of = |history: &Value, job: &str| -> Vec<Value> {
        let Some(item) = items(history, "check", "graph").first().copied() else {
            return Vec::new();
        };
        buildsets_of(history, &item["id"])
            .first()
            .and_then(|s| s["builds"].as_array())
            .map(|b| b.iter().filter(|b| b["job_name"] == job).cloned().collect())
            .unwrap_or_default()
    };
    // quick has finished while the paused parent waits for slow.
    let mut history = Value::Null;
    let quick_done = wait_for(Duration::from_secs(300), || {
        history = setup.history();
        builds_of(&history, "quick")
            .first()
            .is_some_and(|b| b["result"] == "SUCCESS")
    });
    assert!(quick_done, "{history:#}\n{}", scheduler.output());
    let first_parent = builds_of(&history, "parent")[0]["uuid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let holder = executors
        .iter()
        .position(|e| e.output().contains(&first_parent));
    let Some(holder) = holder else {
        panic!("no executor ran the parent {first_parent}");
    };
    executors[holder].kill();
    std::fs::write(&go, "").unwrap();

    let history = setup.wait_reported(&scheduler, "check", &["graph"], Duration::from_secs(240));
    let outputs = job_outputs(&history);
    let item = items(&history, "check", "graph")[0];
    assert_eq!(item["result"], "SUCCESS", "{history:#}\n{outputs}");
    let parents = builds_of(&history, "parent");
    let results = |builds: &[Value]| -> Vec<String> {
        builds
            .iter()
            .map(|b| b["result"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(results(&parents), ["RETRY", "SUCCESS"], "{history:#}");
    // quick ran against the first try, was reset when the parent was retried and ran again
    // once the new try paused.
    let quicks = builds_of(&history, "quick");
    assert_eq!(results(&quicks), ["SUCCESS", "SUCCESS"], "{history:#}");
    assert_eq!(quicks[0]["final"], false, "{history:#}");
    assert_eq!(
        quicks[0]["error_detail"], "reset: job parent is retried",
        "{history:#}"
    );
    assert_eq!(quicks[1]["final"], true, "{history:#}");
    let text = |b: &Value, key: &str| b[key].as_str().unwrap_or_default().to_string();
    assert!(
        text(&quicks[1], "start_time") > text(&parents[1], "start_time")
            && text(&quicks[1], "end_time") <= text(&parents[1], "end_time"),
        "quick did not run again under the new parent try: {history:#}"
    );
    let slows = builds_of(&history, "slow");
    assert_eq!(
        slows.last().map(|b| b["result"].clone()),
        Some(Value::from("SUCCESS")),
        "{history:#}"
    );
    assert!(
        slows.len() >= 2,
        "slow was neither reset nor retried: {history:#}"
    );
}
