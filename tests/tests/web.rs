//! The web server end to end: a real `sluice serve --web-listen` running real changes (real git,
//! Ansible and an sshd node), its REST routes read over plain HTTP and by the real `zuul-client`
//! (PyPI, installed into the test venv by `scripts/test`), and its admin route's bearer tokens
//! made with Python's standard library.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_tests::scenario::*;
use sluice_tests::wait_for;

const SLOW: &str = "- hosts: all\n  tasks:\n    - name: Take a while\n      shell: sleep 8\n";

/// One HTTP/1.1 request over a plain TCP stream: `(status, headers, body)`.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("web port");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

/// GETs `path` and parses the JSON body, asserting a 200.
fn get_json(addr: &str, path: &str) -> Value {
    let (status, head, body) = http(addr, "GET", path, &[], "");
    assert_eq!(status, 200, "GET {path}: {head}\n{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// `zuul-client` from the test venv that `scripts/test` makes.
fn zuul_client() -> PathBuf {
    let bin = sluice_tests::repo_root().join("target/test-venv/bin/zuul-client");
    assert!(
        bin.is_file(),
        "{} not found: run scripts/test once, or `python3 -m venv target/test-venv && target/test-venv/bin/pip install zuul-client`",
        bin.display()
    );
    bin
}

fn run_zuul_client(url: &str, args: &[&str]) -> String {
    let out = Command::new(zuul_client())
        .arg("--zuul-url")
        .arg(url)
        .args(args)
        .output()
        .expect("run zuul-client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "zuul-client {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The test venv's python (made by `scripts/test`) with `module` importable.
fn venv_python(module: &str) -> PathBuf {
    let python = sluice_tests::repo_root().join("target/test-venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import {module}: run scripts/test once, or `target/test-venv/bin/pip install prometheus_client schemathesis`",
        python.display()
    );
    python
}

/// `/metrics` read by the Prometheus project's own text-format parser (`prometheus_client`):
/// every sample as `{"name", "labels", "value"}`, and the families' types by name.
fn scrape_metrics(addr: &str) -> (Vec<Value>, Value) {
    let (status, head, body) = http(addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "/metrics: {head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples, types = [], {}
for family in text_string_to_metric_families(sys.stdin.read()):
    types[family.name] = family.type
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps({"samples": samples, "types": types}))
"#;
    let mut child = Command::new(venv_python("prometheus_client"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client cannot parse /metrics: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        parsed["samples"].as_array().cloned().unwrap_or_default(),
        parsed["types"].clone(),
    )
}

/// The value of the sample `name` whose labels include `labels`, if any.
fn metric(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

#[test]
fn web_api_serves_a_change_through_check_in_zuuls_shapes_and_zuul_client_reads_it() {
    let app_jobs = "- semaphore:\n    name: one-at-a-time\n    max: 1\n\n- job:\n    name: slow\n    description: Takes a while\n    semaphore: one-at-a-time\n    run: playbooks/slow.yaml\n\n- project:\n    check:\n      jobs:\n        - slow\n";
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/slow.yaml", SLOW)],
        )],
        30,
    );
    // Statsd output to a UDP socket of the test's (Zuul's `[statsd]`, every half second).
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = std::fs::read_to_string(&setup.config).unwrap();
    config.push_str(&format!(
        "statsd:\n  server: 127.0.0.1\n  port: {}\n  prefix: sluice\n  interval-seconds: 0.5\n",
        statsd.local_addr().unwrap().port()
    ));
    std::fs::write(&setup.config, config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = setup.start_with("serve", "serve-web", &["--web-listen", &addr]);
    // Up, with the scheduler's first layout published.
    let up = wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
            && http(&addr, "GET", "/api/tenants", &[], "")
                .2
                .contains("\"t\"")
    });
    assert!(up, "web server not up:\n{}", serve.output());

    // Global and tenant routes.
    let info = get_json(&addr, "/api/info");
    assert_eq!(info["info"]["capabilities"]["job_history"], true, "{info}");
    let tenants = get_json(&addr, "/api/tenants");
    assert_eq!(tenants[0]["name"], "t", "{tenants}");
    assert_eq!(tenants[0]["projects"], 2, "{tenants}");
    assert_eq!(get_json(&addr, "/api/tenant/t/info")["info"]["tenant"], "t");
    let pipelines = get_json(&addr, "/api/tenant/t/pipelines");
    assert_eq!(pipelines[0]["name"], "check", "{pipelines}");
    assert_eq!(pipelines[0]["triggers"][0]["driver"], "git", "{pipelines}");
    let jobs = get_json(&addr, "/api/tenant/t/jobs");
    let slow = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "slow")
        .unwrap_or_else(|| panic!("no job slow: {jobs}"));
    assert_eq!(slow["description"], "Takes a while");
    let job = get_json(&addr, "/api/tenant/t/job/slow");
    assert_eq!(job[0]["run"][0], "playbooks/slow.yaml", "{job}");
    assert_eq!(job[0]["source_context"]["project"], "org/app", "{job}");
    let projects = get_json(&addr, "/api/tenant/t/projects");
    assert!(
        projects
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "org/app"
                && p["type"] == "untrusted"
                && p["canonical_name"] == "localhost/org/app"),
        "{projects}"
    );
    let project = get_json(&addr, "/api/tenant/t/project/org/app");
    assert_eq!(project["metadata"]["merge_mode"], "merge", "{project}");
    assert_eq!(
        project["configs"][0]["pipelines"][0]["jobs"][0][0]["name"], "slow",
        "{project}"
    );
    assert_eq!(
        get_json(&addr, "/api/tenant/t/config-errors"),
        serde_json::json!([])
    );
    let free = serde_json::json!([{"name": "one-at-a-time", "global": false, "max": 1,
        "holders": {"count": 0, "this_tenant": [], "other_tenants": 0}}]);
    assert_eq!(get_json(&addr, "/api/tenant/t/semaphores"), free);
    let labels = get_json(&addr, "/api/tenant/t/labels");
    assert_eq!(labels, serde_json::json!([{"name": "ubuntu-noble"}]));
    let nodes = get_json(&addr, "/api/tenant/t/nodes");
    assert_eq!(nodes[0]["type"][0], "ubuntu-noble", "{nodes}");
    let (status, _, pem) = http(&addr, "GET", "/api/tenant/t/key/org/app.pub", &[], "");
    assert_eq!(status, 200, "{pem}");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let openapi = get_json(&addr, "/api/openapi.json");
    assert!(
        openapi["paths"]["/api/tenant/{tenant}/builds"]["get"].is_object(),
        "{openapi}"
    );

    // Unknown things: 404 with Zuul's JSON error.
    for path in [
        "/api/tenant/nope/status",
        "/api/tenant/t/build/0123456789abcdef0123456789abcdef",
        "/api/tenant/t/buildset/0123456789abcdef0123456789abcdef",
        "/api/tenant/t/job/nope",
        "/api/tenant/t/project/org/nope",
    ] {
        let (status, _, body) = http(&addr, "GET", path, &[], "");
        assert_eq!(status, 404, "{path}: {body}");
        let err: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["error"], "Not Found", "{path}: {body}");
        assert!(err["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let (status, _, body) = http(&addr, "GET", "/api/tenant/t/builds?bogus=1", &[], "");
    assert_eq!(status, 400, "{body}");

    // The approve call is an admin route: without an authenticator or local-admin, 401.
    let (status, _, body) = http(
        &addr,
        "POST",
        "/api/tenant/t/project/org/app/approve",
        &[],
        r#"{"change": "review/main/slow"}"#,
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "Unauthorized"
    );

    // Operations endpoints: health, and no job result counted yet.
    let (status, _, body) = http(&addr, "GET", "/health/live", &[], "");
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http(&addr, "GET", "/health/ready", &[], "");
    assert_eq!(status, 200, "{body}");
    let job_result = [
        ("tenant", "t"),
        ("pipeline", "check"),
        ("project", "localhost/org/app"),
        ("branch", "main"),
        ("job", "slow"),
        ("result", "SUCCESS"),
    ];
    let (before, types) = scrape_metrics(&addr);
    assert_eq!(
        metric(
            &before,
            "zuul_tenant_pipeline_project_job_total",
            &job_result
        ),
        None,
        "{before:?}"
    );
    assert_eq!(
        types["zuul_tenant_pipeline_project_job"], "counter",
        "{types}"
    );
    assert_eq!(types["zuul_executors_jobs_queued"], "gauge", "{types}");
    assert_eq!(
        metric(
            &before,
            "zuul_nodepool_resources_total_nodes",
            &[("label", "ubuntu-noble")]
        ),
        Some(1.0),
        "{before:?}"
    );

    // A change through check: the status while it runs.
    let sha = setup.push_change("org/app", "slow", "Slow change", &[("x.txt", "x\n")]);
    let mut status = Value::Null;
    let running = wait_for(Duration::from_secs(90), || {
        status = get_json(&addr, "/api/tenant/t/status");
        status["pipelines"][0]["change_queues"][0]["heads"][0][0]["jobs"][0]["start_time"]
            .is_number()
    });
    assert!(
        running,
        "no running job in status:\n{status:#}\n{}",
        serve.output()
    );
    let check = &status["pipelines"][0];
    assert_eq!(check["name"], "check");
    assert_eq!(check["manager"], "independent");
    let item = &check["change_queues"][0]["heads"][0][0];
    assert_eq!(item["refs"][0]["id"], format!("1,{sha}"), "{item:#}");
    assert_eq!(item["refs"][0]["project"], "org/app", "{item:#}");
    assert_eq!(
        item["refs"][0]["ref"], "refs/heads/review/main/slow",
        "{item:#}"
    );
    assert_eq!(item["live"], true);
    let job = &item["jobs"][0];
    assert_eq!(job["name"], "slow", "{job:#}");
    assert_eq!(job["result"], Value::Null, "{job:#}");
    assert_eq!(job["voting"], true, "{job:#}");
    let uuid = job["uuid"].as_str().unwrap().to_string();
    assert_eq!(
        job["url"],
        format!("stream/{uuid}?logfile=console.log"),
        "{job:#}"
    );
    assert!(job["elapsed_time"].as_i64().is_some(), "{job:#}");
    let by_change = get_json(&addr, &format!("/api/tenant/t/status/change/1,{sha}"));
    assert_eq!(by_change[0]["id"], item["id"], "{by_change}");
    let (during, _) = scrape_metrics(&addr);
    let running_gauges = (
        metric(&during, "zuul_executors_jobs_running", &[]),
        metric(
            &during,
            "zuul_tenant_pipeline_current_changes",
            &[("pipeline", "check")],
        ),
    );
    assert_eq!(running_gauges, (Some(1.0), Some(1.0)), "{during:?}");
    let held = get_json(&addr, "/api/tenant/t/semaphores");
    assert_eq!(held[0]["holders"]["count"], 1, "{held}");
    assert_eq!(
        held[0]["holders"]["this_tenant"][0]["job_name"], "slow",
        "{held}"
    );
    let running_builds = get_json(&addr, "/api/tenant/t/builds?complete=false");
    assert_eq!(running_builds[0]["uuid"], uuid.as_str(), "{running_builds}");
    assert_eq!(running_builds[0]["result"], Value::Null);

    // The console stream of the same server follows the running build.
    // (Its protocol is tested in tests/tests/stream.rs; here: it is mounted and finds builds.)
    let (status_code, _, _) = http(
        &addr,
        "GET",
        &format!("/api/tenant/t/build/{uuid}/log"),
        &[],
        "",
    );
    assert!(
        status_code == 409 || status_code == 200,
        "build log route answered {status_code}"
    );

    // Reported: the history routes.
    setup.wait_reported(&serve, "check", &["slow"], Duration::from_secs(120));
    let builds = get_json(&addr, "/api/tenant/t/builds?project=org/app&pipeline=check");
    assert_eq!(builds.as_array().map(Vec::len), Some(1), "{builds:#}");
    let b = &builds[0];
    assert_eq!(b["uuid"], uuid.as_str(), "{b:#}");
    assert_eq!(b["job_name"], "slow");
    assert_eq!(b["result"], "SUCCESS", "{b:#}");
    assert_eq!(b["final"], true);
    assert_eq!(b["voting"], true);
    assert_eq!(b["pipeline"], "check");
    assert_eq!(b["ref"]["change"], 1, "{b:#}");
    assert_eq!(b["ref"]["patchset"], sha.as_str());
    assert_eq!(b["ref"]["branch"], "main");
    assert!(b["duration"].as_f64().is_some_and(|d| d >= 8.0), "{b:#}");
    assert!(
        b["log_url"].as_str().is_some_and(|u| !u.is_empty()),
        "{b:#}"
    );
    let buildset_uuid = b["buildset"]["uuid"].as_str().unwrap().to_string();
    for query in [
        "job_name=nope",
        "result=FAILURE",
        "change=2",
        "branch=other",
        "voting=false",
        "exclude_result=SUCCESS",
        "held=true",
        "complete=false",
    ] {
        let none = get_json(&addr, &format!("/api/tenant/t/builds?{query}"));
        assert_eq!(none, serde_json::json!([]), "{query}");
    }
    for query in [
        format!("uuid={uuid}"),
        "job_name=slow&result=SUCCESS&final=true&voting=true".into(),
        format!("change=1&patchset={sha}&ref=refs/heads/review/main/slow"),
        "limit=1&skip=0".into(),
    ] {
        let one = get_json(&addr, &format!("/api/tenant/t/builds?{query}"));
        assert_eq!(one[0]["uuid"], uuid.as_str(), "{query}: {one}");
    }
    assert_eq!(
        get_json(&addr, "/api/tenant/t/builds?limit=1&skip=1"),
        serde_json::json!([])
    );
    let build = get_json(&addr, &format!("/api/tenant/t/build/{uuid}"));
    assert_eq!(build, *b);
    let buildsets = get_json(&addr, "/api/tenant/t/buildsets?pipeline=check");
    assert_eq!(
        buildsets[0]["uuid"],
        buildset_uuid.as_str(),
        "{buildsets:#}"
    );
    assert_eq!(buildsets[0]["result"], "SUCCESS", "{buildsets:#}");
    assert_eq!(buildsets[0]["refs"][0]["change"], 1);
    let buildset = get_json(&addr, &format!("/api/tenant/t/buildset/{buildset_uuid}"));
    assert_eq!(buildset["builds"][0]["uuid"], uuid.as_str(), "{buildset:#}");
    assert!(
        buildset["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Build succeeded.") && m.contains("- slow ")),
        "{buildset:#}"
    );
    // The item left the status.
    assert_status_empties(&addr);

    assert_eq!(get_json(&addr, "/api/tenant/t/semaphores"), free);
    // The job result counter moved; the item left the pipeline.
    let (after_metrics, _) = scrape_metrics(&addr);
    assert_eq!(
        metric(
            &after_metrics,
            "zuul_tenant_pipeline_project_job_total",
            &job_result
        ),
        Some(1.0),
        "{after_metrics:?}"
    );
    assert_eq!(
        metric(
            &after_metrics,
            "zuul_tenant_pipeline_current_changes",
            &[("pipeline", "check")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &after_metrics,
            "zuul_tenant_pipeline_total_changes_total",
            &[("pipeline", "check")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&after_metrics, "zuul_executors_jobs_running", &[]),
        Some(0.0)
    );

    // Statsd got the same events under Zuul's keys: the counter once, the gauges as they were.
    let job_key =
        "sluice.zuul.tenant.t.pipeline.check.project.localhost.org_app.main.job.slow.SUCCESS";
    let received = statsd_lines(&statsd, |lines| {
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{job_key}:")) && l.ends_with("|c"))
            && lines
                .iter()
                .any(|l| l.starts_with(&format!("{job_key}:")) && l.ends_with("|ms"))
    });
    let total = |key: &str, kind: &str| -> u64 {
        received
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{key}:")))
            .filter_map(|v| v.strip_suffix(kind))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(total(job_key, "|c"), 1, "{received:#?}");
    // Its timer once, with the build's duration as the store recorded it.
    let timers: Vec<u64> = received
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("{job_key}:")))
        .filter_map(|v| v.strip_suffix("|ms"))
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(timers.len(), 1, "{received:#?}");
    let duration = builds[0]["duration"].as_f64().unwrap_or(-1.0);
    assert!(
        (timers[0] as f64 / 1000.0 - duration).abs() < 1.0,
        "timer {} ms, build duration {duration} s",
        timers[0]
    );
    assert_eq!(
        total("sluice.zuul.tenant.t.pipeline.check.total_changes", "|c"),
        1,
        "{received:#?}"
    );
    for gauge in [
        "sluice.zuul.tenant.t.pipeline.check.current_changes:1|g",
        "sluice.zuul.tenant.t.pipeline.check.current_changes:0|g",
        "sluice.zuul.executors.jobs_running:1|g",
        "sluice.zuul.executors.jobs_queued:0|g",
    ] {
        assert!(
            received.iter().any(|l| l == gauge),
            "{gauge} not received: {received:#?}"
        );
    }

    // The real zuul-client reads the same records.
    let url = format!("http://{addr}");
    let listed = run_zuul_client(&url, &["builds", "--tenant", "t"]);
    let row = listed
        .lines()
        .find(|l| l.contains(&uuid))
        .unwrap_or_else(|| panic!("zuul-client builds:\n{listed}"));
    for cell in [
        "slow",
        "org/app",
        "main",
        "check",
        &format!("1,{sha}"),
        "SUCCESS",
    ] {
        assert!(row.contains(cell), "{cell} missing from: {row}\n{listed}");
    }
    let filtered = run_zuul_client(
        &url,
        &[
            "builds", "--tenant", "t", "--job", "slow", "--result", "FAILURE",
        ],
    );
    assert!(!filtered.contains(&uuid), "{filtered}");
    let info = run_zuul_client(&url, &["build-info", "--tenant", "t", "--uuid", &uuid]);
    for line in [
        format!("UUID: {uuid}"),
        "Result: SUCCESS".into(),
        "Pipeline: check".into(),
        "Project: org/app".into(),
        "Job: slow".into(),
        format!("Change: 1,{sha}"),
        "Branch: main".into(),
        format!("Buildset ID: {buildset_uuid}"),
        "Voting: Yes".into(),
        "Final: Yes".into(),
        "Held: No".into(),
    ] {
        assert!(
            info.lines().any(|l| l.trim() == line),
            "{line:?} missing from zuul-client build-info:\n{info}"
        );
    }
}

/// Every statsd line received on `socket` (datagrams hold one or more, newline-separated) until
/// `done` holds for them, or 20 s passed.
fn statsd_lines(socket: &std::net::UdpSocket, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    while std::time::Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => lines.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            ),
            Err(_) if done(&lines) => break,
            Err(_) => {}
        }
    }
    lines
}

