//! The dashboard in a real browser: a real `sluice serve --web-listen` running a real build
//! (git, Ansible, an sshd node), and headless Debian `chromium` driven by `playwright-core`
//! (npm, installed into `tests/browser/node_modules` by `scripts/test`) through
//! `tests/browser/dashboard.mjs`: status page with the running job's progress bar, click
//! through to the live console, a line the job prints only after the page opened, the build
//! page, history filters and layout pages. Screenshots land in `target/test-artifacts/dashboard/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::scenario::*;
use sluice_tests::{repo_root, wait_for};

/// A job that prints `waiting for go`, waits for the go file, then prints its content. It
/// stops waiting when the go file's directory goes (the test ended without saying go), so
/// no command is left looping on the node.
fn watched_playbook(go: &Path) -> String {
    format!(
        "- hosts: all\n  tasks:\n    - name: Wait for the go file, then print it\n      shell: |\n        echo waiting for go\n        while [ ! -e {go} ] && [ -d {dir} ]; do sleep 0.1; done\n        cat {go}\n",
        go = go.display(),
        dir = go.parent().unwrap_or(go).display()
    )
}

const APP_JOBS: &str = "- job:\n    name: watched\n    run: playbooks/watched.yaml\n\n- project:\n    check:\n      jobs:\n        - watched\n";

/// `node` and the Debian `chromium`, and playwright-core where `scripts/test` installs it;
/// fails the test saying how to install what is missing.
fn browser_tools() -> PathBuf {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node not found: install it with `apt-get install nodejs npm` (Debian)"
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium not found: install it with `apt-get install chromium chromium-driver` (Debian; .ci/run does)"
    );
    let dir = repo_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core/package.json").is_file(),
        "playwright-core not installed in {}: run scripts/test once, or `npm ci --prefix tests/browser`",
        dir.display()
    );
    dir
}

/// GET `path` and parse the JSON body; `None` on any failure (the server may not be up yet).
fn try_get_json(addr: &str, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") || head.to_ascii_lowercase().contains("chunked") {
        return None;
    }
    serde_json::from_str(body).ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `watched` job of the status document, once it has started.
fn running_job(addr: &str) -> Option<Value> {
    let status = try_get_json(addr, "/api/tenant/t/status")?;
    let pipelines = status["pipelines"].as_array()?;
    pipelines
        .iter()
        .flat_map(|p| p["change_queues"].as_array().into_iter().flatten())
        .flat_map(|q| q["heads"].as_array().into_iter().flatten())
        .flat_map(|h| h.as_array().into_iter().flatten())
        .flat_map(|i| i["jobs"].as_array().into_iter().flatten())
        .find(|j| j["name"] == "watched" && j["start_time"].is_number() && j["result"].is_null())
        .cloned()
}

#[test]
fn dashboard_shows_a_running_build_its_progress_and_its_live_console_in_chromium() {
    let browser_dir = browser_tools();
    let go_dir = tempfile::tempdir().expect("tempdir");
    let go = go_dir.path().join("go");
    let playbook = watched_playbook(&go);
    let setup = Setup::with_executor(
        CHECK,
        &[(
            "org/app",
            &[
                (".zuul.yaml", APP_JOBS),
                ("playbooks/watched.yaml", playbook.as_str()),
            ],
        )],
        30,
        "",
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = setup.start_with("serve", "serve-web", &["--web-listen", &addr]);
    let up = wait_for(Duration::from_secs(30), || {
        try_get_json(&addr, "/api/tenants").is_some_and(|t| t[0]["name"] == "t")
    });
    assert!(up, "web server not up:\n{}", serve.output());

    // A first build, let through at once, gives the job an estimated time.
    std::fs::write(&go, "warm-up\n").expect("write the go file");
    setup.push_change("org/app", "one", "First change", &[("a.txt", "1\n")]);
    let history = setup.wait_reported(&serve, "check", &["one"], Duration::from_secs(180));
    assert_eq!(
        history["builds"][0]["result"],
        "SUCCESS",
        "{}",
        job_outputs(&history)
    );

    // The second build waits for the go file, which the browser script writes.
    std::fs::remove_file(&go).expect("remove the go file");
    setup.push_change("org/app", "two", "Second change", &[("a.txt", "2\n")]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        if let Some(job) = running_job(&addr) {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the second build never ran:\n{}",
            serve.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        job["estimated_time"].is_number(),
        "no estimated time after a successful build: {job}"
    );

    let artifacts = repo_root().join("target/test-artifacts/dashboard");
    let profile = tempfile::tempdir().expect("tempdir");
    let marker = format!(
        "DASHBOARD-MARKER-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let script_args = serde_json::json!({
        "base": format!("http://{addr}"),
        "tenant": "t",
        "job": "watched",
        "project": "org/app",
        "goFile": go,
        "marker": marker,
        "artifacts": artifacts,
        "userDataDir": profile.path(),
    });
    let out = Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .arg(script_args.to_string())
        .current_dir(&browser_dir)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Never leave the build waiting, whatever happened in the browser.
    if !go.exists() {
        let _ = std::fs::write(&go, "browser script failed\n");
    }
    println!("{stdout}");
    println!("screenshots: {}", artifacts.display());
    assert!(
        out.status.success(),
        "the browser script failed (screenshots in {}):\n{stdout}\n{stderr}\n{}",
        artifacts.display(),
        serve.output()
    );
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}"));
    assert_eq!(result["uuid"], job["uuid"], "{result}");
    for name in ["status", "stream", "build", "builds"] {
        let file = artifacts.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 0),
            "no screenshot {}",
            file.display()
        );
    }

    // The printed line came from the job: the build's own log has it.
    let history = setup.wait_reported(&serve, "check", &["two"], Duration::from_secs(60));
    let outputs = job_outputs(&history);
    assert!(outputs.contains(&marker), "{outputs}");
}
