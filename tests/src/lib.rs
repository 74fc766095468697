//! Harness for Sluice's integration tests: a real sshd on loopback with a throwaway key, git
//! repository fixtures made with the real `git`, a runner for the `sluice` binary, and a real
//! PostgreSQL server in a temp dir (`postgres.rs`).
//!
//! [`scenario`] sets up `sluice serve` end-to-end tests (repositories, tenant, config file).
//!
//! Nothing here stands in for a real component: a missing tool makes the test fail with a
//! message saying how to install it.

pub mod fake_github;
pub mod scenario;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod postgres;
pub use postgres::Postgres;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `sluice` binary built next to this test binary.
pub fn sluice_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/sluice
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is under target/<profile>/deps");
    let bin = profile_dir.join("sluice");
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build --workspace`",
        bin.display()
    );
    bin
}

/// Fails with install advice when a tool is missing.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file();
    assert!(
        found,
        "{tool} not found: install it with `apt-get install {package}`"
    );
}

/// A real sshd on 127.0.0.1 with its own keys, stopped on drop.
pub struct Node {
    dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
}

impl Node {
    /// Starts one (`tests/node/sshd-node`).
    pub fn start() -> Node {
        require_tool("sshd", "openssh-server");
        require_tool("ssh-agent", "openssh-client");
        let dir = tempfile::Builder::new()
            .prefix("sluice-node-")
            .tempdir()
            .expect("tempdir");
        let out = Command::new(repo_root().join("tests/node/sshd-node"))
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("run tests/node/sshd-node");
        assert!(
            out.status.success(),
            "sshd-node failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("sshd-node prints the port");
        Node { dir, port }
    }

    /// The Nodepool-style nodes file (label `ubuntu-noble`).
    pub fn nodes_file(&self) -> PathBuf {
        self.dir.path().join("nodes.yaml")
    }

    /// The executor's private key for it.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("tests/node/sshd-node"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A git repository made with the real `git`.
pub struct GitRepo {
    /// Its work tree.
    pub path: PathBuf,
}

impl GitRepo {
    /// `git init -b <branch>` at `path`.
    pub fn init(path: &Path, branch: &str) -> GitRepo {
        require_tool("git", "git");
        std::fs::create_dir_all(path).expect("create repo dir");
        let repo = GitRepo {
            path: path.to_path_buf(),
        };
        repo.git(&["init", "-q", "-b", branch]);
        repo
    }

    /// Runs git in the repository and returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.path)
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a file (parents created).
    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let path = self.path.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(path, content).expect("write file");
        self
    }

    /// Commits everything.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// A push from a fresh clone: clones `bare` into `work` (whatever was there goes), commits
    /// `files` with `message` on the clone's default branch and runs `git push -q origin`
    /// with `push` (options and refspec, e.g. `["HEAD:refs/heads/main"]`); returns the commit.
    pub fn push_commit(
        bare: &Path,
        work: &Path,
        message: &str,
        files: &[(&str, &str)],
        push: &[&str],
    ) -> String {
        let _ = std::fs::remove_dir_all(work);
        if let Some(parent) = work.parent() {
            std::fs::create_dir_all(parent).expect("create the clone's parent");
        }
        let out = Command::new("git")
            .args(["clone", "-q"])
            .arg(bare)
            .arg(work)
            .output()
            .expect("run git clone");
        assert!(
            out.status.success(),
            "git clone {}: {}",
            bare.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let repo = GitRepo {
            path: work.to_path_buf(),
        };
        for (path, content) in files {
            repo.write(path, content);
        }
        let sha = repo.commit(message);
        let mut args = vec!["push", "-q", "origin"];
        args.extend_from_slice(push);
        repo.git(&args);
        sha
    }
}

/// A config-project with a base job whose pre-run starts the node console and whose post-run
/// collects a log file from the node with `synchronize`, as Zuul base jobs do.
pub fn config_project(root: &Path) -> GitRepo {
    let repo = GitRepo::init(&root.join("config"), "main");
    repo.write(
        "zuul.yaml",
        "- job:\n    name: base\n    parent: null\n    pre-run: playbooks/base/pre.yaml\n    post-run: playbooks/base/post.yaml\n    nodeset:\n      nodes:\n        - name: node\n          label: ubuntu-noble\n",
    )
    .write(
        "playbooks/base/pre.yaml",
        "- hosts: all\n  tasks:\n    - name: Start zuul_console daemon\n      zuul_console:\n        port: \"{{ lookup('env', 'ZUUL_CONSOLE_PORT') | default(19885, true) | int }}\"\n",
    )
    .write(
        "playbooks/base/post.yaml",
        "- hosts: all\n  tasks:\n    - name: Note the end\n      debug:\n        msg: post-run ran\n    - name: Collect the node's logs\n      synchronize:\n        mode: pull\n        src: /etc/debian_version\n        dest: \"{{ zuul.executor.log_root }}/{{ inventory_hostname }}/\"\n",
    );
    repo.commit("Base job");
    repo
}

/// How a `sluice job run` went.
#[derive(Debug)]
pub struct JobRun {
    /// Exit status.
    pub status: std::process::ExitStatus,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
    /// The `--result-json` document.
    pub result: serde_json::Value,
}

impl JobRun {
    /// The `RESULT:` of the last stdout line.
    pub fn result_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    /// The build's job-output.txt.
    pub fn job_output(&self) -> String {
        let dir = self.result["log_dir"].as_str().unwrap_or_default();
        std::fs::read_to_string(Path::new(dir).join("job-output.txt")).unwrap_or_default()
    }
}

/// Builds the `sluice job run` command with a result file in `scratch`.
pub fn job_command(scratch: &Path, job: &str, args: &[&str]) -> (Command, PathBuf) {
    let result = scratch.join(format!("result-{}.json", uuid_like()));
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("job")
        .arg("run")
        .arg(job)
        .args(args)
        .arg("--work-root")
        .arg(scratch.join("builds"))
        .arg("--result-json")
        .arg(&result)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (cmd, result)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs `sluice job run` to the end.
pub fn run_job(scratch: &Path, job: &str, args: &[&str]) -> JobRun {
    let (mut cmd, result) = job_command(scratch, job, args);
    let out: Output = cmd.output().expect("run sluice");
    finish(out, &result)
}

/// Collects a finished run.
pub fn finish(out: Output, result: &Path) -> JobRun {
    let text = std::fs::read_to_string(result).unwrap_or_else(|_| "null".into());
    JobRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        result: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    }
}

/// Waits for `pred` on a running child's file, failing the test after `limit`.
pub fn wait_for(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The only build dir under `<scratch>/builds`, once it exists.
pub fn build_dir(scratch: &Path) -> Option<PathBuf> {
    std::fs::read_dir(scratch.join("builds"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

/// The job-output.txt of the only build under `<scratch>/builds`, as far as it is written.
pub fn live_output(scratch: &Path) -> String {
    build_dir(scratch)
        .and_then(|d| std::fs::read_to_string(d.join("work/logs/job-output.txt")).ok())
        .unwrap_or_default()
}

/// Waits for a spawned `sluice job run` and collects it like [`run_job`].
pub fn wait_job(mut child: Child, result: &Path) -> JobRun {
    let (stdout, stderr) = drain(&mut child);
    let status = child.wait().expect("wait for sluice");
    finish(
        Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        },
        result,
    )
}

/// Reads a running child's remaining output.
pub fn drain(child: &mut Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (out, err)
}
