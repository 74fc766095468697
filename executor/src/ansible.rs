//! Ansible installations: one virtualenv per supported ansible-core version under the state dir,
//! each carrying the collections Zuul users expect (the `ansible` community package), Sluice's
//! plugin tree and its native callback module.
//!
//! Layout under the state dir: `ansible-bin/<version>/` is the venv (as Zuul's), and
//! `ansible/<version>/plugins/<fingerprint>/` one installed copy of the plugins
//! (`zuul/ansible/{action,callback,library,filter,lookup,restricted}`) and the native module
//! (`python/`, put on `PYTHONPATH`). The fingerprint is taken from the sources, so executors of
//! different Sluice builds sharing one state dir never swap each other's plugins mid-build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::errors::AnsibleError;

/// A supported ansible-core version and the pip requirement that installs it with collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedVersion {
    /// The ansible-core minor version, as jobs name it in `ansible-version`.
    pub version: &'static str,
    /// The community `ansible` package major version that carries this core (an accepted alias).
    pub package_major: &'static str,
    /// What pip installs.
    pub requirement: &'static str,
}

/// Every version Sluice can install, oldest first: the two newest ansible-core minors that install
/// on Python 3.11 (2.20 needs 3.12).
pub const SUPPORTED_VERSIONS: &[SupportedVersion] = &[
    SupportedVersion {
        version: "2.18",
        package_major: "11",
        requirement: "ansible>=11,<12",
    },
    SupportedVersion {
        version: "2.19",
        package_major: "12",
        requirement: "ansible>=12,<13",
    },
];

/// The version a job gets when it names none.
pub const DEFAULT_VERSION: &str = "2.19";

/// Plugin folders copied from `ansible-plugins/` into each version's plugin dir.
/// `restricted` holds the restricted module set and the entry point for untrusted playbooks.
const PLUGIN_FOLDERS: &[&str] = &[
    "action",
    "callback",
    "library",
    "filter",
    "lookup",
    "restricted",
];

/// File name the native module is installed under, in an installation's `python/` folder.
const NATIVE_MODULE_FILE: &str = "sluice_native.abi3.so";

/// Written last into a plugin copy: a folder without it is an install cut short.
const COMPLETE_MARKER: &str = ".complete";

/// Plugin copies not used for this long are removed at the next install.
const UNUSED_COPY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

/// One installed version, with the paths a build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// The ansible-core minor version.
    pub version: String,
    /// The venv root.
    pub venv: PathBuf,
    /// `<plugin copy>/zuul/ansible`: ansible.cfg's plugin paths point here. Set by
    /// [`Installations::install_plugins`].
    pub plugin_dir: PathBuf,
    /// `<plugin copy>/python`: holds the native module; goes first on `PYTHONPATH`.
    pub native_dir: PathBuf,
    /// `<state>/ansible/<version>`: mounted read-only in the sandbox.
    pub plugin_root: PathBuf,
    /// The base interpreter's prefix the venv's python links to (mounted read-only too).
    pub python_prefix: Option<PathBuf>,
}

impl Installation {
    /// `<venv>/bin/ansible-playbook`.
    pub fn ansible_playbook(&self) -> PathBuf {
        self.venv.join("bin").join("ansible-playbook")
    }

    /// `<venv>/bin/python`.
    pub fn python(&self) -> PathBuf {
        self.venv.join("bin").join("python")
    }
}

/// The Ansible installations of one state dir.
#[derive(Debug, Clone)]
pub struct Installations {
    state_dir: PathBuf,
}

/// Where the files that go into every installation come from.
#[derive(Debug, Clone)]
pub struct PluginSources {
    /// The repository's `ansible-plugins/` folder.
    pub plugins_dir: PathBuf,
    /// The built `libsluice_native.so`.
    pub native_lib: PathBuf,
}

