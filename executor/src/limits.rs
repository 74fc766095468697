//! Resource guards of a build: a disk limit on the build dir (DISK_FULL), the console output cap
//! per task (`ZUUL_OUTPUT_MAX_BYTES`, enforced by the command module), and pids/memory limits on
//! the sandbox through a per-build cgroup (v2, or the v1 `pids` and `memory` hierarchies).
//!
//! The cgroup is joined by the sandboxed child itself before `exec` (`sluice-sandbox`), so
//! Ansible and everything it starts on the executor count from the start. Tasks on nodes are
//! not affected.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Zuul's `disk_limit_per_job` default (250 MB).
pub const DEFAULT_DISK_LIMIT: u64 = 250 * 1024 * 1024;

/// Zuul's `output_max_bytes` default (1 GiB).
pub const DEFAULT_OUTPUT_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// How often the disk usage of a build dir is measured (at least; longer when a walk is slow).
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The limits a build runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Bytes the build dir may use (`None`: unlimited).
    pub disk_bytes: Option<u64>,
    /// Console output bytes per command task before it is terminated.
    pub output_max_bytes: u64,
    /// Processes (threads included) in the sandbox at once (`None`: unlimited).
    pub pids_max: Option<u64>,
    /// Memory of the sandbox in bytes (`None`: unlimited).
    pub memory_bytes: Option<u64>,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            disk_bytes: Some(DEFAULT_DISK_LIMIT),
            output_max_bytes: DEFAULT_OUTPUT_MAX_BYTES,
            pids_max: None,
            memory_bytes: None,
        }
    }
}

/// Why a limit could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// No usable cgroup hierarchy for the controller.
    #[error("cannot limit {what}: no writable cgroup hierarchy with the {controller} controller under /sys/fs/cgroup")]
    NoController {
        /// pids or memory.
        what: &'static str,
        /// The controller.
        controller: &'static str,
    },
    /// A cgroup file could not be written.
    #[error("cannot set up cgroup {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A build's cgroup(s), removed on drop (once its processes are gone).
#[derive(Debug, Default)]
pub struct BuildCgroup {
    dirs: Vec<PathBuf>,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn write(path: &Path, value: &str) -> Result<(), LimitsError> {
    std::fs::write(path, value).map_err(|source| LimitsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), LimitsError> {
    std::fs::create_dir_all(path).map_err(|source| LimitsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl BuildCgroup {
    /// Creates the cgroup(s) for the configured pids and memory limits (none when neither is
    /// set).
    pub fn create(build: &str, limits: &ResourceLimits) -> Result<BuildCgroup, LimitsError> {
        Self::create_under(Path::new(CGROUP_ROOT), build, limits)
    }

    fn create_under(
        root: &Path,
        build: &str,
        limits: &ResourceLimits,
    ) -> Result<BuildCgroup, LimitsError> {
        let mut cg = BuildCgroup::default();
        if limits.pids_max.is_none() && limits.memory_bytes.is_none() {
            return Ok(cg);
        }
        let name = format!("sluice-{build}");
        if root.join("cgroup.controllers").is_file() {
            // cgroup v2: one group, controllers enabled for children of the root.
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let mut enable = Vec::new();
            for (set, what, controller) in [
                (limits.pids_max.is_some(), "pids", "pids"),
                (limits.memory_bytes.is_some(), "memory", "memory"),
            ] {
                if set {
                    if !controllers.split_whitespace().any(|c| c == controller) {
                        return Err(LimitsError::NoController { what, controller });
                    }
                    enable.push(format!("+{controller}"));
                }
            }
            write(&root.join("cgroup.subtree_control"), &enable.join(" "))?;
            let dir = root.join(&name);
            mkdir(&dir)?;
            cg.dirs.push(dir.clone());
            if let Some(n) = limits.pids_max {
                write(&dir.join("pids.max"), &n.to_string())?;
            }
            if let Some(bytes) = limits.memory_bytes {
                write(&dir.join("memory.max"), &bytes.to_string())?;
                let _ = write(&dir.join("memory.swap.max"), "0");
            }
            return Ok(cg);
        }
        // cgroup v1: one hierarchy per controller.
        if let Some(n) = limits.pids_max {
            let base = root.join("pids");
            if !base.join("cgroup.procs").is_file() {
                return Err(LimitsError::NoController {
                    what: "pids",
                    controller: "pids",
                });
            }
            let dir = base.join(&name);
            mkdir(&dir)?;
            cg.dirs.push(dir.clone());
            write(&dir.join("pids.max"), &n.to_string())?;
        }
        if let Some(bytes) = limits.memory_bytes {
            let base = root.join("memory");
            if !base.join("cgroup.procs").is_file() {
                return Err(LimitsError::NoController {
                    what: "memory",
                    controller: "memory",
                });
            }
            let dir = base.join(&name);
            mkdir(&dir)?;
            cg.dirs.push(dir.clone());
            write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string());
        }
        Ok(cg)
    }

    /// The `cgroup.procs` files a sandboxed child joins.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Fails while processes remain; the runner kills the whole process group first.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Bytes used on disk below `dir` (allocated blocks; hard links counted once; symlinks not
/// followed).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            if seen.insert((meta.dev(), meta.ino())) {
                total = total.saturating_add(meta.blocks().saturating_mul(512));
            }
        }
    }
    total
}

