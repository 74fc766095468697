//! `sluice job run` end to end: real git repositories, real `ansible-playbook` in real
//! bubblewrap, against a real sshd on loopback.

use std::path::Path;
use std::time::Duration;

use sluice_tests::{
    config_project, job_command, live_output, run_job, wait_for, wait_job, GitRepo, JobRun, Node,
};

/// A project whose `.zuul.yaml` holds `jobs` and whose files are `files`.
fn project(root: &Path, jobs: &str, files: &[(&str, &str)]) -> GitRepo {
    let repo = GitRepo::init(&root.join("org/demo"), "main");
    repo.write(".zuul.yaml", jobs);
    for (path, content) in files {
        repo.write(path, content);
    }
    repo.commit("Add jobs");
    repo
}

fn args<'a>(
    config: &'a GitRepo,
    project: &'a GitRepo,
    node: &'a Node,
    holder: &'a mut Vec<String>,
) -> Vec<&'a str> {
    holder.clear();
    holder.push(format!("--project={}", project.path.display()));
    holder.push(format!("--config-project=config={}", config.path.display()));
    holder.push(format!("--nodes={}", node.nodes_file().display()));
    holder.push(format!("--ssh-key={}", node.key().display()));
    holder.iter().map(String::as_str).collect()
}

fn run_simple(jobs: &str, files: &[(&str, &str)], job: &str) -> (tempfile::TempDir, JobRun) {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    let project = project(scratch.path(), jobs, files);
    let mut holder = Vec::new();
    let a = args(&config, &project, &node, &mut holder);
    let run = run_job(scratch.path(), job, &a);
    (scratch, run)
}

const HELLO_JOB: &str = "- job:\n    name: hello\n    run: playbooks/hello.yaml\n";
const HELLO_PLAYBOOK: &str =
    "- hosts: all\n  tasks:\n    - name: Say hi\n      shell: \"echo hi; sleep 1; echo bye\"\n";

fn assert_result(run: &JobRun, expected: &str) {
    assert_eq!(
        run.result_line(),
        format!("RESULT: {expected}"),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.result["result"], expected, "{}", run.result);
}

#[test]
fn success_streams_node_lines_in_zuul_format() {
    let (_scratch, run) = run_simple(
        HELLO_JOB,
        &[("playbooks/hello.yaml", HELLO_PLAYBOOK)],
        "hello",
    );
    assert_result(&run, "SUCCESS");
    assert!(run.status.success());
    let out = run.job_output();
    let stripped: Vec<&str> = out
        .lines()
        .map(|l| l.split_once(" | ").map_or(l, |(_, rest)| rest))
        .collect();
    for expected in [
        "Job console starting",
        "Merging changes",
        "PRE-RUN START: [trusted : localhost/config/playbooks/base/pre.yaml@main]",
        "PLAY [all]",
        "TASK [Start zuul_console daemon]",
        "RUN START: [untrusted : localhost/org/demo/playbooks/hello.yaml@main]",
        "TASK [Say hi]",
        "node | hi",
        "node | bye",
        "PLAY RECAP",
        "RUN END RESULT_NORMAL: [untrusted : localhost/org/demo/playbooks/hello.yaml@main]",
        "POST-RUN START: [trusted : localhost/config/playbooks/base/post.yaml@main]",
    ] {
        assert!(
            stripped.contains(&expected),
            "missing {expected:?} in:\n{out}"
        );
    }
    assert!(
        stripped
            .iter()
            .any(|l| l.starts_with("node | ok: 1 changed: 1 unreachable: 0 failed: 0")),
        "{out}"
    );
    // The base job's post-run collected the node's file into the build's logs.
    let collected = Path::new(run.result["log_dir"].as_str().unwrap()).join("node/debian_version");
    assert!(
        collected.is_file(),
        "{} missing:\n{out}",
        collected.display()
    );
    // Stdout carries the same job output, then the result line.
    assert!(run.stdout.contains("| node | hi\n"), "{}", run.stdout);
    let json_path = Path::new(run.result["log_dir"].as_str().unwrap()).join("job-output.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    let phases: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["pre", "run", "post"]);
}

#[test]
fn job_output_is_written_while_the_task_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    let project = project(
        scratch.path(),
        HELLO_JOB,
        &[(
            "playbooks/hello.yaml",
            "- hosts: all\n  tasks:\n    - name: Slow\n      shell: \"echo first; sleep 8; echo second\"\n",
        )],
    );
    let mut holder = Vec::new();
    let a = args(&config, &project, &node, &mut holder);
    let (mut cmd, result) = job_command(scratch.path(), "hello", &a);
    let mut child = cmd.spawn().unwrap();
    let seen_first = wait_for(Duration::from_secs(90), || {
        live_output(scratch.path()).contains("| node | first")
    });
    let text = live_output(scratch.path());
    assert!(seen_first, "never saw the first line:\n{text}");
    assert!(
        !text.contains("| node | second"),
        "the task had already ended:\n{text}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "sluice had already exited"
    );
    let run = wait_job(child, &result);
    assert_result(&run, "SUCCESS");
}

