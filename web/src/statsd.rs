//! Optional statsd output (`statsd:` in the configuration file, Zuul's `[statsd]`): the counts
//! `/metrics` serves, sent over UDP with Zuul's statsd key names so existing Zuul dashboards
//! (Graphite/Grafana) work unchanged.
//!
//! The numbers come from the same place as `/metrics` ([`sluice_store::MetricCounts`], read
//! every `interval-seconds`): gauges are sent as their value, counters as the increase since the
//! previous reading (`|c`), so a restart neither repeats nor loses what the store counted while
//! the process ran; each build that finished since the previous reading also sends its duration
//! as the job result's timer (`|ms`). One process per store sends them: the one running the
//! scheduler.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use sluice_scheduler::StatsdSection;
use sluice_store::{FinishedBuild, JobResultKey, MetricCounts, Store};
use tokio::net::UdpSocket;

/// Largest datagram: several lines share one packet up to this size (statsd's multi-metric
/// packets), small enough for any path MTU.
const MAX_PACKET: usize = 512;

/// One key component as Zuul normalises it: `.`, `/` and `:` become `_`.
fn component(s: &str) -> String {
    s.replace(['.', '/', ':'], "_")
}

/// `host.project` of a canonical project name (`localhost/org/app` → `localhost.org_app`).
fn project_key(canonical: &str) -> String {
    match canonical.split_once('/') {
        Some((host, name)) => format!("{}.{}", component(host), component(name)),
        None => component(canonical),
    }
}

/// `zuul.tenant.<t>.pipeline.<p>.project.<host>.<project>.<branch>.job.<job>.<RESULT>`: the
/// key of a job result's counter and timer.
fn job_result_key(k: &JobResultKey) -> String {
    format!(
        "zuul.tenant.{}.pipeline.{}.project.{}.{}.job.{}.{}",
        component(&k.tenant),
        component(&k.pipeline),
        project_key(&k.project),
        component(&k.branch),
        component(&k.job),
        k.result
    )
}

/// The counters of `counts` by statsd key.
fn counters(counts: &MetricCounts) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, n) in &counts.job_results {
        *out.entry(job_result_key(k)).or_default() += n;
    }
    for ((tenant, pipeline), (_, all)) in &counts.pipeline_items {
        let key = format!(
            "zuul.tenant.{}.pipeline.{}.total_changes",
            component(tenant),
            component(pipeline)
        );
        *out.entry(key).or_default() += all;
    }
    out
}

/// The gauges of `counts` by statsd key.
fn gauges(counts: &MetricCounts) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((tenant, pipeline), (active, _)) in &counts.pipeline_items {
        let key = format!(
            "zuul.tenant.{}.pipeline.{}.current_changes",
            component(tenant),
            component(pipeline)
        );
        out.insert(key, *active);
    }
    out.insert("zuul.executors.jobs_queued".into(), counts.requests_queued);
    out.insert(
        "zuul.executors.jobs_running".into(),
        counts.requests_running.values().sum(),
    );
    for (executor, n) in &counts.requests_running {
        out.insert(
            format!("zuul.executor.{}.running_builds", component(executor)),
            *n,
        );
    }
    for (connection, n) in &counts.pending_events {
        out.insert(
            format!(
                "zuul.scheduler.eventqueues.connection.{}",
                component(connection)
            ),
            *n,
        );
    }
    out
}

/// The statsd lines for one reading: every gauge, and each counter that grew since `previous`
/// (a counter first seen counts from zero, unless `previous` is `None`: the first reading only
/// sets where counting starts).
fn lines(
    counts: &MetricCounts,
    previous: Option<&BTreeMap<String, u64>>,
    prefix: &str,
) -> (Vec<String>, BTreeMap<String, u64>) {
    let now = counters(counts);
    let mut out = Vec::new();
    if let Some(previous) = previous {
        for (key, n) in &now {
            let delta = n.saturating_sub(previous.get(key).copied().unwrap_or(0));
            if delta > 0 {
                out.push(format!("{prefix}{key}:{delta}|c"));
            }
        }
    }
    for (key, n) in gauges(counts) {
        out.push(format!("{prefix}{key}:{n}|g"));
    }
    (out, now)
}

