//! What Ansible reads for one playbook: `inventory.yaml` (hosts with Zuul's hostvars, groups,
//! squashed variables), `ansible.cfg`, `vars_blacklist.yaml`, `zuul_vars.yaml` and
//! `known_hosts`. Files are written as JSON, which YAML readers take as it is.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sluice_config::{FrozenJob, Vars};

use crate::nodes::AllocatedNode;

/// User Zuul logs in as when a node names none.
pub const DEFAULT_USERNAME: &str = "zuul";

/// The inventory host names of an allocation with their node.
fn hosts(nodes: &[AllocatedNode]) -> impl Iterator<Item = (&str, &AllocatedNode)> {
    nodes
        .iter()
        .flat_map(|n| n.names.iter().map(move |name| (name.as_str(), n)))
}

/// The hostvars Zuul sets for a node (before job variables).
pub fn node_hostvars(node: &AllocatedNode) -> Map<String, Value> {
    let static_node = &node.node;
    let mut vars = Map::new();
    vars.insert("ansible_host".into(), json!(static_node.name));
    vars.insert(
        "ansible_user".into(),
        json!(static_node.username.as_deref().unwrap_or(DEFAULT_USERNAME)),
    );
    vars.insert("ansible_port".into(), json!(static_node.connection_port));
    if let Some(conn) = &static_node.connection_type {
        vars.insert("ansible_connection".into(), json!(conn));
    }
    vars.insert(
        "ansible_python_interpreter".into(),
        json!(static_node.python_path.as_deref().unwrap_or("auto")),
    );
    if let Some(shell) = &static_node.shell_type {
        vars.insert("ansible_shell_type".into(), json!(shell));
    }
    if static_node.host_key.is_none() {
        vars.insert(
            "ansible_ssh_common_args".into(),
            json!("-o StrictHostKeyChecking=false"),
        );
    }
    let ip = &static_node.name;
    let nodepool = json!({
        "label": node.label,
        "az": null,
        "cloud": null,
        "provider": "static",
        "region": null,
        "host_id": null,
        "external_id": static_node.name,
        "slot": null,
        "interface_ip": ip,
        "public_ipv4": ip,
        "private_ipv4": ip,
        "public_ipv6": null,
        "private_ipv6": null,
        "node_properties": {},
    });
    vars.insert("nodepool".into(), nodepool);
    vars
}

