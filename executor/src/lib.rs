//! The executor: turns a frozen job plus repositories and nodes into a build result.
//!
//! It prepares the build's workspace (git2 clones, the change merged speculatively), writes
//! Ansible's inventory, configuration and variables, runs each playbook inside bubblewrap, and
//! maps what Ansible did to one of Zuul's results.
#![warn(missing_docs)]

pub mod ansible;
pub mod build;
pub mod errors;
pub mod inventory;
pub mod jobdir;
pub mod limits;
pub mod local;
pub mod nodes;
pub mod plugin_dirs;
pub mod registry;
pub mod request;
pub mod runner;
pub mod secret_files;
pub mod secrets;
pub mod workspace;
pub mod zuul_vars;
