//! Every error this crate reports: configuration errors found while loading and validating
//! (each carries the project, file, line and column, and the item it belongs to) and freeze
//! errors found while freezing a job for a project and branch.

use std::fmt;

use thiserror::Error;

/// Where in a project's configuration something is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// Canonical name of the project (`host/org/repo`).
    pub project: String,
    /// Branch the file was read from.
    pub branch: String,
    /// File path relative to the repository root.
    pub path: String,
    /// 1-based line (0 when the error concerns the whole file before any line).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{} ({}@{})",
            self.path, self.line, self.column, self.project, self.branch
        )
    }
}

/// The configuration item an error belongs to, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemContext {
    /// The item type (`job`, `nodeset`, `project`, ...).
    pub item_type: Option<String>,
    /// The item's name.
    pub name: Option<String>,
}

impl fmt::Display for ItemContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.item_type, &self.name) {
            (Some(t), Some(n)) => write!(f, "{t} \"{n}\": "),
            (Some(t), None) => write!(f, "{t}: "),
            (None, Some(n)) => write!(f, "\"{n}\": "),
            (None, None) => Ok(()),
        }
    }
}

/// One configuration error, with where it is and what item it concerns.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{location}: {item}{kind}")]
pub struct ConfigError {
    /// File, line and column (and project and branch).
    pub location: SourceLocation,
    /// Item type and name, when known.
    pub item: ItemContext,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

/// What is wrong in a configuration error.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigErrorKind {
    /// The file could not be read.
    #[error("cannot read file: {message}")]
    Io {
        /// The operating system's message.
        message: String,
    },
    /// The YAML itself is malformed.
    #[error("yaml syntax error: {message}")]
    Yaml {
        /// The parser's message.
        message: String,
    },
    /// A mapping has the same key twice.
    #[error("duplicate key \"{key}\"")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// The file is not a list.
    #[error("a configuration file must be a list of single-key dicts, found {found}")]
    NotAList {
        /// What was found instead.
        found: String,
    },
    /// A list item is not a dict.
    #[error("a configuration item must be a single-key dict, found {found}")]
    ItemNotADict {
        /// What was found instead.
        found: String,
    },
    /// A list item has more than one key (or none).
    #[error("a configuration item must have exactly one key, found {count}: {keys}")]
    MultiKeyItem {
        /// Number of keys.
        count: usize,
        /// The keys, comma separated.
        keys: String,
    },
    /// An item type that is not part of the language.
    #[error("unknown configuration item type \"{item_type}\" (expected one of job, nodeset, project, project-template, secret, semaphore, queue, pragma, pipeline)")]
    UnknownItemType {
        /// The unknown type.
        item_type: String,
    },
    /// A key that is not allowed here.
    #[error("unknown key \"{key}\"")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A value of the wrong type.
    #[error("\"{key}\" must be {expected}, found {found}")]
    WrongType {
        /// The attribute.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A required key is missing.
    #[error("missing required key \"{key}\"")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A value of the right type but not allowed.
    #[error("invalid value for \"{key}\": {message}")]
    InvalidValue {
        /// The attribute.
        key: String,
        /// Why.
        message: String,
    },
    /// A variable name that Ansible would not accept.
    #[error("invalid variable name \"{name}\" in \"{key}\": names must match ^[A-Za-z0-9_]+$")]
    InvalidVarName {
        /// The attribute holding the variable.
        key: String,
        /// The variable.
        name: String,
    },
    /// A variable name reserved by Zuul.
    #[error("variable \"{name}\" in \"{key}\" is reserved and may not be set")]
    ReservedVarName {
        /// The attribute holding the variable.
        key: String,
        /// The variable.
        name: String,
    },
    /// A regular expression that does not compile.
    #[error("invalid regular expression \"{pattern}\" in \"{key}\": {message}")]
    InvalidRegex {
        /// The attribute.
        key: String,
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        message: String,
    },
    /// A YAML tag that is not allowed here.
    #[error("yaml tag \"!{tag}\" is not allowed here")]
    UnexpectedTag {
        /// The tag without its `!`.
        tag: String,
    },
    /// Something only config-projects may do.
    #[error("{what} is only allowed in a config-project")]
    NotPermittedUntrusted {
        /// What was attempted.
        what: String,
    },
    /// An untrusted project stanza names another project.
    #[error(
        "project \"{name}\" may not be configured from an untrusted project other than itself"
    )]
    ProjectNotPermitted {
        /// The project named.
        name: String,
    },
    /// A parent job that does not exist.
    #[error("unknown parent job \"{parent}\"")]
    UnknownParent {
        /// The parent named.
        parent: String,
    },
    /// A nodeset that does not exist.
    #[error("unknown nodeset \"{nodeset}\"")]
    UnknownNodeset {
        /// The nodeset named.
        nodeset: String,
    },
    /// A secret that does not exist.
    #[error("unknown secret \"{secret}\"")]
    UnknownSecret {
        /// The secret named.
        secret: String,
    },
    /// A secret of another project.
    #[error(
        "secret \"{secret}\" is defined in {owner} and may only be used by jobs of that project"
    )]
    SecretNotPermitted {
        /// The secret named.
        secret: String,
        /// Its project.
        owner: String,
    },
    /// A job that does not exist (in a project-pipeline job list).
    #[error("unknown job \"{job}\"")]
    UnknownJob {
        /// The job named.
        job: String,
    },
    /// A project-template that does not exist.
    #[error("unknown project-template \"{template}\"")]
    UnknownTemplate {
        /// The template named.
        template: String,
    },
    /// A parent chain that loops.
    #[error("parent cycle: {chain}")]
    ParentCycle {
        /// The job names around the loop, ` -> ` separated.
        chain: String,
    },
    /// A job already defined by another project.
    #[error("job \"{name}\" is already defined in project {owner}; jobs may only have variants in one project")]
    JobInOtherProject {
        /// The job.
        name: String,
        /// The project that owns it.
        owner: String,
    },
    /// A tenant-unique item defined twice.
    #[error("{item_type} \"{name}\" is already defined at {other}")]
    Duplicate {
        /// Item type.
        item_type: String,
        /// Item name.
        name: String,
        /// Where the first definition is.
        other: String,
    },
}

