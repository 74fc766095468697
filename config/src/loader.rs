//! Reading one project's configuration from a checkout: choosing the config root
//! (`zuul.yaml`, `zuul.d/`, `.zuul.yaml`, `.zuul.d/`, first with content wins), reading its
//! files in sorted order and parsing every item into a `ProjectConfig`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::errors::{ConfigError, ConfigErrorKind, ConfigErrors, ItemContext, SourceLocation};
use crate::model::*;
use crate::parse::parse_file;

/// The configuration roots, in the order Zuul searches them.
pub const CONFIG_ROOTS: [&str; 4] = ["zuul.yaml", "zuul.d", ".zuul.yaml", ".zuul.d"];

/// One project-branch checkout to read configuration from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSource {
    /// The connection's canonical hostname (e.g. `github.com`).
    pub canonical_hostname: String,
    /// The project name, `org/repo`.
    pub name: String,
    /// The checkout directory.
    pub root: PathBuf,
    /// True for a config-project.
    pub trusted: bool,
    /// The branch checked out.
    pub branch: String,
}

impl ProjectSource {
    /// `<hostname>/<org>/<repo>`.
    pub fn canonical_name(&self) -> String {
        format!("{}/{}", self.canonical_hostname, self.name)
    }

    fn context(&self, path: &str) -> SourceContext {
        SourceContext {
            project: self.canonical_name(),
            short_name: self.name.clone(),
            hostname: self.canonical_hostname.clone(),
            branch: self.branch.clone(),
            path: path.to_string(),
            trusted: self.trusted,
            line: 0,
            column: 0,
            implied_branch_matchers: None,
            implied_branches: None,
        }
    }
}

/// Everything one project-branch defines, plus the errors found reading it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProjectConfig {
    /// Canonical project name.
    pub project: String,
    /// Short project name (`org/repo`).
    pub short_name: String,
    /// Canonical hostname.
    pub hostname: String,
    /// Branch read.
    pub branch: String,
    /// True for a config-project.
    pub trusted: bool,
    /// Files read, relative to the repository root, in load order.
    pub files: Vec<String>,
    /// Job definitions in load order.
    pub jobs: Vec<JobVariant>,
    /// Nodesets.
    pub nodesets: Vec<NodesetDef>,
    /// Secrets.
    pub secrets: Vec<SecretDef>,
    /// Semaphores.
    pub semaphores: Vec<SemaphoreDef>,
    /// Queues.
    pub queues: Vec<QueueDef>,
    /// Pipelines (config-projects only).
    pub pipelines: Vec<PipelineDef>,
    /// `project` stanzas.
    pub projects: Vec<ProjectStanza>,
    /// `project-template` stanzas.
    pub templates: Vec<ProjectStanza>,
    /// Errors; the items they concern were left out.
    pub errors: Vec<ConfigError>,
    /// Non-fatal notes (e.g. ignored extra configuration roots).
    pub warnings: Vec<String>,
}

impl ProjectConfig {
    fn empty(src: &ProjectSource) -> Self {
        ProjectConfig {
            project: src.canonical_name(),
            short_name: src.name.clone(),
            hostname: src.canonical_hostname.clone(),
            branch: src.branch.clone(),
            trusted: src.trusted,
            ..Default::default()
        }
    }
}

/// Read and parse one project's configuration; every error found is returned.
pub fn load_project(src: &ProjectSource) -> Result<ProjectConfig, ConfigErrors> {
    let config = load_project_lenient(src);
    if config.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(config.errors))
    }
}

/// Read and parse one project's configuration, keeping the items that are valid and the
/// errors of those that are not (what a scheduler does: one broken item does not stop the
/// rest).
pub fn load_project_lenient(src: &ProjectSource) -> ProjectConfig {
    let mut config = ProjectConfig::empty(src);
    let (files, warnings) = match find_config_files(&src.root) {
        Ok(found) => found,
        Err((path, message)) => {
            config
                .errors
                .push(file_error(src, &path, ConfigErrorKind::Io { message }));
            return config;
        }
    };
    config.warnings = warnings;
    let root = fs::canonicalize(&src.root).unwrap_or_else(|_| src.root.clone());
    let mut contents = Vec::new();
    for rel in files {
        let full = src.root.join(&rel);
        // A symlink may not lead out of the checkout (an untrusted repo could otherwise make
        // us read, and quote in errors, any file on the machine).
        match fs::canonicalize(&full) {
            Ok(real) if real.starts_with(&root) => {}
            _ => {
                config.errors.push(file_error(
                    src,
                    &rel,
                    ConfigErrorKind::Io {
                        message: "file resolves outside the repository".into(),
                    },
                ));
                continue;
            }
        }
        match fs::read(&full) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => contents.push((rel, text)),
                Err(_) => config.errors.push(file_error(
                    src,
                    &rel,
                    ConfigErrorKind::Io {
                        message: "file is not valid UTF-8".into(),
                    },
                )),
            },
            Err(e) => config.errors.push(file_error(
                src,
                &rel,
                ConfigErrorKind::Io {
                    message: e.to_string(),
                },
            )),
        }
    }
    parse_into(src, &contents, &mut config);
    config
}

/// Parse configuration files already read (e.g. from a merger), given as
/// `(path relative to the repository root, text)` in load order.
pub fn parse_project_files(src: &ProjectSource, files: &[(String, String)]) -> ProjectConfig {
    let mut config = ProjectConfig::empty(src);
    parse_into(src, files, &mut config);
    config
}

fn parse_into(src: &ProjectSource, files: &[(String, String)], config: &mut ProjectConfig) {
    for (rel, text) in files {
        config.files.push(rel.clone());
        let base = src.context(rel);
        parse_file(&base, text, config);
    }
}

fn file_error(src: &ProjectSource, path: &str, kind: ConfigErrorKind) -> ConfigError {
    ConfigError::new(
        SourceLocation {
            project: src.canonical_name(),
            branch: src.branch.clone(),
            path: path.to_string(),
            line: 0,
            column: 0,
        },
        ItemContext::default(),
        kind,
    )
}

type FoundFiles = (Vec<String>, Vec<String>);

/// The configuration files of a checkout, relative to `root`, in load order, and warnings
/// about roots that were ignored because an earlier one had content.
pub(crate) fn find_config_files(root: &Path) -> Result<FoundFiles, (String, String)> {
    let mut chosen: Option<Vec<String>> = None;
    let mut warnings = Vec::new();
    for name in CONFIG_ROOTS {
        let path = root.join(name);
        let is_file_root = name.ends_with(".yaml");
        let files = if is_file_root {
            if path.is_file() {
                vec![name.to_string()]
            } else {
                Vec::new()
            }
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(&path, name, &mut found).map_err(|e| (name.to_string(), e.to_string()))?;
            found.sort();
            found
        } else {
            Vec::new()
        };
        if files.is_empty() {
            continue;
        }
        if chosen.is_some() {
            warnings.push(format!(
                "multiple project configurations: \"{name}\" is ignored because an earlier root has content"
            ));
        } else {
            chosen = Some(files);
        }
    }
    Ok((chosen.unwrap_or_default(), warnings))
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child_rel = format!("{rel}/{name}");
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), &child_rel, out)?;
        } else if name.ends_with(".yaml") && (ft.is_file() || entry.path().is_file()) {
            out.push(child_rel);
        }
    }
    Ok(())
}