/// How far back finished builds are read for the job timers: a build created earlier than
/// this and finishing now gets its counter but no timer.
const TIMER_WINDOW_MS: i64 = 2 * 24 * 3600 * 1000;

/// The job timers (`<job result key>:<ms>|ms`, end minus start) of the builds in `finished`
/// not in `sent`, which then holds exactly the uuids of `finished` (the window of the next
/// reading is within this one's, so older uuids are not needed). With `first`, nothing is sent:
/// the builds that finished before this process started were timed by whoever ran then.
fn timer_lines(
    finished: &[FinishedBuild],
    sent: &mut HashSet<String>,
    first: bool,
    prefix: &str,
) -> Vec<String> {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let mut out = Vec::new();
    for b in finished {
        if first || sent.contains(&b.uuid) {
            continue;
        }
        if let (Some(start), Some(end)) = (parse(&b.start_time), parse(&b.end_time)) {
            let ms = (end - start).num_milliseconds().max(0);
            out.push(format!("{prefix}{}:{ms}|ms", job_result_key(&b.key)));
        }
    }
    *sent = finished.iter().map(|b| b.uuid.clone()).collect();
    out
}

/// `lines` packed into datagrams of at most [`MAX_PACKET`] bytes, newline-separated.
fn packets(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        match out.last_mut() {
            Some(p) if p.len() + 1 + line.len() <= MAX_PACKET => {
                p.push('\n');
                p.push_str(line);
            }
            _ => out.push(line.clone()),
        }
    }
    out
}

