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
use sluice_tests::fake_github::{Call, FakeGithub, Fault, Pull, INSTALLATION};
use sluice_tests::scenario::{bare_repo, Serve, BASE_JOB, BASE_PRE};
use sluice_tests::{repo_root, sluice_bin, wait_for, GitRepo, Node};

const SECRET: &str = "webhook-s3cret";

const PIPELINES: &str = r#"- pipeline:
    name: check
    manager: independent
    trigger:
      github:
        - event: pull_request
          action: [opened, changed, reopened, ready_for_review]
        - event: pull_request
          action: comment
          comment: (?i)^\s*recheck\s*$
          permission: write
        - event: check_run
          action: rerequested
    reject:
      github:
        draft: true
    start:
      github:
        check: in_progress
        comment: false
    dequeue:
      github:
        check: cancelled
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
        - event: pull_request_review
          action: submitted
          state: approved
          permission: write
    require:
      github:
        open: true
        label: gate
        review:
          - type: approved
            permission: write
            newer-than: 30d
    success:
      github:
        status: success
        merge: true
    failure:
      github:
        status: failure
        label: gate-failed
        unlabel: gate
- pipeline:
    name: post
    manager: supercedent
    post-review: true
    trigger:
      github:
        - event: push
          ref: ^refs/heads/.*$
    success:
      github:
        status: success
