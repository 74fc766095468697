//! A buildset's job graph, Zuul's way: which waiting builds can start (with their parents'
//! returned data), which are skipped, and which paused builds can resume.
//!
//! - A job starts once every job it depends on, soft or hard, directly or through others, has
//!   succeeded or paused; a soft dependency that was skipped does not block it.
//! - A job that fails skips every job depending on it, recursively.
//! - `zuul_return` `zuul.child_jobs` of a job that succeeded or paused: an empty list skips
//!   every job that depends on it through hard dependencies; a list of names skips the direct
//!   dependents not named, and what depends on those through hard dependencies.
//! - A child gets the returned data (without the `zuul` key) of every job it depends on,
//!   directly or not, merged in the buildset's job order (later jobs win).
//! - A paused build resumes once every job depending on it, recursively, has a final result.
//! - A build that is retried resets the jobs depending on it, recursively, that were requested
//!   or finished (a paused build's children ran against the try that is gone): they wait again.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sluice_store::BuildRow;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    /// Not finished (waiting, requested, running, or being retried).
    Pending,
    /// SUCCESS, or paused after its run phase.
    Succeeded,
    /// SKIPPED.
    Skipped,
    /// Any other final result.
    Failed,
}

/// One job of the buildset and its current build.
struct Node<'a> {
    name: &'a str,
    /// `(index of the job depended on, soft)`.
    deps: Vec<(usize, bool)>,
    current: &'a BuildRow,
}

/// What to do with a buildset's builds now.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Decisions {
    /// Waiting builds to skip: `(uuid, error_detail)`.
    pub skip: Vec<(String, String)>,
    /// Waiting builds to request: `(uuid, parent data)`.
    pub release: Vec<(String, Map<String, Value>)>,
    /// Paused builds to resume.
    pub resume: Vec<String>,
}

/// The job graph of one buildset's builds (every try of every job).
pub(crate) struct JobGraph<'a> {
    nodes: Vec<Node<'a>>,
}

