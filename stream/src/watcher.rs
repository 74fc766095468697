//! One inotify watcher (the `notify` crate) for every log file being followed in the process.
//!
//! Each watched file has a change counter in a [`watch`] channel: a write to the file bumps it,
//! and every follower of that file wakes up and reads from its own offset. A `watch` channel
//! keeps only the latest value, so a follower that is slow to wake never lags behind a queue:
//! the file is the buffer, and the channel only says "there is more".

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::watch;

use crate::errors::StreamError;

/// A cheap, cloneable handle on the process's file watcher.
#[derive(Clone)]
pub struct LogWatcher {
    inner: Arc<Inner>,
}

struct Inner {
    files: Arc<Mutex<Files>>,
    // A std mutex: `watch`/`unwatch` are quick system calls, never held across an `.await`.
    watcher: Mutex<RecommendedWatcher>,
}

type Files = HashMap<PathBuf, WatchedFile>;

struct WatchedFile {
    changes: watch::Sender<u64>,
    n_followers: usize,
    /// One open handle shared by every follower (they read with `pread` at their own offsets).
    file: Arc<File>,
}

/// A follower's interest in one file; the inotify watch is removed with the last one.
pub struct Subscription {
    inner: Arc<Inner>,
    path: PathBuf,
    /// Bumped after each change of the file.
    pub changes: watch::Receiver<u64>,
    /// The file, opened once for all its followers.
    pub file: Arc<File>,
}

impl std::fmt::Debug for LogWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWatcher").finish_non_exhaustive()
    }
}

impl LogWatcher {
    /// Starts the watcher (one inotify instance and notify's thread).
    pub fn new() -> Result<Self, StreamError> {
        let files: Arc<Mutex<Files>> = Arc::default();
        let files_for_events = files.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let files = lock(&files_for_events);
            match event {
                Ok(event) => {
                    let mut matched = false;
                    for path in &event.paths {
                        if let Some(file) = files.get(path) {
                            file.changes.send_modify(|n| *n = n.wrapping_add(1));
                            matched = true;
                        }
                    }
                    if !matched {
                        // An event for a path spelled differently: waking everyone is cheap
                        // and never wrong (followers just find nothing new).
                        bump_all(&files);
                    }
                }
                // The kernel queue overflowed: some writes went unreported, so wake everyone.
                Err(_) => bump_all(&files),
            }
        })
        .map_err(|source| StreamError::Watch {
            path: PathBuf::new(),
            source,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                files,
                watcher: Mutex::new(watcher),
            }),
        })
    }

    /// Watches `path` (an existing file) for as long as the subscription lives.
    pub fn subscribe(&self, path: &Path) -> Result<Subscription, StreamError> {
        // Lock order: the watcher, then the file map, never the other way. The map lock is never
        // held while calling notify, whose thread takes it in the event handler.
        let mut watcher = lock(&self.inner.watcher);
        if let Some(file) = lock(&self.inner.files).get_mut(path) {
            file.n_followers += 1;
            return Ok(self.subscription(path, file.changes.subscribe(), file.file.clone()));
        }
        let file = Arc::new(File::open(path).map_err(|source| StreamError::OpenLog {
            path: path.to_path_buf(),
            source,
        })?);
        watcher
            .watch(path, RecursiveMode::NonRecursive)
            .map_err(|source| StreamError::Watch {
                path: path.to_path_buf(),
                source,
            })?;
        let (changes, receiver) = watch::channel(0);
        lock(&self.inner.files).insert(
            path.to_path_buf(),
            WatchedFile {
                changes,
                n_followers: 1,
                file: file.clone(),
            },
        );
        Ok(self.subscription(path, receiver, file))
    }

    fn subscription(
        &self,
        path: &Path,
        changes: watch::Receiver<u64>,
        file: Arc<File>,
    ) -> Subscription {
        Subscription {
            inner: self.inner.clone(),
            path: path.to_path_buf(),
            changes,
            file,
        }
    }

    /// How many files are watched (for tests and metrics).
    pub fn n_watched(&self) -> usize {
        lock(&self.inner.files).len()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut watcher = lock(&self.inner.watcher);
        let last = {
            let mut files = lock(&self.inner.files);
            match files.get_mut(&self.path) {
                Some(file) if file.n_followers > 1 => {
                    file.n_followers -= 1;
                    false
                }
                Some(_) => files.remove(&self.path).is_some(),
                None => false,
            }
        };
        if last {
            if let Err(e) = watcher.unwatch(&self.path) {
                // The file may be gone already, which removes the watch by itself.
                tracing::debug!(path = %self.path.display(), error = %e, "unwatch");
            }
        }
    }
}

fn bump_all(files: &Files) {
    for file in files.values() {
        file.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
