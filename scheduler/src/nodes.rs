//! Node providers: what an executor asks for a build's nodeset before it claims the build.
//! [`StaticProvider`] serves the static nodes file (Nodepool's static driver): a node takes up
//! to `max-parallel-jobs` builds at once (default 1), labels are matched as the executor's
//! allocation does, and nodes are never deleted, only returned (a node held by an autohold
//! request, `autohold.rs`, is handed to no build until the request lets it go). Which node slots are in use is
//! kept in the store (`node_locks`), so several `sluice executor` processes sharing the nodes
//! never put more builds on a node than it allows; a lock lives as long as its executor renews
//! it with the build's lease.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sluice_config::Nodeset;
use sluice_executor::nodes::StaticNode;
use sluice_store::{now_ms, Store};

/// The outcome of a node request.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeRequest {
    /// Nodes reserved; hand them back with [`NodeProvider::release`].
    Fulfilled(Allocation),
    /// Not now: every node with a wanted label is busy.
    Wait,
    /// Never: a label no node offers (the build ends in NODE_FAILURE).
    Fail(String),
}

/// Nodes reserved for one build, in nodeset order.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// The nodes.
    pub nodes: Vec<StaticNode>,
    /// The build holding them.
    pub holder: String,
}

/// What a provider's methods return.
pub type NodeFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of nodes. A new provider (cloud, containers) implements this.
pub trait NodeProvider: Send + Sync {
    /// Tries to reserve nodes for `nodeset` now, for build `holder`, for `lease` (renewed with
    /// [`NodeProvider::renew`] while the build runs).
    fn request<'a>(
        &'a self,
        nodeset: &'a Nodeset,
        holder: &'a str,
        lease: Duration,
    ) -> NodeFuture<'a, NodeRequest>;
    /// Keeps build `holder`'s nodes reserved for another `lease`.
    fn renew<'a>(&'a self, holder: &'a str, lease: Duration) -> NodeFuture<'a, ()>;
    /// Returns reserved nodes.
    fn release<'a>(&'a self, allocation: &'a Allocation) -> NodeFuture<'a, ()>;
    /// `(build slots in use, total build slots)`.
    fn capacity(&self) -> NodeFuture<'_, (usize, usize)>;
}

/// The static nodes file as a provider, with its slots locked in the store.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    nodes: Vec<StaticNode>,
    store: Store,
}

/// A node's identity in the store: Nodepool's unique `name` + `username` + port.
pub(crate) fn node_key(node: &StaticNode) -> String {
    format!(
        "{}@{}:{}",
        node.username.as_deref().unwrap_or(""),
        node.name,
        node.connection_port
    )
}

impl StaticProvider {
    /// A provider over `nodes`, locking them in `store`.
    pub fn new(nodes: Vec<StaticNode>, store: Store) -> Self {
        StaticProvider { nodes, store }
    }

    fn max(node: &StaticNode) -> u32 {
        node.max_parallel_jobs.unwrap_or(1).max(1)
    }

    /// Which node (index) and slot each nodeset node gets, given the slots taken; `Err` says
    /// why never, `Ok(None)` means not now.
    fn plan(
        &self,
        nodeset: &Nodeset,
        taken: &[(String, i64)],
        held: &[String],
    ) -> Result<Option<Vec<(usize, i64)>>, String> {
        let keys: Vec<String> = self.nodes.iter().map(node_key).collect();
        let mut taken: Vec<(String, i64)> = taken.to_vec();
        let mut plan = Vec::new();
        for wanted in &nodeset.nodes {
            let offering: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].labels.iter().any(|l| l == &wanted.label))
                .collect();
            if offering.is_empty() {
                return Err(format!(
                    "no node provides label {} (needed by {})",
                    wanted.label,
                    wanted.names.first().cloned().unwrap_or_default()
                ));
            }
            let used = |i: usize| taken.iter().filter(|(k, _)| *k == keys[i]).count();
            let free = offering
                .into_iter()
                // A node held by an autohold request is out of use until it is released.
                .filter(|i| !held.contains(&keys[*i]))
                .filter(|i| used(*i) < Self::max(&self.nodes[*i]) as usize)
                .min_by_key(|i| used(*i));
            let Some(i) = free else {
                return Ok(None);
            };
            let slot = (0..i64::from(Self::max(&self.nodes[i])))
                .find(|s| !taken.iter().any(|(k, t)| *k == keys[i] && t == s))
                .unwrap_or_default();
            taken.push((keys[i].clone(), slot));
            plan.push((i, slot));
        }
        Ok(Some(plan))
    }

    async fn try_request(
        &self,
        nodeset: &Nodeset,
        holder: &str,
        lease: Duration,
    ) -> Result<NodeRequest, sluice_store::StoreError> {
        let now = now_ms();
        // (Read before the transaction: a `Tx` holds the one SQLite connection.)
        let held = self.store.held_nodes(now).await?;
        let mut tx = self.store.begin().await?;
        tx.expire_node_locks(now).await?;
        let taken = tx.node_locks().await?;
        let plan = match self.plan(nodeset, &taken, &held) {
            Err(reason) => return Ok(NodeRequest::Fail(reason)),
            Ok(None) => return Ok(NodeRequest::Wait),
            Ok(Some(plan)) => plan,
        };
        let expires = now + lease.as_millis() as i64;
        for (i, slot) in &plan {
            tx.lock_node(&node_key(&self.nodes[*i]), *slot, holder, expires)
                .await?;
        }
        tx.commit().await?;
        Ok(NodeRequest::Fulfilled(Allocation {
            nodes: plan.iter().map(|(i, _)| self.nodes[*i].clone()).collect(),
            holder: holder.to_string(),
        }))
    }
}

