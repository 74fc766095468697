//! Scenarios for `sluice serve` end-to-end tests: a scratch directory with an sshd node, a
//! config-project holding the pipelines and a base job, untrusted projects as bare
//! repositories under `repos/`, the tenant file and the `sluice serve` configuration; helpers
//! to push review branches and branch updates with the real `git`, approve changes, start the
//! `sluice` processes and read the records through `sluice change history` (Zuul's record
//! shapes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{sluice_bin, wait_for, GitRepo, Node};

/// The config-project's base job: a pre-run starting the console daemon, one node.
pub const BASE_JOB: &str = "- job:\n    name: base\n    parent: null\n    pre-run: playbooks/base/pre.yaml\n    nodeset:\n      nodes:\n        - name: node\n          label: ubuntu-noble\n";
/// The base job's pre-run playbook.
pub const BASE_PRE: &str = "- hosts: all\n  tasks:\n    - name: Start zuul_console daemon\n      zuul_console:\n        port: \"{{ lookup('env', 'ZUUL_CONSOLE_PORT') | default(19885, true) | int }}\"\n";
/// An independent `check` pipeline triggered by new patchsets.
pub const CHECK: &str = "- pipeline:\n    name: check\n    manager: independent\n    trigger:\n      git:\n        - event: patchset-created\n";
/// A dependent `gate` pipeline triggered by approvals, merging on success.
pub const GATE: &str = "- pipeline:\n    name: gate\n    manager: dependent\n    trigger:\n      git:\n        - event: change-approved\n    success:\n      git:\n        merge: true\n    failure:\n      git: {}\n";

/// A scratch setup: node, repositories under `repos/`, tenant and config file.
pub struct Setup {
    scratch: tempfile::TempDir,
    _node: Node,
    /// The `sluice serve` configuration file.
    pub config: PathBuf,
}

impl Setup {
    /// `pipelines` go into the config-project; `projects` are `(name, files)` untrusted projects.
    pub fn new(pipelines: &str, projects: &[(&str, &[(&str, &str)])], lease_seconds: u64) -> Setup {
        Setup::with_executor(pipelines, projects, lease_seconds, "")
    }

    /// Like [`Setup::new`], with `executor_yaml` (lines indented by two spaces) appended to the
    /// config file's `executor` section.
    pub fn with_executor(
        pipelines: &str,
        projects: &[(&str, &[(&str, &str)])],
        lease_seconds: u64,
        executor_yaml: &str,
    ) -> Setup {
        let scratch = tempfile::tempdir().unwrap();
        let node = Node::start();
        let root = scratch.path();
        let mut files: Vec<(&str, String)> = vec![
            ("zuul.yaml", format!("{pipelines}{BASE_JOB}")),
            ("playbooks/base/pre.yaml", BASE_PRE.to_string()),
        ];
        bare_repo(root, "sluice/config", &mut files);
        let mut untrusted = String::new();
        for (name, project_files) in projects {
            let mut files: Vec<(&str, String)> = project_files
                .iter()
                .map(|(p, c)| (*p, c.to_string()))
                .collect();
            bare_repo(root, name, &mut files);
            untrusted.push_str(&format!("          - {name}\n"));
        }
        std::fs::write(
            root.join("main.yaml"),
            format!("- tenant:\n    name: t\n    source:\n      git:\n        config-projects:\n          - sluice/config\n        untrusted-projects:\n{untrusted}"),
        )
        .unwrap();
        let config = root.join("sluice.yaml");
        // The disk is shared with other work: the governor's free-space floor (tested in
        // tests/executors.rs) must not hold back the builds of every other test.
        let governor = if executor_yaml.contains("governor:") {
            ""
        } else {
            "  governor:\n    min-avail-hdd: 0\n"
        };
        std::fs::write(
            &config,
            format!(
                "tenant-config: main.yaml\nstate-dir: state\ntick-seconds: 0.2\nconnections:\n  - name: git\n    driver: git\n    root: repos\n    poll-seconds: 0.3\nexecutor:\n  workers: 4\n  nodes: {}\n  ssh-key: {}\n  lease-seconds: {lease_seconds}\n{executor_yaml}{governor}",
                node.nodes_file().display(),
                node.key().display()
            ),
        )
        .unwrap();
        Setup {
            scratch,
            _node: node,
            config,
        }
    }

