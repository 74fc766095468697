//! The executor governor: an executor stops claiming builds while its host is too busy, as
//! Zuul's executor does: load average above `load-multiplier` × CPUs, available memory below
//! `min-avail-mem` percent, or free space or inodes in the state directory below
//! `min-avail-hdd` / `min-avail-inodes` percent. Running builds are never touched; the check
//! is made before each claim, from `/proc` and `statvfs`, at most once a second.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The `executor.governor` section of the configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GovernorConfig {
    /// Stop taking work while the 1-minute load average is above this many times the CPU
    /// count. Off unless set: with the embedded default the nodes run on the same host, so
    /// builds load it themselves (Zuul's default is 2.5).
    #[serde(default)]
    pub load_multiplier: Option<f64>,
    /// Stop taking work while less than this percentage of memory is available (default 5).
    #[serde(default = "five")]
    pub min_avail_mem: f64,
    /// Stop taking work while less than this percentage of the state directory's filesystem
    /// is free (default 5).
    #[serde(default = "five")]
    pub min_avail_hdd: f64,
    /// Stop taking work while less than this percentage of the state directory's inodes is
    /// free (default 5).
    #[serde(default = "five")]
    pub min_avail_inodes: f64,
}

fn five() -> f64 {
    5.0
}

impl Default for GovernorConfig {
    fn default() -> Self {
        GovernorConfig {
            load_multiplier: None,
            min_avail_mem: five(),
            min_avail_hdd: five(),
            min_avail_inodes: five(),
        }
    }
}

/// One executor process's governor, shared by its workers.
#[derive(Debug)]
pub struct Governor {
    cfg: GovernorConfig,
    disk: PathBuf,
    cpus: f64,
    // (when last checked, why not accepting then); never held across an await.
    last: Mutex<Option<(Instant, Option<String>)>>,
}

impl Governor {
    /// A governor for an executor whose builds live under `disk`.
    pub fn new(cfg: GovernorConfig, disk: PathBuf) -> Governor {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Governor {
            cfg,
            disk,
            cpus,
            last: Mutex::new(None),
        }
    }

    /// `None` when the executor may take work, else why not. Logs when this changes.
    pub fn refusal(&self) -> Option<String> {
        let Ok(mut last) = self.last.lock() else {
            return None;
        };
        if let Some((at, reason)) = last.as_ref() {
            if at.elapsed() < Duration::from_secs(1) {
                return reason.clone();
            }
        }
        let reason = self.measure();
        let before = last.as_ref().map(|(_, r)| r.clone());
        if before.as_ref().map(Option::is_some) != Some(reason.is_some()) {
            match &reason {
                Some(why) => tracing::warn!(reason = %why, "executor not accepting work"),
                None if before.is_some() => tracing::info!("executor accepting work again"),
                None => {}
            }
        }
        *last = Some((Instant::now(), reason.clone()));
        reason
    }

    fn measure(&self) -> Option<String> {
        if let Some(multiplier) = self.cfg.load_multiplier {
            if let Some(load) = load_average() {
                let max = multiplier * self.cpus;
                if load > max {
                    return Some(format!(
                        "load average {load:.2} is above {max:.2} ({multiplier} x {} CPUs)",
                        self.cpus
                    ));
                }
            }
        }
        if let Some(avail) = available_memory_percent() {
            if avail < self.cfg.min_avail_mem {
                return Some(format!(
                    "{avail:.1}% of memory available, below min-avail-mem {}%",
                    self.cfg.min_avail_mem
                ));
            }
        }
        if let Ok(fs) = nix::sys::statvfs::statvfs(&self.disk) {
            // The block and inode counters' C types differ between platforms.
            #[allow(clippy::unnecessary_cast)]
            let (blocks, blocks_free, files, files_free) = (
                fs.blocks() as u64,
                fs.blocks_available() as u64,
                fs.files() as u64,
                fs.files_available() as u64,
            );
            let percent =
                |free: u64, total: u64| (total > 0).then(|| free as f64 * 100.0 / total as f64);
            if let Some(free) = percent(blocks_free, blocks) {
                if free < self.cfg.min_avail_hdd {
                    return Some(format!(
                        "{free:.1}% of {} free, below min-avail-hdd {}%",
                        self.disk.display(),
                        self.cfg.min_avail_hdd
                    ));
                }
            }
            if let Some(free) = percent(files_free, files) {
                if free < self.cfg.min_avail_inodes {
                    return Some(format!(
                        "{free:.1}% of the inodes of {} free, below min-avail-inodes {}%",
                        self.disk.display(),
                        self.cfg.min_avail_inodes
                    ));
                }
            }
        }
        None
    }
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `MemAvailable` as a percentage of `MemTotal`.
fn available_memory_percent() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let (total, avail) = (field("MemTotal:")?, field("MemAvailable:")?);
    (total > 0.0).then(|| avail * 100.0 / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_threshold_refuses_with_the_reason_and_defaults_accept() {
        let dir = tempfile::tempdir().unwrap();
        let strict = Governor::new(
            GovernorConfig {
                min_avail_hdd: 100.1,
                ..Default::default()
            },
            dir.path().to_path_buf(),
        );
        let why = strict.refusal().unwrap_or_default();
        assert!(why.contains("min-avail-hdd"), "{why}");
        let mem = Governor::new(
            GovernorConfig {
                min_avail_mem: 100.1,
                ..Default::default()
            },
            dir.path().to_path_buf(),
        );
        assert!(mem.refusal().unwrap_or_default().contains("min-avail-mem"));
        let load = Governor::new(
            GovernorConfig {
                load_multiplier: Some(-1.0),
                ..Default::default()
            },
            dir.path().to_path_buf(),
        );
        assert!(load.refusal().unwrap_or_default().contains("load average"));
        let relaxed = Governor::new(
            GovernorConfig {
                min_avail_mem: 0.0,
                min_avail_hdd: 0.0,
                min_avail_inodes: 0.0,
                load_multiplier: None,
            },
            dir.path().to_path_buf(),
        );
        assert_eq!(relaxed.refusal(), None);
    }
}
