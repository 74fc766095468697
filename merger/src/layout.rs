//! Workspace layout: where a project's repository goes under `work/src` for each of Zuul's
//! workspace schemes (`golang`, `flat`, `unique`), and detection of colliding paths.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::errors::MergeError;

/// Zuul's `workspace-scheme` job attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceScheme {
    /// `<hostname>/<org>/<repo>` (Zuul's default).
    #[default]
    Golang,
    /// `<last path component>`.
    Flat,
    /// `<hostname>/<first component>/<url-quoted project name>`.
    Unique,
}

impl WorkspaceScheme {
    /// Zuul's name for the scheme.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceScheme::Golang => "golang",
            WorkspaceScheme::Flat => "flat",
            WorkspaceScheme::Unique => "unique",
        }
    }
}

impl fmt::Display for WorkspaceScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkspaceScheme {
    type Err = MergeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "golang" => Ok(WorkspaceScheme::Golang),
            "flat" => Ok(WorkspaceScheme::Flat),
            "unique" => Ok(WorkspaceScheme::Unique),
            other => Err(MergeError::UnknownScheme(other.to_string())),
        }
    }
}

/// Splits a canonical name (`<hostname>/<project name>`) into its hostname and project name,
/// rejecting names that could escape the workspace.
pub fn split_canonical_name(canonical_name: &str) -> Result<(&str, &str), MergeError> {
    let invalid = |reason| MergeError::InvalidProjectName {
        name: canonical_name.to_string(),
        reason,
    };
    if canonical_name.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if canonical_name.contains('\\') {
        return Err(invalid("contains a backslash"));
    }
    let (host, name) = canonical_name
        .split_once('/')
        .ok_or_else(|| invalid("expected <hostname>/<project name>"))?;
    for part in canonical_name.split('/') {
        if part.is_empty() {
            return Err(invalid("has an empty path component"));
        }
        if part == "." || part == ".." {
            return Err(invalid("has a '.' or '..' path component"));
        }
    }
    Ok((host, name))
}

/// The path of a project's repository relative to `work/src`, as Zuul computes it.
pub fn workspace_project_path(
    canonical_name: &str,
    scheme: WorkspaceScheme,
) -> Result<PathBuf, MergeError> {
    let (host, name) = split_canonical_name(canonical_name)?;
    let mut path = PathBuf::from(host);
    match scheme {
        WorkspaceScheme::Golang => {
            for part in name.split('/') {
                path.push(part);
            }
        }
        WorkspaceScheme::Flat => {
            // split_canonical_name guarantees a non-empty last component.
            let last = name.rsplit('/').next().unwrap_or(name);
            path = PathBuf::from(last);
        }
        WorkspaceScheme::Unique => {
            let prefix = name.split('/').next().unwrap_or(name);
            path.push(prefix);
            path.push(quote_plus(name));
        }
    }
    Ok(path)
}

/// Python's `urllib.parse.quote_plus` with its default safe set: ASCII letters, digits and
/// `_.-~` stay, space becomes `+`, every other byte becomes `%XX`.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Fails when two relative workspace paths are equal or one is inside the other.
pub(crate) fn check_collisions(paths: &[(&str, &Path)]) -> Result<(), MergeError> {
    for (i, (project, path)) in paths.iter().enumerate() {
        for (other, other_path) in &paths[..i] {
            if path.starts_with(other_path) || other_path.starts_with(path) {
                return Err(MergeError::PathCollision {
                    project: project.to_string(),
                    other: other.to_string(),
                    path: path.to_path_buf(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, scheme: WorkspaceScheme) -> String {
        workspace_project_path(name, scheme)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn schemes_place_projects_like_zuul() {
        let name = "review.example.org/org/repo";
        assert_eq!(
            p(name, WorkspaceScheme::Golang),
            "review.example.org/org/repo"
        );
        assert_eq!(p(name, WorkspaceScheme::Flat), "repo");
        assert_eq!(
            p(name, WorkspaceScheme::Unique),
            "review.example.org/org/org%2Frepo"
        );
        assert_eq!(
            p("localhost/a b", WorkspaceScheme::Unique),
            "localhost/a b/a+b"
        );
    }

    #[test]
    fn hostile_names_are_rejected() {
        for name in [
            "repo",
            "localhost/../etc",
            "/abs/x",
            "localhost//x",
            "localhost/x/",
            "h/a\\b",
        ] {
            assert!(
                matches!(
                    workspace_project_path(name, WorkspaceScheme::Golang),
                    Err(MergeError::InvalidProjectName { .. })
                ),
                "{name} was accepted"
            );
        }
    }

    #[test]
    fn collisions_are_detected() {
        let a = PathBuf::from("h/org/repo");
        let b = PathBuf::from("h/org/repo/sub");
        let c = PathBuf::from("h/org/other");
        assert!(check_collisions(&[("a", &a), ("c", &c)]).is_ok());
        assert!(matches!(
            check_collisions(&[("a", &a), ("b", &b)]),
            Err(MergeError::PathCollision { .. })
        ));
        assert!(matches!(
            check_collisions(&[("a", &a), ("a2", &a)]),
            Err(MergeError::PathCollision { .. })
        ));
    }

    #[test]
    fn scheme_names_parse() {
        assert_eq!(
            "flat".parse::<WorkspaceScheme>().ok(),
            Some(WorkspaceScheme::Flat)
        );
        assert!("weird".parse::<WorkspaceScheme>().is_err());
    }
}