impl ConfigError {
    /// A new error.
    pub fn new(location: SourceLocation, item: ItemContext, kind: ConfigErrorKind) -> Self {
        ConfigError {
            location,
            item,
            kind,
        }
    }
}

/// All the configuration errors of a load (never empty when returned as an error).
#[derive(Debug, Clone, Default, PartialEq, Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.len() {
            0 => write!(f, "no configuration errors"),
            1 => write!(f, "{}", self.0[0]),
            n => {
                write!(f, "{n} configuration errors:")?;
                for e in &self.0 {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigErrors {
    /// True when there is no error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// The errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

/// Why a job could not be frozen.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FreezeError {
    /// No job of that name.
    #[error("job \"{job}\" is not defined")]
    UnknownJob {
        /// The job.
        job: String,
    },
    /// No variant of the job matches the branch.
    #[error("no variant of job \"{job}\" matches branch \"{branch}\"")]
    NoMatchingVariant {
        /// The job.
        job: String,
        /// The branch.
        branch: String,
    },
    /// An ancestor has no variant for the branch.
    #[error("job \"{job}\": parent job \"{parent}\" has no variant matching branch \"{branch}\"")]
    ParentNoMatchingVariant {
        /// The job being frozen.
        job: String,
        /// The ancestor.
        parent: String,
        /// The branch.
        branch: String,
    },
    /// A parent that does not exist.
    #[error("job \"{job}\": unknown parent job \"{parent}\" at {location}")]
    UnknownParent {
        /// The job naming the parent.
        job: String,
        /// The parent.
        parent: String,
        /// Where it is named.
        location: Box<SourceLocation>,
    },
    /// A parent chain that loops.
    #[error("job \"{job}\": parent cycle: {chain}")]
    ParentCycle {
        /// The job being frozen.
        job: String,
        /// The loop.
        chain: String,
    },
    /// The job is abstract.
    #[error("job \"{job}\" is abstract and may not be run directly")]
    Abstract {
        /// The job.
        job: String,
    },
    /// No `run` playbook anywhere in the chain.
    #[error("job \"{job}\" has no run playbook")]
    NoRunPlaybook {
        /// The job.
        job: String,
    },
    /// A variant or child changes a final job.
    #[error("job \"{job}\": unable to modify final job attribute \"{attribute}\" with the variant at {location}")]
    Final {
        /// The job.
        job: String,
        /// The attribute.
        attribute: String,
        /// The variant trying.
        location: Box<SourceLocation>,
    },
    /// A job inherits from a final job.
    #[error("job \"{job}\" at {location} may not inherit from final job \"{parent}\"")]
    InheritFinal {
        /// The child.
        job: String,
        /// The final parent.
        parent: String,
        /// The child's definition.
        location: Box<SourceLocation>,
    },
    /// A protected job changed from another project.
    #[error("job \"{job}\" is protected (defined in {origin}) and may not be inherited or varied from {location}")]
    Protected {
        /// The job.
        job: String,
        /// Its project.
        origin: String,
        /// The offending definition.
        location: Box<SourceLocation>,
    },
    /// An intermediate job inherited by a non-abstract job.
    #[error("job \"{job}\" at {location} is not abstract and may not inherit from intermediate job \"{parent}\"")]
    Intermediate {
        /// The child.
        job: String,
        /// The intermediate parent.
        parent: String,
        /// The child's definition.
        location: Box<SourceLocation>,
    },
    /// A nodeset that does not exist.
    #[error("job \"{job}\": unknown nodeset \"{nodeset}\" at {location}")]
    UnknownNodeset {
        /// The job.
        job: String,
        /// The nodeset.
        nodeset: String,
        /// Where it is named.
        location: Box<SourceLocation>,
    },
    /// A secret that does not exist or belongs to another project.
    #[error("job \"{job}\": secret \"{secret}\" at {location}: {reason}")]
    Secret {
        /// The job.
        job: String,
        /// The secret.
        secret: String,
        /// Where it is named.
        location: Box<SourceLocation>,
        /// What is wrong.
        reason: String,
    },
}
