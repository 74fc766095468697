//! Inputs of the loader fuzzer (`fuzz/fuzz_targets/config_layout.rs`, run by
//! `scripts/fuzz-config`) replayed from real files through `load_layout`: its seeds, and every
//! input that once made it panic.

mod common;

use common::repo;
use sluice_config::{load_layout, Layout, ProjectSource};

/// Splits a fuzzer input the way the fuzz target does (NUL-separated: config-project
/// `zuul.d/a.yaml`, `zuul.d/b.yaml`, untrusted `.zuul.yaml` on `main`, then on `stable`),
/// writes the files into checkouts and loads them, then asks the layout everything the fuzz
/// target asks. Returns the result of `load_layout`.
fn replay(input: &[u8]) -> Result<Layout, sluice_config::ConfigErrors> {
    let text = String::from_utf8_lossy(input);
    let mut parts = text.splitn(4, '\0');
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();
    let config = repo(
        "org/config",
        true,
        &[("zuul.d/a.yaml", a), ("zuul.d/b.yaml", b)],
    );
    let mut repos = vec![config];
    for branch in ["main", "stable"] {
        if let Some(file) = parts.next() {
            let mut r = repo("org/project", false, &[(".zuul.yaml", file)]);
            r.source.branch = branch.into();
            repos.push(r);
        }
    }
    let sources: Vec<ProjectSource> = repos.iter().map(|r| r.source.clone()).collect();

    // The lenient path the scheduler takes keeps a layout even with errors: query it all.
    let mut layout = Layout::new(Some("base".into()));
    for src in &sources {
        layout.add(sluice_config::load_project_lenient(src));
    }
    let _ = layout.check();
    layout.query_everything(usize::MAX);
    load_layout(&sources, Some("base".into()))
}

fn seed(name: &str) -> Vec<u8> {
    let path = common::repo_root()
        .join("fuzz/seeds/config_layout")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn seeds_are_valid_configurations() {
    // The fuzzer mutates from these: they must load cleanly so that mutations reach past the
    // YAML and schema checks into references, variants and freezing.
    for name in ["quickstart", "rich", "anchors"] {
        let layout = replay(&seed(name)).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        assert!(layout.job_names().count() >= 2, "seed {name} defines jobs");
    }
}
