//! `sluice serve` end to end: real bare git repositories with review branches pushed by the real
//! `git`, the real `sluice` binary running the scheduler and executor workers, real Ansible
//! against a real sshd node. Assertions read the records through `sluice change history`
//! (Zuul's record shapes) and the repositories themselves.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice_tests::scenario::*;
use sluice_tests::{sluice_bin, wait_for, GitRepo};

const APP_JOBS: &str = "- job:\n    name: test\n    run: playbooks/test.yaml\n\n- project:\n    check:\n      jobs:\n        - test\n    gate:\n      jobs:\n        - test\n";
const FAIL_ON_REQUEST: &str = "- hosts: all\n  tasks:\n    - name: Fail when the change asks for it\n      fail:\n        msg: the change asked to fail\n      when: \"'please-fail' in zuul.change_message\"\n    - name: Work a little\n      shell: sleep 2\n";

#[test]
fn gate_failing_middle_change_is_dequeued_and_the_one_behind_restarts_without_it() {
    let setup = Setup::new(
        GATE,
        &[(
            "org/app",
            &[
                (".zuul.yaml", APP_JOBS),
                ("playbooks/test.yaml", FAIL_ON_REQUEST),
            ],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "a", "Change A", &[("a.txt", "a\n")]);
    setup.push_change(
        "org/app",
        "b",
        "Change B\n\nplease-fail",
        &[("b.txt", "b\n")],
    );
    setup.push_change("org/app", "c", "Change C", &[("c.txt", "c\n")]);
    let known = wait_for(Duration::from_secs(30), || {
        setup.sluice(&["change", "list"]).lines().count() == 3
    });
    assert!(known, "changes not seen:\n{}", serve.output());
    for topic in ["a", "b", "c"] {
        setup.approve("org/app", topic);
    }
    let history = setup.wait_reported(&serve, "gate", &["a", "b", "c"], Duration::from_secs(240));

    let result = |topic: &str| items(&history, "gate", topic)[0]["result"].clone();
    assert_eq!(
        result("a"),
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    assert_eq!(result("b"), "FAILURE", "{history:#}");
    assert_eq!(result("c"), "SUCCESS", "{history:#}");

    // The target branch has A and C, not B.
    let log = setup.branch_log("org/app");
    assert!(
        log.contains("Change A") && log.contains("Change C"),
        "{log}"
    );
    assert!(!log.contains("Change B"), "{log}");

    // B failed on top of A with its own build.
    let b = items(&history, "gate", "b")[0];
    let b_sets = buildsets_of(&history, &b["id"]);
    let b_last = b_sets.last().unwrap();
    assert_eq!(b_last["result"], "FAILURE", "{history:#}");
    assert_eq!(b_last["builds"][0]["result"], "FAILURE", "{history:#}");

    // C was first tested on top of A and B, then restarted without B, and that merged.
    let c = items(&history, "gate", "c")[0];
    let c_sets = buildsets_of(&history, &c["id"]);
    assert!(c_sets.len() >= 2, "C was not restarted: {history:#}");
    let first = c_sets[0];
    assert!(
        ahead_refs(first).contains(&"refs/heads/review/main/b".to_string()),
        "C's first buildset did not include B: {history:#}"
    );
    assert_eq!(first["result"], "DEQUEUED", "{history:#}");
    let last = c_sets.last().unwrap();
    assert!(
        !ahead_refs(last).contains(&"refs/heads/review/main/b".to_string()),
        "C's last buildset still includes B: {history:#}"
    );
    assert_eq!(last["result"], "SUCCESS", "{history:#}");
    let final_builds: Vec<&Value> = last["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["final"] == true)
        .collect();
    assert_eq!(final_builds.len(), 1, "{history:#}");
    assert_eq!(final_builds[0]["result"], "SUCCESS", "{history:#}");
    // Every build that did not run to the end in C's first buildset was canceled.
    for b in first["builds"].as_array().unwrap() {
        assert!(
            b["result"] == "CANCELED" || b["result"] == "SUCCESS",
            "unexpected result in the reset buildset: {b:#}"
        );
    }
}

const LIB_CHECK: &str = "- hosts: all\n  tasks:\n    - name: The needed change is merged underneath\n      assert:\n        that:\n          - \"lookup('file', zuul.executor.work_root ~ '/' ~ zuul.projects['localhost/org/lib'].src_dir ~ '/lib.txt') == 'from the lib change'\"\n          - \"zuul['items'] | length == 2\"\n";

#[test]
fn check_tests_a_change_on_top_of_its_depends_on_in_another_repo() {
    let app_jobs = "- job:\n    name: app-test\n    run: playbooks/test.yaml\n\n- project:\n    check:\n      jobs:\n        - app-test\n";
    let setup = Setup::new(
        CHECK,
        &[
            ("org/lib", &[("README", "lib\n")]),
            (
                "org/app",
                &[(".zuul.yaml", app_jobs), ("playbooks/test.yaml", LIB_CHECK)],
            ),
        ],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change(
        "org/lib",
        "lib-change",
        "Lib change",
        &[("lib.txt", "from the lib change")],
    );
    let known = wait_for(Duration::from_secs(30), || {
        setup
            .sluice(&["change", "list"])
            .contains("review/main/lib-change")
    });
    assert!(known, "lib change not seen:\n{}", serve.output());
    setup.push_change(
        "org/app",
        "use-lib",
        "Use the lib change\n\nDepends-On: git://localhost/org/lib/review/main/lib-change\n",
        &[("app.txt", "app\n")],
    );
    let history = setup.wait_reported(&serve, "check", &["use-lib"], Duration::from_secs(180));
    let item = items(&history, "check", "use-lib")[0];
    assert_eq!(
        item["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    assert_eq!(
        item["dependencies"][0]["ref"], "refs/heads/review/main/lib-change",
        "{history:#}"
    );
    let sets = buildsets_of(&history, &item["id"]);
    assert_eq!(sets.len(), 1, "{history:#}");
    assert_eq!(ahead_refs(sets[0]), ["refs/heads/review/main/lib-change"]);
    assert_eq!(sets[0]["builds"][0]["job_name"], "app-test");
    assert_eq!(sets[0]["builds"][0]["result"], "SUCCESS");
    // org/lib has no project stanza: its change is not an item of its own.
    assert!(
        items(&history, "check", "lib-change").is_empty(),
        "{history:#}"
    );
    // Check reports with a git note and never merges.
    assert!(!setup.branch_log("org/app").contains("Use the lib change"));
    let note = Command::new("git")
        .arg("--git-dir")
        .arg(setup.bare("org/app"))
        .args([
            "notes",
            "--ref",
            "sluice-check",
            "show",
            "review/main/use-lib",
        ])
        .output()
        .unwrap();
    let note = String::from_utf8_lossy(&note.stdout);
    assert!(
        note.contains("Build succeeded.") && note.contains("app-test"),
        "{note}"
    );
}

const SLOW: &str = "- hosts: all\n  tasks:\n    - name: Take a while\n      shell: sleep 8\n";

#[test]
fn serve_killed_mid_build_retries_the_build_after_restart() {
    let app_jobs = "- job:\n    name: slow\n    run: playbooks/slow.yaml\n\n- project:\n    check:\n      jobs:\n        - slow\n";
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/slow.yaml", SLOW)],
        )],
        3,
    );
    let mut serve = setup.serve(1);
    setup.push_change("org/app", "slow", "Slow change", &[("x.txt", "x\n")]);
    // Kill once the run playbook is running.
    let builds = setup.root().join("state/builds");
    let running = wait_for(Duration::from_secs(120), || {
        std::fs::read_dir(&builds)
            .map(|entries| {
                entries.flatten().any(|e| {
                    std::fs::read_to_string(e.path().join("work/logs/job-output.txt"))
                        .is_ok_and(|t| t.contains("Take a while"))
                })
            })
            .unwrap_or(false)
    });
    assert!(running, "the build never ran:\n{}", serve.output());
    let agents = || processes_naming("ssh-agent", &builds);
    assert!(!agents().is_empty(), "no ssh-agent for the running build");
    serve.kill();
    // Killed without running its destructors, serve leaves nothing that runs forever: the
    // build's ssh-agent goes with it (`PR_SET_PDEATHSIG`).
    let gone = wait_for(Duration::from_secs(10), || agents().is_empty());
    assert!(gone, "ssh-agents outlived the killed serve: {:?}", agents());
    let before = setup.history();
    assert_eq!(items(&before, "check", "slow").len(), 1, "{before:#}");
    assert_eq!(items(&before, "check", "slow")[0]["state"], "active");

    let serve = setup.serve(2);
    let history = setup.wait_reported(&serve, "check", &["slow"], Duration::from_secs(180));
    let found = items(&history, "check", "slow");
    assert_eq!(found.len(), 1, "the item was doubled: {history:#}");
    assert_eq!(
        found[0]["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    let sets = buildsets_of(&history, &found[0]["id"]);
    assert_eq!(sets.len(), 1, "the buildset was doubled: {history:#}");
    let builds = sets[0]["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2, "{history:#}");
    assert_eq!(builds[0]["result"], "RETRY", "{history:#}");
    assert_eq!(builds[0]["final"], false);
    assert_eq!(builds[0]["attempt"], 1);
    assert_eq!(builds[1]["result"], "SUCCESS", "{history:#}");
    assert_eq!(builds[1]["final"], true);
    assert_eq!(builds[1]["attempt"], 2);
}

/// The command lines of the running processes whose program is `program` and whose
/// arguments mention a path under `dir`.
fn processes_naming(program: &str, dir: &std::path::Path) -> Vec<String> {
    let dir = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmd| {
            cmd.split(' ')
                .next()
                .is_some_and(|argv0| argv0.ends_with(program))
                && cmd.contains(&dir)
        })
        .collect()
}

const QUICK: &str = "- hosts: all\n  tasks:\n    - name: Say hi\n      debug:\n        msg: hi\n";

#[test]
fn check_runs_a_change_with_its_own_config_and_reports_a_broken_one() {
    let app_jobs = "- job:\n    name: test\n    run: playbooks/test.yaml\n\n- project:\n    check:\n      jobs:\n        - test\n";
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/test.yaml", QUICK)],
        )],
        30,
    );
    let serve = setup.serve(1);
    let adds_job = "- job:\n    name: test\n    run: playbooks/test.yaml\n\n- job:\n    name: added\n    run: playbooks/test.yaml\n\n- project:\n    check:\n      jobs:\n        - test\n        - added\n";
    setup.push_change(
        "org/app",
        "add-job",
        "Add a job",
        &[(".zuul.yaml", adds_job)],
    );
    let broken = "- job:\n    name: test\n    run: playbooks/test.yaml\n    colour: red\n\n- project:\n    check:\n      jobs:\n        - test\n";
    setup.push_change(
        "org/app",
        "broken",
        "Break the config",
        &[(".zuul.yaml", broken)],
    );
    let history = setup.wait_reported(
        &serve,
        "check",
        &["add-job", "broken"],
        Duration::from_secs(180),
    );

    let added = items(&history, "check", "add-job")[0];
    assert_eq!(
        added["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    let sets = buildsets_of(&history, &added["id"]);
    let mut jobs: Vec<&str> = sets[0]["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["job_name"].as_str())
        .collect();
    jobs.sort();
    assert_eq!(jobs, ["added", "test"], "{history:#}");

    let broken_item = items(&history, "check", "broken")[0];
    assert_eq!(broken_item["result"], "CONFIG_ERROR", "{history:#}");
    let sets = buildsets_of(&history, &broken_item["id"]);
    assert_eq!(sets[0]["builds"].as_array().unwrap().len(), 0);
    let message = sets[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(".zuul.yaml") && message.contains("colour"),
        "the report names neither file nor key: {message}"
    );
    let note = Command::new("git")
        .arg("--git-dir")
        .arg(setup.bare("org/app"))
        .args([
            "notes",
            "--ref",
            "sluice-check",
            "show",
            "review/main/broken",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&note.stdout).contains("colour"));

    // Nothing else changed: the next change runs the branch's own job list.
    setup.push_change("org/app", "plain", "Plain change", &[("x.txt", "x\n")]);
    let history = setup.wait_reported(&serve, "check", &["plain"], Duration::from_secs(120));
    let plain = items(&history, "check", "plain")[0];
    assert_eq!(plain["result"], "SUCCESS", "{history:#}");
    let sets = buildsets_of(&history, &plain["id"]);
    let jobs: Vec<&str> = sets[0]["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["job_name"].as_str())
        .collect();
    assert_eq!(jobs, ["test"], "{history:#}");
}

#[test]
fn a_new_patchset_replaces_the_old_one_in_check() {
    let app_jobs = "- job:\n    name: slow\n    run: playbooks/slow.yaml\n\n- project:\n    check:\n      jobs:\n        - slow\n";
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/slow.yaml", SLOW)],
        )],
        30,
    );
    let serve = setup.serve(1);
    let first = setup.push_change("org/app", "topic", "First try", &[("x.txt", "1\n")]);
    let enqueued = wait_for(Duration::from_secs(30), || {
        !items(&setup.history(), "check", "topic").is_empty()
    });
    assert!(enqueued, "{}", serve.output());
    // Patchset 2: a new commit on the same review branch.
    let work = setup.root().join("work/org/app/topic");
    let repo = GitRepo { path: work };
    repo.write("x.txt", "2\n");
    let second = repo.commit("Second try");
    repo.git(&["push", "-q", "origin", "HEAD:refs/heads/review/main/topic"]);
    let history = setup.wait_reported(&serve, "check", &["topic"], Duration::from_secs(120));
    let done = wait_for(Duration::from_secs(120), || {
        items(&setup.history(), "check", "topic")
            .iter()
            .all(|i| i["state"] == "done")
    });
    let history = if done { setup.history() } else { history };
    let all = items(&history, "check", "topic");
    assert_eq!(all.len(), 2, "{history:#}");
    let by_patchset = |sha: &str| {
        all.iter()
            .find(|i| i["refs"][0]["patchset"] == sha)
            .unwrap_or_else(|| panic!("no item for {sha}: {history:#}"))
    };
    assert_eq!(by_patchset(&first)["result"], "DEQUEUED", "{history:#}");
    assert_eq!(by_patchset(&second)["result"], "SUCCESS", "{history:#}");
    assert_eq!(
        by_patchset(&second)["refs"][0]["change"],
        by_patchset(&first)["refs"][0]["change"]
    );
}

#[test]
fn job_dependencies_pass_parent_data_and_skip_after_a_failure() {
    let app_jobs = "- job:\n    name: first\n    run: playbooks/first.yaml\n\n- job:\n    name: second\n    run: playbooks/second.yaml\n\n- job:\n    name: broken\n    run: playbooks/broken.yaml\n\n- job:\n    name: after-broken\n    run: playbooks/second.yaml\n\n- project:\n    check:\n      jobs:\n        - first\n        - second:\n            dependencies: [first]\n        - broken\n        - after-broken:\n            dependencies:\n              - name: broken\n              - name: not-in-the-graph\n                soft: true\n";
    let first = "- hosts: all\n  tasks:\n    - name: Return data\n      zuul_return:\n        data:\n          from_parent: hello\n";
    let second = "- hosts: all\n  tasks:\n    - name: See the parent's data\n      assert:\n        that:\n          - from_parent == 'hello'\n";
    let broken =
        "- hosts: all\n  tasks:\n    - name: Fail\n      fail:\n        msg: broken on purpose\n";
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[
                (".zuul.yaml", app_jobs),
                ("playbooks/first.yaml", first),
                ("playbooks/second.yaml", second),
                ("playbooks/broken.yaml", broken),
            ],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "graph", "Run the graph", &[("x.txt", "x\n")]);
    let history = setup.wait_reported(&serve, "check", &["graph"], Duration::from_secs(180));
    let item = items(&history, "check", "graph")[0];
    assert_eq!(item["result"], "FAILURE", "{history:#}");
    let sets = buildsets_of(&history, &item["id"]);
    let result_of = |job: &str| {
        sets[0]["builds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["job_name"] == job)
            .map(|b| b["result"].clone())
            .unwrap_or(Value::Null)
    };
    let outputs = job_outputs(&history);
    assert_eq!(result_of("first"), "SUCCESS", "{history:#}\n{outputs}");
    assert_eq!(result_of("second"), "SUCCESS", "{history:#}\n{outputs}");
    assert_eq!(result_of("broken"), "FAILURE", "{history:#}");
    assert_eq!(result_of("after-broken"), "SKIPPED", "{history:#}");
    // second started only after first ended.
    let time_of = |job: &str, key: &str| {
        sets[0]["builds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["job_name"] == job)
            .and_then(|b| b[key].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    assert!(
        time_of("second", "start_time") >= time_of("first", "end_time"),
        "{history:#}"
    );
}

#[test]
fn supercedent_keeps_one_running_and_one_waiting() {
    let pipeline = "- pipeline:\n    name: deploy\n    manager: supercedent\n    trigger:\n      git:\n        - event: patchset-created\n";
    let app_jobs = "- job:\n    name: slow\n    run: playbooks/slow.yaml\n\n- project:\n    deploy:\n      jobs:\n        - slow\n";
    let setup = Setup::new(
        pipeline,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/slow.yaml", SLOW)],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "a", "A", &[("a.txt", "a\n")]);
    let running = wait_for(Duration::from_secs(60), || {
        let h = setup.history();
        h["builds"].as_array().is_some_and(|b| !b.is_empty())
    });
    assert!(running, "{}", serve.output());
    setup.push_change("org/app", "b", "B", &[("b.txt", "b\n")]);
    let waiting = wait_for(Duration::from_secs(30), || {
        !items(&setup.history(), "deploy", "b").is_empty()
    });
    assert!(waiting, "{}", serve.output());
    setup.push_change("org/app", "c", "C", &[("c.txt", "c\n")]);
    let history = setup.wait_reported(&serve, "deploy", &["a", "b", "c"], Duration::from_secs(180));
    let result = |t: &str| items(&history, "deploy", t)[0]["result"].clone();
    assert_eq!(result("a"), "SUCCESS", "{history:#}");
    assert_eq!(result("b"), "DEQUEUED", "{history:#}");
    assert_eq!(result("c"), "SUCCESS", "{history:#}");
    // B never ran; C started only after A ended.
    let builds = history["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2, "{history:#}");
    let a_end = builds[0]["end_time"].as_str().unwrap_or_default();
    let c_start = builds[1]["start_time"].as_str().unwrap_or_default();
    assert!(c_start >= a_end, "{history:#}");
}

#[test]
fn a_killed_executor_process_build_is_retried_on_the_other() {
    let app_jobs = "- job:\n    name: slow\n    run: playbooks/slow.yaml\n\n- project:\n    check:\n      jobs:\n        - slow\n";
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/slow.yaml", SLOW)],
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
    setup.push_change("org/app", "slow", "Slow change", &[("x.txt", "x\n")]);
    let mut holder = None;
    let claimed = wait_for(Duration::from_secs(60), || {
        holder = executors
            .iter()
            .position(|e| e.output().contains("build claimed"));
        holder.is_some()
    });
    assert!(
        claimed,
        "no executor claimed the build:\n{}",
        scheduler.output()
    );
    let holder = holder.unwrap_or_default();
    let other = 1 - holder;
    // Kill the holder once its playbook runs.
    let builds = setup.root().join("state/builds");
    let running = wait_for(Duration::from_secs(120), || {
        std::fs::read_dir(&builds)
            .map(|entries| {
                entries.flatten().any(|e| {
                    std::fs::read_to_string(e.path().join("work/logs/job-output.txt"))
                        .is_ok_and(|t| t.contains("Take a while"))
                })
            })
            .unwrap_or(false)
    });
    assert!(running, "{}", executors[holder].output());
    executors[holder].kill();

    let history = setup.wait_reported(&scheduler, "check", &["slow"], Duration::from_secs(180));
    let item = items(&history, "check", "slow")[0];
    assert_eq!(
        item["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    let sets = buildsets_of(&history, &item["id"]);
    let builds = sets[0]["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2, "{history:#}");
    assert_eq!(builds[0]["result"], "RETRY", "{history:#}");
    assert_eq!(builds[1]["result"], "SUCCESS", "{history:#}");
    let retried = builds[1]["uuid"].as_str().unwrap_or_default();
    assert!(
        executors[other].output().contains(retried),
        "the retry did not run on the other executor:\n{}",
        executors[other].output()
    );
}

#[test]
fn serve_streams_a_running_build_over_finger_and_through_zone_gateways() {
    use std::io::{Read, Write};
    let app_jobs = "- job:\n    name: slow\n    run: playbooks/slow.yaml\n\n- project:\n    check:\n      jobs:\n        - slow\n";
    // The task runs until the test creates the go file (at most 120 s).
    let go_dir = tempfile::tempdir().unwrap();
    let go = go_dir.path().join("go");
    let until_go = format!(
        "- hosts: all\n  tasks:\n    - name: Take a while\n      shell: for i in $(seq 1 1200); do [ -e {} ] && break; sleep 0.1; done\n",
        go.display()
    );
    // The executor is in zone z.
    let setup = Setup::with_executor(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/slow.yaml", &until_go)],
        )],
        30,
        "  zone: z\n",
    );
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    };
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = setup.start_with("serve", "serve-finger", &["--finger-listen", &addr]);
    // Two gateways sharing the store: one of zone z, one unzoned that must go through it.
    let zoned = format!("127.0.0.1:{}", free_port());
    let unzoned = format!("127.0.0.1:{}", free_port());
    let gw_z = setup.start_with(
        "fingergw",
        "fingergw-z",
        &["--listen", &zoned, "--zone", "z"],
    );
    let gw = setup.start_with("fingergw", "fingergw", &["--listen", &unzoned]);
    for a in [&zoned, &unzoned] {
        assert!(
            wait_for(Duration::from_secs(30), || std::net::TcpStream::connect(a)
                .is_ok()),
            "no gateway on {a}:\n{}\n{}",
            gw_z.output(),
            gw.output()
        );
    }
    let finger = |addr: &str, uuid: &str| {
        let mut stream = std::net::TcpStream::connect(addr).expect("finger port");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        stream.write_all(format!("{uuid}\r\n").as_bytes()).unwrap();
        stream
    };
    let mut text = String::new();
    let _ = finger(&unzoned, "0123abcd").read_to_string(&mut text);
    assert_eq!(text, "Build not found", "{}", gw.output());

    setup.push_change("org/app", "slow", "Slow change", &[("x.txt", "x\n")]);
    let mut uuid = String::new();
    let log = |uuid: &str| {
        std::fs::read_to_string(
            setup
                .root()
                .join("state/builds")
                .join(uuid)
                .join("work/logs/job-output.txt"),
        )
        .unwrap_or_default()
    };
    let started = wait_for(Duration::from_secs(120), || {
        let h = setup.history();
        uuid = h["builds"][0]["uuid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !uuid.is_empty() && log(&uuid).contains("TASK [Take a while]")
    });
    assert!(started, "{}", serve.output());
    // Read through the unzoned gateway (→ gateway of zone z → executor) and directly.
    let through = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let mut stream = finger(&unzoned, &uuid);
        let through = through.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                through
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    // The running task's line arrives while the task still runs (until the go file).
    assert!(
        wait_for(Duration::from_secs(30), || through
            .lock()
            .unwrap()
            .contains("TASK [Take a while]")),
        "nothing through the gateways:\n{}\n{}\n{}",
        gw.output(),
        gw_z.output(),
        serve.output()
    );
    assert!(
        !log(&uuid).contains("| RUN END"),
        "the stream came only after the task"
    );
    let mut direct_stream = finger(&addr, &uuid);
    std::fs::write(&go, "go").unwrap();
    let mut direct = String::new();
    let _ = direct_stream.read_to_string(&mut direct);
    reader.join().unwrap();
    let through = through.lock().unwrap().clone();
    assert!(
        direct.contains("TASK [Take a while]") && direct.contains("| RUN END"),
        "finger gave:\n{direct}\n{}",
        serve.output()
    );
    // The whole log, through two gateways, as the executor has it.
    assert_eq!(through, direct, "{}", gw.output());
}

#[test]
fn gate_dequeues_a_change_whose_needed_change_fails() {
    let setup = Setup::new(
        GATE,
        &[(
            "org/app",
            &[
                (".zuul.yaml", APP_JOBS),
                ("playbooks/test.yaml", FAIL_ON_REQUEST),
            ],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change(
        "org/app",
        "needed",
        "Needed\n\nplease-fail",
        &[("n.txt", "n\n")],
    );
    setup.push_change(
        "org/app",
        "needing",
        "Needing\n\nDepends-On: git://localhost/org/app/review/main/needed\n",
        &[("m.txt", "m\n")],
    );
    let known = wait_for(Duration::from_secs(30), || {
        setup.sluice(&["change", "list"]).lines().count() == 2
    });
    assert!(known, "{}", serve.output());
    // Approving the dependent enqueues its needed change ahead of it (Zuul's
    // enqueueChangesAhead: the gate has no requirements the needed change could miss).
    setup.approve("org/app", "needing");
    let history = setup.wait_reported(
        &serve,
        "gate",
        &["needed", "needing"],
        Duration::from_secs(180),
    );
    let needed = items(&history, "gate", "needed")[0];
    let needing = items(&history, "gate", "needing")[0];
    assert_eq!(needed["result"], "FAILURE", "{history:#}");
    assert_eq!(needing["result"], "FAILURE", "{history:#}");
    let sets = buildsets_of(&history, &needing["id"]);
    let message = sets
        .last()
        .map(|s| s["message"].clone())
        .unwrap_or_default();
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("depends on a change that failed to merge")),
        "{history:#}"
    );
    let log = setup.branch_log("org/app");
    assert!(!log.contains("Needed") && !log.contains("Needing"), "{log}");
}

/// `.zuul.yaml` of the file matcher test; `docs_vars` and `always_vars` are the `vars` of
/// jobs `docs`/`docs-strict` and `always`, `header` goes before the jobs.
fn file_matcher_jobs(header: &str, docs_vars: &str, always_vars: &str) -> String {
    format!(
        "{header}- job:
    name: docs
    run: playbooks/docs.yaml
    files: ['^docs/']
    vars: {docs_vars}

- job:
    name: docs-strict
    run: playbooks/test.yaml
    files: ['^docs/']
    match-on-config-updates: false
    vars: {docs_vars}

- job:
    name: code
    run: playbooks/test.yaml
    irrelevant-files: ['^docs/', '.*\\.md$']

- job:
    name: always
    run: playbooks/test.yaml
    vars: {always_vars}

- project:
    check:
      jobs:
        - docs
        - docs-strict
        - code
        - always
"
    )
}

/// `files`/`irrelevant-files` choose the jobs, except that a job whose own configuration or
/// playbook a change edits runs anyway (`match-on-config-updates`, default true), unless it
/// sets `match-on-config-updates: false`; moving a job within the file (other jobs edited
/// above it) is not an update of it.
#[test]
fn file_matchers_select_the_jobs_a_change_runs() {
    let app_jobs = file_matcher_jobs("", "{v: 1}", "{v: 1}");
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[
                (".zuul.yaml", &app_jobs),
                ("playbooks/test.yaml", QUICK),
                ("playbooks/docs.yaml", QUICK),
            ],
        )],
        30,
    );
    let serve = setup.serve(1);
    setup.push_change("org/app", "docs-only", "Docs", &[("docs/guide.md", "g\n")]);
    setup.push_change(
        "org/app",
        "code-only",
        "Code",
        &[("src/main.c", "int main;\n")],
    );
    let docs_updated = file_matcher_jobs("", "{v: 2}", "{v: 1}");
    setup.push_change(
        "org/app",
        "docs-config",
        "Docs jobs' vars",
        &[(".zuul.yaml", &docs_updated)],
    );
    let other_updated = file_matcher_jobs(
        "- job:\n    name: unused\n    run: playbooks/test.yaml\n\n",
        "{v: 1}",
        "{v: 2}",
    );
    setup.push_change(
        "org/app",
        "other-config",
        "Another job above the docs jobs",
        &[(".zuul.yaml", &other_updated)],
    );
    let docs_playbook = format!("{QUICK}    - name: More\n      debug:\n        msg: more\n");
    setup.push_change(
        "org/app",
        "docs-playbook",
        "Docs playbook",
        &[("playbooks/docs.yaml", &docs_playbook)],
    );
    let topics = [
        "docs-only",
        "code-only",
        "docs-config",
        "other-config",
        "docs-playbook",
    ];
    let history = setup.wait_reported(&serve, "check", &topics, Duration::from_secs(240));
    let jobs_of = |topic: &str| {
        let item = items(&history, "check", topic)[0];
        let mut jobs: Vec<String> = buildsets_of(&history, &item["id"])[0]["builds"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["job_name"].as_str().map(str::to_string))
            .collect();
        jobs.sort();
        jobs
    };
    assert_eq!(
        jobs_of("docs-only"),
        ["always", "docs", "docs-strict"],
        "{history:#}"
    );
    assert_eq!(jobs_of("code-only"), ["always", "code"], "{history:#}");
    // Its own definition changed: `docs` runs, `docs-strict` (false) does not.
    assert_eq!(
        jobs_of("docs-config"),
        ["always", "code", "docs"],
        "{history:#}"
    );
    assert_eq!(jobs_of("other-config"), ["always", "code"], "{history:#}");
    assert_eq!(
        jobs_of("docs-playbook"),
        ["always", "code", "docs"],
        "{history:#}"
    );
}

/// Stops the quickstart's node on drop (the demo script stops it too, unless it was killed).
struct QuickstartNode(PathBuf);

impl Drop for QuickstartNode {
    fn drop(&mut self) {
        let _ = Command::new(sluice_tests::repo_root().join("tests/node/sshd-node"))
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}

/// The README's first command: `scripts/demo` writes the quickstart setup, runs `sluice serve`,
/// pushes a change, sees check pass, approves it, sees gate merge it and stops serve.
#[test]
fn readme_demo_passes_check_and_gate_and_merges() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("qs");
    let _node = QuickstartNode(dir.join("node"));
    let out = Command::new(sluice_tests::repo_root().join("scripts/demo"))
        .arg(&dir)
        .env("SLUICE_BIN", sluice_bin())
        .env("SLUICE_DEMO_TIMEOUT", "150")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    let config = dir.join("sluice.yaml");
    assert!(
        printed.contains(&format!("serve --config {}", config.display())),
        "{printed}"
    );
    assert!(printed.contains("check: SUCCESS"), "{printed}");
    assert!(printed.contains("gate: SUCCESS"), "{printed}");
    assert!(printed.contains("sluice serve stopped"), "{printed}");

    // The records and the repository, read independently of the script.
    let sluice = |args: &[&str]| {
        let out = Command::new(sluice_bin())
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let history: Value =
        serde_json::from_str(&sluice(&["change", "history", "--tenant", "quickstart"]))
            .unwrap_or(Value::Null);
    let check = items(&history, "check", "say-hi");
    let gate = items(&history, "gate", "say-hi");
    assert_eq!(check.len(), 1, "{history:#}");
    assert_eq!(check[0]["result"], "SUCCESS", "{history:#}");
    assert_eq!(gate.len(), 1, "{history:#}");
    assert_eq!(gate[0]["result"], "SUCCESS", "{history:#}");
    let change = Command::new("git")
        .arg("-C")
        .arg(dir.join("demo"))
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    let main = Command::new("git")
        .arg("--git-dir")
        .arg(dir.join("repos/org/demo.git"))
        .args(["rev-parse", "main"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&main.stdout).trim(),
        String::from_utf8_lossy(&change.stdout).trim()
    );
    assert!(sluice(&["change", "list"]).contains("merged"));
    // serve was stopped: nothing holds the web/state any more, the log says it shut down.
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn config_project_changes_are_validated_and_noop_succeeds_without_a_node() {
    let config_check = format!("{CHECK}- project:\n    check:\n      jobs:\n        - noop\n");
    let setup = Setup::new(&config_check, &[], 30);
    let serve = setup.serve(1);
    let good =
        format!("{config_check}{BASE_JOB}- job:\n    name: extra\n    run: playbooks/x.yaml\n");
    setup.push_change("sluice/config", "good", "Good", &[("zuul.yaml", &good)]);
    let broken = format!("{config_check}{BASE_JOB}- job:\n    name: bad\n    colour: red\n");
    setup.push_change(
        "sluice/config",
        "broken",
        "Broken",
        &[("zuul.yaml", &broken)],
    );
    let history = setup.wait_reported(
        &serve,
        "check",
        &["good", "broken"],
        Duration::from_secs(120),
    );
    let good = items(&history, "check", "good")[0];
    assert_eq!(good["result"], "SUCCESS", "{history:#}");
    let sets = buildsets_of(&history, &good["id"]);
    assert_eq!(sets[0]["builds"][0]["job_name"], "noop", "{history:#}");
    assert_eq!(sets[0]["builds"][0]["result"], "SUCCESS", "{history:#}");
    let broken = items(&history, "check", "broken")[0];
    assert_eq!(broken["result"], "CONFIG_ERROR", "{history:#}");
    let sets = buildsets_of(&history, &broken["id"]);
    assert!(
        sets[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("zuul.yaml") && m.contains("colour")),
        "{history:#}"
    );
}

#[test]
fn check_runs_a_change_with_a_postgresql_store() {
    let postgres = sluice_tests::Postgres::start();
    let url = postgres.create_database();
    let jobs = "- job:\n    name: test\n    run: playbooks/test.yaml\n\n- project:\n    check:\n      jobs:\n        - test\n";
    let playbook = "- hosts: all\n  tasks:\n    - name: Say hello\n      command: echo hello\n";
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", jobs), ("playbooks/test.yaml", playbook)],
        )],
        30,
    );
    setup.use_database(&url);
    let serve = setup.serve(1);
    setup.push_change("org/app", "pg", "Runs on PostgreSQL", &[("README", "pg\n")]);
    let history = setup.wait_reported(&serve, "check", &["pg"], Duration::from_secs(120));
    let item = items(&history, "check", "pg")[0];
    assert_eq!(
        item["result"],
        "SUCCESS",
        "{history:#}\n{}",
        job_outputs(&history)
    );
    let sets = buildsets_of(&history, &item["id"]);
    assert_eq!(sets[0]["builds"][0]["job_name"], "test", "{history:#}");
    assert_eq!(sets[0]["builds"][0]["result"], "SUCCESS", "{history:#}");
    // Everything went to PostgreSQL: no SQLite file appeared in the state dir.
    assert!(
        !setup.root().join("state/sluice.db").exists(),
        "{}",
        serve.output()
    );
}
