//! Node providers: what an executor asks for a build's nodeset before it claims the build.
//! [`StaticProvider`] serves the static nodes file (Nodepool's static driver): a node takes up
//! to `max-parallel-jobs` builds at once (default 1), labels are matched as the executor's
//! allocation does, and nodes are never deleted, only returned.

use std::sync::Mutex;

use sluice_config::Nodeset;
use sluice_executor::nodes::StaticNode;

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
    slots: Vec<usize>,
}

/// A source of nodes. A new provider (cloud, containers) implements this.
pub trait NodeProvider: Send + Sync {
    /// Tries to reserve nodes for `nodeset` now.
    fn request(&self, nodeset: &Nodeset) -> NodeRequest;
    /// Returns reserved nodes.
    fn release(&self, allocation: &Allocation);
    /// `(builds using nodes now, total build slots)`.
    fn capacity(&self) -> (usize, usize);
}

/// The static nodes file as a provider.
#[derive(Debug)]
pub struct StaticProvider {
    nodes: Vec<StaticNode>,
    // A std mutex: never held across an await.
    in_use: Mutex<Vec<u32>>,
}

impl StaticProvider {
    /// A provider over `nodes`.
    pub fn new(nodes: Vec<StaticNode>) -> Self {
        let n = nodes.len();
        StaticProvider {
            nodes,
            in_use: Mutex::new(vec![0; n]),
        }
    }

    fn max(node: &StaticNode) -> u32 {
        node.max_parallel_jobs.unwrap_or(1).max(1)
    }
}

impl NodeProvider for StaticProvider {
    fn request(&self, nodeset: &Nodeset) -> NodeRequest {
        let Ok(mut in_use) = self.in_use.lock() else {
            return NodeRequest::Wait;
        };
        let mut planned = in_use.clone();
        let mut slots = Vec::new();
        for wanted in &nodeset.nodes {
            let offering: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].labels.iter().any(|l| l == &wanted.label))
                .collect();
            if offering.is_empty() {
                return NodeRequest::Fail(format!(
                    "no node provides label {} (needed by {})",
                    wanted.label,
                    wanted.names.first().cloned().unwrap_or_default()
                ));
            }
            let free = offering
                .into_iter()
                .filter(|i| planned[*i] < Self::max(&self.nodes[*i]))
                .min_by_key(|i| planned[*i]);
            match free {
                Some(i) => {
                    planned[i] += 1;
                    slots.push(i);
                }
                None => return NodeRequest::Wait,
            }
        }
        *in_use = planned;
        NodeRequest::Fulfilled(Allocation {
            nodes: slots.iter().map(|i| self.nodes[*i].clone()).collect(),
            slots,
        })
    }

    fn release(&self, allocation: &Allocation) {
        if let Ok(mut in_use) = self.in_use.lock() {
            for i in &allocation.slots {
                if let Some(n) = in_use.get_mut(*i) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    fn capacity(&self) -> (usize, usize) {
        let used = self
            .in_use
            .lock()
            .map(|u| u.iter().map(|n| *n as usize).sum())
            .unwrap_or(0);
        let total = self.nodes.iter().map(|n| Self::max(n) as usize).sum();
        (used, total)
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

    #[test]
    fn max_parallel_jobs_is_a_capacity() {
        let p = StaticProvider::new(vec![node("a", "x", Some(2))]);
        let NodeRequest::Fulfilled(first) = p.request(&nodeset(&["x"])) else {
            panic!("first request must be fulfilled");
        };
        assert!(matches!(
            p.request(&nodeset(&["x"])),
            NodeRequest::Fulfilled(_)
        ));
        assert_eq!(p.request(&nodeset(&["x"])), NodeRequest::Wait);
        assert_eq!(p.capacity(), (2, 2));
        p.release(&first);
        assert!(matches!(
            p.request(&nodeset(&["x"])),
            NodeRequest::Fulfilled(_)
        ));
    }

    #[test]
    fn unknown_label_fails_and_empty_nodeset_needs_nothing() {
        let p = StaticProvider::new(vec![node("a", "x", None)]);
        assert!(matches!(p.request(&nodeset(&["y"])), NodeRequest::Fail(_)));
        assert!(matches!(
            p.request(&nodeset(&[])),
            NodeRequest::Fulfilled(Allocation { ref nodes, .. }) if nodes.is_empty()
        ));
        // A failed multi-node request reserves nothing.
        assert_eq!(p.request(&nodeset(&["x", "x"])), NodeRequest::Wait);
        assert_eq!(p.capacity(), (0, 1));
    }
}