    /// The scratch directory.
    pub fn root(&self) -> &Path {
        self.scratch.path()
    }

    /// Points the configuration at another store (`database:`).
    pub fn use_database(&self, url: &str) {
        let mut text = std::fs::read_to_string(&self.config).expect("read the config");
        text.push_str(&format!("database: {url}\n"));
        std::fs::write(&self.config, text).expect("write the config");
    }

    /// The bare repository of `project`.
    pub fn bare(&self, project: &str) -> PathBuf {
        self.root().join("repos").join(format!("{project}.git"))
    }

    /// Starts `sluice serve`; its output goes to `serve-<n>.log`.
    pub fn serve(&self, n: u32) -> Serve {
        self.start("serve", &format!("serve-{n}"))
    }

    /// Starts `sluice <command>` (serve, scheduler, executor); output goes to `<name>.log`.
    pub fn start(&self, command: &str, name: &str) -> Serve {
        self.start_with(command, name, &[])
    }

    pub fn start_with(&self, command: &str, name: &str, extra: &[&str]) -> Serve {
        self.start_with_config(command, name, &self.config, extra)
    }

    /// Starts `sluice <command> --config <config>`: another configuration file on the same
    /// store and repositories (e.g. an executor with other settings).
    pub fn start_with_config(
        &self,
        command: &str,
        name: &str,
        config: &Path,
        extra: &[&str],
    ) -> Serve {
        let log = self.root().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(sluice_bin())
            .arg(command)
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start sluice serve");
        Serve { child, log }
    }

    /// Clones `project`, commits `files` with `message` on top of `main` and pushes the result
    /// as `review/main/<topic>`; returns the commit.
    pub fn push_change(
        &self,
        project: &str,
        topic: &str,
        message: &str,
        files: &[(&str, &str)],
    ) -> String {
        let work = self.root().join("work").join(project).join(topic);
        let refspec = format!("HEAD:refs/heads/review/main/{topic}");
        GitRepo::push_commit(&self.bare(project), &work, message, files, &[&refspec])
    }

