//! The GitHub driver end to end: the real `sluice serve` with its webhook endpoint, a fake
//! GitHub on loopback (`sluice_tests::fake_github`: GitHub's REST wire format over real bare
//! repositories with `refs/pull/N/head`), webhooks made from the real `@octokit/webhooks-examples`
//! payloads (`tests/fixtures/github/`) rewritten for the test repositories and signed, real
//! Ansible against a real sshd node. Nothing calls Sluice except through webhooks.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use serde_json::{json, Value};
use sluice_tests::fake_github::{FakeGithub, Fault, Pull, INSTALLATION};
use sluice_tests::scenario::{bare_repo, Serve, BASE_JOB, BASE_PRE};
use sluice_tests::{repo_root, sluice_bin, wait_for, GitRepo, Node};

const SECRET: &str = "webhook-s3cret";

const PIPELINES: &str = r#"- pipeline:
    name: check
    manager: independent
    trigger:
      github:
        - event: pull_request
          action: [opened, changed, reopened]
        - event: pull_request
          action: comment
          comment: (?i)^\s*recheck\s*$
    start:
      github:
        check: in_progress
        comment: false
    success:
      github:
        check: success
        status: success
    failure:
      github:
        check: failure
        status: failure
- pipeline:
    name: gate
    manager: dependent
    trigger:
      github:
        - event: pull_request
          action: labeled
          label: gate
    require:
      github:
        open: true
        review:
          - type: approved
    success:
      github:
        status: success
        merge: true
    failure:
      github:
        status: failure
"#;

const QUICK: &str = "- hosts: all\n  tasks:\n    - name: Test\n      debug:\n        msg: tested\n";

struct Github {
    root: tempfile::TempDir,
    _node: Node,
    fake: FakeGithub,
    config: PathBuf,
    web: u16,
    go_dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Github {
    fn new() -> Github {
        let root = tempfile::tempdir().unwrap();
        let node = Node::start();
        let r = root.path();
        let go_dir = r.join("go");
        std::fs::create_dir_all(&go_dir).unwrap();
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let pem = key.to_pkcs1_pem(LineEnding::LF).unwrap();
        std::fs::write(r.join("app.pem"), pem.as_bytes()).unwrap();
        let wait = format!(
            "- hosts: all\n  tasks:\n    - name: Wait for the test\n      shell: for i in $(seq 1 1200); do [ -e {}/go-{{{{ zuul.change }}}} ] && break; sleep 0.1; done\n",
            go_dir.display()
        );
        bare_repo(
            r,
            "sluice/config",
            &mut [
                ("zuul.yaml", format!("{PIPELINES}{BASE_JOB}")),
                ("playbooks/base/pre.yaml", BASE_PRE.to_string()),
            ],
        );
        bare_repo(
            r,
            "org/a",
            &mut [
                (".zuul.yaml", "- job:\n    name: a-test\n    run: playbooks/test.yaml\n- job:\n    name: a-gate\n    run: playbooks/wait.yaml\n- project:\n    merge-mode: squash-merge\n    queue: integrated\n    check:\n      jobs: [a-test]\n    gate:\n      jobs: [a-gate]\n".to_string()),
                ("playbooks/test.yaml", QUICK.to_string()),
                ("playbooks/wait.yaml", wait),
            ],
        );
        bare_repo(
            r,
            "org/b",
            &mut [(
                ".zuul.yaml",
                "- project:\n    queue: integrated\n    check:\n      jobs: [noop]\n    gate:\n      jobs: [noop]\n".to_string(),
            )],
        );
        std::fs::write(
            r.join("main.yaml"),
            "- tenant:\n    name: t\n    source:\n      github:\n        config-projects:\n          - sluice/config\n        untrusted-projects:\n          - org/a\n          - org/b\n",
        )
        .unwrap();
        let fake = FakeGithub::start(&r.join("repos"), key.to_public_key());
        let config = r.join("sluice.yaml");
        std::fs::write(
            &config,
            format!(
                "tenant-config: main.yaml\nstate-dir: state\ntick-seconds: 0.2\nweb:\n  root: https://sluice.example/\nconnections:\n  - name: github\n    driver: github\n    api-url: {}\n    app-id: 7\n    app-key: app.pem\n    webhook-secret: {SECRET}\nexecutor:\n  workers: 4\n  nodes: {}\n  ssh-key: {}\n",
                fake.url(),
                node.nodes_file().display(),
                node.key().display()
            ),
        )
        .unwrap();
        Github {
            root,
            _node: node,
            fake,
            config,
            web: free_port(),
            go_dir,
        }
    }

    fn serve(&self) -> Serve {
        let log = self.root.path().join("serve.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(sluice_bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--web-listen")
            .arg(format!("127.0.0.1:{}", self.web))
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start sluice serve");
        let serve = Serve { child, log };
        let up = wait_for(Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", self.web)).is_ok()
        });
        assert!(up, "web server not up:\n{}", serve.output());
        serve
    }

