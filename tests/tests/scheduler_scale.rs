//! The scheduler with long queues: what an idle pass costs in store statements does not grow
//! with the queue (a `Scheduler` in this process over a real SQLite store and real bare
//! repositories), and `sluice serve` stops promptly on SIGTERM with a long queue, losing
//! nothing (the real binary, real builds on the sshd node). Throughput figures are
//! `bench/scheduler --queue` (docs/benchmarks.md), not here.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_scheduler::{Scheduler, ServeConfig};
use sluice_tests::scenario::*;
use sluice_tests::wait_for;

const JOBS: &str = "- job:\n    name: unit\n    run: playbooks/run.yaml\n- job:\n    name: lint\n    run: playbooks/run.yaml\n- project:\n    check:\n      jobs:\n        - unit\n        - lint\n";
const RUN: &str = "- hosts: all\n  tasks:\n    - name: Take a while\n      shell: sleep 60\n";

fn setup() -> Setup {
    Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", JOBS), ("playbooks/run.yaml", RUN)],
        )],
        3,
    )
}

/// Statements an idle pass (nothing new) runs, fewest of a few passes, with `n` items in
/// `check`, each with its buildset made (no executor: the builds wait).
fn idle_pass_statements(n: usize) -> u64 {
    let setup = setup();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let cfg = ServeConfig::load(&setup.config).expect("the test's config loads");
        let store = sluice_scheduler::serve::open_store(&cfg)
            .await
            .expect("open the store");
        let mut scheduler = Scheduler::new(cfg, store.clone())
            .await
            .expect("the scheduler starts");
        // The first scan records the branches there are without events.
        scheduler.pass().await.expect("first pass");
        setup.push_many_changes("org/app", "c", n);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut idle = 0;
        loop {
            assert!(
                Instant::now() < deadline,
                "{n} changes never all got their buildsets"
            );
            let busy = scheduler.pass().await.expect("pass");
            let items = store.active_items("t", "check").await.expect("items");
            let made = items.iter().filter(|i| i.buildset_uuid.is_some()).count();
            let uuids: Vec<String> = items
                .iter()
                .filter_map(|i| i.buildset_uuid.clone())
                .collect();
            let running = store
                .buildsets_by_uuid(&uuids)
                .await
                .expect("buildsets")
                .iter()
                .filter(|bs| bs.state == "running")
                .count();
            idle = if !busy && items.len() == n && made == n && running == n {
                idle + 1
            } else {
                0
            };
            if idle >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut fewest = u64::MAX;
        for _ in 0..3 {
            let before = store.statements();
            scheduler.pass().await.expect("idle pass");
            fewest = fewest.min(store.statements() - before);
        }
        fewest
    })
}

#[test]
fn an_idle_pass_costs_the_same_statements_with_4_or_40_items_queued() {
    let short = idle_pass_statements(4);
    let long = idle_pass_statements(40);
    eprintln!("statements of an idle pass: {short} with 4 items, {long} with 40");
    assert!(short > 0, "an idle pass ran no statement at all");
    // Before, every item cost its buildset and its builds (two statements) on every pass.
    assert_eq!(
        short, long,
        "an idle pass over 40 items ran {long} statements, over 4 items {short}: per-item reads are back"
    );
}

fn active_check_refs(history: &Value) -> (Vec<String>, BTreeSet<String>) {
    let mut refs = Vec::new();
    for item in history["items"].as_array().into_iter().flatten() {
        if item["pipeline"] == "check" && item["state"] == "active" {
            refs.push(item["refs"][0]["ref"].as_str().unwrap_or("").to_string());
        }
    }
    let unique = refs.iter().cloned().collect();
    (refs, unique)
}

#[test]
fn serve_exits_promptly_on_sigterm_with_a_long_queue_and_resumes_it() {
    const N: usize = 150;
    let setup = setup();
    let mut serve = setup.serve(1);
    assert!(
        wait_for(Duration::from_secs(120), || serve
            .output()
            .contains("sluice scheduler running")),
        "sluice serve did not start:\n{}",
        serve.output()
    );
    // Past the first scan, which records the branches there are without events.
    std::thread::sleep(Duration::from_secs(2));
    setup.push_many_changes("org/app", "c", N);
    // Mid-way: every change enqueued, some buildsets made, builds running on the node.
    let busy = wait_for(Duration::from_secs(300), || {
        let out = serve.output();
        out.matches("enqueued").count() >= N
            && out.matches("jobs requested").count() >= 3
            && out.contains("build claimed")
    });
    assert!(busy, "the queue never filled:\n{}", serve.output());
    let prepared_before = serve.output().matches("jobs requested").count();
    assert!(
        prepared_before < N,
        "every buildset was made before SIGTERM: the test stops nothing mid-pass"
    );
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    let exited = wait_for(Duration::from_secs(20), || {
        matches!(serve.child.try_wait(), Ok(Some(_)))
    });
    let took = sent.elapsed();
    assert!(
        exited,
        "sluice serve still ran 20 s after SIGTERM:\n{}",
        serve.output()
    );
    let status = serve.child.wait().expect("exit status");
    assert!(
        status.success(),
        "sluice serve exited with {status}:\n{}",
        serve.output()
    );
    assert!(
        serve.output().contains("scheduler stopped"),
        "{}",
        serve.output()
    );
    eprintln!("sluice serve exited {took:?} after SIGTERM");

    // Nothing lost or doubled: every change is in check once, still active.
    let history = setup.history();
    let (refs, unique) = active_check_refs(&history);
    assert_eq!(refs.len(), N, "items lost or doubled: {history:#}");
    assert_eq!(unique.len(), N);

    // A restart resumes: more buildsets are made, and the builds stopped with the process
    // come back as RETRY once their leases expire.
    let serve = setup.serve(2);
    let resumed = wait_for(Duration::from_secs(300), || {
        serve.output().matches("jobs requested").count() >= 3
            && setup.history()["builds"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["result"] == "RETRY"))
    });
    assert!(
        resumed,
        "the restarted scheduler did not resume the queue:\n{}",
        serve.output()
    );
    let history = setup.history();
    let (refs, unique) = active_check_refs(&history);
    assert_eq!(refs.len(), N, "items lost or doubled after the restart");
    assert_eq!(unique.len(), N);
    // Each item has at most one buildset that is not done.
    let mut open = BTreeSet::new();
    for bs in history["buildsets"].as_array().into_iter().flatten() {
        if bs["result"].is_null() {
            let item = bs["queue_item_uuid"].to_string();
            assert!(
                open.insert(item),
                "two open buildsets for one item: {history:#}"
            );
        }
    }
}