/// Watches a build dir's disk usage; `exceeded()` turns true (and `on_exceed` runs once) when it
/// passes the limit. Stops when dropped.
#[derive(Debug)]
pub struct DiskWatch {
    exceeded: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl DiskWatch {
    /// Starts watching `dir` on the tokio runtime.
    pub fn start(dir: PathBuf, limit: u64, on_exceed: impl FnOnce() + Send + 'static) -> DiskWatch {
        let exceeded = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ex, st) = (exceeded.clone(), stop.clone());
        tokio::spawn(async move {
            let mut on_exceed = Some(on_exceed);
            while !st.load(Ordering::SeqCst) {
                let d = dir.clone();
                let started = std::time::Instant::now();
                let used = tokio::task::spawn_blocking(move || disk_usage(&d))
                    .await
                    .unwrap_or(0);
                // Big workspaces take long to walk: keep the walking under a tenth of the time.
                let pause = DISK_CHECK_INTERVAL.max(started.elapsed() * 10);
                if used > limit {
                    ex.store(true, Ordering::SeqCst);
                    if let Some(f) = on_exceed.take() {
                        f();
                    }
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        });
        DiskWatch { exceeded, stop }
    }

    /// Whether the limit was passed.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }
}

impl Drop for DiskWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_blocks_once_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 1 << 20]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c"), vec![1u8; 1 << 20]).unwrap();
        let used = disk_usage(dir.path());
        assert!((2 << 20..3 << 20).contains(&used), "{used}");
    }

    #[test]
    fn v1_and_v2_layouts_get_their_files() {
        let limits = ResourceLimits {
            pids_max: Some(50),
            memory_bytes: Some(1 << 28),
            ..ResourceLimits::default()
        };
        let v1 = tempfile::tempdir().unwrap();
        for c in ["pids", "memory"] {
            std::fs::create_dir(v1.path().join(c)).unwrap();
            std::fs::write(v1.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let cg = BuildCgroup::create_under(v1.path(), "b1", &limits).unwrap();
        assert_eq!(
            std::fs::read_to_string(v1.path().join("pids/sluice-b1/pids.max")).unwrap(),
            "50"
        );
        assert_eq!(
            std::fs::read_to_string(v1.path().join("memory/sluice-b1/memory.limit_in_bytes"))
                .unwrap(),
            (1u64 << 28).to_string()
        );
        assert_eq!(cg.procs_files().len(), 2);

        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu io pids").unwrap();
        let err = BuildCgroup::create_under(v2.path(), "b2", &limits).unwrap_err();
        assert!(err.to_string().contains("memory controller"), "{err}");
        let pids_only = ResourceLimits {
            memory_bytes: None,
            ..limits
        };
        let cg = BuildCgroup::create_under(v2.path(), "b2", &pids_only).unwrap();
        assert_eq!(
            std::fs::read_to_string(v2.path().join("cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        assert_eq!(
            cg.procs_files(),
            vec![v2.path().join("sluice-b2/cgroup.procs")]
        );
        assert!(
            BuildCgroup::create_under(v2.path(), "b3", &ResourceLimits::default())
                .unwrap()
                .procs_files()
                .is_empty()
        );
    }
}
