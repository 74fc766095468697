//! Secrets end to end: `sluice encrypt` output pasted into a project, decrypted by the executor
//! with the project's key, visible to the job's playbook only as an in-memory file (never in the
//! build dir or any file a build process holds open), redacted from the output, SECRET_EXPOSURE
//! with `secret-exposure: fail`, and a config error for a job naming another project's secret.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_tests::{
    build_dir, config_project, job_command, run_job, sluice_bin, wait_for, wait_job, GitRepo,
    JobRun, Node,
};

const SHORT: &str = "hunter2-short-secret";

fn long_secret() -> String {
    // 1260 bytes: three blocks of at most 470 bytes each.
    (0..60)
        .map(|i| format!("long-{i:03}-secret-part|"))
        .collect::<String>()
}

/// `sluice encrypt`'s output for `plaintext`.
fn encrypt(keys: &Path, project: &str, name: &str, field: &str, plaintext: &str) -> String {
    let infile = keys.with_extension(format!("{name}.plain"));
    std::fs::write(&infile, plaintext).unwrap();
    let out = Command::new(sluice_bin())
        .args(["encrypt", "--project", project, "--secret-name", name])
        .args(["--field-name", field, "--keys-dir"])
        .arg(keys)
        .arg("--infile")
        .arg(&infile)
        .output()
        .unwrap();
    std::fs::remove_file(&infile).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Setup {
    scratch: tempfile::TempDir,
    node: Node,
    config: GitRepo,
    project: GitRepo,
    keys: PathBuf,
}

fn setup(exposure: &str, playbook: &str) -> Setup {
    let scratch = tempfile::tempdir().unwrap();
    let keys = scratch.path().join("keys");
    let node = Node::start();
    let config = config_project(scratch.path());
    let short = encrypt(&keys, "org/demo", "db", "password", SHORT);
    let long = encrypt(&keys, "org/demo", "big", "value", &long_secret());
    assert_eq!(
        short.matches("!encrypted/pkcs1-oaep ").count(),
        1,
        "{short}"
    );
    assert_eq!(long.matches("\n        - ").count(), 3, "{long}");
    let project = GitRepo::init(&scratch.path().join("org/demo"), "main");
    let jobs = format!(
        "{short}{long}- job:\n    name: secretive\n    secret-exposure: {exposure}\n    secrets:\n      - db\n      - name: blob\n        secret: big\n    run: playbooks/run.yaml\n- job:\n    name: other-playbook\n    run: playbooks/plain.yaml\n"
    );
    project
        .write(".zuul.yaml", &jobs)
        .write("playbooks/run.yaml", playbook)
        .write(
            "playbooks/plain.yaml",
            "- hosts: localhost\n  tasks:\n    - zuul_return: {data: {db_defined: \"{{ db is defined }}\"}}\n",
        );
    project.commit("Secrets");
    Setup {
        scratch,
        node,
        config,
        project,
        keys,
    }
}

fn args(s: &Setup) -> Vec<String> {
    vec![
        format!("--project={}", s.project.path.display()),
        format!("--config-project=config={}", s.config.path.display()),
        format!("--nodes={}", s.node.nodes_file().display()),
        format!("--ssh-key={}", s.node.key().display()),
        format!("--keys-dir={}", s.keys.display()),
    ]
}

const PLAYBOOK: &str = r#"- hosts: localhost
  tasks:
    - name: Check the secrets arrived
      zuul_return:
        data:
          short_ok: "{{ db.password[::-1] == 'terces-trohs-2retnuh' }}"
          long_length: "{{ blob.value | length }}"
          long_ok: "{{ blob.value.startswith('long-000-secret-part|') and blob.value.endswith('long-059-secret-part|') }}"
    - name: Leak it in a no_log task
      command: "echo no-log {{ db.password }}"
      no_log: true
    - name: Leak it
      debug:
        msg: "the password is {{ db.password }}"
    - name: Scan me now
      command: sleep 6
"#;

/// Pids of `root` and its descendants.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        out.extend(children.get(&out[i]).cloned().unwrap_or_default());
        i += 1;
    }
    out
}