impl Installations {
    /// Installations kept under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
        }
    }

    /// Maps a job's `ansible-version` (`2.19`, `12`, `2.19.3`) to a supported version.
    pub fn normalize(requested: &str) -> Option<&'static str> {
        let requested = requested.trim();
        SUPPORTED_VERSIONS
            .iter()
            .find(|v| {
                requested == v.version
                    || requested == v.package_major
                    || requested
                        .strip_prefix(v.version)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            .map(|v| v.version)
    }

    fn venv(&self, version: &str) -> PathBuf {
        self.state_dir.join("ansible-bin").join(version)
    }

    fn plugin_root(&self, version: &str) -> PathBuf {
        self.state_dir.join("ansible").join(version)
    }

    /// Versions whose venv has an `ansible-playbook`, oldest first.
    pub fn installed(&self) -> Vec<String> {
        SUPPORTED_VERSIONS
            .iter()
            .filter(|v| self.venv(v.version).join("bin/ansible-playbook").is_file())
            .map(|v| v.version.to_string())
            .collect()
    }

    /// The installation a job asks for (`None`: the default version).
    pub fn resolve(&self, requested: Option<&str>) -> Result<Installation, AnsibleError> {
        let installed = self.installed();
        let wanted = requested.unwrap_or(DEFAULT_VERSION);
        let version = Self::normalize(wanted)
            .filter(|v| installed.iter().any(|i| i == v))
            .ok_or_else(|| AnsibleError::UnknownVersion {
                requested: wanted.to_string(),
                installed: installed.clone(),
            })?;
        let venv = self.venv(version);
        let plugin_root = self.plugin_root(version);
        Ok(Installation {
            version: version.to_string(),
            python_prefix: base_interpreter_prefix(&venv),
            plugin_dir: plugin_root.join("zuul").join("ansible"),
            native_dir: plugin_root.join("python"),
            plugin_root,
            venv,
        })
    }

    /// Creates (or with `upgrade`, refreshes) the venvs of `versions`, then installs the plugins
    /// and native module into each.
    pub fn install(
        &self,
        versions: &[&str],
        sources: &PluginSources,
        upgrade: bool,
        python: &Path,
    ) -> Result<Vec<Installation>, AnsibleError> {
        let mut done = Vec::new();
        for requested in versions {
            let spec = Self::normalize(requested)
                .and_then(|v| SUPPORTED_VERSIONS.iter().find(|s| s.version == v))
                .ok_or_else(|| AnsibleError::Unsupported {
                    requested: requested.to_string(),
                    supported: SUPPORTED_VERSIONS
                        .iter()
                        .map(|s| s.version.to_string())
                        .collect(),
                })?;
            let venv = self.venv(spec.version);
            let present = venv.join("bin/ansible-playbook").is_file();
            if !present || upgrade {
                tracing::info!(version = spec.version, venv = %venv.display(), "installing Ansible");
                if !venv.join("bin/python").exists() {
                    run(Command::new(python).arg("-m").arg("venv").arg(&venv))?;
                }
                let mut pip = Command::new(venv.join("bin/pip"));
                pip.args(["install", "--quiet", "--disable-pip-version-check"]);
                if upgrade {
                    pip.arg("--upgrade");
                }
                run(pip.arg(spec.requirement))?;
            }
            let installation = self.resolve(Some(spec.version))?;
            let installation = self.install_plugins(&installation, sources)?;
            validate(&installation)?;
            done.push(installation);
        }
        Ok(done)
    }

    /// Makes sure a copy of the plugin tree and the native module as they are in `sources`
    /// exists under the installation, and returns the installation pointing at it. Cheap when
    /// the copy exists (it is found by the sources' fingerprint), so it runs before every build
    /// and plugins never go stale; a copy is written beside and renamed into place, so a running
    /// playbook never sees a half-written one.
    pub fn install_plugins(
        &self,
        installation: &Installation,
        sources: &PluginSources,
    ) -> Result<Installation, AnsibleError> {
        if !sources.native_lib.is_file() {
            return Err(AnsibleError::NativeModuleMissing {
                path: sources.native_lib.clone(),
            });
        }
        let copies = installation.plugin_root.join("plugins");
        let copy = copies.join(fingerprint(sources)?);
        let marker = copy.join(COMPLETE_MARKER);
        if marker.is_file() {
            // Its age tells the pruning below that it is in use.
            let _ = fs::File::options()
                .write(true)
                .open(&marker)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        } else {
            fs::create_dir_all(&copies).map_err(|e| AnsibleError::io(&copies, e))?;
            let tmp = copies.join(format!(".new.{}", unique_suffix()));
            let plugins = tmp.join("zuul").join("ansible");
            for folder in PLUGIN_FOLDERS {
                let from = sources.plugins_dir.join(folder);
                let to = plugins.join(folder);
                if from.is_dir() {
                    copy_tree(&from, &to)?;
                } else {
                    fs::create_dir_all(&to).map_err(|e| AnsibleError::io(&to, e))?;
                }
            }
            let python = tmp.join("python");
            fs::create_dir_all(&python).map_err(|e| AnsibleError::io(&python, e))?;
            let lib = python.join(NATIVE_MODULE_FILE);
            fs::copy(&sources.native_lib, &lib).map_err(|e| AnsibleError::io(&lib, e))?;
            let tmp_marker = tmp.join(COMPLETE_MARKER);
            fs::write(&tmp_marker, b"").map_err(|e| AnsibleError::io(&tmp_marker, e))?;
            match fs::rename(&tmp, &copy) {
                Ok(()) => prune_unused_copies(&copies, &copy),
                // Another install of the same sources won the race: its copy is as good.
                Err(_) if marker.is_file() => {
                    let _ = fs::remove_dir_all(&tmp);
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(AnsibleError::io(&copy, e));
                }
            }
        }
        Ok(Installation {
            plugin_dir: copy.join("zuul").join("ansible"),
            native_dir: copy.join("python"),
            ..installation.clone()
        })
    }
}

