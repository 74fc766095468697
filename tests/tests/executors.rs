//! Executor processes against one store: the governor keeps an executor from taking work
//! (its host is "too full"), and node locks in the store keep two executors from using a static
//! node beyond its `max-parallel-jobs`.

use std::path::PathBuf;
use std::time::Duration;

use sluice_tests::scenario::*;
use sluice_tests::wait_for;

const JOBS: &str = "- job:\n    name: work\n    run: playbooks/work.yaml\n\n- project:\n    check:\n      jobs:\n        - work\n";
const WORK: &str = "- hosts: all\n  tasks:\n    - name: Work a while\n      shell: sleep 4\n";

/// A copy of the setup's configuration file with `edit` applied.
fn config_variant(setup: &Setup, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let path = setup.root().join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[test]
fn a_governed_executor_takes_no_work_and_another_one_does() {
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", JOBS), ("playbooks/work.yaml", WORK)],
        )],
        30,
    );
    // No filesystem is ever 100% free.
    let governed = config_variant(&setup, "governed.yaml", |text| {
        assert!(text.contains("min-avail-hdd: 0\n"), "{text}");
        text.replace("min-avail-hdd: 0\n", "min-avail-hdd: 100\n")
    });
    let scheduler = setup.start("scheduler", "scheduler");
    let full = setup.start_with_config("executor", "executor-full", &governed, &[]);
    setup.push_change("org/app", "work", "Work", &[("w.txt", "w\n")]);
    let requested = wait_for(Duration::from_secs(120), || {
        setup.try_history()["builds"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    });
    assert!(requested, "{}", scheduler.output());
    let refused = wait_for(Duration::from_secs(30), || {
        full.output().contains("executor not accepting work")
    });
    assert!(refused, "{}", full.output());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !full.output().contains("build claimed"),
        "{}",
        full.output()
    );
    assert!(
        full.output().contains("min-avail-hdd"),
        "the reason is not logged: {}",
        full.output()
    );

    let free = setup.start("executor", "executor-free");
    let history = setup.wait_reported(&scheduler, "check", &["work"], Duration::from_secs(180));
    let item = items(&history, "check", "work")[0];
    assert_eq!(
        item["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    let uuid = history["builds"][0]["uuid"].as_str().unwrap_or_default();
    assert!(free.output().contains(uuid), "{}", free.output());
    assert!(!full.output().contains(uuid), "{}", full.output());
}

#[test]
fn two_executors_never_use_a_node_beyond_its_max_parallel_jobs() {
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", JOBS), ("playbooks/work.yaml", WORK)],
        )],
        30,
    );
    // The test node takes eight builds at once; make it one.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let nodes_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("nodes:"))
        .unwrap()
        .to_string();
    let nodes_path = PathBuf::from(nodes_line.trim_start().trim_start_matches("nodes:").trim());
    let one = setup.root().join("one-at-a-time-nodes.yaml");
    let nodes = std::fs::read_to_string(&nodes_path).unwrap();
    assert!(nodes.contains("max-parallel-jobs: 8"), "{nodes}");
    std::fs::write(
        &one,
        nodes.replace("max-parallel-jobs: 8", "max-parallel-jobs: 1"),
    )
    .unwrap();
    std::fs::write(
        &setup.config,
        text.replace(&nodes_line, &format!("  nodes: {}", one.display())),
    )
    .unwrap();

    let scheduler = setup.start("scheduler", "scheduler");
    let _executors = [
        setup.start("executor", "executor-0"),
        setup.start("executor", "executor-1"),
    ];
    setup.push_change("org/app", "one", "One", &[("1.txt", "1\n")]);
    setup.push_change("org/app", "two", "Two", &[("2.txt", "2\n")]);
    let history = setup.wait_reported(
        &scheduler,
        "check",
        &["one", "two"],
        Duration::from_secs(240),
    );
    let outputs = job_outputs(&history);
    let mut spans: Vec<(String, String)> = Vec::new();
    for b in history["builds"].as_array().cloned().unwrap_or_default() {
        assert_eq!(b["result"], "SUCCESS", "{history:#}\n{outputs}");
        let text = |key: &str| b[key].as_str().unwrap_or_default().to_string();
        spans.push((text("start_time"), text("end_time")));
    }
    assert_eq!(spans.len(), 2, "{history:#}");
    spans.sort();
    assert!(
        spans[1].0 >= spans[0].1,
        "two builds shared the node: {spans:?}\n{history:#}"
    );
}
