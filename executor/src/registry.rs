//! The executor's registry of its builds: uuid → the build's `job-output.txt` and whether the
//! build still runs.
//!
//! Log streamers (finger, websocket) need to know when a build ends, because the log file is kept
//! after the build and so its disappearance says nothing. `run_build`'s caller registers each
//! build before starting it and holds the returned [`BuildGuard`] until `run_build` returns;
//! dropping the guard (also on an early return or a panic) marks the build finished and removes
//! it from the registry. Watchers keep a [`watch::Receiver`] that reports the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// A cheap, cloneable handle on the executor's running builds.
#[derive(Debug, Clone, Default)]
pub struct BuildRegistry {
    // A std mutex: it is never held across an `.await`.
    builds: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    log: PathBuf,
    running: watch::Sender<bool>,
    /// Which registration this is, so that a stale guard never removes a newer one.
    generation: u64,
}

/// What the registry knows of one running build.
#[derive(Debug, Clone)]
pub struct RegisteredBuild {
    /// The build's `work/logs/job-output.txt` (it may not exist yet).
    pub log: PathBuf,
    /// `true` while the build runs; becomes `false` (or the sender is dropped) when it ends.
    pub running: watch::Receiver<bool>,
}

impl RegisteredBuild {
    /// Whether the build has ended.
    pub fn has_ended(&self) -> bool {
        !*self.running.borrow() || self.running.has_changed().is_err()
    }
}

/// Marks its build finished when dropped.
#[derive(Debug)]
#[must_use = "the build counts as finished as soon as the guard is dropped"]
pub struct BuildGuard {
    registry: BuildRegistry,
    uuid: String,
    generation: u64,
}

impl BuildRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a build that is about to start; it runs until the guard is dropped.
    pub fn register(&self, uuid: &str, log: PathBuf) -> BuildGuard {
        static GENERATION: AtomicU64 = AtomicU64::new(0);
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let (running, _) = watch::channel(true);
        let mut builds = self.lock();
        let entry = Entry {
            log,
            running,
            generation,
        };
        if let Some(old) = builds.insert(uuid.to_string(), entry) {
            // A uuid registered twice: the older registration's watchers see an end.
            old.running.send_replace(false);
        }
        BuildGuard {
            registry: self.clone(),
            uuid: uuid.to_string(),
            generation,
        }
    }

    /// The running build with this uuid, if any.
    pub fn get(&self, uuid: &str) -> Option<RegisteredBuild> {
        self.lock().get(uuid).map(|entry| RegisteredBuild {
            log: entry.log.clone(),
            running: entry.running.subscribe(),
        })
    }

    /// How many builds run.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no build runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves the map consistent (every operation is a single
        // insert/remove/get), so a poisoned lock is still usable.
        self.builds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        let mut builds = self.registry.lock();
        if builds
            .get(&self.uuid)
            .is_some_and(|entry| entry.generation == self.generation)
        {
            if let Some(entry) = builds.remove(&self.uuid) {
                entry.running.send_replace(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_ends_the_build_for_watchers() {
        let registry = BuildRegistry::new();
        let guard = registry.register("abc", PathBuf::from("/x/job-output.txt"));
        let build = registry.get("abc").unwrap();
        assert_eq!(build.log, PathBuf::from("/x/job-output.txt"));
        assert!(!build.has_ended());
        assert_eq!(registry.len(), 1);
        drop(guard);
        assert!(build.has_ended());
        assert!(registry.get("abc").is_none());
        assert!(registry.is_empty());
    }
}
