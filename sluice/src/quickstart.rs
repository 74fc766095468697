//! `sluice quickstart DIR`: starts a local SSH node (`tests/node/sshd-node`), writes a complete
//! setup with `sluice-scheduler`'s quickstart module and prints how to run it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::Args;
use sluice_scheduler::quickstart::{write_quickstart, QuickstartSources};

/// Arguments of `sluice quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where the setup goes.
    dir: PathBuf,
    /// Sluice's source tree (examples, zuul-jobs, the node script); default: the one this binary
    /// was built from.
    #[arg(long, env = "SLUICE_SOURCE_DIR")]
    source_dir: Option<PathBuf>,
}

/// Writes the setup and prints the commands to use it.
pub fn run(args: &QuickstartArgs) -> anyhow::Result<()> {
    let source = args
        .source_dir
        .clone()
        .unwrap_or_else(|| Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf());
    let source = std::fs::canonicalize(&source).unwrap_or(source);
    let dir = std::path::absolute(&args.dir).context("cannot resolve DIR")?;
    let node_dir = dir.join("node");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let script = source.join("tests/node/sshd-node");
    let _ = Command::new(&script).arg("stop").arg(&node_dir).status();
    let out = Command::new(&script)
        .arg("start")
        .arg(&node_dir)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "starting the local SSH node failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = write_quickstart(
        &dir,
        &QuickstartSources {
            config_project: source.join("examples/quickstart/config"),
            demo_project: source.join("examples/quickstart/demo"),
            zuul_jobs: source.join("zuul-jobs"),
            node_dir: node_dir.clone(),
        },
    )?;
    let sluice = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "sluice".into());
    println!("Sluice quickstart written to {}", dir.display());
    println!(
        "Local SSH node: {} (stop: {} stop {})",
        node_dir.display(),
        script.display(),
        node_dir.display()
    );
    println!();
    println!("Run it:");
    println!("  {sluice} serve --config {}", config.display());
    println!();
    println!("Then propose a change and approve it:");
    println!(
        "  git clone {}/repos/org/demo.git demo && cd demo",
        dir.display()
    );
    println!("  echo hi >> README && git add README && git commit -m 'Say hi'");
    println!("  git push origin HEAD:review/main/say-hi        # check runs");
    println!(
        "  {sluice} change approve --config {} org/demo review/main/say-hi   # gate runs, then merges",
        config.display()
    );
    println!("  {sluice} change list --config {}", config.display());
    Ok(())
}
