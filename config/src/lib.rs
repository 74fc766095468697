//! Zuul's configuration language: reading `zuul.yaml`, `zuul.d/`, `.zuul.yaml` and `.zuul.d/`
//! from project checkouts, validating every item with file and line in its errors, keeping job
//! variants, and freezing a job for one project and branch.
//!
//! This is the one loader: `sluice job run` and the scheduler both use it, so that a job means
//! the same thing wherever it runs.
//!
//! Conventions worth knowing:
//!
//! - Errors never stop the rest of a configuration from loading: `load_project_lenient` keeps
//!   the valid items and lists every error, each with the project, the file (relative to the
//!   repository root), the 1-based line and column of the offending key or value, and the
//!   item's type and name. `load_project` / `load_layout` turn any error into `Err`.
//! - `Layout::add` takes config-projects first, then untrusted projects; `Layout::check`
//!   then validates references (parents, nodesets, secrets, templates, cycles).
//! - Untrusted definitions get Zuul's implied branch matcher only when the layout holds more
//!   than one branch of their project (or a `pragma` says so).
//! - `PlaybookRef::nesting_level` is 0 for the job's own definition and grows towards the base
//!   job (Zuul counts from the base job).
//!
//! Typical use:
//!
//! ```no_run
//! use sluice_config::{load_layout, ProjectSource};
//! let sources = vec![ProjectSource {
//!     canonical_hostname: "github.com".into(),
//!     name: "org/config".into(),
//!     root: "/src/config".into(),
//!     trusted: true,
//!     branch: "main".into(),
//! }];
//! let layout = load_layout(&sources, Some("base".into())).expect("valid configuration");
//! let job = layout.freeze("unit-tests", "github.com/org/config", "main");
//! ```
#![warn(missing_docs)]

pub mod errors;
pub mod freeze;
pub mod frozen;
pub mod layout;
pub mod loader;
pub mod model;
mod parse;
mod yaml;
mod yaml11;

pub use errors::*;
pub use freeze::{deep_merge, implicit_role_name, FrozenJobDetails};
pub use frozen::*;
pub use layout::{load_layout, Layout, ProjectInfo};
pub use loader::{
    load_project, load_project_lenient, parse_project_files, ProjectConfig, ProjectSource,
    CONFIG_ROOTS,
};
pub use model::*;
pub use parse::RESERVED_VAR_NAMES;