    fn bare(&self, repo: &str) -> PathBuf {
        self.root.path().join("repos").join(format!("{repo}.git"))
    }

    /// Commits `files` on top of `main` of `repo` (or on top of `parent`) and pushes the commit
    /// as `refs/pull/<number>/head`; returns it.
    fn push_pull_head(
        &self,
        repo: &str,
        number: i64,
        message: &str,
        files: &[(&str, &str)],
    ) -> String {
        let work = self
            .root
            .path()
            .join("work")
            .join(format!("{repo}-{number}-{}", files.len() + message.len()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.parent().unwrap()).unwrap();
        let out = Command::new("git")
            .args(["clone", "-q"])
            .arg(self.bare(repo))
            .arg(&work)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let g = GitRepo { path: work };
        for (p, c) in files {
            g.write(p, c);
        }
        let sha = g.commit(message);
        g.git(&[
            "push",
            "-q",
            "--force",
            "origin",
            &format!("HEAD:refs/pull/{number}/head"),
        ]);
        sha
    }

    fn open_pull(
        &self,
        repo: &str,
        number: i64,
        title: &str,
        body: &str,
        files: &[(&str, &str)],
    ) -> String {
        let head = self.push_pull_head(repo, number, title, files);
        self.fake.add_pull(Pull {
            repo: repo.into(),
            number,
            title: title.into(),
            body: body.into(),
            head: head.clone(),
            base: "main".into(),
            merged: false,
            closed: false,
            labels: vec![],
            reviews: vec![],
        });
        head
    }

    /// POSTs a webhook; returns the HTTP status.
    fn post(&self, event: &str, body: &[u8], signature: Option<String>) -> u16 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.web)).unwrap();
        let mut req = format!(
            "POST /api/connection/github/payload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Event: {event}\r\nX-GitHub-Delivery: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            uuid_like(),
            body.len()
        );
        if let Some(sig) = signature {
            req.push_str(&format!("X-Hub-Signature-256: {sig}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Sends the fixture `name` for `event`, rewritten for pull request `number` of `repo`.
    fn webhook(
        &self,
        event: &str,
        name: &str,
        repo: &str,
        number: i64,
        edit: impl FnOnce(&mut Value),
    ) -> u16 {
        let mut doc = fixture(name);
        let (org, short) = repo.split_once('/').unwrap();
        doc["repository"]["full_name"] = json!(repo);
        doc["repository"]["name"] = json!(short);
        doc["repository"]["owner"]["login"] = json!(org);
        doc["installation"] = json!({"id": INSTALLATION, "node_id": "x"});
        doc["sender"]["login"] = json!("alice");
        if let Some(pr) = self.fake.pull(repo, number) {
            if doc.get("pull_request").is_some() {
                doc["pull_request"]["number"] = json!(number);
                doc["pull_request"]["head"]["sha"] = json!(pr.head);
                doc["pull_request"]["base"]["ref"] = json!(pr.base);
                doc["pull_request"]["base"]["repo"]["full_name"] = json!(repo);
                doc["number"] = json!(number);
            }
            if doc.get("issue").is_some() {
                doc["issue"]["number"] = json!(number);
                doc["issue"]["pull_request"] =
                    json!({"url": format!("https://api.github.com/repos/{repo}/pulls/{number}")});
            }
        }
        edit(&mut doc);
        let body = serde_json::to_vec(&doc).unwrap();
        let sig = sign(&body);
        self.post(event, &body, Some(sig))
    }

    fn history(&self) -> Value {
        let out = Command::new(sluice_bin())
            .args(["change", "history", "--tenant", "t", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn go(&self, number: i64) {
        std::fs::write(self.go_dir.join(format!("go-{number}")), "").unwrap();
    }

    fn branch_files(&self, repo: &str) -> String {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(self.bare(repo))
            .args(["ls-tree", "--name-only", "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "delivery-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn fixture(name: &str) -> Value {
    let path: PathBuf = repo_root()
        .join("tests/fixtures/github")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn items_of<'a>(history: &'a Value, pipeline: &str, project: &str, number: i64) -> Vec<&'a Value> {
    history["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            i["pipeline"] == pipeline
                && i["refs"][0]["project"] == project
                && i["refs"][0]["change"] == number
        })
        .collect()
}

fn wait_until(serve: &Serve, what: &str, limit: u64, mut pred: impl FnMut() -> bool) {
    let ok = wait_for(Duration::from_secs(limit), &mut pred);
    assert!(ok, "{what}: not reached in time\n{}", serve.output());
}

#[test]
fn github_check_reports_through_the_api_rechecks_and_refuses_bad_webhooks() {
    let gh = Github::new();
    let serve = gh.serve();
    let head = gh.open_pull(
        "org/a",
        1,
        "Add a feature",
        "It is useful.",
        &[("feature.txt", "on\n")],
    );

    // Bad input first: nothing of it may reach the scheduler.
    let body = serde_json::to_vec(&fixture("pull_request.opened")).unwrap();
    assert_eq!(
        gh.post("pull_request", &body, Some("sha256=0000".into())),
        401
    );
    assert_eq!(gh.post("pull_request", &body, None), 401);
    let bad_json = b"{\"action\": \"opened\", ";
    assert_eq!(gh.post("pull_request", bad_json, Some(sign(bad_json))), 400);
    assert_eq!(gh.webhook("ping", "ping", "org/a", 1, |_| {}), 200);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !gh.fake.calls().iter().any(|c| c.path.contains("/pulls/1")),
        "a refused or ignored webhook made Sluice look at the pull request: {:?}",
        gh.fake
            .calls()
            .iter()
            .map(|c| c.path.clone())
            .collect::<Vec<_>>()
    );

    // GitHub fails the first status (502) and rate-limits the first check run.
    gh.fake.add_fault(Fault {
        method: "POST".into(),
        path_contains: "/statuses/".into(),
        status: 502,
        rate_limit: false,
    });
    gh.fake.add_fault(Fault {
        method: "POST".into(),
        path_contains: "/check-runs".into(),
        status: 403,
        rate_limit: true,
    });
    assert_eq!(
        gh.webhook("pull_request", "pull_request.opened", "org/a", 1, |d| d
            ["action"] =
            json!("opened")),
        200
    );
    wait_until(&serve, "check reported", 120, || {
        gh.fake
            .comments("org/a", 1)
            .iter()
            .any(|c| c.contains("Build succeeded."))
            && gh
                .fake
                .statuses(&head)
                .iter()
                .any(|s| s["state"] == "success")
    });
    let comment = gh.fake.comments("org/a", 1).join("\n");
    assert!(
        comment.contains(":heavy_check_mark: [a-test]("),
        "{comment}"
    );
    assert!(
        comment.contains("https://sluice.example/t/t/buildset/"),
        "{comment}"
    );
    let status = &gh.fake.statuses(&head)[0];
    assert_eq!(status["context"], "t/check");
    assert_eq!(status["description"], "check status: success");
    assert!(status["target_url"]
        .as_str()
        .unwrap_or("")
        .starts_with("https://sluice.example/t/t/buildset/"));
    let runs = gh.fake.check_runs("org/a");
    assert_eq!(
        runs.len(),
        1,
        "one check run, created then updated: {runs:#?}"
    );
    assert_eq!(runs[0]["name"], "t/check");
    assert_eq!(runs[0]["status"], "completed");
    assert_eq!(runs[0]["conclusion"], "success");
    assert_eq!(runs[0]["head_sha"], head.as_str());
    let calls = gh.fake.calls();
    let tried = |m: &str, p: &str, status: u16| {
        calls
            .iter()
            .any(|c| c.method == m && c.path.contains(p) && c.status == status)
    };
    assert!(
        tried("POST", "/statuses/", 502) && tried("POST", "/statuses/", 201),
        "the 502 was retried"
    );
    assert!(
        tried("POST", "/check-runs", 403) && tried("POST", "/check-runs", 201),
        "the rate limit was waited out"
    );
    assert!(
        tried("PATCH", "/check-runs/1", 200),
        "the check run was updated, not recreated"
    );
    assert!(
        tried("POST", "/app/installations/4242/access_tokens", 201),
        "an installation token was made from the App JWT"
    );

    // `recheck` runs the check pipeline again.
    assert_eq!(
        gh.webhook("issue_comment", "issue_comment.created", "org/a", 1, |d| {
            d["action"] = json!("created");
            d["comment"]["body"] = json!("recheck");
        }),
        200
    );
    wait_until(&serve, "recheck reported", 120, || {
        gh.fake
            .comments("org/a", 1)
            .iter()
            .filter(|c| c.contains("Build succeeded."))
            .count()
            == 2
    });
    // A comment that is not `recheck` triggers nothing.
    assert_eq!(
        gh.webhook("issue_comment", "issue_comment.created", "org/a", 1, |d| {
            d["comment"]["body"] = json!("looks good")
        }),
        200
    );
    std::thread::sleep(Duration::from_secs(2));
    let history = gh.history();
    let items = items_of(&history, "check", "org/a", 1);
    assert_eq!(items.len(), 2, "{history:#}");
    assert!(
        items.iter().all(|i| i["result"] == "SUCCESS"),
        "{history:#}"
    );
}

#[test]
fn github_gate_merges_dependencies_in_order_and_retests_a_force_pushed_pull_request() {
    let gh = Github::new();
    let serve = gh.serve();
    gh.open_pull(
        "org/a",
        1,
        "Needed change",
        "The base of it.",
        &[("needed.txt", "n\n")],
    );
    gh.open_pull(
        "org/b",
        1,
        "Needing change",
        "Uses it.\n\nDepends-On: https://github.com/org/a/pull/1\n",
        &[("needing.txt", "m\n")],
    );
    for repo in ["org/a", "org/b"] {
        gh.fake.update_pull(repo, 1, |p| {
            p.reviews.push(("bob".into(), "APPROVED".into()))
        });
        assert_eq!(
            gh.webhook(
                "pull_request_review",
                "pull_request_review.submitted",
                repo,
                1,
                |d| {
                    d["review"]["state"] = json!("approved");
                }
            ),
            200
        );
    }
    let label = |repo: &str, number: i64| {
        gh.fake
            .update_pull(repo, number, |p| p.labels.push("gate".into()));
        assert_eq!(
            gh.webhook("pull_request", "pull_request.labeled", repo, number, |d| {
                d["action"] = json!("labeled");
                d["label"]["name"] = json!("gate");
            }),
            200
        );
    };
    label("org/a", 1);
    wait_until(&serve, "a#1 in gate", 60, || {
        !items_of(&gh.history(), "gate", "org/a", 1).is_empty()
    });
    label("org/b", 1);
    wait_until(&serve, "b#1 in gate", 60, || {
        !items_of(&gh.history(), "gate", "org/b", 1).is_empty()
    });
    gh.go(1);
    wait_until(&serve, "both merged", 180, || {
        gh.fake.pull("org/a", 1).is_some_and(|p| p.merged)
            && gh.fake.pull("org/b", 1).is_some_and(|p| p.merged)
    });
    let merges: Vec<(String, Value)> = gh
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/merge"))
        .map(|c| (c.path, c.body))
        .collect();
    assert_eq!(merges.len(), 2, "{merges:#?}");
    assert_eq!(
        merges[0].0, "/repos/org/a/pulls/1/merge",
        "the needed change merges first"
    );
    assert_eq!(
        merges[0].1["merge_method"], "squash",
        "org/a's merge-mode is squash-merge"
    );
    assert_eq!(merges[1].0, "/repos/org/b/pulls/1/merge");
    assert_eq!(merges[1].1["merge_method"], "merge");
    assert!(merges[1].1["commit_message"]
        .as_str()
        .unwrap_or("")
        .contains("Reviewed-by: bob"));
    assert!(gh.branch_files("org/a").contains("needed.txt"));
    assert!(gh.branch_files("org/b").contains("needing.txt"));
    let history = gh.history();
    let b_item = items_of(&history, "gate", "org/b", 1)[0];
    let b_set = history["buildsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["uuid"] == b_item["buildset"])
        .unwrap();
    assert_eq!(
        b_set["ahead"][0]["project"], "org/a",
        "b was tested on top of a: {b_set:#}"
    );

    // A pull request force-pushed while its gate job runs leaves the gate and is re-tested.
    gh.open_pull(
        "org/a",
        2,
        "Second change",
        "More.",
        &[("second.txt", "1\n")],
    );
    gh.fake.update_pull("org/a", 2, |p| {
        p.reviews.push(("bob".into(), "APPROVED".into()))
    });
    label("org/a", 2);
    wait_until(&serve, "a#2 gate build running", 120, || {
        gh.history()["builds"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["job_name"] == "a-gate" && b["ref"]["change"] == 2 && b["result"].is_null())
    });
    let new_head = gh.push_pull_head(
        "org/a",
        2,
        "Second change, reworked",
        &[("second.txt", "2\n")],
    );
    gh.fake
        .update_pull("org/a", 2, |p| p.head = new_head.clone());
    assert_eq!(
        gh.webhook(
            "pull_request",
            "pull_request.synchronize",
            "org/a",
            2,
            |d| d["action"] = json!("synchronize")
        ),
        200
    );
    wait_until(&serve, "re-tested after the force-push", 120, || {
        gh.fake
            .statuses(&new_head)
            .iter()
            .any(|s| s["context"] == "t/check" && s["state"] == "success")
    });
    gh.go(2);
    let history = gh.history();
    let gate2 = items_of(&history, "gate", "org/a", 2);
    assert_eq!(gate2.len(), 1, "{history:#}");
    assert_eq!(gate2[0]["result"], "DEQUEUED", "{history:#}");
    assert!(
        !gh.fake.pull("org/a", 2).is_some_and(|p| p.merged),
        "the old head was not merged"
    );
    assert!(!gh.branch_files("org/a").contains("second.txt"));
}