- pipeline:
    name: external
    manager: independent
    trigger:
      github:
        - event: pull_request
          action: status
          status: ci-bot:ci/external:success
    require:
      github:
        review:
          - type: approved
            older-than: 1d
    success:
      github:
        comment: false
        status: success
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
                (".zuul.yaml", "- job:\n    name: a-test\n    run: playbooks/test.yaml\n- job:\n    name: a-gate\n    run: playbooks/wait.yaml\n- project:\n    merge-mode: squash-merge\n    queue: integrated\n    check:\n      jobs: [a-test]\n    gate:\n      jobs: [a-gate]\n    post:\n      jobs: [noop]\n    external:\n      jobs: [noop]\n".to_string()),
                ("playbooks/test.yaml", QUICK.to_string()),
                ("playbooks/wait.yaml", wait.clone()),
            ],
        );
        bare_repo(
            r,
            "org/c",
            &mut [
                (".zuul.yaml", "- job:\n    name: c-gate\n    run: playbooks/wait.yaml\n- project:\n    merge-mode: rebase\n    check:\n      jobs: [noop]\n    gate:\n      jobs: [c-gate]\n".to_string()),
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
            "- tenant:\n    name: t\n    source:\n      github:\n        config-projects:\n          - sluice/config\n        untrusted-projects:\n          - org/a\n          - org/b\n          - org/c\n",
        )
        .unwrap();
        let fake = FakeGithub::start(&r.join("repos"), key.to_public_key());
        // The governor is not what these tests are about (tests/executors.rs is): a test
        // machine whose disk is nearly full must not stop their builds.
        let config = r.join("sluice.yaml");
        std::fs::write(
            &config,
            format!(
                "tenant-config: main.yaml\nstate-dir: state\ntick-seconds: 0.2\nweb:\n  root: https://sluice.example/\nconnections:\n  - name: github\n    driver: github\n    api-url: {}\n    app-id: 7\n    app-key: app.pem\n    webhook-secret: {SECRET}\nexecutor:\n  workers: 4\n  nodes: {}\n  ssh-key: {}\n  governor:\n    min-avail-hdd: 0\n",
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

    /// Commits `files` on top of `main` of `repo` and pushes the commit as
    /// `refs/pull/<number>/head`; returns it.
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
        let refspec = format!("HEAD:refs/pull/{number}/head");
        GitRepo::push_commit(
            &self.bare(repo),
            &work,
            message,
            files,
            &["--force", &refspec],
        )
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
            draft: false,
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
    // Reading the pull request fails six times (502): more than one GET tries, so the event
    // must stay pending and be retried by the scheduler, not dropped.
    gh.fake.add_faults(
        Fault {
            method: "GET".into(),
            path_contains: "/repos/org/a/pulls/1".into(),
            status: 502,
            rate_limit: false,
        },
        6,
    );
    // An event about a pull request GitHub does not know (404): a permanent error, recorded
    // and not retried, and it holds up nothing after it.
    assert_eq!(
        gh.webhook("pull_request", "pull_request.opened", "org/a", 99, |d| {
            d["action"] = json!("opened");
            d["number"] = json!(99);
            d["pull_request"]["number"] = json!(99);
            d["pull_request"]["base"]["repo"]["full_name"] = json!("org/a");
            d["pull_request"]["base"]["ref"] = json!("main");
        }),
        200
    );
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
    let pull_reads = |status: u16| {
        calls
            .iter()
            .filter(|c| c.method == "GET" && c.path.ends_with("/repos/org/a/pulls/1"))
            .filter(|c| c.status == status)
            .count()
    };
    assert!(
        pull_reads(502) == 6 && pull_reads(200) + pull_reads(304) >= 1,
        "the pull request read failing six times was retried until it worked: {:?}",
        calls
            .iter()
            .map(|c| (&c.path, c.status))
            .collect::<Vec<_>>()
    );
    let missing: Vec<u16> = calls
        .iter()
        .filter(|c| c.method == "GET" && c.path.ends_with("/repos/org/a/pulls/99"))
        .map(|c| c.status)
        .collect();
    assert_eq!(missing, [404], "a 404 is permanent: read once, not retried");
    assert!(
        serve
            .output()
            .contains("event cannot be processed (permanent error)"),
        "the permanent failure is logged:\n{}",
        serve.output()
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

impl Github {
    /// Commits `files` on `main` of `repo` (a push to GitHub); returns the old and new tips.
    fn push_main(&self, repo: &str, message: &str, files: &[(&str, &str)]) -> (String, String) {
        let old = self.tip(repo);
        let work = self.root.path().join("work").join(format!("{repo}-main"));
        let new = GitRepo::push_commit(&self.bare(repo), &work, message, files, &["HEAD:main"]);
        (old, new)
    }

    fn tip(&self, repo: &str) -> String {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(self.bare(repo))
            .args(["rev-parse", "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Approves pull request `number` of `repo` as `user` and sends the review webhook.
    fn approve(&self, repo: &str, number: i64, user: &str) {
        self.fake.update_pull(repo, number, |p| {
            p.reviews.push((user.into(), "APPROVED".into()))
        });
        assert_eq!(
            self.webhook(
                "pull_request_review",
                "pull_request_review.submitted",
                repo,
                number,
                |d| d["review"]["state"] = json!("approved")
            ),
            200
        );
    }

    /// Sends `pull_request` webhook `action` (fixture `pull_request.<action>`).
    fn pr_event(&self, repo: &str, number: i64, action: &str) -> u16 {
        self.webhook(
            "pull_request",
            &format!("pull_request.{action}"),
            repo,
            number,
            |d| d["action"] = json!(action),
        )
    }
}

fn comment_with(gh: &Github, repo: &str, number: i64, text: &str) -> usize {
    gh.fake
        .comments(repo, number)
        .iter()
        .filter(|c| c.contains(text))
        .count()
}

#[test]
fn github_events_wait_for_the_layout_and_push_status_check_run_and_draft_events_trigger() {
    let gh = Github::new();
    // The config project cannot be read yet: the tenant has no layout when the first
    // webhook arrives.
    gh.fake.add_faults(
        Fault {
            method: "GET".into(),
            path_contains: "/repos/sluice/config".into(),
            status: 404,
            rate_limit: false,
        },
        10_000,
    );
    let serve = gh.serve();
    let head = gh.open_pull(
        "org/a",
        1,
        "Early change",
        "Before the layout.",
        &[("early.txt", "1\n")],
    );
    assert_eq!(gh.pr_event("org/a", 1, "opened"), 200);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        gh.fake.comments("org/a", 1).is_empty() && gh.fake.check_runs("org/a").is_empty(),
        "nothing can run without a layout"
    );
    gh.fake.clear_faults();
    wait_until(
        &serve,
        "the early event processed once the layout loaded",
        120,
        || comment_with(&gh, "org/a", 1, "Build succeeded.") == 1,
    );

    // A push to a branch is a ref item of the post pipeline, with oldrev and newrev; a branch
    // deletion is ignored.
    assert_eq!(
        gh.webhook("push", "push.deleted", "org/a", 0, |d| {
            d["ref"] = json!("refs/heads/gone");
        }),
        200
    );
    let (old, new) = gh.push_main("org/a", "Direct push", &[("pushed.txt", "p\n")]);
    assert_eq!(
        gh.webhook("push", "push", "org/a", 0, |d| {
            d["ref"] = json!("refs/heads/main");
            d["before"] = json!(old);
            d["after"] = json!(new);
            d["created"] = json!(false);
        }),
        200
    );
    wait_until(&serve, "post item reported", 120, || {
        gh.fake
            .statuses(&new)
            .iter()
            .any(|s| s["context"] == "t/post" && s["state"] == "success")
    });
    let history = gh.history();
    let posts: Vec<&Value> = history["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["pipeline"] == "post")
        .collect();
    assert_eq!(
        posts.len(),
        1,
        "one post item, none for the deletion: {history:#}"
    );
    let r = &posts[0]["refs"][0];
    assert_eq!(
        (
            r["ref"].as_str(),
            r["oldrev"].as_str(),
            r["newrev"].as_str(),
            r["change"].is_null()
        ),
        (
            Some("refs/heads/main"),
            Some(old.as_str()),
            Some(new.as_str()),
            true
        ),
        "{history:#}"
    );
    assert_eq!(posts[0]["result"], "SUCCESS", "{history:#}");

    // A commit status: only `ci-bot:ci/external:success` triggers the external pipeline (which
    // wants an approval older than a day); the pull request is found by its head commit.
    gh.fake.set_user("dave", "write", 2 * 86_400);
    gh.fake.update_pull("org/a", 1, |p| {
        p.reviews.push(("dave".into(), "APPROVED".into()))
    });
    for state in ["failure", "success"] {
        assert_eq!(
            gh.webhook("status", "status", "org/a", 1, |d| {
                d["sha"] = json!(head);
                d["context"] = json!("ci/external");
                d["state"] = json!(state);
                d["sender"]["login"] = json!("ci-bot");
            }),
            200
        );
    }
    wait_until(&serve, "external pipeline ran", 120, || {
        gh.fake
            .statuses(&head)
            .iter()
            .any(|s| s["context"] == "t/external" && s["state"] == "success")
    });
    assert_eq!(items_of(&gh.history(), "external", "org/a", 1).len(), 1);

    // A check run re-requested on GitHub runs the check pipeline again.
    assert_eq!(
        gh.webhook("check_run", "check_run.rerequested", "org/a", 1, |d| {
            d["check_run"]["head_sha"] = json!(head);
        }),
        200
    );
    wait_until(&serve, "check re-run", 120, || {
        comment_with(&gh, "org/a", 1, "Build succeeded.") == 2
    });

    // Drafts: the check pipeline rejects them; ready_for_review runs it; closed runs nothing,
    // reopened runs it again; converted_to_draft makes the next trigger rejected.
    gh.open_pull("org/a", 2, "Draft change", "WIP.", &[("draft.txt", "d\n")]);
    gh.fake.update_pull("org/a", 2, |p| p.draft = true);
    assert_eq!(gh.pr_event("org/a", 2, "opened"), 200);
    // The event reads the pull request as it is when the scheduler gets to it.
    wait_until(&serve, "the draft read", 60, || {
        gh.fake
            .calls()
            .iter()
            .any(|c| c.method == "GET" && c.path == "/repos/org/a/pulls/2")
    });
    gh.fake.update_pull("org/a", 2, |p| p.draft = false);
    assert_eq!(gh.pr_event("org/a", 2, "ready_for_review"), 200);
    wait_until(&serve, "ready for review checked", 120, || {
        comment_with(&gh, "org/a", 2, "Build succeeded.") == 1
    });
    gh.fake.update_pull("org/a", 2, |p| p.closed = true);
    assert_eq!(gh.pr_event("org/a", 2, "closed"), 200);
    gh.fake.update_pull("org/a", 2, |p| p.closed = false);
    assert_eq!(gh.pr_event("org/a", 2, "reopened"), 200);
    wait_until(&serve, "reopened checked", 120, || {
        comment_with(&gh, "org/a", 2, "Build succeeded.") == 2
    });
    gh.fake.update_pull("org/a", 2, |p| p.draft = true);
    assert_eq!(gh.pr_event("org/a", 2, "converted_to_draft"), 200);
    assert_eq!(
        gh.webhook("issue_comment", "issue_comment.created", "org/a", 2, |d| {
            d["action"] = json!("created");
            d["comment"]["body"] = json!("recheck");
        }),
        200
    );
    // Events are processed in order: once the second status has run, the recheck and the
    // first status (an approval of a minute, not older than a day) were refused.
    let head2 = gh.fake.pull("org/a", 2).unwrap().head;
    gh.fake.set_user("bob", "write", 60);
    gh.fake.update_pull("org/a", 2, |p| {
        p.reviews.push(("bob".into(), "APPROVED".into()))
    });
    let status2 = || {
        gh.webhook("status", "status", "org/a", 2, |d| {
            d["sha"] = json!(head2);
            d["context"] = json!("ci/external");
            d["state"] = json!("success");
            d["sender"]["login"] = json!("ci-bot");
        })
    };
    let review_reads = || {
        gh.fake
            .calls()
            .iter()
            .filter(|c| c.method == "GET" && c.path == "/repos/org/a/pulls/2/reviews")
            .count()
    };
    let before = review_reads();
    assert_eq!(status2(), 200);
    wait_until(&serve, "the young approval read", 60, || {
        review_reads() > before
    });
    gh.fake.set_user("bob", "write", 2 * 86_400);
    assert_eq!(status2(), 200);
    wait_until(&serve, "external pipeline ran for #2", 120, || {
        !items_of(&gh.history(), "external", "org/a", 2).is_empty()
    });
    let history = gh.history();
    let checks = items_of(&history, "check", "org/a", 2);
    assert_eq!(
        checks.len(),
        2,
        "opened as a draft and recheck of a draft refused, closed ran nothing: {history:#}"
    );
    assert_eq!(
        items_of(&history, "external", "org/a", 2).len(),
        1,
        "the approval of a minute was too young: {history:#}"
    );
}

#[test]
fn github_gate_review_permission_and_age_labels_rebase_merge_failure_and_unlabel_dequeue() {
    let gh = Github::new();
    let serve = gh.serve();
    gh.fake.set_user("carol", "read", 0);
    gh.fake.set_user("dave", "admin", 60 * 86_400);
    for n in 1..=4 {
        gh.open_pull(
            "org/c",
            n,
            &format!("Change {n}"),
            "Body.",
            &[(&format!("c{n}.txt"), "c\n")],
        );
        gh.fake
            .update_pull("org/c", n, |p| p.labels.push("gate".into()));
    }
    // A reviewer with read permission, and an admin whose approval is 60 days old (the gate
    // wants one newer than 30 days with write permission): not enough.
    gh.approve("org/c", 1, "carol");
    gh.approve("org/c", 1, "dave");
    gh.approve("org/c", 2, "bob");
    wait_until(&serve, "c#2 in gate", 60, || {
        !items_of(&gh.history(), "gate", "org/c", 2).is_empty()
    });
    assert!(
        items_of(&gh.history(), "gate", "org/c", 1).is_empty(),
        "c#1 has no approval meeting the requirement"
    );
    gh.approve("org/c", 3, "bob");
    wait_until(&serve, "c#3 in gate", 60, || {
        !items_of(&gh.history(), "gate", "org/c", 3).is_empty()
    });

    // GitHub refuses c#2's merge (409, then 405 for every try left): MERGE_FAILURE with GitHub's message; the
    // failure reporters add and remove labels; c#3 behind is re-tested without it.
    for (status, times) in [(409, 1), (405, 4)] {
        gh.fake.add_faults(
            Fault {
                method: "PUT".into(),
                path_contains: "/repos/org/c/pulls/2/merge".into(),
                status,
                rate_limit: false,
            },
            times,
        );
    }
    gh.go(2);
    // The tries are 5 s apart, and the scheduler does not wait for them: c#1 opened after
    // the first refusal is checked (its check pipeline runs `noop`) before the last try.
    let merge_put = |c: &Call| c.method == "PUT" && c.path == "/repos/org/c/pulls/2/merge";
    wait_until(&serve, "c#2's first merge try", 120, || {
        gh.fake.calls().iter().any(merge_put)
    });
    let c1_head = gh.fake.pull("org/c", 1).unwrap().head;
    assert_eq!(gh.pr_event("org/c", 1, "opened"), 200);
    wait_until(&serve, "c#2 merge failure reported", 120, || {
        comment_with(&gh, "org/c", 2, "could not be merged") == 1
    });
    let calls = gh.fake.calls();
    let tries: Vec<u16> = calls
        .iter()
        .filter(|c| merge_put(c))
        .map(|c| c.status)
        .collect();
    assert_eq!(tries, [409, 405, 405, 405, 405], "five tries");
    let last_try = calls.iter().rposition(merge_put).unwrap_or(0);
    let c1_checked = calls.iter().position(|c| {
        c.method == "POST"
            && c.path == format!("/repos/org/c/statuses/{c1_head}")
            && c.body["state"] == "success"
    });
    assert!(
        c1_checked.is_some_and(|i| i < last_try),
        "c#1's check reported while c#2's merge was being retried (status at {c1_checked:?}, last merge try at {last_try})"
    );
    let comment = gh.fake.comments("org/c", 2).join("\n");
    assert!(comment.contains("Required status check"), "{comment}");
    let c2 = gh.fake.pull("org/c", 2).unwrap();
    assert!(!c2.merged);
    assert!(
        c2.labels.contains(&"gate-failed".to_string()) && !c2.labels.contains(&"gate".to_string()),
        "{:?}",
        c2.labels
    );
    let history = gh.history();
    assert_eq!(
        items_of(&history, "gate", "org/c", 2)[0]["result"],
        "MERGE_FAILURE",
        "{history:#}"
    );

    // c#3 loses its label while queued: it no longer meets the requirements and leaves.
    wait_until(&serve, "c#3 re-tested alone", 60, || {
        let history = gh.history();
        history["buildsets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["refs"][0]["project"] == "org/c"
                    && s["refs"][0]["change"] == 3
                    && s["ahead"].as_array().is_none_or(|a| a.is_empty())
                    && s["result"].is_null()
            })
    });
    gh.fake
        .update_pull("org/c", 3, |p| p.labels.retain(|l| l != "gate"));
    assert_eq!(
        gh.webhook("pull_request", "pull_request.unlabeled", "org/c", 3, |d| {
            d["action"] = json!("unlabeled");
            d["label"]["name"] = json!("gate");
        }),
        200
    );
    wait_until(&serve, "c#3 dequeued", 60, || {
        comment_with(
            &gh,
            "org/c",
            3,
            "no longer meets the pipeline's requirements",
        ) == 1
    });
    let history = gh.history();
    assert_eq!(
        items_of(&history, "gate", "org/c", 3)[0]["result"],
        "FAILURE",
        "{history:#}"
    );

    // c#1 approved by a writer now; c#4 behind it is closed while queued and leaves.
    gh.approve("org/c", 1, "bob");
    wait_until(&serve, "c#1 in gate", 60, || {
        !items_of(&gh.history(), "gate", "org/c", 1).is_empty()
    });
    gh.approve("org/c", 4, "bob");
    wait_until(&serve, "c#4 in gate", 60, || {
        !items_of(&gh.history(), "gate", "org/c", 4).is_empty()
    });
    gh.fake.update_pull("org/c", 4, |p| p.closed = true);
    assert_eq!(gh.pr_event("org/c", 4, "closed"), 200);
    wait_until(&serve, "c#4 dequeued", 60, || {
        items_of(&gh.history(), "gate", "org/c", 4)[0]["result"] == "DEQUEUED"
    });
    // c#1 merges with org/c's merge-mode, rebase.
    gh.go(1);
    wait_until(&serve, "c#1 merged", 120, || {
        gh.fake.pull("org/c", 1).is_some_and(|p| p.merged)
    });
    let merge = gh
        .fake
        .calls()
        .into_iter()
        .find(|c| c.method == "PUT" && c.path == "/repos/org/c/pulls/1/merge" && c.status == 200)
        .expect("c#1 merged through the API");
    assert_eq!(merge.body["merge_method"], "rebase");
    let files = gh.branch_files("org/c");
    assert!(
        files.contains("c1.txt") && !files.contains("c2.txt") && !files.contains("c4.txt"),
        "{files}"
    );
    assert!(!gh.fake.pull("org/c", 3).is_some_and(|p| p.merged));
}

/// org/a's configuration with its check pipeline running the job that waits for `go`.
const A_WAITING_CHECK: &str = "- job:\n    name: a-test\n    run: playbooks/test.yaml\n- job:\n    name: a-gate\n    run: playbooks/wait.yaml\n- project:\n    merge-mode: squash-merge\n    queue: integrated\n    check:\n      jobs: [a-gate]\n    gate:\n      jobs: [a-gate]\n";

/// Whether a build of `job` for pull request `number` is running (or waiting to).
fn build_running(gh: &Github, job: &str, number: i64) -> bool {
    gh.history()["builds"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["job_name"] == job && b["ref"]["change"] == number && b["result"].is_null())
}

/// The result of the first item of `project`#`number` in `pipeline` (null while it runs).
fn item_result(gh: &Github, pipeline: &str, project: &str, number: i64) -> Value {
    items_of(&gh.history(), pipeline, project, number)
        .first()
        .map_or(Value::Null, |i| i["result"].clone())
}

#[test]
fn github_reports_survive_a_restart_and_closed_needs_drafts_aborts_and_permissions_dequeue_or_refuse(
) {
    let gh = Github::new();
    let mut serve = gh.serve();

    // b#1's check report and b#2's gate merge fail (502 on the status and the comment, 405 on
    // the merge); Sluice is killed (SIGKILL) meanwhile and started again with GitHub healthy:
    // the queued reports go out once, the merge is tried again without re-sending the
    // success reports.
    let head1 = gh.open_pull("org/b", 1, "Checked", "Body.", &[("b1.txt", "1\n")]);
    let head2 = gh.open_pull("org/b", 2, "Gated", "Body.", &[("b2.txt", "2\n")]);
    let fault = |method: &str, path: String, status: u16| {
        gh.fake.add_faults(
            Fault {
                method: method.into(),
                path_contains: path,
                status,
                rate_limit: false,
            },
            10_000,
        )
    };
    fault("POST", format!("/repos/org/b/statuses/{head1}"), 502);
    fault("POST", "/repos/org/b/issues/1/comments".into(), 502);
    fault("PUT", "/repos/org/b/pulls/2/merge".into(), 405);
    assert_eq!(gh.pr_event("org/b", 1, "opened"), 200);
    gh.fake
        .update_pull("org/b", 2, |p| p.labels.push("gate".into()));
    gh.approve("org/b", 2, "bob");
    wait_until(&serve, "the report and the merge refused", 120, || {
        let calls = gh.fake.calls();
        let seen = |m: &str, p: &str, status: u16| {
            calls
                .iter()
                .any(|c| c.method == m && c.path.contains(p) && c.status == status)
        };
        seen("POST", &format!("/statuses/{head1}"), 502) && seen("PUT", "/pulls/2/merge", 405)
    });
    serve.kill();
    drop(serve);
    gh.fake.clear_faults();
    let serve = gh.serve();
    wait_until(&serve, "reported and merged after the restart", 120, || {
        comment_with(&gh, "org/b", 1, "Build succeeded.") == 1
            && gh.fake.pull("org/b", 2).is_some_and(|p| p.merged)
    });

    // a#4 depends on b#3 and waits in check; a#5 waits in check; a#6 waits in the gate, a#9
    // behind it, and b#10, which depends on a#9, behind both.
    gh.open_pull("org/b", 3, "Needed", "Base.", &[("b3.txt", "3\n")]);
    gh.open_pull(
        "org/a",
        4,
        "Needing",
        "Depends-On: https://github.com/org/b/pull/3\n",
        &[(".zuul.yaml", A_WAITING_CHECK)],
    );
    let head5 = gh.open_pull(
        "org/a",
        5,
        "Aborted",
        "Body.",
        &[(".zuul.yaml", A_WAITING_CHECK)],
    );
    gh.open_pull("org/a", 6, "Drafted", "Body.", &[("a6.txt", "6\n")]);
    gh.open_pull("org/a", 9, "Closed in gate", "Body.", &[("a9.txt", "9\n")]);
    gh.open_pull(
        "org/b",
        10,
        "Needs a#9",
        "Depends-On: https://github.com/org/a/pull/9\n",
        &[("b10.txt", "10\n")],
    );
    assert_eq!(gh.pr_event("org/a", 4, "opened"), 200);
    assert_eq!(gh.pr_event("org/a", 5, "opened"), 200);
    gh.fake
        .update_pull("org/a", 6, |p| p.labels.push("gate".into()));
    for (repo, n) in [("org/a", 6), ("org/a", 9), ("org/b", 10)] {
        gh.fake
            .update_pull(repo, n, |p| p.labels.push("gate".into()));
        gh.approve(repo, n, "bob");
    }
    wait_until(&serve, "a#4, a#5 and a#6 running", 180, || {
        build_running(&gh, "a-gate", 4)
            && build_running(&gh, "a-gate", 5)
            && build_running(&gh, "a-gate", 6)
            && !items_of(&gh.history(), "gate", "org/b", 10).is_empty()
    });
    // b#3 is closed: a#4, which needs it, leaves the check pipeline with Zuul's report; a#9
    // is closed: it leaves the gate, and b#10 with it.
    for (repo, n) in [("org/b", 3), ("org/a", 9)] {
        gh.fake.update_pull(repo, n, |p| p.closed = true);
        assert_eq!(gh.pr_event(repo, n, "closed"), 200);
    }
    // The Abort button of a#5's check run: a#5 leaves, its check run is cancelled.
    let run_of_5 = || {
        gh.fake
            .check_runs("org/a")
            .into_iter()
            .find(|r| r["head_sha"] == head5.as_str())
    };
    wait_until(&serve, "a#5's check run in progress", 60, || {
        run_of_5().is_some_and(|r| r["status"] == "in_progress")
    });
    let run5 = run_of_5().unwrap_or_default();
    assert_eq!(
        gh.webhook("check_run", "check_run.requested_action", "org/a", 5, |d| {
            d["check_run"]["head_sha"] = json!(head5);
            d["check_run"]["external_id"] = run5["external_id"].clone();
            d["requested_action"]["identifier"] = json!("abort");
        }),
        200
    );
    // a#6 becomes a draft while in the gate: it can no longer be merged and leaves.
    gh.fake.update_pull("org/a", 6, |p| p.draft = true);
    assert_eq!(gh.pr_event("org/a", 6, "converted_to_draft"), 200);
    wait_until(&serve, "a#4, a#5, a#6, a#9 and b#10 dequeued", 120, || {
        comment_with(&gh, "org/a", 4, "is needed.") == 1
            && comment_with(&gh, "org/b", 10, "org/a/pull/9 is needed.") == 1
            && item_result(&gh, "gate", "org/a", 9) == "DEQUEUED"
            && item_result(&gh, "check", "org/a", 5) == "DEQUEUED"
            && comment_with(
                &gh,
                "org/a",
                6,
                "no longer meets the pipeline's requirements",
            ) == 1
    });
    for n in [4, 5, 6, 9] {
        gh.go(n);
    }
    let comment4 = gh.fake.comments("org/a", 4).join("\n");
    assert!(comment4.contains("org/b/pull/3 is needed."), "{comment4}");
    assert_eq!(item_result(&gh, "check", "org/a", 4), "FAILURE");
    assert_eq!(item_result(&gh, "gate", "org/a", 6), "FAILURE");
    assert_eq!(item_result(&gh, "gate", "org/b", 10), "FAILURE");
    assert!(!gh.fake.pull("org/b", 10).is_some_and(|p| p.merged));
    wait_until(&serve, "a#5's check run cancelled", 60, || {
        gh.fake
            .check_runs("org/a")
            .iter()
            .any(|r| r["head_sha"] == head5.as_str() && r["conclusion"] == "cancelled")
    });
    let a6 = gh.fake.pull("org/a", 6).unwrap();
    assert!(
        !a6.merged && a6.labels.contains(&"gate-failed".to_string()),
        "{a6:?}"
    );

    // Trigger `permission: write`: eve (read) can neither recheck nor gate by approving;
    // alice's recheck after them shows they were processed; bob's approval then gates b#7.
    gh.fake.set_user("eve", "read", 0);
    gh.open_pull("org/b", 7, "Permissions", "Body.", &[("b7.txt", "7\n")]);
    gh.fake.update_pull("org/b", 7, |p| {
        p.labels.push("gate".into());
        p.reviews.push(("bob".into(), "APPROVED".into()));
    });
    let comment = |user: &str| {
        gh.webhook("issue_comment", "issue_comment.created", "org/b", 7, |d| {
            d["action"] = json!("created");
            d["comment"]["body"] = json!("recheck");
            d["sender"]["login"] = json!(user);
        })
    };
    let review = |user: &str| {
        gh.webhook(
            "pull_request_review",
            "pull_request_review.submitted",
            "org/b",
            7,
            |d| {
                d["review"]["state"] = json!("approved");
                d["sender"]["login"] = json!(user);
            },
        )
    };
    assert_eq!(comment("eve"), 200);
    assert_eq!(review("eve"), 200);
    assert_eq!(comment("alice"), 200);
    wait_until(&serve, "alice's recheck reported", 60, || {
        comment_with(&gh, "org/b", 7, "Build succeeded.") == 1
    });
    let history = gh.history();
    assert_eq!(
        items_of(&history, "check", "org/b", 7).len(),
        1,
        "only alice's recheck ran: {history:#}"
    );
    assert!(
        items_of(&history, "gate", "org/b", 7).is_empty(),
        "eve's approval gated nothing: {history:#}"
    );
    assert_eq!(review("bob"), 200);
    wait_until(&serve, "b#7 merged after bob's approval", 60, || {
        gh.fake.pull("org/b", 7).is_some_and(|p| p.merged)
    });

    // Nothing of b#1 and b#2 was reported twice across the restart.
    let success = |sha: &str, context: &str| {
        gh.fake
            .statuses(sha)
            .iter()
            .filter(|s| s["context"] == context && s["state"] == "success")
            .count()
    };
    assert_eq!(success(&head1, "t/check"), 1, "b#1's status once");
    assert_eq!(comment_with(&gh, "org/b", 1, "Build succeeded."), 1);
    assert_eq!(success(&head2, "t/gate"), 1, "b#2's gate status once");
    assert_eq!(comment_with(&gh, "org/b", 2, "Build succeeded."), 1);
    let merges: Vec<u16> = gh
        .fake
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.path == "/repos/org/b/pulls/2/merge")
        .map(|c| c.status)
        .collect();
    assert_eq!(merges.last(), Some(&200), "{merges:?}");
    assert!(gh.branch_files("org/b").contains("b2.txt"));
}
