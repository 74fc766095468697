//! Semaphores end to end through `sluice serve`: two changes in check each run a job holding a
//! semaphore with `max: 1`; the node takes eight builds at once and there are four workers, so
//! only the semaphore keeps the two builds from overlapping (asserted from the build records'
//! start and end times). A playbook-level semaphore is held only while its playbook runs
//! (asserted from the plays' times in job-output.json).

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

const PLAYBOOK_JOBS: &str = "- semaphore:
    name: deploy-slot
    max: 1

- job:
    name: deploy
    pre-run: playbooks/prepare.yaml
    run:
      - name: playbooks/deploy.yaml
        semaphores: deploy-slot

- project:
    check:
      jobs:
        - deploy
";

const SLEEP_5: &str = "- hosts: all
  tasks:
    - name: Prepare for a while
      shell: sleep 5
";

const SLEEP_3: &str = "- hosts: all
  tasks:
    - name: Deploy for a while
      shell: sleep 3
";

/// (start, end) of the first play of the job-output.json playbook entry that `pick` selects.
fn play_span(log_dir: &str, pick: impl Fn(&Value) -> bool) -> (String, String) {
    let path = std::path::Path::new(log_dir.trim_start_matches("file://")).join("job-output.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let entry = doc
        .as_array()
        .and_then(|a| a.iter().find(|p| pick(p)))
        .unwrap_or_else(|| panic!("no such playbook in {text}"));
    let duration = &entry["plays"][0]["play"]["duration"];
    // Zuul's shape drops a zero fraction: put it back so that the strings compare as times.
    let s = |k: &str| {
        let t = duration[k].as_str().unwrap_or_default();
        match t.strip_suffix('Z') {
            Some(base) if !base.contains('.') => format!("{base}.000000Z"),
            _ => t.to_string(),
        }
    };
    assert!(!s("start").is_empty() && !s("end").is_empty(), "{text}");
    (s("start"), s("end"))
}

/// A `run` playbook's `semaphores` are held only while that playbook runs: the two builds'
/// run playbooks never overlap, while the later build's pre-run ran as the earlier one held
/// the semaphore (a job-level semaphore would have kept the whole later build waiting).
#[test]
fn a_playbook_semaphore_is_held_only_while_its_playbook_runs() {
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[
                (".zuul.yaml", PLAYBOOK_JOBS),
                ("playbooks/prepare.yaml", SLEEP_5),
                ("playbooks/deploy.yaml", SLEEP_3),
            ],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "one", "One", &[("one.txt", "1\n")]);
    setup.push_change("org/app", "two", "Two", &[("two.txt", "2\n")]);
    let history = setup.wait_reported(&serve, "check", &["one", "two"], Duration::from_secs(300));
    let outputs = job_outputs(&history);
    // (run span, pre-run span) of each build.
    let mut spans = Vec::new();
    for topic in ["one", "two"] {
        let item = items(&history, "check", topic)[0];
        assert_eq!(item["result"], "SUCCESS", "{history:#}\n{outputs}");
        let sets = buildsets_of(&history, &item["id"]);
        let builds: Vec<Value> = sets[0]["builds"].as_array().cloned().unwrap_or_default();
        assert_eq!(builds.len(), 1, "{history:#}");
        let log_dir = builds[0]["log_url"].as_str().unwrap_or_default();
        let run = play_span(log_dir, |p| p["phase"] == "run");
        let pre = play_span(log_dir, |p| {
            p["phase"] == "pre"
                && p["playbook"]
                    .as_str()
                    .is_some_and(|s| s.ends_with("prepare.yaml"))
        });
        spans.push((run, pre));
    }
    spans.sort();
    let (first_run, _) = &spans[0];
    let (second_run, second_pre) = &spans[1];
    assert!(
        second_run.0 >= first_run.1,
        "the run playbooks overlapped: {spans:?}\n{outputs}"
    );
    assert!(
        second_pre.0 < first_run.1,
        "the later build did not start before the earlier one's run playbook ended: {spans:?}\n{outputs}"
    );
}
