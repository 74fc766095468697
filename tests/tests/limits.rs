//! Resource guards through `sluice job run`: the build dir's disk limit (DISK_FULL), the console
//! output cap per task, and the sandbox's pids and memory limits (cgroups).

use std::path::Path;

use sluice_tests::{config_project, run_job, GitRepo, JobRun, Node};

fn run(playbook: &str, extra: &[&str]) -> (tempfile::TempDir, JobRun) {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    let project = GitRepo::init(&scratch.path().join("org/demo"), "main");
    project
        .write(
            ".zuul.yaml",
            "- job:\n    name: greedy\n    run: playbooks/run.yaml\n",
        )
        .write("playbooks/run.yaml", playbook);
    project.commit("Greedy");
    let mut args = vec![
        format!("--project={}", project.path.display()),
        format!("--config-project=config={}", config.path.display()),
        format!("--nodes={}", node.nodes_file().display()),
        format!("--ssh-key={}", node.key().display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_job(scratch.path(), "greedy", &args);
    (scratch, run)
}

fn result(run: &JobRun) -> &str {
    run.result["result"].as_str().unwrap_or_default()
}

#[test]
fn filling_the_build_dir_past_the_disk_limit_is_disk_full() {
    let playbook = "- hosts: localhost\n  tasks:\n    - name: Fill the disk\n      shell: \"for i in $(seq 40); do head -c 1048576 /dev/zero > {{ zuul.executor.work_root }}/fill-$i; sleep 0.2; done; sleep 30\"\n";
    let (_s, run) = run(playbook, &["--disk-limit-mb=8"]);
    assert_eq!(result(&run), "DISK_FULL", "{}\n{}", run.result, run.stdout);
    // Aborted early: the task did not get to write all 40 MiB.
    let detail = run.result["error_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&(8u64 * 1024 * 1024).to_string()),
        "{detail}"
    );
}

#[test]
fn the_same_build_under_a_roomy_disk_limit_succeeds() {
    let playbook = "- hosts: localhost\n  tasks:\n    - shell: \"head -c 2097152 /dev/zero > {{ zuul.executor.work_root }}/fill\"\n";
    let (_s, run) = run(playbook, &["--disk-limit-mb=64"]);
    assert_eq!(result(&run), "SUCCESS", "{}\n{}", run.result, run.stdout);
}

#[test]
fn console_output_past_the_cap_terminates_the_task() {
    let playbook = "- hosts: all\n  tasks:\n    - name: Chatty\n      shell: \"seq 100000; echo never-reached-end\"\n";
    let (_s, run) = run(playbook, &["--output-max-bytes=2000"]);
    assert_eq!(result(&run), "FAILURE", "{}\n{}", run.result, run.stdout);
    let out = run.job_output();
    assert!(
        out.contains("[Zuul] Log output exceeded max of 2000, terminating"),
        "{out}"
    );
    assert!(!out.contains("never-reached-end"));
    let streamed = out.lines().filter(|l| l.contains("| node | ")).count();
    assert!(streamed < 1000, "{streamed} lines streamed");
}

fn cgroups_usable() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
        || Path::new("/sys/fs/cgroup/pids/cgroup.procs").is_file()
}

#[test]
fn the_sandbox_cannot_fork_past_its_pids_limit() {
    assert!(cgroups_usable(), "no cgroup hierarchy under /sys/fs/cgroup");
    let playbook = "- hosts: localhost\n  tasks:\n    - name: Fork bomb (small)\n      shell: \"for i in $(seq 300); do sleep 20 >/dev/null 2>&1 & done; echo all-forked\"\n      args: {executable: /bin/sh}\n";
    let (_s, run) = run(playbook, &["--pids-max=120"]);
    assert_eq!(result(&run), "FAILURE", "{}\n{}", run.result, run.stdout);
    let out = run.job_output();
    assert!(out.to_lowercase().contains("fork"), "{out}");
    assert!(!out.contains("all-forked"), "{out}");
}

#[test]
fn the_sandbox_cannot_allocate_past_its_memory_limit() {
    assert!(cgroups_usable(), "no cgroup hierarchy under /sys/fs/cgroup");
    let playbook = "- hosts: localhost\n  tasks:\n    - name: Hog\n      command: python3 -c \"x = b'x' * (1024 * 1024 * 1024); print('allocated', len(x))\"\n";
    let (_s, run) = run(playbook, &["--memory-max-mb=400"]);
    assert_eq!(result(&run), "FAILURE", "{}\n{}", run.result, run.stdout);
    let out = run.job_output();
    assert!(!out.contains("allocated 1073741824"), "{out}");
    // The kernel's OOM killer ended the command (SIGKILL), not Ansible.
    assert!(out.contains("| localhost |   \"rc\": -9,"), "{out}");
    let (_s, ok) = run_small();
    assert_eq!(result(&ok), "SUCCESS", "{}\n{}", ok.result, ok.stdout);
}

/// The same limit leaves room for a modest allocation.
fn run_small() -> (tempfile::TempDir, JobRun) {
    let playbook = "- hosts: localhost\n  tasks:\n    - command: python3 -c \"x = bytearray(32 * 1024 * 1024); print('allocated', len(x))\"\n";
    run(playbook, &["--memory-max-mb=400"])
}