impl NodeProvider for StaticProvider {
    fn request<'a>(
        &'a self,
        nodeset: &'a Nodeset,
        holder: &'a str,
        lease: Duration,
    ) -> NodeFuture<'a, NodeRequest> {
        Box::pin(async move {
            // A slot another executor took at the same moment (the key refuses the second
            // lock) or a busy store is a "not now".
            self.try_request(nodeset, holder, lease)
                .await
                .unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "node request: try again");
                    NodeRequest::Wait
                })
        })
    }

    fn renew<'a>(&'a self, holder: &'a str, lease: Duration) -> NodeFuture<'a, ()> {
        Box::pin(async move {
            let expires = now_ms() + lease.as_millis() as i64;
            if let Err(e) = self.store.renew_node_locks(holder, expires).await {
                tracing::warn!(build = %holder, error = %e, "cannot renew node locks");
            }
        })
    }

    fn release<'a>(&'a self, allocation: &'a Allocation) -> NodeFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.store.release_node_locks(&allocation.holder).await {
                // They expire with the lease anyway.
                tracing::warn!(build = %allocation.holder, error = %e, "cannot release node locks");
            }
        })
    }

    fn capacity(&self) -> NodeFuture<'_, (usize, usize)> {
        Box::pin(async move {
            let used = self.store.node_locks_in_use(now_ms()).await.unwrap_or(0) as usize;
            let total = self.nodes.iter().map(|n| Self::max(n) as usize).sum();
            (used, total)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::NodesetNode;

    fn node(name: &str, label: &str, max: Option<u32>) -> StaticNode {
        let text = format!("- name: {name}\n  labels: [{label}]\n");
        let mut n = sluice_executor::nodes::parse_nodes(std::path::Path::new("n"), &text)
            .unwrap()
            .remove(0);
        n.max_parallel_jobs = max;
        n
    }

    fn nodeset(labels: &[&str]) -> Nodeset {
        Nodeset {
            name: None,
            nodes: labels
                .iter()
                .enumerate()
                .map(|(i, l)| NodesetNode {
                    names: vec![format!("n{i}")],
                    label: l.to_string(),
                })
                .collect(),
            groups: vec![],
        }
    }

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::open_sqlite(&dir.path().join("s.db")).await.unwrap()
    }

    const LEASE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn max_parallel_jobs_is_a_capacity_shared_by_every_provider_on_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        // Two executors, each with its own provider over the same nodes and store.
        let a = StaticProvider::new(vec![node("a", "x", Some(2))], store.clone());
        let b = StaticProvider::new(vec![node("a", "x", Some(2))], store);
        let NodeRequest::Fulfilled(first) = a.request(&nodeset(&["x"]), "b1", LEASE).await else {
            panic!("first request must be fulfilled");
        };
        assert!(matches!(
            b.request(&nodeset(&["x"]), "b2", LEASE).await,
            NodeRequest::Fulfilled(_)
        ));
        assert_eq!(
            a.request(&nodeset(&["x"]), "b3", LEASE).await,
            NodeRequest::Wait
        );
        assert_eq!(
            b.request(&nodeset(&["x"]), "b3", LEASE).await,
            NodeRequest::Wait
        );
        assert_eq!(a.capacity().await, (2, 2));
        a.release(&first).await;
        assert!(matches!(
            b.request(&nodeset(&["x"]), "b3", LEASE).await,
            NodeRequest::Fulfilled(_)
        ));
    }

    #[tokio::test]
    async fn unknown_label_fails_empty_nodeset_needs_nothing_and_unrenewed_locks_expire() {
        let dir = tempfile::tempdir().unwrap();
        let p = StaticProvider::new(vec![node("a", "x", None)], store(&dir).await);
        assert!(matches!(
            p.request(&nodeset(&["y"]), "b1", LEASE).await,
            NodeRequest::Fail(_)
        ));
        assert!(matches!(
            p.request(&nodeset(&[]), "b1", LEASE).await,
            NodeRequest::Fulfilled(Allocation { ref nodes, .. }) if nodes.is_empty()
        ));
        // A failed multi-node request reserves nothing.
        assert_eq!(
            p.request(&nodeset(&["x", "x"]), "b1", LEASE).await,
            NodeRequest::Wait
        );
        assert_eq!(p.capacity().await, (0, 1));
        // A lock its executor stopped renewing is given back.
        assert!(matches!(
            p.request(&nodeset(&["x"]), "b2", Duration::ZERO).await,
            NodeRequest::Fulfilled(_)
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(matches!(
            p.request(&nodeset(&["x"]), "b3", LEASE).await,
            NodeRequest::Fulfilled(_)
        ));
    }
}