/// A name for the sources' current content: paths, sizes and modification times of every plugin
/// file and of the native module (reading the files would cost more than the build's setup).
fn fingerprint(sources: &PluginSources) -> Result<String, AnsibleError> {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &Path, hasher: &mut impl Hasher) -> Result<(), AnsibleError> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(|e| AnsibleError::io(dir, e))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != "__pycache__")
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            entry.file_name().hash(hasher);
            if path.is_dir() {
                walk(&path, hasher)?;
            } else {
                stamp(&path, hasher)?;
            }
        }
        Ok(())
    }
    fn stamp(path: &Path, hasher: &mut impl Hasher) -> Result<(), AnsibleError> {
        let meta = fs::metadata(path).map_err(|e| AnsibleError::io(path, e))?;
        meta.len().hash(hasher);
        meta.modified().ok().hash(hasher);
        Ok(())
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for folder in PLUGIN_FOLDERS {
        let dir = sources.plugins_dir.join(folder);
        folder.hash(&mut hasher);
        if dir.is_dir() {
            walk(&dir, &mut hasher)?;
        }
    }
    stamp(&sources.native_lib, &mut hasher)?;
    Ok(format!("{:016x}", hasher.finish()))
}

/// Removes plugin copies (and abandoned half-written ones) unused for [`UNUSED_COPY_MAX_AGE`].
fn prune_unused_copies(copies: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(copies) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path == keep {
            continue;
        }
        let stamp = fs::metadata(path.join(COMPLETE_MARKER)).or_else(|_| fs::metadata(&path));
        let unused = stamp
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > UNUSED_COPY_MAX_AGE);
        if unused {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// Reads `home = ...` from `pyvenv.cfg`: the venv's python is a link into that prefix.
fn base_interpreter_prefix(venv: &Path) -> Option<PathBuf> {
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    let home = cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "home").then(|| PathBuf::from(value.trim()))
    })?;
    let prefix = home.parent()?.to_path_buf();
    // A real path lets the sandbox bind it; /usr is bound anyway.
    let prefix = fs::canonicalize(&prefix).unwrap_or(prefix);
    (!prefix.starts_with("/usr")).then_some(prefix)
}