#[test]
fn failing_run_playbook_is_failure() {
    let (_s, run) = run_simple(
        HELLO_JOB,
        &[(
            "playbooks/hello.yaml",
            "- hosts: all\n  tasks:\n    - shell: exit 3\n",
        )],
        "hello",
    );
    assert_result(&run, "FAILURE");
    assert!(!run.status.success());
    assert!(
        run.job_output().contains("| node | ERROR"),
        "{}",
        run.job_output()
    );
}

#[test]
fn failing_post_playbook_is_post_failure() {
    let jobs = "- job:\n    name: hello\n    run: playbooks/hello.yaml\n    post-run: playbooks/post.yaml\n";
    let (_s, run) = run_simple(
        jobs,
        &[
            ("playbooks/hello.yaml", HELLO_PLAYBOOK),
            (
                "playbooks/post.yaml",
                "- hosts: all\n  tasks:\n    - command: /bin/false\n",
            ),
        ],
        "hello",
    );
    assert_result(&run, "POST_FAILURE");
}

#[test]
fn run_past_timeout_is_timed_out() {
    let jobs = "- job:\n    name: hello\n    timeout: 10\n    run: playbooks/hello.yaml\n";
    let (_s, run) = run_simple(
        jobs,
        &[(
            "playbooks/hello.yaml",
            "- hosts: all\n  tasks:\n    - command: sleep 120\n",
        )],
        "hello",
    );
    assert_result(&run, "TIMED_OUT");
    assert!(
        run.job_output().contains("RUN END RESULT_TIMED_OUT"),
        "{}",
        run.job_output()
    );
}

#[test]
fn pre_run_failure_retries_then_hits_the_limit() {
    let jobs = "- job:\n    name: hello\n    attempts: 2\n    pre-run: playbooks/pre.yaml\n    run: playbooks/hello.yaml\n";
    let (_s, run) = run_simple(
        jobs,
        &[
            (
                "playbooks/pre.yaml",
                "- hosts: all\n  tasks:\n    - command: /bin/false\n",
            ),
            ("playbooks/hello.yaml", HELLO_PLAYBOOK),
        ],
        "hello",
    );
    assert_result(&run, "RETRY_LIMIT");
    assert!(
        run.stderr.contains("attempt 1 of 2 ended in RETRY"),
        "{}",
        run.stderr
    );
}

#[test]
fn conflicting_change_is_merge_conflict() {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    let project = project(
        scratch.path(),
        HELLO_JOB,
        &[
            ("playbooks/hello.yaml", HELLO_PLAYBOOK),
            ("file.txt", "base\n"),
        ],
    );
    project.git(&["checkout", "-q", "-b", "topic"]);
    project.write("file.txt", "topic\n").commit("Topic change");
    project.git(&["checkout", "-q", "main"]);
    project
        .write("file.txt", "main moved on\n")
        .commit("Main change");
    project.git(&["checkout", "-q", "topic"]);
    let mut holder = Vec::new();
    let mut a = args(&config, &project, &node, &mut holder);
    a.push("--target-branch=main");
    let run = run_job(scratch.path(), "hello", &a);
    assert_result(&run, "MERGE_CONFLICT");
}

#[test]
fn missing_label_is_node_failure_naming_it() {
    let jobs = "- job:\n    name: hello\n    run: playbooks/hello.yaml\n    nodeset:\n      nodes:\n        - name: box\n          label: centos-9\n";
    let (_s, run) = run_simple(jobs, &[("playbooks/hello.yaml", HELLO_PLAYBOOK)], "hello");
    assert_result(&run, "NODE_FAILURE");
    assert!(
        run.result["error_detail"]
            .as_str()
            .unwrap_or("")
            .contains("centos-9"),
        "{}",
        run.result
    );
}

