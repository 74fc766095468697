//! `sluice change`: the local review flow's commands (`approve`, `list`), talking to
//! `sluice serve` through the store.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_scheduler::ServeConfig;
use sluice_store::Store;

/// `sluice change ...`.
#[derive(Debug, Subcommand)]
pub enum ChangeCommand {
    /// Approve a change: its current patchset enters pipelines triggered by `change-approved`
    /// (the gate).
    Approve(ApproveArgs),
    /// List review changes and their status.
    List(ListArgs),
    /// Print a tenant's queue items, buildsets and builds as JSON (Zuul's record shapes).
    History(HistoryArgs),
}

/// Arguments of `sluice change history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The `sluice serve` configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The tenant.
    #[arg(long)]
    tenant: String,
}

/// Arguments of `sluice change approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The `sluice serve` configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The connection (default: the first one).
    #[arg(long)]
    connection: Option<String>,
    /// The project (`org/repo`).
    project: String,
    /// The review branch (`review/<branch>/<topic>` or `refs/heads/review/...`).
    review_branch: String,
}

/// Arguments of `sluice change list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The `sluice serve` configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Runs a `sluice change` command.
pub fn run(command: &ChangeCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            ChangeCommand::Approve(args) => approve(args).await,
            ChangeCommand::List(args) => list(args).await,
            ChangeCommand::History(args) => history(args).await,
        }
    })
}

async fn approve(args: &ApproveArgs) -> anyhow::Result<()> {
    let cfg = ServeConfig::load(&args.config)?;
    let connection = match &args.connection {
        Some(c) => c.clone(),
        None => cfg
            .connections
            .first()
            .map(|c| c.name.clone())
            .context("the configuration has no connection")?,
    };
    let refname = if args.review_branch.starts_with("refs/") {
        args.review_branch.clone()
    } else {
        format!("refs/heads/{}", args.review_branch)
    };
    if sluice_scheduler::git::parse_review_ref(&refname).is_none() {
        anyhow::bail!("{refname} is not a review branch (review/<branch>/<topic>)");
    }
    let store = Store::open(&cfg.database_url()).await?;
    sluice_scheduler::approve_change(&store, &connection, &args.project, &refname).await?;
    println!("approved {} {}", args.project, refname);
    Ok(())
}

async fn list(args: &ListArgs) -> anyhow::Result<()> {
    let cfg = ServeConfig::load(&args.config)?;
    let store = Store::open(&cfg.database_url()).await?;
    for c in &cfg.connections {
        for change in store.changes(&c.name).await? {
            println!(
                "{} {} #{} {} {} {}",
                c.name,
                change.project,
                change.number,
                change.refname,
                change.patchset,
                change.status
            );
        }
    }
    Ok(())
}

async fn history(args: &HistoryArgs) -> anyhow::Result<()> {
    let cfg = ServeConfig::load(&args.config)?;
    let store = Store::open(&cfg.database_url()).await?;
    let doc = sluice_web::records::tenant_history(&store, &args.tenant).await?;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
