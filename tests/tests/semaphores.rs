//! Semaphores end to end through `sluice serve`: two changes in check each run a job holding a
//! semaphore with `max: 1`; the node takes eight builds at once and there are four workers, so
//! only the semaphore keeps the two builds from overlapping (asserted from the build records'
//! start and end times).

use std::time::Duration;

use serde_json::Value;
use sluice_tests::scenario::*;

const JOBS: &str = "- semaphore:
    name: one-at-a-time
    max: 1

- job:
    name: exclusive
    run: playbooks/exclusive.yaml
    semaphores: one-at-a-time

- project:
    check:
      jobs:
        - exclusive
";

const EXCLUSIVE: &str = "- hosts: all
  tasks:
    - name: Hold the semaphore for a while
      shell: sleep 4
";

#[test]
fn builds_holding_a_semaphore_with_max_one_never_overlap() {
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[
                (".zuul.yaml", JOBS),
                ("playbooks/exclusive.yaml", EXCLUSIVE),
            ],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "one", "One", &[("one.txt", "1\n")]);
    setup.push_change("org/app", "two", "Two", &[("two.txt", "2\n")]);
    let history = setup.wait_reported(&serve, "check", &["one", "two"], Duration::from_secs(300));
    let outputs = job_outputs(&history);
    let mut spans: Vec<(String, String)> = Vec::new();
    for topic in ["one", "two"] {
        let item = items(&history, "check", topic)[0];
        assert_eq!(item["result"], "SUCCESS", "{history:#}\n{outputs}");
        let sets = buildsets_of(&history, &item["id"]);
        let builds: Vec<Value> = sets[0]["builds"].as_array().cloned().unwrap_or_default();
        assert_eq!(builds.len(), 1, "{history:#}");
        let text = |key: &str| builds[0][key].as_str().unwrap_or_default().to_string();
        assert!(!text("start_time").is_empty(), "{history:#}");
        spans.push((text("start_time"), text("end_time")));
    }
    spans.sort();
    assert!(
        spans[1].0 >= spans[0].1,
        "the builds overlapped: {spans:?}\n{history:#}"
    );
}