/// An HS256 JWT made with Python's standard library (no JWT code of Sluice's involved).
fn hs256_token(secret: &str, claims: &Value) -> String {
    let script = r#"
import base64, hashlib, hmac, json, sys
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
secret, claims = sys.argv[1], sys.argv[2]
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(claims.encode())
sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
"#;
    let out = Command::new("python3")
        .args(["-c", script, secret, &claims.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn web_approve_needs_an_authorized_token_and_moves_the_change_into_gate() {
    let app_jobs = "- project:\n    gate:\n      jobs:\n        - noop\n";
    let setup = Setup::new(GATE, &[("org/app", &[(".zuul.yaml", app_jobs)])], 30);
    // Zuul's admin rules in main.yaml, an HS256 authenticator in the config file.
    let main = setup.root().join("main.yaml");
    let tenants = std::fs::read_to_string(&main).unwrap().replace(
        "    name: t\n",
        "    name: t\n    admin-rules:\n      - gatekeepers\n",
    );
    std::fs::write(
        &main,
        format!("- authorization-rule:\n    name: gatekeepers\n    conditions:\n      - groups: gatekeepers\n{tenants}"),
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&setup.config).unwrap();
    config.push_str("web:\n  authenticators:\n    - name: sluice\n      driver: HS256\n      secret: s3cret\n      issuer-id: sluice-tests\n      client-id: sluice\n");
    std::fs::write(&setup.config, config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = setup.start_with("serve", "serve-approve", &["--web-listen", &addr]);
    let sha = setup.push_change("org/app", "ok", "Good change", &[("ok.txt", "ok\n")]);
    let known = wait_for(Duration::from_secs(30), || {
        setup.sluice(&["change", "list"]).contains("review/main/ok")
    });
    assert!(known, "change not seen:\n{}", serve.output());
    let info = get_json(&addr, "/api/tenant/t/info");
    assert_eq!(
        info["info"]["capabilities"]["auth"]["default_realm"], "sluice",
        "{info}"
    );

    let exp = chrono_like_now() + 600;
    let claims = |sub: &str, extra: Value| {
        let mut c = serde_json::json!({"iss": "sluice-tests", "aud": "sluice", "sub": sub, "exp": exp, "iat": exp - 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let approve = |token: Option<String>, change: &str| {
        let header = token.map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = header.iter().map(String::as_str).collect();
        http(
            &addr,
            "POST",
            "/api/tenant/t/project/org/app/approve",
            &headers,
            &format!(r#"{{"change": "{change}"}}"#),
        )
    };
    let error_of = |body: &str| serde_json::from_str::<Value>(body).unwrap()["error"].clone();

    let (status, _, body) = approve(None, "review/main/ok");
    assert_eq!(
        (status, error_of(&body)),
        (401, "Unauthorized".into()),
        "{body}"
    );
    let forged = hs256_token(
        "not-the-secret",
        &claims("mallory", serde_json::json!({"groups": ["gatekeepers"]})),
    );
    let (status, _, body) = approve(Some(forged), "review/main/ok");
    assert_eq!(status, 401, "{body}");
    let wrong_audience = hs256_token(
        "s3cret",
        &serde_json::json!({"iss": "sluice-tests", "aud": "other", "sub": "eve", "exp": exp}),
    );
    let (status, _, body) = approve(Some(wrong_audience), "review/main/ok");
    assert_eq!(status, 401, "{body}");
    let outsider = hs256_token(
        "s3cret",
        &claims("bob", serde_json::json!({"groups": ["dev"]})),
    );
    let (status, _, body) = approve(Some(outsider), "review/main/ok");
    assert_eq!(
        (status, error_of(&body)),
        (403, "Forbidden".into()),
        "{body}"
    );
    let keeper = hs256_token(
        "s3cret",
        &claims("alice", serde_json::json!({"groups": ["gatekeepers"]})),
    );
    let (status, _, body) = approve(
        Some(keeper.clone()),
        "1,0000000000000000000000000000000000000000",
    );
    assert_eq!(status, 400, "a stale patchset is refused: {body}");
    let (status, _, body) = approve(Some(keeper.clone()), "review/main/nope");
    assert_eq!(status, 404, "{body}");
    // The legacy `zuul.admin` claim also grants the tenant.
    let legacy = hs256_token(
        "s3cret",
        &claims("carol", serde_json::json!({"zuul": {"admin": ["t"]}})),
    );
    let (status, _, body) = approve(Some(legacy), "review/main/ok");
    assert_eq!(status, 200, "{body}");
    let approved: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(approved["user"], "carol", "{approved}");
    assert_eq!(approved["change"], 1, "{approved}");
    assert_eq!(approved["patchset"], sha.as_str(), "{approved}");

    let history = setup.wait_reported(&serve, "gate", &["ok"], Duration::from_secs(90));
    assert_eq!(
        items(&history, "gate", "ok")[0]["result"],
        "SUCCESS",
        "{history:#}"
    );
    assert!(setup.branch_log("org/app").contains("Good change"));
    let builds = get_json(&addr, "/api/tenant/t/builds?pipeline=gate");
    assert_eq!(builds[0]["job_name"], "noop", "{builds}");
    assert_eq!(builds[0]["result"], "SUCCESS", "{builds}");
}

fn chrono_like_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// schemathesis (PyPI) fuzzes every route of `/api/openapi.json` on a running `sluice serve`
/// with a build in its history: no answer may be a 5xx or break the document's schema.
#[test]
fn web_api_holds_to_its_openapi_document_under_schemathesis() {
    let app_jobs = "- project:\n    check:\n      jobs:\n        - noop\n";
    let setup = Setup::new(CHECK, &[("org/app", &[(".zuul.yaml", app_jobs)])], 30);
    let token = admin_token_setup(&setup);
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = setup.start_with("serve", "serve-schemathesis", &["--web-listen", &addr]);
    setup.push_change("org/app", "ok", "A change", &[("ok.txt", "ok\n")]);
    setup.wait_reported(&serve, "check", &["ok"], Duration::from_secs(90));
    // A hold request, so that `autohold/{id}` has a real id (schemathesis sends no token, so
    // it cannot delete it).
    let auth = format!("Authorization: Bearer {token}");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/api/tenant/t/project/org/app/autohold",
        &[&auth],
        r#"{"job": "noop", "reason": "schemathesis", "count": 1}"#,
    );
    assert_eq!(status, 200, "{body}");
    let hold = get_json(&addr, "/api/tenant/t/autohold")[0]["id"].clone();
    let hold = hold.as_str().unwrap_or_default();

    // Real identifiers for the path parameters, so that the fuzzed queries reach the handlers
    // rather than the tenant's 404.
    let builds = get_json(&addr, "/api/tenant/t/builds");
    let build = builds[0]["uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("{builds}"));
    let buildset = builds[0]["buildset"]["uuid"].as_str().unwrap_or_default();
    let operation = |path: &str, params: &str| {
        format!("[[operations]]\ninclude-path = \"{path}\"\nparameters = {{ {params} }}\n")
    };
    let config = [
        "[parameters]\ntenant = \"t\"\n".to_string(),
        operation(
            "/api/tenant/{tenant}/build/{uuid}",
            &format!("uuid = \"{build}\""),
        ),
        operation(
            "/api/tenant/{tenant}/buildset/{uuid}",
            &format!("uuid = \"{buildset}\""),
        ),
        operation("/api/tenant/{tenant}/job/{name}", "name = \"base\""),
        operation(
            "/api/tenant/{tenant}/project/{project}",
            "project = \"org/app\"",
        ),
        operation(
            "/api/tenant/{tenant}/key/{project}",
            "project = \"org/app.pub\"",
        ),
        operation(
            "/api/tenant/{tenant}/project-ssh-key/{project}",
            "project = \"org/app.pub\"",
        ),
        operation(
            "/api/tenant/{tenant}/project/{project}/autohold",
            "project = \"org/app\"",
        ),
        operation(
            "/api/tenant/{tenant}/autohold/{id}",
            &format!("id = \"{hold}\""),
        ),
    ]
    .join("\n");
    std::fs::write(setup.root().join("schemathesis.toml"), config).unwrap();

    let python = venv_python("schemathesis");
    let bin = python.with_file_name("schemathesis");
    let out = Command::new(&bin)
        .args([
            "run",
            &format!("http://{addr}/api/openapi.json"),
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "8",
            "--seed",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "20",
            // A generator check, not a server one: the admin operations answer 401 to every
            // tokenless example, and the fixed project name leaves little to vary.
            "--suppress-health-check=filter_too_much",
        ])
        .current_dir(setup.root())
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        serve.output()
    );
    // It really ran the API's operations (not zero of them).
    assert!(report.contains("passed"), "{report}");
    // Every operation got past its 404s (the identifiers above are real).
    assert!(!report.contains("Missing test data"), "{report}");
}

/// `zuul-client` with an admin token: `dequeue` takes a running change out of check (its
/// buildset ends DEQUEUED), `enqueue` puts it into a pipeline its events never trigger; without
/// a token or with a bad pipeline both fail with a clear message.
#[test]
fn web_zuul_client_dequeues_and_enqueues_a_change_with_an_admin_token() {
    let pipelines = format!(
        "{CHECK}\n- pipeline:\n    name: manual\n    manager: independent\n    trigger:\n      git:\n        - event: change-approved\n"
    );
    let app_jobs = "- job:\n    name: slow\n    run: playbooks/slow.yaml\n\n- project:\n    check:\n      jobs:\n        - slow\n    manual:\n      jobs:\n        - noop\n";
    let setup = Setup::new(
        &pipelines,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/slow.yaml", SLOW)],
        )],
        30,
    );
    let mut config = std::fs::read_to_string(&setup.config).unwrap();
    config.push_str("web:\n  authenticators:\n    - name: sluice\n      driver: HS256\n      secret: s3cret\n      issuer-id: sluice-tests\n      client-id: sluice\n");
    std::fs::write(&setup.config, config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let serve = setup.start_with("serve", "serve-admin", &["--web-listen", &addr]);
    let sha = setup.push_change("org/app", "work", "A change", &[("w.txt", "w\n")]);
    let change = format!("1,{sha}");
    let running = wait_for(Duration::from_secs(90), || {
        // (The tenant is a 404 until the scheduler published its first layout.)
        let (_, _, body) = http(&addr, "GET", "/api/tenant/t/status", &[], "");
        serde_json::from_str::<Value>(&body).is_ok_and(|s| {
            s["pipelines"][0]["change_queues"][0]["heads"][0][0]["jobs"][0]["start_time"]
                .is_number()
        })
    });
    assert!(
        running,
        "the change never ran in check:\n{}",
        serve.output()
    );

    // No token: zuul-client refuses before asking; the server answers 401 anyway.
    let dequeue_args = [
        "dequeue",
        "--tenant",
        "t",
        "--pipeline",
        "check",
        "--project",
        "org/app",
        "--change",
        &change,
    ];
    let out = Command::new(zuul_client())
        .arg("--zuul-url")
        .arg(&url)
        .args(dequeue_args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Auth Token required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _, body) = http(
        &addr,
        "POST",
        "/api/tenant/t/project/org/app/dequeue",
        &[],
        &format!(r#"{{"pipeline": "check", "change": "{change}"}}"#),
    );
    assert_eq!(status, 401, "{body}");

    let exp = chrono_like_now() + 600;
    let token = hs256_token(
        "s3cret",
        &serde_json::json!({"iss": "sluice-tests", "aud": "sluice", "sub": "admin", "exp": exp, "iat": exp - 600, "zuul": {"admin": ["t"]}}),
    );
    let mut with_token = vec!["--auth-token", token.as_str()];
    with_token.extend(dequeue_args);
    run_zuul_client(&url, &with_token);
    let dequeued = wait_for(Duration::from_secs(30), || {
        get_json(&addr, "/api/tenant/t/buildsets?pipeline=check")[0]["result"] == "DEQUEUED"
    });
    assert!(
        dequeued,
        "{}\n{}",
        get_json(&addr, "/api/tenant/t/buildsets"),
        serve.output()
    );
    assert_status_empties(&addr);

    // Enqueued into `manual`, which no event of this change triggers.
    let enqueue = |pipeline: &str| {
        Command::new(zuul_client())
            .args([
                "--zuul-url",
                &url,
                "--auth-token",
                &token,
                "enqueue",
                "--tenant",
                "t",
            ])
            .args([
                "--pipeline",
                pipeline,
                "--project",
                "org/app",
                "--change",
                &change,
            ])
            .output()
            .unwrap()
    };
    let out = enqueue("nope");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Pipeline nope does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = enqueue("manual");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history = setup.wait_reported(&serve, "manual", &["work"], Duration::from_secs(90));
    assert_eq!(
        items(&history, "manual", "work")[0]["result"],
        "SUCCESS",
        "{history:#}"
    );
    let builds = get_json(&addr, "/api/tenant/t/builds?pipeline=manual");
    assert_eq!(builds[0]["job_name"], "noop", "{builds}");
}

/// Waits for the first pipeline of tenant `t` to hold no change queue: the status document is
/// cached for a second (as Zuul's), so it may lag the buildsets by that much.
fn assert_status_empties(addr: &str) {
    let empty = wait_for(Duration::from_secs(10), || {
        get_json(addr, "/api/tenant/t/status")["pipelines"][0]["change_queues"]
            == serde_json::json!([])
    });
    assert!(
        empty,
        "the change is still in the pipeline: {:#}",
        get_json(addr, "/api/tenant/t/status")
    );
}

/// An HS256 authenticator for `setup`'s config file, and an admin token for tenant `t`.
fn admin_token_setup(setup: &Setup) -> String {
    let mut config = std::fs::read_to_string(&setup.config).unwrap();
    config.push_str("web:\n  authenticators:\n    - name: sluice\n      driver: HS256\n      secret: s3cret\n      issuer-id: sluice-tests\n      client-id: sluice\n");
    std::fs::write(&setup.config, config).unwrap();
    let exp = chrono_like_now() + 600;
    hs256_token(
        "s3cret",
        &serde_json::json!({"iss": "sluice-tests", "aud": "sluice", "sub": "admin", "exp": exp, "iat": exp - 600, "zuul": {"admin": ["t"]}}),
    )
}

/// Runs `zuul-client` without a token and asserts it refuses (zuul-client checks before
/// asking), then sends the same call without a token and asserts the server's 401 JSON.
fn assert_needs_token(url: &str, args: &[&str], method: &str, path: &str, body: &str) {
    let out = Command::new(zuul_client())
        .arg("--zuul-url")
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} succeeded without a token");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Auth Token required"),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = url.trim_start_matches("http://");
    let (status, head, answer) = http(addr, method, path, &[], body);
    assert_eq!(status, 401, "{method} {path}: {head}\n{answer}");
    let error: Value = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {answer}"));
    assert_eq!(error["error"], "Unauthorized", "{error}");
    assert_eq!(error["code"], 401, "{error}");
}

/// The `N,patchset` ids of the items in the first change queue of `pipeline`, head first.
fn queue_ids(addr: &str, pipeline: &str) -> Vec<String> {
    let status = get_json(addr, "/api/tenant/t/status");
    let mut ids = Vec::new();
    for p in status["pipelines"].as_array().into_iter().flatten() {
        if p["name"] != pipeline {
            continue;
        }
        for head in p["change_queues"][0]["heads"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for item in head.as_array().into_iter().flatten() {
                ids.push(
                    item["refs"][0]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    ids
}

/// `zuul-client promote` moves the second change of a gate queue to its head: the status
/// shows the new order at once, both changes' first builds are canceled (each one's items
/// ahead changed), the promoted change merges first and the other is retested on top of it.
#[test]
fn web_zuul_client_promotes_a_change_to_the_head_of_the_gate_queue() {
    let slow = "- hosts: all\n  tasks:\n    - name: Take a while\n      shell: sleep 15\n";
    let app_jobs = "- job:\n    name: slow\n    run: playbooks/slow.yaml\n\n- project:\n    gate:\n      jobs:\n        - slow\n";
    let setup = Setup::new(
        GATE,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/slow.yaml", slow)],
        )],
        30,
    );
    let token = admin_token_setup(&setup);
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let serve = setup.start_with("serve", "serve-promote", &["--web-listen", &addr]);
    let sha_a = setup.push_change("org/app", "a", "Change A", &[("a.txt", "a\n")]);
    let sha_b = setup.push_change("org/app", "b", "Change B", &[("b.txt", "b\n")]);
    let known = wait_for(Duration::from_secs(30), || {
        let list = setup.sluice(&["change", "list"]);
        list.contains("review/main/a") && list.contains("review/main/b")
    });
    assert!(known, "changes not seen:\n{}", serve.output());
    setup.approve("org/app", "a");
    setup.approve("org/app", "b");
    let (id_a, id_b) = (format!("1,{sha_a}"), format!("2,{sha_b}"));
    let both_running = wait_for(Duration::from_secs(90), || {
        let (_, _, body) = http(&addr, "GET", "/api/tenant/t/status", &[], "");
        serde_json::from_str::<Value>(&body).is_ok_and(|s| {
            let head = &s["pipelines"][0]["change_queues"][0]["heads"][0];
            head.as_array().is_some_and(|h| h.len() == 2)
                && head[0]["jobs"][0]["start_time"].is_number()
                && head[1]["jobs"][0]["start_time"].is_number()
        })
    });
    assert!(
        both_running,
        "both changes never ran in gate: {}\n{}",
        get_json(&addr, "/api/tenant/t/status"),
        serve.output()
    );
    assert_eq!(queue_ids(&addr, "gate"), [id_a.clone(), id_b.clone()]);

    let promote_args = [
        "promote",
        "--tenant",
        "t",
        "--pipeline",
        "gate",
        "--changes",
        &id_b,
    ];
    assert_needs_token(
        &url,
        &promote_args,
        "POST",
        "/api/tenant/t/promote",
        &format!(r#"{{"pipeline": "gate", "changes": ["{id_b}"]}}"#),
    );
    // A change that is not in the pipeline is refused with Zuul's JSON error.
    let out = Command::new(zuul_client())
        .args(["--zuul-url", &url, "--auth-token", &token])
        .args([
            "promote",
            "--tenant",
            "t",
            "--pipeline",
            "gate",
            "--changes",
            "7",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Change 7 is not in pipeline gate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut with_token = vec!["--auth-token", token.as_str()];
    with_token.extend(promote_args);
    run_zuul_client(&url, &with_token);
    // The status document is cached for a second.
    let reordered = wait_for(Duration::from_secs(15), || {
        queue_ids(&addr, "gate") == [id_b.clone(), id_a.clone()]
    });
    assert!(
        reordered,
        "{:?}\n{}",
        queue_ids(&addr, "gate"),
        serve.output()
    );

    let history = setup.wait_reported(&serve, "gate", &["a", "b"], Duration::from_secs(180));
    for topic in ["a", "b"] {
        assert_eq!(
            items(&history, "gate", topic)[0]["result"],
            "SUCCESS",
            "{history:#}"
        );
    }
    // B merged first, then A on top of it: main's first parents are A's merge, then B.
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(setup.bare("org/app"))
        .args(["log", "--first-parent", "--format=%H %P", "main"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    let commits: Vec<Vec<&str>> = log
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        commits.len() >= 3
            && (commits[0][0] == sha_a || commits[0][1..].contains(&sha_a.as_str()))
            && commits[1][0] == sha_b,
        "main is not B then A: {log}"
    );
    // Each change's builds: the first canceled by the promotion, then a success; A's
    // successful buildset was tested on top of B.
    for (change, ahead) in [("1", vec!["refs/heads/review/main/b"]), ("2", vec![])] {
        let builds = get_json(
            &addr,
            &format!("/api/tenant/t/builds?pipeline=gate&change={change}"),
        );
        let results: Vec<&str> = builds
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["result"].as_str())
            .collect();
        assert_eq!(
            results,
            ["SUCCESS", "CANCELED"],
            "change {change}: {builds:#}"
        );
        let buildset = get_json(
            &addr,
            &format!(
                "/api/tenant/t/buildset/{}",
                builds[0]["buildset"]["uuid"].as_str().unwrap()
            ),
        );
        let ahead_now: Vec<String> = ahead_refs(&buildset);
        assert_eq!(ahead_now, ahead, "change {change}: {buildset:#}");
    }
}

/// The ids in the first column of a `zuul-client autohold-list` table.
fn autohold_ids(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|l| l.strip_prefix('|'))
        .filter_map(|l| l.split('|').next())
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()))
        .collect()
}

/// `zuul-client autohold` for a failing job: the request is listed in Zuul's shape, the next
/// failing build holds the (only) static node (`held` build record, the request counts it),
/// so the next change's build waits for a node; `autohold-delete` gives the node back and
/// that build runs. Without a token every admin command fails with a 401.
#[test]
fn web_zuul_client_autohold_holds_the_node_of_a_failing_build_until_deleted() {
    let broken =
        "- hosts: all\n  tasks:\n    - name: Break\n      fail:\n        msg: broken on purpose\n";
    let app_jobs = "- job:\n    name: broken\n    run: playbooks/broken.yaml\n\n- project:\n    check:\n      jobs:\n        - broken\n";
    let setup = Setup::new(
        CHECK,
        &[(
            "org/app",
            &[(".zuul.yaml", app_jobs), ("playbooks/broken.yaml", broken)],
        )],
        30,
    );
    let token = admin_token_setup(&setup);
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let serve = setup.start_with("serve", "serve-autohold", &["--web-listen", &addr]);
    let ready = wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
            && http(&addr, "GET", "/api/tenant/t/autohold", &[], "").0 == 200
    });
    assert!(ready, "{}", serve.output());

    let hold_args = [
        "autohold",
        "--tenant",
        "t",
        "--project",
        "org/app",
        "--job",
        "broken",
        "--reason",
        "debug the breakage",
        "--count",
        "1",
    ];
    assert_needs_token(
        &url,
        &hold_args,
        "POST",
        "/api/tenant/t/project/org/app/autohold",
        r#"{"job": "broken", "reason": "r", "count": 1, "change": "", "ref": "", "node_hold_expiration": null}"#,
    );
    let mut with_token = vec!["--auth-token", token.as_str()];
    with_token.extend(hold_args);
    run_zuul_client(&url, &with_token);

    let table = run_zuul_client(&url, &["autohold-list", "--tenant", "t"]);
    let ids = autohold_ids(&table);
    assert_eq!(ids.len(), 1, "{table}");
    let id = ids[0].clone();
    for cell in ["localhost/org/app", "broken", ".*", "debug the breakage"] {
        assert!(table.contains(cell), "{cell:?} missing:\n{table}");
    }
    let listed = get_json(&addr, "/api/tenant/t/autohold");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["max_count"], 1, "{listed}");
    assert_eq!(listed[0]["current_count"], 0, "{listed}");
    assert_eq!(listed[0]["expired"], Value::Null, "{listed}");
    assert_eq!(
        get_json(&addr, "/api/tenant/t/project/org/app/autohold"),
        listed
    );

    // The failing build holds the node.
    setup.push_change("org/app", "one", "First", &[("1.txt", "1\n")]);
    let history = setup.wait_reported(&serve, "check", &["one"], Duration::from_secs(120));
    assert_eq!(
        items(&history, "check", "one")[0]["result"],
        "FAILURE",
        "{history:#}"
    );
    let held = get_json(&addr, "/api/tenant/t/builds?held=true");
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held:#}");
    assert_eq!(held[0]["held"], true, "{held:#}");
    assert_eq!(held[0]["result"], "FAILURE", "{held:#}");
    let build = held[0]["uuid"].as_str().unwrap().to_string();
    let info = run_zuul_client(&url, &["autohold-info", "--tenant", "t", &id]);
    for line in [
        format!("ID: {id}"),
        "Current Count: 1".to_string(),
        "Reason: debug the breakage".to_string(),
    ] {
        assert!(info.contains(&line), "{line:?} missing:\n{info}");
    }
    assert!(info.contains(&build), "held build missing:\n{info}");
    let request = get_json(&addr, &format!("/api/tenant/t/autohold/{id}"));
    assert_eq!(request["current_count"], 1, "{request}");
    assert!(request["expired"].is_number(), "{request}");
    assert_eq!(request["nodes"][0]["build"], build.as_str(), "{request}");
    assert_eq!(
        request["nodes"][0]["nodes"].as_array().map(Vec::len),
        Some(1),
        "{request}"
    );

    // The only node is held: the next change's build waits for it.
    setup.push_change("org/app", "two", "Second", &[("2.txt", "2\n")]);
    let waiting = wait_for(Duration::from_secs(30), || {
        let (_, _, body) = http(&addr, "GET", "/api/tenant/t/status", &[], "");
        serde_json::from_str::<Value>(&body).is_ok_and(|s| {
            s["pipelines"][0]["change_queues"][0]["heads"][0][0]["jobs"][0]["name"] == "broken"
        })
    });
    assert!(waiting, "{}", serve.output());
    std::thread::sleep(Duration::from_secs(5));
    let status = get_json(&addr, "/api/tenant/t/status");
    let job = &status["pipelines"][0]["change_queues"][0]["heads"][0][0]["jobs"][0];
    assert!(
        job["start_time"].is_null() && job["result"].is_null(),
        "a build got the held node: {status:#}"
    );

    let delete_path = format!("/api/tenant/t/autohold/{id}");
    assert_needs_token(
        &url,
        &["autohold-delete", "--tenant", "t", &id],
        "DELETE",
        &delete_path,
        "",
    );
    run_zuul_client(
        &url,
        &[
            "--auth-token",
            &token,
            "autohold-delete",
            "--tenant",
            "t",
            &id,
        ],
    );
    let table = run_zuul_client(&url, &["autohold-list", "--tenant", "t"]);
    assert!(table.contains("No autohold requests found"), "{table}");
    let (status, _, body) = http(&addr, "GET", &delete_path, &[], "");
    assert_eq!(status, 404, "{body}");

    // The node is back: the second change's build runs (and, with no request left, is not held).
    let history = setup.wait_reported(&serve, "check", &["two"], Duration::from_secs(120));
    assert_eq!(
        items(&history, "check", "two")[0]["result"],
        "FAILURE",
        "{history:#}"
    );
    let held = get_json(&addr, "/api/tenant/t/builds?held=true");
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held:#}");
}

/// `project-ssh-key/{project}.pub`: an OpenSSH public key that `ssh-keygen` reads (RSA-2048),
/// the same on every call (stored with the project keys), and a 404 for an unknown project.
#[test]
fn web_serves_a_stored_per_project_ssh_key() {
    let setup = Setup::new(CHECK, &[("org/app", &[("README", "app\n")])], 30);
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = setup.start_with("serve", "serve-ssh-key", &["--web-listen", &addr]);
    let ready = wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
            && http(&addr, "GET", "/api/tenant/t/info", &[], "").0 == 200
            && http(&addr, "GET", "/api/tenant/t/projects", &[], "")
                .2
                .contains("org/app")
    });
    assert!(ready, "{}", serve.output());
    let (status, head, key) = http(
        &addr,
        "GET",
        "/api/tenant/t/project-ssh-key/org/app.pub",
        &[],
        "",
    );
    assert_eq!(status, 200, "{head}\n{key}");
    assert!(key.starts_with("ssh-rsa "), "{key}");
    let file = setup.root().join("project.pub");
    std::fs::write(&file, &key).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("ssh-keygen (Debian openssh-client) must be installed");
    let fingerprint = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success()
            && fingerprint.starts_with("2048 SHA256:")
            && fingerprint.contains("(RSA)"),
        "ssh-keygen does not read it: {fingerprint}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, _, again) = http(
        &addr,
        "GET",
        "/api/tenant/t/project-ssh-key/localhost/org/app.pub",
        &[],
        "",
    );
    assert_eq!(again, key, "the key changed between calls");
    let (status, _, body) = http(
        &addr,
        "GET",
        "/api/tenant/t/project-ssh-key/org/nope.pub",
        &[],
        "",
    );
    assert_eq!(status, 404, "{body}");
}

/// `zuul-client encrypt` against the running server: it fetches the project's public key from
/// `key/{project}.pub` and encrypts with `openssl`; the secret it prints, pasted into the
/// project's `.zuul.yaml` by a change, reaches that change's job as the plaintext (the job
/// checks its SHA-256 and returns it), and the plaintext never reaches the job's output.
#[test]
fn web_zuul_client_encrypt_makes_a_secret_that_decrypts_in_a_job() {
    const PLAINTEXT: &str = "correct-horse-battery-staple-4711";
    // In check from the start (a change is enqueued where the current layout has its project).
    let in_check = "- project:\n    check:\n      jobs:\n        - noop\n";
    let setup = Setup::new(CHECK, &[("org/app", &[(".zuul.yaml", in_check)])], 30);
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let serve = setup.start_with("serve", "serve-encrypt", &["--web-listen", &addr]);
    let ready = wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
            && http(&addr, "GET", "/api/tenant/t/key/org/app.pub", &[], "").0 == 200
    });
    assert!(ready, "{}", serve.output());

    let infile = setup.root().join("plaintext");
    std::fs::write(&infile, PLAINTEXT).unwrap();
    let outfile = setup.root().join("secret.yaml");
    run_zuul_client(
        &url,
        &[
            "encrypt",
            "--tenant",
            "t",
            "--project",
            "org/app",
            "--secret-name",
            "deploy",
            "--field-name",
            "token",
            "--infile",
            infile.to_str().unwrap(),
            "--outfile",
            outfile.to_str().unwrap(),
        ],
    );
    let secret = std::fs::read_to_string(&outfile).unwrap();
    assert!(
        secret.contains("name: deploy")
            && secret.contains("token: !encrypted/pkcs1-oaep")
            && !secret.contains(PLAINTEXT),
        "{secret}"
    );

    let sha256 = {
        let out = Command::new("sha256sum")
            .arg(&infile)
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(sha256.len(), 64, "sha256sum of {}", infile.display());
    let playbook = format!(
        "- hosts: localhost\n  tasks:\n    - name: The secret is the plaintext\n      assert:\n        that: deploy.token | hash('sha256') == '{sha256}'\n    - zuul_return:\n        data:\n          zuul:\n            artifacts:\n              - name: token-sha256\n                url: sha256.txt\n                metadata:\n                  sha256: \"{{{{ deploy.token | hash('sha256') }}}}\"\n"
    );
    let jobs = format!(
        "{secret}\n- job:\n    name: use-secret\n    secrets:\n      - deploy\n    run: playbooks/secret.yaml\n\n- project:\n    check:\n      jobs:\n        - use-secret\n"
    );
    setup.push_change(
        "org/app",
        "secret",
        "Use an encrypted secret",
        &[(".zuul.yaml", &jobs), ("playbooks/secret.yaml", &playbook)],
    );
    let history = setup.wait_reported(&serve, "check", &["secret"], Duration::from_secs(120));
    let outputs = job_outputs(&history);
    let builds = get_json(&addr, "/api/tenant/t/builds?job_name=use-secret");
    assert_eq!(builds[0]["result"], "SUCCESS", "{builds}\n{outputs}");
    // What the job computed from the secret it received, as the REST API reports it.
    assert_eq!(
        builds[0]["artifacts"][0]["metadata"]["sha256"], sha256,
        "{builds}"
    );
    assert!(outputs.contains("The secret is the plaintext"), "{outputs}");
    assert!(
        !outputs.contains(PLAINTEXT),
        "plaintext in the output:\n{outputs}"
    );
}