fn files_containing(dir: &Path, needle: &[u8], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            files_containing(&path, needle, out);
        } else if kind.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(path);
                }
            }
        }
    }
}

/// Open regular files (on disk) of the build's processes that contain `needle`.
fn open_files_containing(pids: &[u32], needle: &[u8]) -> (Vec<PathBuf>, usize) {
    let mut hits = Vec::new();
    let mut seen = HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            // Pipes, sockets and anonymous files are not on disk.
            if !target.is_absolute() || !target.is_file() || !seen.insert(target.clone()) {
                continue;
            }
            if let Ok(bytes) = std::fs::read(&target) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(target);
                }
            }
        }
    }
    let scanned = seen.len();
    (hits, scanned)
}

/// A boolean as zuul_return hands it back (ansible-core 2.18 templates to "True", 2.19 to true).
fn is(v: &serde_json::Value, expected: bool) -> bool {
    v.as_bool() == Some(expected) || v.as_str() == Some(if expected { "True" } else { "False" })
}

#[test]
fn secrets_decrypt_in_memory_only_and_are_redacted() {
    let s = setup("redact", PLAYBOOK);
    let a = args(&s);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (mut cmd, result) = job_command(s.scratch.path(), "secretive", &a);
    let child = cmd.spawn().unwrap();
    let scanning = wait_for(Duration::from_secs(120), || {
        build_dir(s.scratch.path())
            .and_then(|d| std::fs::read_to_string(d.join("work/logs/job-output.txt")).ok())
            .is_some_and(|t| t.contains("TASK [Scan me now]"))
    });
    assert!(scanning, "the playbook never reached the scan task");
    let build = build_dir(s.scratch.path()).unwrap();
    // While Ansible runs with the secrets loaded: nothing on disk holds them.
    let mut on_disk = Vec::new();
    files_containing(&build, SHORT.as_bytes(), &mut on_disk);
    files_containing(&build, b"long-030-secret-part", &mut on_disk);
    assert_eq!(on_disk, Vec::<PathBuf>::new(), "secret in the build dir");
    let pids = descendants(child.id());
    assert!(
        pids.len() > 3,
        "expected ansible processes under sluice: {pids:?}"
    );
    let (open_hits, scanned) = open_files_containing(&pids, SHORT.as_bytes());
    assert_eq!(open_hits, Vec::<PathBuf>::new(), "secret in an open file");
    assert!(scanned > 0, "no open files scanned");
    // The mount points exist on the host, empty.
    let group_vars = build.join("ansible/playbook_0/group_vars");
    assert_eq!(std::fs::read_dir(&group_vars).unwrap().count(), 0);

    let run = wait_job(child, &result);
    assert_eq!(
        run.result["result"], "SUCCESS",
        "{}\n{}",
        run.result, run.stdout
    );
    assert!(is(&run.result["data"]["short_ok"], true), "{}", run.result);
    assert!(is(&run.result["data"]["long_ok"], true), "{}", run.result);
    let length = run.result["data"]["long_length"].to_string();
    assert_eq!(
        length.trim_matches('"'),
        long_secret().len().to_string(),
        "{}",
        run.result
    );
    let output = run.job_output();
    assert!(
        output.contains("[Zuul] Secret detected in output"),
        "{output}"
    );
    assert!(!output.contains(SHORT), "{output}");
    assert!(!run.stdout.contains(SHORT));
    let logs = Path::new(run.result["log_dir"].as_str().unwrap());
    let json = std::fs::read_to_string(logs.join("job-output.json")).unwrap();
    assert!(!json.contains(SHORT), "{json}");
    assert!(!json.contains("no-log"), "no_log output in job-output.json");
    assert!(
        !output.contains("no-log"),
        "no_log output in job-output.txt"
    );
}

