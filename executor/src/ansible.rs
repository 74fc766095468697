//! Ansible installations: one virtualenv per supported ansible-core version under the state dir,
//! each carrying the collections Zuul users expect (the `ansible` community package), Sluice's
//! plugin tree and its native callback module.
//!
//! Layout under the state dir, as Zuul's: `ansible-bin/<version>/` is the venv,
//! `ansible/<version>/zuul/ansible/{action,callback,library,filter}` the plugins.

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

/// File name the native module is installed under in each venv's site-packages.
const NATIVE_MODULE_FILE: &str = "sluice_native.abi3.so";

/// One installed version, with the paths a build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// The ansible-core minor version.
    pub version: String,
    /// The venv root.
    pub venv: PathBuf,
    /// `<state>/ansible/<version>/zuul/ansible`: ansible.cfg's plugin paths point here.
    pub plugin_dir: PathBuf,
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
            self.install_plugins(&installation, sources)?;
            validate(&installation)?;
            done.push(installation);
        }
        Ok(done)
    }

    /// Copies the plugin tree and the native module into one installation, replacing what is
    /// there; cheap enough to run before every build so plugins never go stale.
    pub fn install_plugins(
        &self,
        installation: &Installation,
        sources: &PluginSources,
    ) -> Result<(), AnsibleError> {
        let dest = &installation.plugin_dir;
        // Builds run concurrently (several executor workers, several processes) against one
        // installation: a folder whose content is already right is left alone, and a changed
        // one is copied beside and swapped in, so a running playbook never loses its plugins
        // to another build's install.
        for folder in PLUGIN_FOLDERS {
            let from = sources.plugins_dir.join(folder);
            let to = dest.join(folder);
            if from.is_dir() && same_tree(&from, &to) {
                continue;
            }
            if !from.is_dir() && to.is_dir() {
                continue;
            }
            let tmp = dest.join(format!(".{folder}.{}", unique_suffix()));
            if from.is_dir() {
                copy_tree(&from, &tmp)?;
            } else {
                fs::create_dir_all(&tmp).map_err(|e| AnsibleError::io(&tmp, e))?;
            }
            let old = dest.join(format!(".{folder}.old.{}", unique_suffix()));
            if to.exists() {
                fs::rename(&to, &old).map_err(|e| AnsibleError::io(&to, e))?;
            }
            fs::rename(&tmp, &to).map_err(|e| AnsibleError::io(&to, e))?;
            let _ = fs::remove_dir_all(&old);
        }
        let site = site_packages(installation)?;
        let target = site.join(NATIVE_MODULE_FILE);
        if !sources.native_lib.is_file() {
            return Err(AnsibleError::NativeModuleMissing {
                path: sources.native_lib.clone(),
            });
        }
        if !same_file_content(&sources.native_lib, &target) {
            // Write beside and rename so a running Ansible never maps a half-written library.
            let tmp = site.join(format!(".{NATIVE_MODULE_FILE}.{}", unique_suffix()));
            fs::copy(&sources.native_lib, &tmp).map_err(|e| AnsibleError::io(&tmp, e))?;
            fs::rename(&tmp, &target).map_err(|e| AnsibleError::io(&target, e))?;
        }
        Ok(())
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

/// The venv's site-packages. This runs before every build, so the usual
/// `lib/python3.X/site-packages` layout is found on disk; only an unusual venv costs asking its
/// interpreter.
fn site_packages(installation: &Installation) -> Result<PathBuf, AnsibleError> {
    let lib = installation.venv.join("lib");
    if let Ok(entries) = fs::read_dir(&lib) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path().join("site-packages"))
            .filter(|p| p.is_dir())
            .collect();
        if found.len() == 1 {
            return Ok(found.remove(0));
        }
    }
    let out = run(Command::new(installation.python()).args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
    ]))?;
    Ok(PathBuf::from(out.trim()))
}

fn validate(installation: &Installation) -> Result<(), AnsibleError> {
    let out = run(Command::new(installation.python()).args([
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

/// Whether `to` holds exactly the files `copy_tree(from, to)` would write.
fn same_tree(from: &Path, to: &Path) -> bool {
    let list = |dir: &Path| -> Option<Vec<std::ffi::OsString>> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n != "__pycache__")
            .collect();
        names.sort();
        Some(names)
    };
    let (Some(a), Some(b)) = (list(from), list(to)) else {
        return false;
    };
    a == b
        && a.iter().all(|name| {
            let (x, y) = (from.join(name), to.join(name));
            if x.is_dir() {
                same_tree(&x, &y)
            } else {
                !y.is_dir() && same_file_content(&x, &y)
            }
        })
}

/// Compares two files in small chunks: this runs before every build, and reading a native
/// module of several megabytes whole would set the executor's peak memory.
fn same_file_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    match (fa.metadata(), fb.metadata()) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {}
        _ => return false,
    }
    let mut ba = [0u8; 16 * 1024];
    let mut bb = [0u8; 16 * 1024];
    loop {
        let n = match fa.read(&mut ba) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 {
            return true;
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_tree_sees_copies_and_changes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let to = dir.path().join("to");
        fs::create_dir_all(from.join("sub/__pycache__")).unwrap();
        fs::write(from.join("a.py"), "a").unwrap();
        fs::write(from.join("sub/b.py"), "b").unwrap();
        assert!(!same_tree(&from, &to));
        copy_tree(&from, &to).unwrap();
        assert!(same_tree(&from, &to));
        fs::write(to.join("sub/b.py"), "changed").unwrap();
        assert!(!same_tree(&from, &to));
        fs::write(to.join("sub/b.py"), "b").unwrap();
        fs::write(to.join("extra.py"), "x").unwrap();
        assert!(!same_tree(&from, &to));
    }

    #[test]
    fn file_comparison_sees_equal_and_different_content() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&a, &big).unwrap();
        fs::write(&b, &big).unwrap();
        let mut other = big.clone();
        other[99_999] ^= 1;
        fs::write(&c, &other).unwrap();
        assert!(same_file_content(&a, &b));
        assert!(!same_file_content(&a, &c));
        assert!(!same_file_content(&a, &dir.path().join("missing")));
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
