//! How a playbook's secrets enter its sandbox: `ansible/<pb>/group_vars/all.yaml` (next to the
//! inventory, so Ansible loads it as group `all` variables) and, with `secret-exposure: redact`
//! or `fail`, `ansible/<pb>/secret_values/values.json` for the callbacks' redaction (named by
//! `SLUICE_SECRET_VALUES`). Both are in-memory files on tmpfs mounts inside bubblewrap, fed
//! through pipes: on the host only the two empty mount-point directories exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use sluice_config::{FrozenJob, PlaybookRef};
use sluice_sandbox::InMemoryFile;

use crate::runner::Sandboxing;
use crate::secrets::{playbook_secrets, KeyStore, SecretsError};

/// What replaces output lines that contain a secret value (the callbacks use the same text).
pub const NOTICE: &str = "[Zuul] Secret detected in output";

/// The control line a callback prints when it redacted a secret in `fail` mode.
pub const CONTROL: &str = "RESULT secret_exposure";

/// The in-memory files of one playbook run.
#[derive(Debug)]
pub struct SecretFiles {
    mounts: Vec<PathBuf>,
    files: Vec<InMemoryFile>,
    values_path: Option<PathBuf>,
    /// Values the executor redacts from what it writes itself (empty with `ignore`).
    pub redact: Vec<String>,
}

/// Decrypts the playbook's secrets and prepares its files; `None` when it has none.
pub fn for_playbook(
    job: &FrozenJob,
    pb: &PlaybookRef,
    keys: &KeyStore,
    pb_dir: &Path,
) -> Result<Option<SecretFiles>, SecretsError> {
    let Some(secrets) = playbook_secrets(job, pb, keys)? else {
        return Ok(None);
    };
    let group_vars_dir = pb_dir.join("group_vars");
    let mut mounts = vec![group_vars_dir.clone()];
    let mut files = vec![InMemoryFile::new(
        group_vars_dir.join("all.yaml"),
        secrets.group_vars.into_bytes(),
    )];
    let mut values_path = None;
    let mut redact = Vec::new();
    if matches!(job.secret_exposure.as_str(), "redact" | "fail") {
        let values_dir = pb_dir.join("secret_values");
        let path = values_dir.join("values.json");
        let spec = json!({"mode": job.secret_exposure, "values": secrets.values});
        files.push(InMemoryFile::new(
            path.clone(),
            spec.to_string().into_bytes(),
        ));
        mounts.push(values_dir);
        values_path = Some(path);
        redact = secrets.values;
    }
    for dir in &mounts {
        std::fs::create_dir_all(dir).map_err(|source| SecretsError::Write {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(Some(SecretFiles {
        mounts,
        files,
        values_path,
        redact,
    }))
}

impl SecretFiles {
    /// Adds the tmpfs mounts and files to the sandbox and names the values file in `env`.
    pub fn apply(self, sandbox: &mut Sandboxing, env: &mut HashMap<String, String>) {
        sandbox.tmpfs.extend(self.mounts);
        sandbox.files.extend(self.files);
        if let Some(path) = self.values_path {
            env.insert("SLUICE_SECRET_VALUES".into(), path.display().to_string());
        }
    }
}
