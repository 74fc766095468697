//! The restricted module set end to end: the hostile corpus in `tests/restricted/project` runs
//! as an untrusted job through `sluice job run` on every supported ansible-core version, and
//! untrusted repositories shipping Ansible plugins are refused before Ansible starts.
//!
//! Every corpus task is named `DENY <case> | <error>` (must fail with that error) or
//! `ALLOW <case>` (must succeed); results come from job-output.json. A canary file with a random
//! token sits outside the work dir but inside the sandbox (in the installation's plugin root,
//! which the sandbox mounts read-only): its token must appear in no output and the file must stay
//! unchanged, and no file the corpus tries to plant outside the work dir may exist afterwards. A
//! trusted parent pre-run doing what the corpus may not (raw, a pipe lookup) must still work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_tests::{build_dir, config_project, repo_root, run_job, GitRepo, JobRun, Node};

const CORPUS_JOB: &str = "- job:\n    name: corpus\n    parent: corpus-base\n    run:\n      - playbooks/hostile.yaml\n      - playbooks/overrides.yaml\n";

/// A trusted playbook using what the restricted set refuses (raw and a pipe lookup on localhost).
const TRUSTED_PRE: &str = "- hosts: localhost\n  tasks:\n    - raw: echo trusted-raw-ran\n    - debug:\n        msg: \"{{ lookup('pipe', 'echo trusted-pipe-ran') }}\"\n";

/// The state dir the `sluice` binary uses (same rule as the CLI).
fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/state")
        });
    base.join("sluice")
}

/// A file with a random token, removed on drop.
struct Canary {
    path: PathBuf,
    token: String,
}

