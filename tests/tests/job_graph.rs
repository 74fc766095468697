//! Job graphs end to end through `sluice serve`: a parent job returns `zuul.child_jobs`
//! selecting one of its two children, pauses (`zuul.pause`) while its children run, and passes
//! its returned data to them as variables; a soft dependent of the deselected child still runs.

use std::time::Duration;

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