fn validate(installation: &Installation) -> Result<(), AnsibleError> {
    let out = run(Command::new(installation.python())
        .env("PYTHONPATH", &installation.native_dir)
        .args([
            "-c",
            "import ansible.release, sluice_native; print(ansible.release.__version__)",
        ]))?;
    let core = out.trim();
    if !core.starts_with(&format!("{}.", installation.version)) {
        return Err(AnsibleError::WrongCore {
            venv: installation.venv.clone(),
            expected: installation.version.clone(),
            found: core.to_string(),
        });
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<String, AnsibleError> {
    let argv = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| AnsibleError::Spawn {
        argv: argv.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(AnsibleError::CommandFailed {
            argv,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), AnsibleError> {
    fs::create_dir_all(to).map_err(|e| AnsibleError::io(to, e))?;
    for entry in fs::read_dir(from).map_err(|e| AnsibleError::io(from, e))? {
        let entry = entry.map_err(|e| AnsibleError::io(from, e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let dest = to.join(&name);
        if path.is_dir() {
            copy_tree(&path, &dest)?;
        } else {
            fs::copy(&path, &dest).map_err(|e| AnsibleError::io(&dest, e))?;
        }
    }
    Ok(())
}

/// A name part no other install (thread or process) uses at the same time.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path, native: &[u8]) -> PluginSources {
        let plugins_dir = dir.join("plugins");
        fs::create_dir_all(plugins_dir.join("callback/__pycache__")).unwrap();
        fs::write(plugins_dir.join("callback/zuul_stream.py"), "x").unwrap();
        fs::write(plugins_dir.join("callback/__pycache__/junk.pyc"), "junk").unwrap();
        let native_lib = dir.join("libsluice_native.so");
        fs::write(&native_lib, native).unwrap();
        PluginSources {
            plugins_dir,
            native_lib,
        }
    }

    fn installation(state: &Path) -> Installation {
        let venv = state.join("ansible-bin/2.19/bin");
        fs::create_dir_all(&venv).unwrap();
        fs::write(venv.join("ansible-playbook"), "").unwrap();
        Installations::new(state).resolve(Some("2.19")).unwrap()
    }

    #[test]
    fn plugins_are_installed_once_per_content_and_two_builds_keep_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let base = installation(&state);
        let installs = Installations::new(&state);
        let one = sources(&dir.path().join("one"), b"native one");
        let first = installs.install_plugins(&base, &one).unwrap();
        let native = first.native_dir.join(NATIVE_MODULE_FILE);
        assert_eq!(fs::read(&native).unwrap(), b"native one");
        assert!(first.plugin_dir.join("callback/zuul_stream.py").is_file());
        assert!(!first.plugin_dir.join("callback/__pycache__").exists());
        assert!(first.plugin_dir.join("restricted").is_dir());
        assert!(first.plugin_dir.starts_with(&base.plugin_root));
        assert_eq!(installs.install_plugins(&base, &one).unwrap(), first);

        // Another checkout's sources (a different native module) get a copy of their own, and
        // the first copy is left as it was for the builds still using it.
        let two = sources(&dir.path().join("two"), b"native two, longer");
        let second = installs.install_plugins(&base, &two).unwrap();
        assert_ne!(second.plugin_dir, first.plugin_dir);
        assert_eq!(
            fs::read(second.native_dir.join(NATIVE_MODULE_FILE)).unwrap(),
            b"native two, longer"
        );
        assert_eq!(fs::read(&native).unwrap(), b"native one");
    }

    #[test]
    fn a_missing_native_module_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let base = installation(&state);
        let src = sources(&dir.path().join("src"), b"n");
        fs::remove_file(&src.native_lib).unwrap();
        let err = Installations::new(&state)
            .install_plugins(&base, &src)
            .unwrap_err();
        assert!(err.to_string().contains("libsluice_native.so"), "{err}");
    }

    #[test]
    fn normalize_accepts_core_minor_package_major_and_patch() {
        assert_eq!(Installations::normalize("2.19"), Some("2.19"));
        assert_eq!(Installations::normalize("12"), Some("2.19"));
        assert_eq!(Installations::normalize("11"), Some("2.18"));
        assert_eq!(Installations::normalize("2.18.4"), Some("2.18"));
        assert_eq!(Installations::normalize("2.1"), None);
        assert_eq!(Installations::normalize("2.180"), None);
        assert_eq!(Installations::normalize("9"), None);
    }

    #[test]
    fn unknown_version_names_the_installed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("ansible-bin/2.18/bin");
        fs::create_dir_all(&venv).unwrap();
        fs::write(venv.join("ansible-playbook"), "").unwrap();
        let err = Installations::new(dir.path())
            .resolve(Some("2.19"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ansible version 2.19 is not installed (installed: 2.18)"
        );
    }
}
