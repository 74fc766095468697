//! Fuzz target over the configuration loader: arbitrary text as the `zuul.yaml` files of a
//! tenant, loaded the way `sluice_config::load_layout` does (config-project first, then an
//! untrusted project on two branches), checked, and every job frozen for every project, branch
//! and pipeline. Any panic is a bug: bad configuration must come back as `ConfigErrors`.
//!
//! The input is split on NUL bytes into at most four files, in this order (the same mapping
//! `config/tests/fuzz_regressions.rs` uses to replay a crash from real files):
//! 1. `org/config` (trusted) `zuul.d/a.yaml`, 2. `org/config` `zuul.d/b.yaml`,
//! 3. `org/project` (untrusted) `.zuul.yaml` on `main`, 4. `org/project` `.zuul.yaml` on `stable`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_config::{parse_project_files, Layout, ProjectSource};

fn source(name: &str, trusted: bool, branch: &str) -> ProjectSource {
    ProjectSource {
        canonical_hostname: "example.com".into(),
        name: name.into(),
        root: "/nonexistent".into(),
        trusted,
        branch: branch.into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\0').map(str::to_string);
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();
    let main = parts.next();
    let stable = parts.next();

    let config = source("org/config", true, "main");
    let mut layout = Layout::new(Some("base".into()));
    layout.add(parse_project_files(
        &config,
        &[("zuul.d/a.yaml".into(), a), ("zuul.d/b.yaml".into(), b)],
    ));
    for (branch, file) in [("main", main), ("stable", stable)] {
        if let Some(file) = file {
            let project = source("org/project", false, branch);
            layout.add(parse_project_files(&project, &[(".zuul.yaml".into(), file)]));
        }
    }
    let _ = layout.check();
    for e in layout.errors() {
        let _ = e.to_string();
    }

    // Bounded so that one input stays fast.
    layout.query_everything(32);
});
