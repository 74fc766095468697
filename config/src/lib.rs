//! Zuul's configuration language: reading `zuul.yaml`, `zuul.d/`, `.zuul.yaml` and `.zuul.d/`
//! from project checkouts, validating every item with file and line in its errors, keeping job
//! variants, and freezing a job for one project and branch.
//!
//! This is the one loader: `sluice job run` and the scheduler both use it, so that a job means
//! the same thing wherever it runs.
#![warn(missing_docs)]

pub mod frozen;

pub use frozen::*;