#[test]
fn secret_exposure_fail_ends_the_build_with_secret_exposure() {
    let playbook =
        "- hosts: localhost\n  tasks:\n    - debug:\n        msg: \"{{ db.password }}\"\n";
    let s = setup("fail", playbook);
    let a = args(&s);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let run = run_job(s.scratch.path(), "secretive", &a);
    assert_eq!(
        run.result["result"], "SECRET_EXPOSURE",
        "{}\n{}",
        run.result, run.stdout
    );
    assert!(!run.job_output().contains(SHORT));
}

#[test]
fn secrets_reach_only_the_playbooks_of_jobs_that_name_them() {
    let s = setup("redact", PLAYBOOK);
    let a = args(&s);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let run = run_job(s.scratch.path(), "other-playbook", &a);
    assert_eq!(
        run.result["result"], "SUCCESS",
        "{}\n{}",
        run.result, run.stdout
    );
    assert!(
        is(&run.result["data"]["db_defined"], false),
        "{}",
        run.result
    );
}

#[test]
fn an_untrusted_job_naming_another_projects_secret_is_a_config_error() {
    let scratch = tempfile::tempdir().unwrap();
    let keys = scratch.path().join("keys");
    let node = Node::start();
    let config = config_project(scratch.path());
    let site = encrypt(&keys, "config", "site", "token", "site-token-value");
    let base = std::fs::read_to_string(config.path.join("zuul.yaml")).unwrap();
    config.write("zuul.yaml", &format!("{base}{site}"));
    config.commit("Site secret");
    let project = GitRepo::init(&scratch.path().join("org/demo"), "main");
    project
        .write(
            ".zuul.yaml",
            "- job:\n    name: thief\n    secrets: [site]\n    run: playbooks/run.yaml\n",
        )
        .write(
            "playbooks/run.yaml",
            "- hosts: localhost\n  tasks:\n    - debug: {msg: \"{{ site.token }}\"}\n",
        );
    project.commit("Steal");
    let a = [
        format!("--project={}", project.path.display()),
        format!("--config-project=config={}", config.path.display()),
        format!("--nodes={}", node.nodes_file().display()),
        format!("--ssh-key={}", node.key().display()),
        format!("--keys-dir={}", keys.display()),
    ];
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let run: JobRun = run_job(scratch.path(), "thief", &a);
    assert_eq!(
        run.result["result"], "ERROR",
        "{}\n{}",
        run.result, run.stderr
    );
    let detail = run.result["error_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("secret \"site\"")
            && detail.contains("may only be used by jobs of that project"),
        "{detail}"
    );
    assert!(!run.stdout.contains("site-token-value"));
}

#[test]
fn a_value_encrypted_with_another_projects_key_is_an_error_naming_the_secret() {
    let scratch = tempfile::tempdir().unwrap();
    let keys = scratch.path().join("keys");
    let node = Node::start();
    let config = config_project(scratch.path());
    // Encrypted for org/other, pasted into org/demo.
    let foreign = encrypt(&keys, "org/other", "db", "password", SHORT);
    encrypt(&keys, "org/demo", "unused", "x", "x");
    let project = GitRepo::init(&scratch.path().join("org/demo"), "main");
    project
        .write(
            ".zuul.yaml",
            &format!("{foreign}- job:\n    name: secretive\n    secrets: [db]\n    run: playbooks/run.yaml\n"),
        )
        .write("playbooks/run.yaml", "- hosts: localhost\n  tasks:\n    - debug: {msg: ran}\n");
    project.commit("Foreign secret");
    let a = [
        format!("--project={}", project.path.display()),
        format!("--config-project=config={}", config.path.display()),
        format!("--nodes={}", node.nodes_file().display()),
        format!("--ssh-key={}", node.key().display()),
        format!("--keys-dir={}", keys.display()),
    ];
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let run = run_job(scratch.path(), "secretive", &a);
    assert_eq!(
        run.result["result"], "ERROR",
        "{}\n{}",
        run.result, run.stdout
    );
    let detail = run.result["error_detail"].as_str().unwrap_or_default();
    assert_eq!(
        detail,
        "secret db of localhost/org/demo: block 1 does not decrypt with the project's key"
    );
    assert!(
        !run.job_output().contains("RUN START"),
        "{}",
        run.job_output()
    );
}
