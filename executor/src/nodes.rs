//! Static nodes: a YAML list of nodes with Nodepool's static-driver keys, so an existing
//! Nodepool static config works as it is, and the allocation of a nodeset's labels to them.

use std::path::Path;

use serde::Deserialize;
use sluice_config::Nodeset;

use crate::errors::NodesError;

/// One node of a static nodes file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StaticNode {
    /// Host name or address.
    pub name: String,
    /// Labels this node satisfies.
    pub labels: Vec<String>,
    /// SSH user (default: the executor's `default_username`, `zuul`).
    #[serde(default)]
    pub username: Option<String>,
    /// SSH port.
    #[serde(default = "default_port")]
    pub connection_port: u16,
    /// Host key(s) for known_hosts; none means the node is not key-checked.
    #[serde(default)]
    pub host_key: Option<HostKeys>,
    /// Python on the node (`ansible_python_interpreter`).
    #[serde(default)]
    pub python_path: Option<String>,
    /// Ansible connection type (`ssh` default).
    #[serde(default)]
    pub connection_type: Option<String>,
    /// Nodepool's concurrency cap; kept for compatibility.
    #[serde(default)]
    pub max_parallel_jobs: Option<u32>,
    /// Nodepool's `host-key-checking`; accepted for compatibility.
    #[serde(default)]
    pub host_key_checking: Option<bool>,
    /// Nodepool's `timeout`; accepted for compatibility.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Shell type for Ansible.
    #[serde(default)]
    pub shell_type: Option<String>,
}

/// One host key or several.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum HostKeys {
    /// A single `type base64` key.
    One(String),
    /// Several keys.
    Many(Vec<String>),
}

impl HostKeys {
    /// The keys as a list.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            HostKeys::One(k) => vec![k.as_str()],
            HostKeys::Many(ks) => ks.iter().map(String::as_str).collect(),
        }
    }
}

fn default_port() -> u16 {
    22
}

/// Accepts both a bare list and Nodepool's provider layout (`providers: [{driver: static, pools:
/// [{nodes: [...]}]}]`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NodesFile {
    List(Vec<StaticNode>),
    Nodepool { providers: Vec<Provider> },
}

#[derive(Deserialize)]
struct Provider {
    #[serde(default)]
    pools: Vec<Pool>,
}

#[derive(Deserialize)]
struct Pool {
    #[serde(default)]
    nodes: Vec<StaticNode>,
}

/// Reads a nodes file.
pub fn load_nodes(path: &Path) -> Result<Vec<StaticNode>, NodesError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodesError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_nodes(path, &text)
}

/// Parses the text of a nodes file named `path`.
pub fn parse_nodes(path: &Path, text: &str) -> Result<Vec<StaticNode>, NodesError> {
    // Parse strictly as a list first so its errors (with positions) are the ones reported.
    match serde_yaml_ng::from_str::<Vec<StaticNode>>(text) {
        Ok(nodes) => Ok(nodes),
        Err(list_err) => match serde_yaml_ng::from_str::<NodesFile>(text) {
            Ok(NodesFile::List(nodes)) => Ok(nodes),
            Ok(NodesFile::Nodepool { providers }) => Ok(providers
                .into_iter()
                .flat_map(|p| p.pools)
                .flat_map(|p| p.nodes)
                .collect()),
            Err(_) => {
                let (line, column) = list_err
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                Err(NodesError::Parse {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message: list_err.to_string(),
                })
            }
        },
    }
}

/// A nodeset node bound to a static node.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatedNode {
    /// Inventory host names for it.
    pub names: Vec<String>,
    /// The label asked for.
    pub label: String,
    /// The static node chosen.
    pub node: StaticNode,
}

/// Why a nodeset could not be satisfied; the build ends in NODE_FAILURE with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no node provides label {label} (needed by {host}); labels available: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
pub struct MissingLabel {
    /// The missing label.
    pub label: String,
    /// The nodeset host that needed it.
    pub host: String,
    /// Labels the nodes file offers.
    pub available: Vec<String>,
}

/// Picks a node for every nodeset node. Static nodes are shared (as Nodepool's static driver does
/// within `max-parallel-jobs`), so two nodeset nodes may map to one static node only when no
/// other node offers the label.
pub fn allocate(
    nodeset: &Nodeset,
    nodes: &[StaticNode],
) -> Result<Vec<AllocatedNode>, MissingLabel> {
    let mut use_count = vec![0usize; nodes.len()];
    let mut allocated = Vec::with_capacity(nodeset.nodes.len());
    for wanted in &nodeset.nodes {
        let candidate = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.labels.iter().any(|l| l == &wanted.label))
            .min_by_key(|(i, _)| use_count[*i]);
        match candidate {
            Some((i, node)) => {
                use_count[i] += 1;
                allocated.push(AllocatedNode {
                    names: wanted.names.clone(),
                    label: wanted.label.clone(),
                    node: node.clone(),
                });
            }
            None => {
                let mut available: Vec<String> = nodes
                    .iter()
                    .flat_map(|n| n.labels.iter().cloned())
                    .collect();
                available.sort();
                available.dedup();
                return Err(MissingLabel {
                    label: wanted.label.clone(),
                    host: wanted.names.first().cloned().unwrap_or_default(),
                    available,
                });
            }
        }
    }
    Ok(allocated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::NodesetNode;

    const FILE: &str = "- name: 127.0.0.1\n  labels: [ubuntu-noble]\n  username: zuul\n  connection-port: 2222\n  python-path: /usr/bin/python3\n  host-key: ssh-ed25519 AAAA\n";

    #[test]
    fn parses_nodepool_static_keys() {
        let nodes = parse_nodes(Path::new("nodes.yaml"), FILE).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].connection_port, 2222);
        assert_eq!(nodes[0].python_path.as_deref(), Some("/usr/bin/python3"));
        assert_eq!(
            nodes[0].host_key.as_ref().unwrap().keys(),
            vec!["ssh-ed25519 AAAA"]
        );
    }

    #[test]
    fn parses_nodepool_provider_layout() {
        let text = "providers:\n  - name: static\n    driver: static\n    pools:\n      - name: main\n        nodes:\n          - name: node1\n            labels: [a]\n";
        let nodes = parse_nodes(Path::new("nodepool.yaml"), text).unwrap();
        assert_eq!(nodes[0].name, "node1");
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let err = parse_nodes(
            Path::new("n.yaml"),
            "- name: a\n  labels: [x]\n  colour: red\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("n.yaml:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn missing_label_names_it() {
        let nodes = parse_nodes(Path::new("n"), FILE).unwrap();
        let nodeset = Nodeset {
            name: None,
            nodes: vec![NodesetNode {
                names: vec!["controller".into()],
                label: "centos-9".into(),
            }],
            groups: vec![],
        };
        let err = allocate(&nodeset, &nodes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no node provides label centos-9 (needed by controller); labels available: ubuntu-noble"
        );
    }
}