impl Canary {
    fn plant(dir: &Path) -> Canary {
        std::fs::create_dir_all(dir).unwrap();
        let token = format!(
            "token-{:x}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        // The name differs from the token: error messages may name the path, never the content.
        let path = dir.join(format!("sluice-canary-{}.txt", std::process::id()));
        std::fs::write(&path, format!("{token}\n")).unwrap();
        Canary { path, token }
    }

    fn assert_untouched(&self) {
        let now = std::fs::read_to_string(&self.path).expect("canary still there");
        assert_eq!(now, format!("{}\n", self.token), "canary changed");
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn symlink(repo: &GitRepo, rel: &str, target: &Path) {
    let link = repo.path.join(rel);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// The corpus project: the checked-in files plus symlinks that point at the canary.
fn corpus_project(root: &Path, canary: &Path) -> GitRepo {
    let repo = GitRepo::init(&root.join("org/corpus"), "main");
    copy_tree(&repo_root().join("tests/restricted/project"), &repo.path);
    repo.write(".zuul.yaml", CORPUS_JOB);
    let pb = "playbooks";
    symlink(&repo, &format!("{pb}/files/evil_link"), canary);
    symlink(&repo, &format!("{pb}/templates/evil_link"), canary);
    symlink(&repo, &format!("{pb}/vars/evil_link.yaml"), canary);
    repo.write(&format!("{pb}/files/evil_dir/ok.txt"), "ok\n");
    symlink(&repo, &format!("{pb}/files/evil_dir/link"), canary);
    repo.write(&format!("{pb}/files/evil_fragments/a"), "a\n");
    symlink(&repo, &format!("{pb}/files/evil_fragments/b"), canary);
    repo.commit("Hostile corpus");
    repo
}

/// Task name → (host → result) for every task of job-output.json.
fn task_results(run: &JobRun) -> BTreeMap<String, Vec<Value>> {
    let dir = run.result["log_dir"].as_str().unwrap_or_default();
    let text = std::fs::read_to_string(Path::new(dir).join("job-output.json"))
        .unwrap_or_else(|e| panic!("job-output.json: {e}\n{}", run.stdout));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for playbook in doc.as_array().unwrap() {
        for play in playbook["plays"].as_array().unwrap() {
            for task in play["tasks"].as_array().unwrap() {
                let name = task["task"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let hosts = task["hosts"].as_object().cloned().unwrap_or_default();
                out.entry(name).or_default().extend(hosts.into_values());
            }
        }
    }
    out
}

fn failed(result: &Value) -> bool {
    result["failed"].as_bool() == Some(true)
        || result["results"]
            .as_array()
            .is_some_and(|items| items.iter().any(failed))
}

fn messages(result: &Value) -> String {
    let mut out = result["msg"].as_str().unwrap_or_default().to_string();
    // include_vars reports its error as `message`.
    out.push_str(result["message"].as_str().unwrap_or_default());
    if let Some(items) = result["results"].as_array() {
        for item in items {
            out.push_str(&messages(item));
        }
    }
    out
}

/// Checks every DENY/ALLOW task; returns how many cases there were.
fn check_cases(run: &JobRun, corpus_files: &[&str], work: &Path) -> usize {
    let results = task_results(run);
    let mut problems = Vec::new();
    let mut cases = 0;
    let mut names = Vec::new();
    for file in corpus_files {
        let text = std::fs::read_to_string(
            repo_root()
                .join("tests/restricted/project/playbooks")
                .join(file),
        )
        .unwrap();
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("- name: \"") else {
                continue;
            };
            let name = rest.trim_end_matches('"').to_string();
            if name.starts_with("DENY ") || name.starts_with("ALLOW ") {
                names.push(name);
            }
        }
    }
    for name in names {
        cases += 1;
        let Some(hosts) = results.get(&name) else {
            problems.push(format!("{name}: did not run"));
            continue;
        };
        if hosts.is_empty() {
            problems.push(format!("{name}: no host result"));
            continue;
        }
        for result in hosts {
            if name.starts_with("ALLOW ") {
                if failed(result) {
                    problems.push(format!("{name}: failed: {}", messages(result)));
                }
                continue;
            }
            let expected = name
                .split_once(" | ")
                .map(|(_, e)| e.replace("<workdir>", &work.display().to_string()))
                .unwrap_or_default();
            if !failed(result) {
                problems.push(format!("{name}: was not refused: {result}"));
            } else if !messages(result).contains(&expected) {
                problems.push(format!("{name}: wrong error: {}", messages(result)));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {cases} cases wrong:\n{}\n\nstdout:\n{}",
        problems.len(),
        problems.join("\n"),
        run.stdout
    );
    cases
}

/// Files the corpus tries to plant outside the work dir.
fn planted(build: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![build.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.starts_with(build.join("work")) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("pwned") || name.starts_with("stolen") {
                found.push(path.clone());
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            }
        }
    }
    found
}

fn run_corpus(version: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let node = Node::start();
    let canary = Canary::plant(&state_dir().join("ansible").join(version));
    let config = config_project(scratch.path());
    // A trusted parent whose pre-run does what untrusted playbooks may not: it must still work.
    let base = std::fs::read_to_string(config.path.join("zuul.yaml")).unwrap();
    config
        .write(
            "zuul.yaml",
            &format!("{base}- job:\n    name: corpus-base\n    parent: base\n    pre-run: playbooks/unrestricted.yaml\n"),
        )
        .write("playbooks/unrestricted.yaml", TRUSTED_PRE);
    config.commit("Trusted parent");
    let project = corpus_project(scratch.path(), &canary.path);
    let args = [
        format!("--project={}", project.path.display()),
        format!("--config-project=config={}", config.path.display()),
        format!("--nodes={}", node.nodes_file().display()),
        format!("--ssh-key={}", node.key().display()),
        format!("--ansible-version={version}"),
        format!("--var=canary={}", canary.path.display()),
        "--keep-jobdir".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_job(scratch.path(), "corpus", &args);
    let build = build_dir(scratch.path()).expect("build dir kept");
    let cases = check_cases(
        &run,
        &["hostile.yaml", "overrides.yaml"],
        &build.join("work"),
    );
    assert!(cases >= 120, "only {cases} cases");
    assert_eq!(
        run.result["result"], "SUCCESS",
        "{}\n{}",
        run.result, run.stdout
    );
    assert_eq!(run.result["data"]["corpus"], "ran", "{}", run.result);

    let output = run.job_output();
    assert!(output.contains("trusted-raw-ran"), "{output}");
    assert!(output.contains("trusted-pipe-ran"), "{output}");
    canary.assert_untouched();
    let logs = Path::new(run.result["log_dir"].as_str().unwrap());
    for file in ["job-output.txt", "job-output.json"] {
        let text = std::fs::read_to_string(logs.join(file)).unwrap();
        assert!(!text.contains(&canary.token), "canary token in {file}");
    }
    let results = std::fs::read_to_string(build.join("work/results.json")).unwrap_or_default();
    assert!(
        !results.contains(&canary.token),
        "canary token in results.json"
    );
    assert!(
        !run.stdout.contains(&canary.token),
        "canary token on stdout"
    );
    assert_eq!(
        planted(&build),
        Vec::<PathBuf>::new(),
        "files planted outside the work dir"
    );
    // The allowed twins did their work.
    assert_eq!(
        std::fs::read_to_string(build.join("work/patchme.txt")).unwrap(),
        "new\n"
    );
    assert!(build.join("work/good-template.txt").is_file());
    assert!(build.join("work/synced/hostname").is_file());
}

#[test]
fn hostile_corpus_is_refused_and_good_twins_pass_on_ansible_2_18() {
    run_corpus("2.18");
}

#[test]
fn hostile_corpus_is_refused_and_good_twins_pass_on_ansible_2_19() {
    run_corpus("2.19");
}

fn plugin_dir_build(
    files: &[(&str, &str)],
    extra_required: Option<&GitRepo>,
    root: &Path,
) -> JobRun {
    let node = Node::start();
    let config = config_project(root);
    let repo = GitRepo::init(&root.join("org/plugins"), "main");
    for (path, content) in files {
        repo.write(path, content);
    }
    repo.commit("Plugins");
    let mut args = vec![
        format!("--project={}", repo.path.display()),
        format!("--config-project=config={}", config.path.display()),
        format!("--nodes={}", node.nodes_file().display()),
        format!("--ssh-key={}", node.key().display()),
    ];
    if let Some(extra) = extra_required {
        args.push(format!("--required-project={}", extra.path.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_job(root, "plugins", &args)
}

#[test]
fn plugin_dir_next_to_an_untrusted_playbook_is_an_error_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    let run = plugin_dir_build(
        &[
            (".zuul.yaml", "- job:\n    name: plugins\n    run: playbooks/run.yaml\n"),
            ("playbooks/run.yaml", "- hosts: localhost\n  tasks:\n    - debug: {msg: '{{ 1 | pwn }}'}\n"),
            (
                "playbooks/filter_plugins/pwn.py",
                "class FilterModule:\n    def filters(self):\n        return {'pwn': lambda x: open('/etc/passwd').read()}\n",
            ),
        ],
        None,
        scratch.path(),
    );
    assert_eq!(
        run.result["result"], "ERROR",
        "{}\n{}",
        run.result, run.stdout
    );
    let detail = run.result["error_detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("Ansible plugin dir ")
            && detail.contains("/playbooks/filter_plugins found adjacent to playbook ")
            && detail.ends_with("/playbooks/run.yaml in non-trusted repo."),
        "{detail}"
    );
    assert!(
        !run.job_output().contains("root:x:0"),
        "{}",
        run.job_output()
    );
}

#[test]
fn plugin_dir_in_an_untrusted_role_is_an_error_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    let role = GitRepo::init(&scratch.path().join("org/evil-role"), "main");
    role.write("tasks/main.yaml", "- debug: {msg: hi}\n")
        .write("action_plugins/debug.py", "raise SystemExit('pwned')\n");
    role.commit("Role");
    let run = plugin_dir_build(
        &[
            (
                ".zuul.yaml",
                "- job:\n    name: plugins\n    roles:\n      - zuul: org/evil-role\n    run: playbooks/run.yaml\n",
            ),
            ("playbooks/run.yaml", "- hosts: localhost\n  roles: [evil-role]\n"),
        ],
        Some(&role),
        scratch.path(),
    );
    assert_eq!(
        run.result["result"], "ERROR",
        "{}\n{}",
        run.result, run.stdout
    );
    let detail = run.result["error_detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("Ansible plugin dir ")
            && detail.contains("org/evil-role/action_plugins found adjacent to playbook "),
        "{detail}"
    );
}