impl<'a> JobGraph<'a> {
    /// The graph of `builds` (oldest first); jobs keep the order of their first build.
    pub fn new(builds: &'a [BuildRow]) -> JobGraph<'a> {
        let mut names: Vec<&str> = Vec::new();
        for b in builds {
            if !names.contains(&b.job_name.as_str()) {
                names.push(&b.job_name);
            }
        }
        let nodes = names
            .iter()
            .filter_map(|name| {
                let tries: Vec<&BuildRow> = builds.iter().filter(|b| b.job_name == *name).collect();
                // The final try if there is one, else the latest.
                let current = tries.iter().find(|b| b.final_).or(tries.last()).copied()?;
                let deps = current
                    .dependencies
                    .iter()
                    .filter_map(|d| names.iter().position(|n| *n == d.name).map(|i| (i, d.soft)))
                    .collect();
                Some(Node {
                    name,
                    deps,
                    current,
                })
            })
            .collect();
        JobGraph { nodes }
    }

    fn state(&self, i: usize) -> JobState {
        let b = self.nodes[i].current;
        match (b.final_, b.result.as_deref()) {
            (true, Some("SUCCESS")) => JobState::Succeeded,
            (true, Some("SKIPPED")) => JobState::Skipped,
            (true, Some(_)) => JobState::Failed,
            _ if b.paused && b.result.is_none() => JobState::Succeeded,
            _ => JobState::Pending,
        }
    }

    /// Jobs depending directly on `i` (through hard dependencies only when `hard_only`).
    fn dependents(&self, i: usize, hard_only: bool) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|j| {
                self.nodes[*j]
                    .deps
                    .iter()
                    .any(|(d, soft)| *d == i && !(hard_only && *soft))
            })
            .collect()
    }

    /// Jobs depending on `i`, recursively, following hard dependencies only when `hard_only`.
    fn dependents_recursive(&self, i: usize, hard_only: bool) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        let mut todo = vec![i];
        while let Some(current) = todo.pop() {
            for d in self.dependents(current, hard_only) {
                if d != i && !out.contains(&d) {
                    out.push(d);
                    todo.push(d);
                }
            }
        }
        out
    }

    /// Jobs `i` depends on, recursively, following hard dependencies only when `hard_only`.
    fn ancestors(&self, i: usize, hard_only: bool) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        let mut todo = vec![i];
        while let Some(current) = todo.pop() {
            for (d, soft) in &self.nodes[current].deps {
                if !(hard_only && *soft) && *d != i && !out.contains(d) {
                    out.push(*d);
                    todo.push(*d);
                }
            }
        }
        out
    }

    /// A waiting build: not requested yet, no result.
    fn waiting(&self, i: usize) -> bool {
        let b = self.nodes[i].current;
        b.result.is_none() && b.pending_request.is_some()
    }

    /// `zuul.child_jobs` of a build's returned data, if it has the key.
    fn child_jobs(&self, i: usize) -> Option<Vec<String>> {
        let value = self.nodes[i]
            .current
            .data
            .as_ref()?
            .get("zuul")?
            .get("child_jobs")?;
        Some(match value {
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        })
    }

    /// The current builds of the jobs depending on `job`, directly or not, that were
    /// requested or finished: what a retry of `job` resets. Waiting builds wait anyway; skipped
    /// ones stay skipped (the retried try's `zuul.child_jobs` is not known yet).
    pub fn started_dependents(&self, job: &str) -> Vec<&'a BuildRow> {
        let Some(i) = self.nodes.iter().position(|n| n.name == job) else {
            return Vec::new();
        };
        self.dependents_recursive(i, false)
            .into_iter()
            .filter(|d| !self.waiting(*d) && self.state(*d) != JobState::Skipped)
            .map(|d| self.nodes[d].current)
            .collect()
    }

    /// What to do now.
    pub fn decide(&self) -> Decisions {
        let mut skip: BTreeMap<usize, String> = BTreeMap::new();
        for i in 0..self.nodes.len() {
            match self.state(i) {
                JobState::Succeeded => {
                    let Some(wanted) = self.child_jobs(i) else {
                        continue;
                    };
                    let reason = format!(
                        "Skipped due to child_jobs return value in job {}",
                        self.nodes[i].name
                    );
                    let mut skipped = Vec::new();
                    if wanted.is_empty() {
                        skipped = self.dependents_recursive(i, true);
                    } else {
                        for d in self.dependents(i, false) {
                            if !wanted.iter().any(|w| w == self.nodes[d].name) {
                                skipped.push(d);
                                skipped.extend(self.dependents_recursive(d, true));
                            }
                        }
                    }
                    for d in skipped {
                        skip.entry(d).or_insert_with(|| reason.clone());
                    }
                }
                JobState::Failed => {
                    let reason = format!("Skipped due to failed job {}", self.nodes[i].name);
                    for d in self.dependents_recursive(i, false) {
                        skip.entry(d).or_insert_with(|| reason.clone());
                    }
                }
                JobState::Pending | JobState::Skipped => {}
            }
        }
        skip.retain(|i, _| self.waiting(*i));
        let mut out = Decisions::default();
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.waiting(*i) && !skip.contains_key(i))
            .collect();
        for i in candidates {
            let all = self.ancestors(i, false);
            if all.iter().any(|a| self.state(*a) == JobState::Pending) {
                continue;
            }
            let hard = self.ancestors(i, true);
            let blocker = all
                .iter()
                .find(|a| self.state(**a) == JobState::Failed)
                .or_else(|| hard.iter().find(|a| self.state(**a) == JobState::Skipped));
            if let Some(b) = blocker {
                let verb = if self.state(*b) == JobState::Failed {
                    "failed"
                } else {
                    "skipped"
                };
                skip.insert(
                    i,
                    format!("Skipped due to {verb} job {}", self.nodes[*b].name),
                );
                continue;
            }
            let mut parent_data = Map::new();
            for a in (0..self.nodes.len()).filter(|a| all.contains(a)) {
                if let Some(Value::Object(data)) = &self.nodes[a].current.data {
                    let mut data = data.clone();
                    data.remove("zuul");
                    sluice_config::deep_merge(&mut parent_data, &data);
                }
            }
            out.release
                .push((self.nodes[i].current.uuid.clone(), parent_data));
        }
        out.skip = skip
            .into_iter()
            .map(|(i, reason)| (self.nodes[i].current.uuid.clone(), reason))
            .collect();
        for i in 0..self.nodes.len() {
            let b = self.nodes[i].current;
            if !(b.paused && b.result.is_none()) {
                continue;
            }
            let done = self.dependents_recursive(i, false).iter().all(|d| {
                let c = self.nodes[*d].current;
                c.final_ && c.result.is_some()
            });
            if done {
                out.resume.push(b.uuid.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_store::BuildDependency;

    fn build(name: &str, deps: &[(&str, bool)]) -> BuildRow {
        BuildRow {
            uuid: format!("u-{name}"),
            id: 0,
            buildset_uuid: "bs".into(),
            item_uuid: "i".into(),
            tenant: "t".into(),
            pipeline: "p".into(),
            job_name: name.into(),
            voting: true,
            attempt: 1,
            nodeset: String::new(),
            result: None,
            final_: false,
            error_detail: None,
            log_url: None,
            start_time: None,
            end_time: None,
            data: None,
            dependencies: deps
                .iter()
                .map(|(n, soft)| BuildDependency {
                    name: n.to_string(),
                    soft: *soft,
                })
                .collect(),
            pending_request: (!deps.is_empty()).then(|| json!({})),
            paused: false,
            held: false,
        }
    }

    fn done(mut b: BuildRow, result: &str, data: Value) -> BuildRow {
        b.result = Some(result.into());
        b.final_ = true;
        b.data = Some(data);
        b.pending_request = None;
        b
    }

    fn uuids(v: &[(String, impl std::fmt::Debug)]) -> Vec<&str> {
        v.iter().map(|(u, _)| u.as_str()).collect()
    }

    #[test]
    fn child_jobs_select_one_child_and_soft_dependents_of_skipped_jobs_still_run() {
        let mut parent = build("parent", &[]);
        parent.paused = true;
        parent.data = Some(json!({"zuul": {"pause": true, "child_jobs": ["a"]}, "greeting": "hi"}));
        let builds = vec![
            parent,
            build("a", &[("parent", false)]),
            build("b", &[("parent", false)]),
            build("after-b", &[("b", true)]),
            build("under-b", &[("b", false)]),
        ];
        let d = JobGraph::new(&builds).decide();
        assert_eq!(uuids(&d.skip), ["u-b", "u-under-b"]);
        assert_eq!(
            d.skip[0].1,
            "Skipped due to child_jobs return value in job parent"
        );
        // after-b waits for b to be marked skipped (next pass), then runs.
        assert_eq!(uuids(&d.release), ["u-a"]);
        assert_eq!(
            d.release[0].1,
            *json!({"greeting": "hi"}).as_object().unwrap()
        );
        assert!(d.resume.is_empty());

        let mut builds = builds;
        builds[2] = done(builds[2].clone(), "SKIPPED", Value::Null);
        builds[4] = done(builds[4].clone(), "SKIPPED", Value::Null);
        let d = JobGraph::new(&builds).decide();
        assert_eq!(uuids(&d.release), ["u-a", "u-after-b"]);
        assert_eq!(
            d.release[1].1,
            *json!({"greeting": "hi"}).as_object().unwrap()
        );

        // The paused parent resumes once everything depending on it is final.
        builds[1] = done(builds[1].clone(), "SUCCESS", json!({}));
        builds[3] = done(builds[3].clone(), "SUCCESS", json!({}));
        let d = JobGraph::new(&builds).decide();
        assert_eq!(d.resume, ["u-parent"]);
    }

    #[test]
    fn a_failure_skips_everything_below_and_empty_child_jobs_only_hard_dependents() {
        let builds = vec![
            done(build("parent", &[]), "FAILURE", json!({})),
            build("child", &[("parent", true)]),
            build("grandchild", &[("child", false)]),
        ];
        let d = JobGraph::new(&builds).decide();
        assert_eq!(uuids(&d.skip), ["u-child", "u-grandchild"]);
        assert_eq!(d.skip[0].1, "Skipped due to failed job parent");

        let builds = vec![
            done(
                build("parent", &[]),
                "SUCCESS",
                json!({"zuul": {"child_jobs": []}}),
            ),
            build("hard", &[("parent", false)]),
            build("soft", &[("parent", true)]),
        ];
        let d = JobGraph::new(&builds).decide();
        assert_eq!(uuids(&d.skip), ["u-hard"]);
        assert_eq!(uuids(&d.release), ["u-soft"]);
    }

    #[test]
    fn parent_data_merges_every_ancestor_in_job_order() {
        let builds = vec![
            done(build("a", &[]), "SUCCESS", json!({"x": 1, "both": "a"})),
            done(
                build("b", &[("a", false)]),
                "SUCCESS",
                json!({"y": 2, "both": "b"}),
            ),
            build("c", &[("b", false)]),
        ];
        let d = JobGraph::new(&builds).decide();
        assert_eq!(
            d.release[0].1,
            *json!({"x": 1, "both": "b", "y": 2}).as_object().unwrap()
        );
    }

    #[test]
    fn a_retry_resets_the_dependents_that_started_or_finished() {
        let mut parent = build("parent", &[]);
        parent.paused = true;
        let mut running = build("running", &[("parent", false)]);
        running.pending_request = None;
        let builds = vec![
            parent,
            done(
                build("finished", &[("parent", false)]),
                "SUCCESS",
                json!({}),
            ),
            running,
            done(build("skipped", &[("parent", false)]), "SKIPPED", json!({})),
            build("waiting", &[("finished", false)]),
            build("unrelated", &[]),
        ];
        let graph = JobGraph::new(&builds);
        let reset: Vec<&str> = graph
            .started_dependents("parent")
            .iter()
            .map(|b| b.uuid.as_str())
            .collect();
        assert_eq!(reset, ["u-finished", "u-running"]);
        assert!(graph.started_dependents("unrelated").is_empty());
    }
}
