//! Autohold on the executor's side: when a build ends in one of Zuul's hold results
//! (`FAILURE`, `RETRY_LIMIT`, `POST_FAILURE`, `TIMED_OUT`), the worker looks for a usable hold
//! request of the build's tenant, project and job whose ref filter matches the build's ref,
//! and holds the build's nodes for it (sluice-store `hold_build_nodes`) before giving them
//! back to the provider, which then skips them. A request for a change or a ref is preferred
//! to a catch-all (`.*`) one, as Zuul does.

use regex::Regex;
use sluice_executor::request::{BuildRequest, BuildResult};
use sluice_store::{Store, StoreError};

use crate::nodes::{node_key, Allocation};

/// The results that hold nodes (Zuul's list).
pub const HOLD_RESULTS: [&str; 4] = ["FAILURE", "RETRY_LIMIT", "POST_FAILURE", "TIMED_OUT"];

/// The catch-all ref filter (a request without a change or ref).
pub const ANY_REF: &str = ".*";

/// Whether `ref_filter` (a regular expression matched from the start, as Python's
/// `re.match`) matches `refname`. A filter that is not a valid expression matches nothing.
pub fn ref_matches(ref_filter: &str, refname: &str) -> bool {
    Regex::new(&format!("^(?:{ref_filter})")).is_ok_and(|re| re.is_match(refname))
}

/// Holds `allocation`'s nodes for the first matching, usable hold request; returns its id.
pub async fn hold_if_requested(
    store: &Store,
    req: &BuildRequest,
    result: &BuildResult,
    allocation: &Allocation,
) -> Result<Option<i64>, StoreError> {
    if !HOLD_RESULTS.contains(&result.result.as_str()) || allocation.nodes.is_empty() {
        return Ok(None);
    }
    let Some(item) = req.items.last() else {
        return Ok(None);
    };
    let mut requests: Vec<_> = store
        .hold_requests(&req.tenant)
        .await?
        .into_iter()
        .filter(|r| {
            r.request.project == item.project
                && r.request.job == req.job.name
                && r.current_count < r.request.max_count
        })
        .collect();
    if requests.is_empty() {
        return Ok(None);
    }
    // A change's ref is its review branch, kept with the queue item.
    let refname = match &item.refname {
        Some(r) => r.clone(),
        None => match store.build(&req.uuid).await? {
            Some(b) => store
                .item(&b.item_uuid)
                .await?
                .map(|i| i.change.refname)
                .unwrap_or_default(),
            None => String::new(),
        },
    };
    requests.retain(|r| ref_matches(&r.request.ref_filter, &refname));
    requests.sort_by_key(|r| (r.request.ref_filter == ANY_REF, r.id));
    let nodes: Vec<(String, String)> = allocation
        .nodes
        .iter()
        .map(|n| (node_key(n), n.name.clone()))
        .collect();
    for r in requests {
        if store.hold_build_nodes(r.id, &req.uuid, &nodes).await? {
            return Ok(Some(r.id));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_filters_match_from_the_start_like_python_re_match() {
        assert!(ref_matches(ANY_REF, "refs/heads/review/main/x"));
        assert!(ref_matches(ANY_REF, ""));
        let change = regex::escape("refs/heads/review/main/fix");
        assert!(ref_matches(&change, "refs/heads/review/main/fix"));
        assert!(!ref_matches(&change, "refs/heads/review/main/other"));
        assert!(!ref_matches("heads/main", "refs/heads/main"));
        assert!(ref_matches("refs/tags/.*", "refs/tags/1.0"));
        assert!(!ref_matches("(", "refs/heads/main"));
    }
}
