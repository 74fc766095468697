//! The GitHub driver: a connection to GitHub (or GitHub Enterprise) as a source of pull
//! requests and a place to report to. It owns the wire side; the scheduler decides.
//!
//! # Layout
//!
//! - `config.rs`: [`GithubConfig`] (App or token auth, server, API URL, webhook secret).
//! - `client.rs`: [`Client`], every REST call through `octocrab`: installation tokens,
//!   conditional GETs, rate limits and back-off.
//! - `webhook.rs`: the webhook endpoint ([`webhook::router`]): signature check, payloads to
//!   trigger events in the store.
//! - `pull.rs`: [`PullRequest`] data and Zuul's `canMerge`.
//! - `rules.rs`: a pipeline's GitHub trigger filters, `require`/`reject` and reporters.
//! - `reports.rs`: report operations, the persistent report queue's sender, merging.
//! - `mirror.rs`: [`Mirrors`], local bare clones fetched with `git` (branches and PR heads).
//!
//! # Why it is built this way
//!
//! A webhook only records events (cheap, and nothing is lost if the scheduler is down); pull
//! request data is read from the API when the scheduler needs it, with ETags so unchanged data
//! costs no rate limit. Reports go through a queue in the store, written in the transaction
//! that decides them, so a GitHub outage or rate limit delays them and a restart resumes them.
//! The rest of Sluice sees GitHub repositories as local git mirrors, so the merger, the
//! configuration loader and executors need nothing GitHub-specific.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod errors;
pub mod mirror;
pub mod pull;
pub mod reports;
pub mod rules;
pub mod webhook;

pub use client::Client;
pub use config::{parse_pull_url, Auth, GithubConfig};
pub use errors::GithubError;
pub use mirror::Mirrors;
pub use pull::PullRequest;
pub use rules::PipelineRules;