    /// Writes `n` changes at once into `project`'s bare repository: review branches
    /// `review/main/<prefix>NNNN`, each one commit on top of `main` touching `change.txt`
    /// (one `git fast-import`, so a long queue costs no clone or push per change).
    pub fn push_many_changes(&self, project: &str, prefix: &str, n: usize) {
        let mut stream = String::new();
        for i in 0..n {
            let message = format!("Change {prefix}{i}");
            let text = format!("change {prefix}{i}\n");
            stream.push_str(&format!(
                "commit refs/heads/review/main/{prefix}{i:04}\ncommitter t <t@t> {} +0000\ndata {}\n{message}\nfrom refs/heads/main^0\nM 100644 inline change.txt\ndata {}\n{text}\n",
                i + 1,
                message.len(),
                text.len()
            ));
        }
        let mut child = Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(self.bare(project))
            .stdin(Stdio::piped())
            .spawn()
            .expect("start git fast-import");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("fast-import stdin");
            stdin
                .write_all(stream.as_bytes())
                .expect("feed git fast-import");
        }
        assert!(
            child.wait().expect("git fast-import").success(),
            "git fast-import failed"
        );
    }

    /// Runs `sluice <args> --config <config>` and returns stdout (fails the test on error).
    pub fn sluice(&self, args: &[&str]) -> String {
        let out = Command::new(sluice_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sluice {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sluice change approve` for review branch `review/main/<topic>`.
    pub fn approve(&self, project: &str, topic: &str) {
        self.sluice(&[
            "change",
            "approve",
            project,
            &format!("review/main/{topic}"),
        ]);
    }

    /// `sluice change history` as JSON.
    pub fn history(&self) -> Value {
        serde_json::from_str(&self.sluice(&["change", "history", "--tenant", "t"])).unwrap()
    }

    /// `sluice change history` as JSON, or `Null` while the store does not exist yet.
    pub fn try_history(&self) -> Value {
        Command::new(sluice_bin())
            .args(["change", "history", "--tenant", "t", "--config"])
            .arg(&self.config)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| serde_json::from_slice(&out.stdout).ok())
            .unwrap_or(Value::Null)
    }

    /// Waits until every item with `topic` in `pipeline` is reported; returns the history.
    pub fn wait_reported(
        &self,
        serve: &Serve,
        pipeline: &str,
        topics: &[&str],
        limit: Duration,
    ) -> Value {
        let mut last = Value::Null;
        let done = wait_for(limit, || {
            last = self.history();
            topics.iter().all(|t| {
                items(&last, pipeline, t)
                    .iter()
                    .any(|i| i["state"] == "done")
            })
        });
        assert!(done, "not reported in time:\n{last:#}\n{}", serve.output());
        last
    }

    /// Subjects of the commits on `main`.
    pub fn branch_log(&self, project: &str) -> String {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(self.bare(project))
            .args(["log", "--format=%s", "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Clones `project`, commits `files` on top of `main` and pushes it straight to `main`
    /// (a ref update, not a change); returns the commit.
    pub fn push_branch(&self, project: &str, message: &str, files: &[(&str, &str)]) -> String {
        let work = self.root().join("work").join(project).join(format!(
            "main-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        GitRepo::push_commit(
            &self.bare(project),
            &work,
            message,
            files,
            &["HEAD:refs/heads/main"],
        )
    }

    /// Polls the history until `pred` holds; fails the test with the history and `serve`'s
    /// output after `limit`.
    pub fn wait_history(
        &self,
        serve: &Serve,
        limit: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let done = wait_for(limit, || {
            last = self.try_history();
            pred(&last)
        });
        assert!(
            done,
            "condition not reached in time:\n{last:#}\n{}",
            serve.output()
        );
        last
    }
}

/// A bare repository `repos/<name>.git` holding `files` in one commit on `main`.
pub fn bare_repo(root: &Path, name: &str, files: &mut [(&str, String)]) {
    let work = root.join("seed").join(name);
    let repo = GitRepo::init(&work, "main");
    for (path, content) in files.iter() {
        repo.write(path, content);
    }
    repo.commit(&format!("Import {name}"));
    let dest = root.join("repos").join(format!("{name}.git"));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `sluice serve`, SIGKILLed on drop.
pub struct Serve {
    /// The process.
    pub child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Serve {
    /// Everything it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Items of `pipeline` whose change is on review branch `topic`.
pub fn items<'a>(history: &'a Value, pipeline: &str, topic: &str) -> Vec<&'a Value> {
    let refname = format!("refs/heads/review/main/{topic}");
    history["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["pipeline"] == pipeline && i["refs"][0]["ref"] == refname.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The buildsets of the item with `item_id`, oldest first.
pub fn buildsets_of<'a>(history: &'a Value, item_id: &Value) -> Vec<&'a Value> {
    history["buildsets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|b| b["queue_item_uuid"] == *item_id)
                .collect()
        })
        .unwrap_or_default()
}

/// The job-output.txt of every build in `history`, for failure messages.
pub fn job_outputs(history: &Value) -> String {
    let mut out = String::new();
    for b in history["builds"].as_array().into_iter().flatten() {
        let dir = b["log_url"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("file://");
        let text =
            std::fs::read_to_string(Path::new(dir).join("job-output.txt")).unwrap_or_default();
        out.push_str(&format!(
            "==== {} {} {}\n{text}\n",
            b["job_name"], b["uuid"], b["result"]
        ));
    }
    out
}

/// The refs a buildset was tested on top of.
pub fn ahead_refs(buildset: &Value) -> Vec<String> {
    buildset["ahead"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["ref"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
