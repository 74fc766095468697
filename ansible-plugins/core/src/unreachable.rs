//! `nodes.unreachable`: the hosts Ansible could not reach, one name a line, each listed once.
//! The executor reads it (after the `RESULT unreachable` control line) to retry the build.

use crate::errors::CallbackError;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Adds `host` to the file at `path` (creating it and its directory) unless it is listed.
pub fn record(path: &Path, host: &str) -> Result<(), CallbackError> {
    let err = |e| CallbackError::file(path, e);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| CallbackError::file(dir, e))?;
    }
    let known = match fs::read_to_string(path) {
        Ok(text) => text.lines().any(|l| l.trim() == host),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(err(e)),
    };
    if !known {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(err)?;
        f.write_all(format!("{host}\n").as_bytes()).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".ansible/nodes.unreachable");
        record(&path, "node1").unwrap();
        record(&path, "node2").unwrap();
        record(&path, "node1").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "node1\nnode2\n");
    }
}