/// Shallow update: later layers replace whole top-level values, as Zuul's squash does.
fn layer(into: &mut Map<String, Value>, from: Option<&Value>) {
    if let Some(Value::Object(map)) = from {
        for (k, v) in map {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// Groups of the job's nodeset, by name.
fn groups_of<'a>(job: &'a FrozenJob, host: &str) -> Vec<&'a str> {
    let mut names: Vec<&str> = job
        .nodeset
        .groups
        .iter()
        .filter(|g| g.nodes.iter().any(|n| n == host))
        .map(|g| g.name.as_str())
        .collect();
    names.sort_unstable();
    names
}

/// A host's variables squashed as Zuul does: job vars → group `all` → other groups by name →
/// host vars → extra vars, later layers winning per top-level name.
pub fn squashed_vars(job: &FrozenJob, host: &str, parent_data: &Vars) -> Map<String, Value> {
    let mut vars = parent_data.clone();
    for (k, v) in &job.vars {
        vars.insert(k.clone(), v.clone());
    }
    layer(&mut vars, job.group_vars.get("all"));
    for group in groups_of(job, host) {
        layer(&mut vars, job.group_vars.get(group));
    }
    layer(&mut vars, job.host_vars.get(host));
    for (k, v) in &job.extra_vars {
        vars.insert(k.clone(), v.clone());
    }
    vars
}

/// The inventory of one playbook.
pub fn inventory(
    job: &FrozenJob,
    nodes: &[AllocatedNode],
    parent_data: &Vars,
    unreachable: &[String],
    secret_names: &[String],
) -> Value {
    let mut all_hosts = Map::new();
    for (name, node) in hosts(nodes) {
        let mut vars = squashed_vars(job, name, parent_data);
        for secret in secret_names {
            vars.remove(secret);
        }
        for (k, v) in node_hostvars(node) {
            vars.insert(k, v);
        }
        all_hosts.insert(name.to_string(), Value::Object(vars));
    }
    let mut localhost_vars = squashed_vars(job, "localhost", parent_data);
    for secret in secret_names {
        localhost_vars.remove(secret);
    }
    let mut children = Map::new();
    for group in &job.nodeset.groups {
        let members: Map<String, Value> = group
            .nodes
            .iter()
            .map(|n| (n.clone(), Value::Null))
            .collect();
        children.insert(group.name.clone(), json!({ "hosts": members }));
    }
    let down: Map<String, Value> = unreachable
        .iter()
        .map(|n| (n.clone(), Value::Null))
        .collect();
    children.insert("zuul_unreachable".into(), json!({ "hosts": down }));
    json!({ "all": { "hosts": all_hosts, "vars": localhost_vars, "children": children } })
}

/// The setup run's inventory: hosts only.
pub fn setup_inventory(nodes: &[AllocatedNode]) -> Value {
    let all_hosts: Map<String, Value> = hosts(nodes)
        .filter(|(_, n)| {
            !matches!(
                n.node.connection_type.as_deref(),
                Some("network_cli" | "kubectl" | "project" | "namespace")
            )
        })
        .map(|(name, n)| (name.to_string(), Value::Object(node_hostvars(n))))
        .collect();
    json!({ "all": { "hosts": all_hosts } })
}

/// `vars_blacklist.yaml`: extra vars that keep untrusted playbooks from changing how ssh runs.
pub fn vars_blacklist() -> Value {
    let no_local = "-o PermitLocalCommand=no";
    json!({
        "ansible_ssh_executable": "ssh",
        "ansible_ssh_common_args": no_local,
        "ansible_sftp_extra_args": no_local,
        "ansible_scp_extra_args": no_local,
        "ansible_ssh_extra_args": no_local,
    })
}

/// `known_hosts` lines for nodes that carry host keys.
pub fn known_hosts(nodes: &[AllocatedNode]) -> String {
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for node in nodes {
        let n = &node.node;
        if !seen.insert((n.name.clone(), n.connection_port)) {
            continue;
        }
        let host = if n.connection_port == 22 {
            n.name.clone()
        } else {
            format!("[{}]:{}", n.name, n.connection_port)
        };
        for key in n.host_key.iter().flat_map(|k| k.keys()) {
            out.push_str(&format!("{host} {key}\n"));
        }
    }
    out
}

/// Inputs of one `ansible.cfg`.
#[derive(Debug, Clone)]
pub struct AnsibleCfg<'a> {
    /// The playbook's config dir (holds inventory.yaml).
    pub playbook_dir: &'a Path,
    /// The build's dir.
    pub jobdir: &'a Path,
    /// The installation's plugin dir.
    pub plugin_dir: &'a Path,
    /// Role search path.
    pub roles_path: &'a [PathBuf],
    /// Whether the playbook gets secrets (arguments are then kept out of the output).
    pub has_secrets: bool,
    /// Whether to use Sluice's stdout callback.
    pub stdout_callback: bool,
}

