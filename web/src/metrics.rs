//! Operations endpoints: `/metrics` (Prometheus text format, version 0.0.4) with the pipeline,
//! job, executor, node and event-queue metrics Zuul only sends to statsd, named after Zuul's
//! statsd keys (`zuul.tenant.<t>.pipeline.<p>.current_changes` becomes
//! `zuul_tenant_pipeline_current_changes{tenant="t",pipeline="p"}`); `/health/live` and
//! `/health/ready` as Zuul's components answer them.
//!
//! Every number is read from the store at scrape time ([`sluice_store::MetricCounts`]), so
//! `sluice serve` and a separate `sluice web` report the same values and counters survive
//! restarts.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_store::MetricCounts;
use sluice_stream::ConsoleState;

use crate::state::WebState;

/// What the operations endpoints read: the API state when there is a store, and the console
/// stream's sessions.
#[derive(Clone)]
pub struct OpsState {
    /// The REST API's state (`None`: `sluice web` with only an executors file).
    pub web: Option<WebState>,
    /// The console stream.
    pub console: ConsoleState,
}

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/health/live`: the process answers.
pub async fn live() -> &'static str {
    "OK\n"
}

/// `/health/ready`: 200 once the store answers and every tenant layout is loaded, else 503.
pub async fn ready(State(ops): State<OpsState>) -> Response {
    let Some(web) = ops.web else {
        return (StatusCode::OK, "OK\n").into_response();
    };
    if let Err(e) = web.store().pending_event_count().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response();
    }
    if web.tenants().is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no tenant layout loaded yet\n",
        )
            .into_response();
    }
    (StatusCode::OK, "OK\n").into_response()
}

/// `/metrics`.
pub async fn metrics(State(ops): State<OpsState>) -> Response {
    let mut text = String::new();
    if let Some(web) = &ops.web {
        match web.store().metric_counts().await {
            Ok(counts) => render_counts(&mut text, &counts, web),
            Err(e) => {
                tracing::error!(error = %e, "metrics: cannot read the store");
                return (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response();
            }
        }
    }
    family(
        &mut text,
        "zuul_web_streamers",
        "gauge",
        "Open console stream websocket sessions (zuul.web.server.<host>.streamers).",
    );
    sample(
        &mut text,
        "zuul_web_streamers",
        &[],
        ops.console.n_sessions() as u64,
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

fn render_counts(text: &mut String, counts: &MetricCounts, web: &WebState) {
    let name = "zuul_tenant_pipeline_project_job_total";
    family(
        text,
        name,
        "counter",
        "Finished builds by result (zuul.tenant.<t>.pipeline.<p>.project.<host>.<project>.<branch>.job.<job>.<RESULT>).",
    );
    for (k, n) in &counts.job_results {
        sample(
            text,
            name,
            &[
                ("tenant", &k.tenant),
                ("pipeline", &k.pipeline),
                ("project", &k.project),
                ("branch", &k.branch),
                ("job", &k.job),
                ("result", &k.result),
            ],
            *n,
        );
    }
    let current = "zuul_tenant_pipeline_current_changes";
    family(
        text,
        current,
        "gauge",
        "Items in the pipeline now (zuul.tenant.<t>.pipeline.<p>.current_changes).",
    );
    for ((tenant, pipeline), (active, _)) in &counts.pipeline_items {
        sample(
            text,
            current,
            &[("tenant", tenant), ("pipeline", pipeline)],
            *active,
        );
    }
    let total = "zuul_tenant_pipeline_total_changes_total";
    family(
        text,
        total,
        "counter",
        "Items ever enqueued (zuul.tenant.<t>.pipeline.<p>.total_changes).",
    );
    for ((tenant, pipeline), (_, all)) in &counts.pipeline_items {
        sample(
            text,
            total,
            &[("tenant", tenant), ("pipeline", pipeline)],
            *all,
        );
    }
    family(
        text,
        "zuul_executors_jobs_queued",
        "gauge",
        "Build requests waiting for an executor (zuul.executors.jobs_queued).",
    );
    sample(
        text,
        "zuul_executors_jobs_queued",
        &[],
        counts.requests_queued,
    );
    family(
        text,
        "zuul_executors_jobs_running",
        "gauge",
        "Builds an executor holds (zuul.executors.jobs_running).",
    );
    sample(
        text,
        "zuul_executors_jobs_running",
        &[],
        counts.requests_running.values().sum(),
    );
    let per_executor = "zuul_executor_running_builds";
    family(
        text,
        per_executor,
        "gauge",
        "Builds each executor holds (zuul.executor.<host>.running_builds).",
    );
    for (executor, n) in &counts.requests_running {
        sample(text, per_executor, &[("executor", executor)], *n);
    }
    let events = "zuul_scheduler_eventqueues_connection";
    family(
        text,
        events,
        "gauge",
        "Trigger events waiting for the scheduler (zuul.scheduler.eventqueues.connection.<conn>).",
    );
    for (connection, n) in &counts.pending_events {
        sample(text, events, &[("connection", connection)], *n);
    }
    let nodes = "zuul_nodepool_resources_total_nodes";
    family(
        text,
        nodes,
        "gauge",
        "Static nodes per label (zuul.nodepool.resources.total...).",
    );
    let mut per_label = std::collections::BTreeMap::<&str, u64>::new();
    for node in &web.config().nodes {
        for label in &node.labels {
            *per_label.entry(label.as_str()).or_default() += 1;
        }
    }
    for (label, n) in per_label {
        sample(text, nodes, &[("label", label)], n);
    }
}

fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {}", escape(help, false));
    let _ = writeln!(text, "# TYPE {name} {kind}");
}

fn sample(text: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    text.push_str(name);
    if !labels.is_empty() {
        text.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = write!(text, "{k}=\"{}\"", escape(v, true));
        }
        text.push('}');
    }
    let _ = writeln!(text, " {value}");
}

/// The text format's escaping: backslash and newline everywhere, double quotes in label values.
fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut text = String::new();
        sample(&mut text, "m", &[("a", "x\"y\\z\nw")], 3);
        assert_eq!(text, "m{a=\"x\\\"y\\\\z\\nw\"} 3\n");
    }
}