/// Sends the store's counts to `cfg.server` every `cfg.interval_seconds` until `stop` turns
/// true. Errors (an unresolvable server, an unreadable store, a refused datagram) are logged
/// and the next interval tries again: metrics never stop the scheduler.
pub async fn run(store: Store, cfg: StatsdSection, mut stop: tokio::sync::watch::Receiver<bool>) {
    let prefix = match cfg.prefix.as_deref() {
        Some(p) if !p.is_empty() => format!("{}.", p.trim_end_matches('.')),
        _ => String::new(),
    };
    let interval = Duration::from_secs_f64(cfg.interval_seconds);
    let mut previous: Option<BTreeMap<String, u64>> = None;
    // The finished builds whose timers were sent (or that finished before the first reading).
    let mut timed: HashSet<String> = HashSet::new();
    let mut socket: Option<(UdpSocket, SocketAddr)> = None;
    loop {
        if socket.is_none() {
            socket = connect(&cfg).await;
        }
        let since = sluice_store::now_ms() - TIMER_WINDOW_MS;
        let read = async {
            Ok::<_, sluice_store::StoreError>((
                store.metric_counts().await?,
                store.finished_builds_created_since(since).await?,
            ))
        };
        match read.await {
            Ok((counts, finished)) => {
                let (mut lines, now) = lines(&counts, previous.as_ref(), &prefix);
                if socket.is_some() || previous.is_none() {
                    lines.extend(timer_lines(
                        &finished,
                        &mut timed,
                        previous.is_none(),
                        &prefix,
                    ));
                }
                if let Some((sock, addr)) = &socket {
                    for packet in packets(&lines) {
                        if let Err(e) = sock.send_to(packet.as_bytes(), addr).await {
                            tracing::warn!(server = %addr, error = %e, "statsd: cannot send");
                            break;
                        }
                    }
                    // Counted only once sent (or tried): a server that was not resolvable yet
                    // gets the increase since the last reading it could have had.
                    previous = Some(now);
                } else if previous.is_none() {
                    previous = Some(now);
                }
            }
            Err(e) => tracing::warn!(error = %e, "statsd: cannot read the store"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// A UDP socket for the configured server (its first address), or `None` after logging why.
async fn connect(cfg: &StatsdSection) -> Option<(UdpSocket, SocketAddr)> {
    let addr = match tokio::net::lookup_host((cfg.server.as_str(), cfg.port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            tracing::warn!(server = %cfg.server, port = cfg.port, error = %e, "statsd: cannot resolve the server");
            return None;
        }
    }?;
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    match UdpSocket::bind(local).await {
        Ok(sock) => Some((sock, addr)),
        Err(e) => {
            tracing::warn!(error = %e, "statsd: cannot open a UDP socket");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(successes: u64) -> MetricCounts {
        let mut c = MetricCounts::default();
        c.job_results.insert(
            JobResultKey {
                tenant: "t".into(),
                pipeline: "check".into(),
                project: "review.example.org/org/app.js".into(),
                branch: "stable/1.0".into(),
                job: "unit".into(),
                result: "SUCCESS".into(),
            },
            successes,
        );
        c.pipeline_items
            .insert(("t".into(), "check".into()), (1, successes));
        c.requests_running.insert("ex1.example.org".into(), 2);
        c
    }

    #[test]
    fn keys_are_zuuls_and_counters_send_the_increase() {
        let (first, seen) = lines(&counts(3), None, "ci.");
        assert!(first.iter().all(|l| l.ends_with("|g")), "{first:?}");
        assert!(first.contains(&"ci.zuul.tenant.t.pipeline.check.current_changes:1|g".into()));
        assert!(first.contains(&"ci.zuul.executor.ex1_example_org.running_builds:2|g".into()));
        assert!(first.contains(&"ci.zuul.executors.jobs_running:2|g".into()));
        let (second, _) = lines(&counts(5), Some(&seen), "ci.");
        assert!(second.contains(
            &"ci.zuul.tenant.t.pipeline.check.project.review_example_org.org_app_js.stable_1_0.job.unit.SUCCESS:2|c"
                .into()
        ), "{second:?}");
        assert!(second.contains(&"ci.zuul.tenant.t.pipeline.check.total_changes:2|c".into()));
        let (third, _) = lines(&counts(5), Some(&counters(&counts(5))), "");
        assert!(third.iter().all(|l| !l.ends_with("|c")), "{third:?}");
    }

    #[test]
    fn each_finished_build_sends_its_duration_once() {
        let build = |uuid: &str, result: &str, end: Option<&str>| FinishedBuild {
            uuid: uuid.into(),
            key: JobResultKey {
                tenant: "t".into(),
                pipeline: "gate".into(),
                project: "localhost/org/app".into(),
                branch: "main".into(),
                job: "unit".into(),
                result: result.into(),
            },
            start_time: Some("2026-11-26T10:00:00+00:00".into()),
            end_time: end.map(str::to_string),
        };
        let mut sent = HashSet::new();
        let before = [build("a", "SUCCESS", Some("2026-11-26T10:00:01Z"))];
        assert!(timer_lines(&before, &mut sent, true, "").is_empty());
        let now = [
            build("a", "SUCCESS", Some("2026-11-26T10:00:01Z")),
            build("b", "FAILURE", Some("2026-11-26T10:01:02.500Z")),
            build("c", "SKIPPED", None),
        ];
        assert_eq!(
            timer_lines(&now, &mut sent, false, "ci."),
            ["ci.zuul.tenant.t.pipeline.gate.project.localhost.org_app.main.job.unit.FAILURE:62500|ms"]
        );
        assert!(timer_lines(&now, &mut sent, false, "ci.").is_empty());
    }

    #[test]
    fn lines_share_packets_up_to_the_limit() {
        let lines: Vec<String> = (0..100).map(|i| format!("zuul.k{i:03}:1|c")).collect();
        let packets = packets(&lines);
        assert!(packets.len() > 1);
        assert!(packets.iter().all(|p| p.len() <= MAX_PACKET));
        assert_eq!(packets.join("\n").lines().count(), 100);
    }
}