impl AnsibleCfg<'_> {
    /// The text of `ansible.cfg`.
    pub fn render(&self) -> String {
        let p = self.plugin_dir.display();
        let jobdir = self.jobdir.display();
        let mut cfg = String::from("[defaults]\n");
        cfg.push_str(&format!(
            "inventory = {}/inventory.yaml\n",
            self.playbook_dir.display()
        ));
        cfg.push_str(&format!("local_tmp = {jobdir}/work/tmp\n"));
        cfg.push_str("retry_files_enabled = False\n");
        cfg.push_str("gathering = smart\n");
        cfg.push_str("fact_caching = jsonfile\n");
        cfg.push_str(&format!(
            "fact_caching_connection = {jobdir}/.ansible/fact-cache\n"
        ));
        cfg.push_str(&format!("library = {p}/library\n"));
        cfg.push_str(&format!("module_utils = {p}/library/module_utils\n"));
        if self.stdout_callback {
            cfg.push_str(&format!("callback_plugins = {p}/callback\n"));
            cfg.push_str("stdout_callback = zuul_stream\n");
        }
        cfg.push_str(&format!("filter_plugins = {p}/filter\n"));
        cfg.push_str("nocows = True\n");
        cfg.push_str("timeout = 30\n");
        cfg.push_str(&format!("action_plugins = {p}/action\n"));
        if !self.roles_path.is_empty() {
            let joined: Vec<String> = self
                .roles_path
                .iter()
                .map(|r| r.display().to_string())
                .collect();
            cfg.push_str(&format!("roles_path = {}\n", joined.join(":")));
        }
        cfg.push_str(&format!(
            "display_args_to_stdout = {}\n",
            if self.has_secrets { "False" } else { "True" }
        ));
        cfg.push_str("internal_poll_interval = 0.01\n");
        cfg.push_str("\n[ssh_connection]\n");
        cfg.push_str("retries = 3\n");
        cfg.push_str("pipelining = True\n");
        cfg.push_str(&format!("control_path_dir = {jobdir}/.ansible/cp\n"));
        cfg.push_str(&format!(
            "ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=60 -o UserKnownHostsFile={jobdir}/home/.ssh/known_hosts\n"
        ));
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{parse_nodes, StaticNode};
    use sluice_config::{Nodeset, NodesetGroup, NodesetNode};

    fn job() -> FrozenJob {
        let mut vars = Map::new();
        vars.insert("a".into(), json!("job"));
        vars.insert("b".into(), json!("job"));
        vars.insert("c".into(), json!("job"));
        vars.insert("d".into(), json!({"x": 1}));
        let mut extra = Map::new();
        extra.insert("c".into(), json!("extra"));
        let mut host_vars = Map::new();
        host_vars.insert("node".into(), json!({"b": "host", "d": {"y": 2}}));
        let mut group_vars = Map::new();
        group_vars.insert("all".into(), json!({"a": "all"}));
        group_vars.insert("web".into(), json!({"a": "web", "b": "web"}));
        FrozenJob {
            name: "j".into(),
            nodeset: Nodeset {
                name: None,
                nodes: vec![NodesetNode {
                    names: vec!["node".into()],
                    label: "l".into(),
                }],
                groups: vec![NodesetGroup {
                    name: "web".into(),
                    nodes: vec!["node".into()],
                }],
            },
            vars,
            extra_vars: extra,
            host_vars,
            group_vars,
            pre_run: vec![],
            run: vec![],
            post_run: vec![],
            timeout: None,
            pre_timeout: None,
            post_timeout: None,
            attempts: 3,
            ansible_version: None,
            ansible_split_streams: false,
            required_projects: vec![],
            override_branch: None,
            override_checkout: None,
            voting: true,
            tags: vec![],
            failure_output: vec![],
            workspace_scheme: "golang".into(),
            secret_exposure: "ignore".into(),
            post_review: false,
            secrets: vec![],
            inheritance_path: vec![],
        }
    }

    fn static_node() -> StaticNode {
        parse_nodes(
            Path::new("n"),
            "- name: 127.0.0.1\n  labels: [l]\n  connection-port: 2200\n  python-path: /usr/bin/python3\n  host-key: ssh-ed25519 AAAA\n",
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn squash_order_is_job_all_groups_host_extra() {
        let vars = squashed_vars(&job(), "node", &Map::new());
        assert_eq!(vars["a"], json!("web"));
        assert_eq!(vars["b"], json!("host"));
        assert_eq!(vars["c"], json!("extra"));
        // No deep merge: the host's dict replaces the job's.
        assert_eq!(vars["d"], json!({"y": 2}));
        let local = squashed_vars(&job(), "localhost", &Map::new());
        assert_eq!(local["a"], json!("all"));
    }

    #[test]
    fn inventory_has_zuul_hostvars_groups_and_no_secret_names() {
        let nodes = vec![AllocatedNode {
            names: vec!["node".into()],
            label: "l".into(),
            node: static_node(),
        }];
        let mut j = job();
        j.vars.insert("db_password".into(), json!("leak"));
        let inv = inventory(
            &j,
            &nodes,
            &Map::new(),
            &["node".into()],
            &["db_password".into()],
        );
        let node = &inv["all"]["hosts"]["node"];
        assert_eq!(node["ansible_port"], json!(2200));
        assert_eq!(node["ansible_user"], json!("zuul"));
        assert_eq!(
            node["ansible_python_interpreter"],
            json!("/usr/bin/python3")
        );
        assert_eq!(node["nodepool"]["label"], json!("l"));
        assert!(node.get("db_password").is_none());
        assert!(inv["all"]["vars"].get("db_password").is_none());
        assert!(inv["all"]["children"]["web"]["hosts"]
            .as_object()
            .unwrap()
            .contains_key("node"));
        assert!(inv["all"]["children"]["zuul_unreachable"]["hosts"]
            .as_object()
            .unwrap()
            .contains_key("node"));
        assert_eq!(known_hosts(&nodes), "[127.0.0.1]:2200 ssh-ed25519 AAAA\n");
    }
}
