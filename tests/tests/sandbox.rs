//! What an untrusted playbook running on the executor (localhost) can and cannot reach.

use std::path::Path;

use sluice_tests::{config_project, run_job, GitRepo, Node};

const JOB: &str =
    "- job:\n    name: probe\n    run: playbooks/probe.yaml\n    nodeset:\n      nodes: []\n";

fn probe(tasks: &str) -> (tempfile::TempDir, sluice_tests::JobRun) {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    let project = GitRepo::init(&scratch.path().join("org/demo"), "main");
    project.write(".zuul.yaml", JOB);
    project.write(
        "playbooks/probe.yaml",
        &format!("- hosts: localhost\n  gather_facts: false\n  tasks:\n{tasks}"),
    );
    project.commit("probe");
    let run = run_job(
        scratch.path(),
        "probe",
        &[
            &format!("--project={}", project.path.display()),
            &format!("--config-project=config={}", config.path.display()),
            &format!("--nodes={}", node.nodes_file().display()),
            &format!("--ssh-key={}", node.key().display()),
        ],
    );
    (scratch, run)
}

fn assert_denied(tasks: &str) -> String {
    let (_s, run) = probe(tasks);
    assert_eq!(
        run.result_line(),
        "RESULT: FAILURE",
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    run.job_output()
}

#[test]
fn cannot_read_etc_shadow() {
    assert!(Path::new("/etc/shadow").exists());
    let out = assert_denied("    - command: cat /etc/shadow\n");
    assert!(out.contains("No such file or directory"), "{out}");
}

#[test]
fn cannot_read_the_executor_key() {
    let node = Node::start();
    let key = node.key();
    assert!(key.exists());
    let out = assert_denied(&format!("    - command: cat {}\n", key.display()));
    assert!(!out.contains("PRIVATE KEY"), "{out}");
}

#[test]
fn cannot_see_another_build() {
    // Another build's dir in the same work root, with a file the probe tries to read.
    let scratch = tempfile::tempdir().unwrap();
    let other = scratch
        .path()
        .join("builds/0123456789abcdef0123456789abcdef/work/logs");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("secret.txt"), "other build").unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    let project = GitRepo::init(&scratch.path().join("org/demo"), "main");
    project.write(".zuul.yaml", JOB);
    project.write(
        "playbooks/probe.yaml",
        &format!(
            "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - command: cat {}\n",
            other.join("secret.txt").display()
        ),
    );
    project.commit("probe");
    let run = run_job(
        scratch.path(),
        "probe",
        &[
            &format!("--project={}", project.path.display()),
            &format!("--config-project=config={}", config.path.display()),
            &format!("--nodes={}", node.nodes_file().display()),
            &format!("--ssh-key={}", node.key().display()),
        ],
    );
    assert_eq!(run.result_line(), "RESULT: FAILURE", "{}", run.stdout);
    assert!(
        !run.job_output().contains("| other build"),
        "{}",
        run.job_output()
    );
}

#[test]
fn cannot_write_outside_the_work_dir() {
    let target = std::env::temp_dir().join(format!("sluice-escape-{}", std::process::id()));
    let _ = std::fs::remove_file(&target);
    let (_s, run) = probe(&format!(
        "    - shell: echo escaped > {}\n      ignore_errors: true\n    - shell: echo ok > {{{{ zuul.executor.work_root }}}}/inside.txt\n",
        target.display()
    ));
    assert_eq!(
        run.result_line(),
        "RESULT: SUCCESS",
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(!target.exists(), "the playbook wrote {}", target.display());
    let inside = Path::new(run.result["log_dir"].as_str().unwrap())
        .parent()
        .unwrap()
        .join("inside.txt");
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "ok\n");
}