#[test]
fn unknown_ansible_version_is_error_naming_installed_ones() {
    let jobs =
        "- job:\n    name: hello\n    ansible-version: '2.5'\n    run: playbooks/hello.yaml\n";
    let (_s, run) = run_simple(jobs, &[("playbooks/hello.yaml", HELLO_PLAYBOOK)], "hello");
    assert_result(&run, "ERROR");
    let detail = run.result["error_detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("2.5") && detail.contains("2.19"),
        "{detail}"
    );
}

#[test]
fn sigterm_aborts_and_runs_cleanup() {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    let jobs = "- job:\n    name: hello\n    run: playbooks/hello.yaml\n    post-run:\n      - name: playbooks/cleanup.yaml\n        cleanup: true\n";
    let project = project(
        scratch.path(),
        jobs,
        &[
            (
                "playbooks/hello.yaml",
                "- hosts: all\n  tasks:\n    - name: Long\n      shell: \"echo started; sleep 300\"\n",
            ),
            (
                "playbooks/cleanup.yaml",
                "- hosts: all\n  tasks:\n    - name: Cleanup\n      debug:\n        msg: cleanup ran\n",
            ),
        ],
    );
    let mut holder = Vec::new();
    let a = args(&config, &project, &node, &mut holder);
    let (mut cmd, result) = job_command(scratch.path(), "hello", &a);
    let child = cmd.spawn().unwrap();
    let started = wait_for(Duration::from_secs(90), || {
        live_output(scratch.path()).contains("| node | started")
    });
    assert!(started, "the long task never started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let run = wait_job(child, &result);
    assert_result(&run, "ABORTED");
    assert!(
        run.job_output().contains("cleanup ran"),
        "{}",
        run.job_output()
    );
}

#[test]
fn broken_zuul_yaml_names_file_and_line() {
    let (_s, run) = run_simple(
        "- job:\n    name: hello\n    run: playbooks/hello.yaml\n    colour: blue\n",
        &[("playbooks/hello.yaml", HELLO_PLAYBOOK)],
        "hello",
    );
    assert_result(&run, "ERROR");
    assert!(run.stderr.contains(".zuul.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("colour"), "{}", run.stderr);
    assert!(run.stderr.contains(":4"), "{}", run.stderr);
}

#[test]
fn unreachable_node_is_retried_then_retry_limit() {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    let jobs = "- job:\n    name: hello\n    attempts: 1\n    run: playbooks/hello.yaml\n";
    let project = project(
        scratch.path(),
        jobs,
        &[("playbooks/hello.yaml", HELLO_PLAYBOOK)],
    );
    // The same node, but on a port nothing listens on.
    let dead = scratch.path().join("dead-nodes.yaml");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let text = std::fs::read_to_string(node.nodes_file()).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("connection-port:") {
                format!("  connection-port: {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&dead, text).unwrap();
    let run = run_job(
        scratch.path(),
        "hello",
        &[
            &format!("--project={}", project.path.display()),
            &format!("--config-project=config={}", config.path.display()),
            &format!("--nodes={}", dead.display()),
            &format!("--ssh-key={}", node.key().display()),
        ],
    );
    assert_result(&run, "RETRY_LIMIT");
    assert_eq!(
        run.result["error_detail"], "Host unreachable",
        "{}",
        run.result
    );
}

#[test]
fn zuul_return_data_reaches_the_result() {
    let jobs = "- job:\n    name: hello\n    run: playbooks/hello.yaml\n";
    let playbook = "- hosts: localhost\n  tasks:\n    - zuul_return:\n        data:\n          answer: 42\n          zuul:\n            artifacts:\n              - name: docs\n                url: docs/index.html\n";
    let (_s, run) = run_simple(jobs, &[("playbooks/hello.yaml", playbook)], "hello");
    assert_result(&run, "SUCCESS");
    assert_eq!(run.result["data"]["answer"], 42, "{}", run.result);
    assert_eq!(run.result["data"]["zuul"]["artifacts"][0]["name"], "docs");
}

#[test]
fn every_installed_ansible_version_runs_the_job() {
    for version in ["2.18", "2.19"] {
        let jobs = format!(
            "- job:\n    name: hello\n    ansible-version: '{version}'\n    run: playbooks/hello.yaml\n"
        );
        let playbook = "- hosts: all\n  tasks:\n    - name: Which Ansible\n      shell: \"echo core {{ ansible_version.major }}.{{ ansible_version.minor }}\"\n";
        let (_s, run) = run_simple(&jobs, &[("playbooks/hello.yaml", playbook)], "hello");
        assert_result(&run, "SUCCESS");
        assert!(
            run.job_output()
                .contains(&format!("| node | core {version}")),
            "{}",
            run.job_output()
        );
    }
}

#[test]
fn roles_required_projects_and_variables_reach_the_playbook() {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let config = config_project(scratch.path());
    // A repo with roles/ and a bare role repo.
    let roles = GitRepo::init(&scratch.path().join("org/roles"), "main");
    roles
        .write(
            "roles/greet/tasks/main.yaml",
            "- name: Greet\n  command: echo greet-from-role\n",
        )
        .commit("greet role");
    let bare = GitRepo::init(&scratch.path().join("org/ansible-role-wave"), "main");
    bare.write(
        "tasks/main.yaml",
        "- name: Wave\n  command: echo wave-from-bare-role\n",
    )
    .commit("bare role");
    let lib = GitRepo::init(&scratch.path().join("org/lib"), "main");
    lib.write("README", "lib\n").commit("lib");
    let jobs = r#"- job:
    name: hello
    run: playbooks/hello.yaml
    roles:
      - zuul: org/roles
      - zuul: org/ansible-role-wave
        name: wave
    required-projects:
      - org/lib
    vars:
      layer: job
      from_job: yes
    host-vars:
      node:
        layer: host
    group-vars:
      web:
        layer: group
    extra-vars:
      extra_only: extra
    nodeset:
      nodes:
        - name: node
          label: ubuntu-noble
      groups:
        - name: web
          nodes: [node]
"#;
    let playbook = r#"- hosts: all
  roles:
    - greet
    - wave
  tasks:
    - name: Check variables
      assert:
        that:
          - layer == 'host'
          - from_job
          - extra_only == 'extra'
          - zuul.job == 'hello'
          - nodepool.label == 'ubuntu-noble'
          - zuul.projects['localhost/org/lib'].required
- hosts: localhost
  tasks:
    - name: The required project is in the workspace
      stat:
        path: "{{ zuul.executor.work_root }}/{{ zuul.projects['localhost/org/lib'].src_dir }}/README"
      register: readme
    - assert:
        that: readme.stat.exists
"#;
    let project = project(scratch.path(), jobs, &[("playbooks/hello.yaml", playbook)]);
    let run = run_job(
        scratch.path(),
        "hello",
        &[
            &format!("--project={}", project.path.display()),
            &format!("--config-project=config={}", config.path.display()),
            &format!("--required-project={}", roles.path.display()),
            &format!("--required-project={}", bare.path.display()),
            &format!("--required-project={}", lib.path.display()),
            &format!("--nodes={}", node.nodes_file().display()),
            &format!("--ssh-key={}", node.key().display()),
        ],
    );
    assert_result(&run, "SUCCESS");
    let out = run.job_output();
    assert!(out.contains("| node | greet-from-role"), "{out}");
    assert!(out.contains("| node | wave-from-bare-role"), "{out}");
}

#[test]
fn failed_pre_run_still_runs_post_run_of_levels_that_started() {
    let jobs = "- job:\n    name: hello\n    attempts: 1\n    pre-run: playbooks/pre.yaml\n    run: playbooks/hello.yaml\n    post-run: playbooks/post.yaml\n";
    let (_s, run) = run_simple(
        jobs,
        &[
            (
                "playbooks/pre.yaml",
                "- hosts: all\n  tasks:\n    - command: /bin/false\n",
            ),
            ("playbooks/hello.yaml", HELLO_PLAYBOOK),
            (
                "playbooks/post.yaml",
                "- hosts: all\n  tasks:\n    - debug:\n        msg: child post ran\n",
            ),
        ],
        "hello",
    );
    assert_result(&run, "RETRY_LIMIT");
    let out = run.job_output();
    assert!(
        !out.contains("RUN START: [untrusted : localhost/org/demo/playbooks/hello.yaml"),
        "{out}"
    );
    assert!(out.contains("child post ran"), "{out}");
    assert!(out.contains("post-run ran"), "{out}");
}
