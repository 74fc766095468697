//! Sending a build's log to one watcher: the whole file from its first byte, then what is
//! appended, until the build ends.
//!
//! A running build's log has one follower ([`LogFeeds`]): woken by the [`LogWatcher`], it reads
//! the new whole lines once and publishes them in the build's [`Feed`], which every watcher of
//! the build reads with its own [`Cursor`]. The file on disk stays the real buffer: the feed
//! keeps only recent chunks, and a watcher that joins late or falls behind reads what it lacks
//! from the file ([`FileCatchUp`]) before taking chunks again, so nothing is queued for a slow
//! watcher, nothing is dropped or reordered, and a stalled watcher costs the build and the other
//! watchers nothing.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

pub use crate::errors::FollowError;
use crate::errors::StreamError;
use crate::fanout::{CatchUp, Cursor, CursorError, Feed, FeedEnd, Hub, Started};
use crate::watcher::{LogWatcher, Subscription};

/// The most bytes read and sent at once.
pub const CHUNK: usize = 16 * 1024;

/// How sending a log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    /// Everything was sent: the build had ended and the file was read to its end.
    Complete,
    /// The watcher left, or the server shuts down.
    Stopped,
}

type FileHub = Hub<PathBuf, Arc<File>, Arc<StreamError>>;

/// How long the log of a followed build stays readable after the build ended, even if its
/// directory is removed: watchers of the gateway and the web that fell behind catch up from it.
pub const RECENT_LINGER: std::time::Duration = std::time::Duration::from_secs(120);

/// Logs of recently ended followed builds: the open handle, and when the build ended.
type Recent = std::sync::Mutex<std::collections::HashMap<PathBuf, (Arc<File>, std::time::Instant)>>;

/// The followers of the running builds' logs: one per followed file, shared by its watchers.
#[derive(Debug, Clone)]
pub struct LogFeeds {
    watcher: LogWatcher,
    hub: Arc<FileHub>,
    recent: Arc<Recent>,
}

impl LogFeeds {
    /// Followers woken by `watcher`.
    pub fn new(watcher: LogWatcher) -> Self {
        Self {
            watcher,
            hub: Hub::new(),
            recent: Arc::default(),
        }
    }

    /// The open log of a followed build that ended less than [`RECENT_LINGER`] ago.
    pub fn recent(&self, log: &Path) -> Option<Arc<File>> {
        let recent = lock(&self.recent);
        recent
            .get(log)
            .filter(|(_, ended)| ended.elapsed() < RECENT_LINGER)
            .map(|(file, _)| file.clone())
    }

    /// How many logs are followed (for tests and metrics).
    pub fn n_followed(&self) -> usize {
        self.hub.n_feeds()
    }
}

/// Sends `log` to `out`. With `running` (the registry's flag of a running build) it follows the
/// file until the build has ended and the file is read to its end; without, it sends what the
/// file holds. `stop` resolves when the watcher is gone or the server shuts down; the log is
/// then left at a line boundary unless a write was in progress.
pub async fn send_log<W, S>(
    log: &Path,
    running: Option<watch::Receiver<bool>>,
    feeds: &LogFeeds,
    out: &mut W,
    mut stop: Pin<&mut S>,
) -> Result<FollowEnd, FollowError>
where
    W: AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    let Some(running) = running else {
        return send_whole(log, feeds.recent(log), out, stop).await;
    };
    let (_membership, feed, file) = feeds
        .hub
        .join(log.to_path_buf(), || async {
            start_follower(feeds, log, running)
        })
        .await
        .map_err(FollowError::Watch)?;
    let mut cursor = Cursor::new(feed, FileCatchUp { file });
    loop {
        let next = tokio::select! {
            next = cursor.next() => next,
            () = stop.as_mut() => return Ok(FollowEnd::Stopped),
        };
        let chunk = match next {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                out.flush().await.map_err(FollowError::Write)?;
                return Ok(FollowEnd::Complete);
            }
            Err(CursorError::SourceFailed) => return Err(FollowError::Follower(log.to_path_buf())),
            Err(CursorError::CatchUp { source, .. }) => {
                return Err(FollowError::Read {
                    path: log.to_path_buf(),
                    source,
                })
            }
        };
        tokio::select! {
            res = out.write_all(&chunk) => res.map_err(FollowError::Write)?,
            () = stop.as_mut() => return Ok(FollowEnd::Stopped),
        }
    }
}

/// Sends a finished build's log as the file (or the handle still open on it) holds it.
async fn send_whole<W, S>(
    log: &Path,
    open: Option<Arc<File>>,
    out: &mut W,
    mut stop: Pin<&mut S>,
) -> Result<FollowEnd, FollowError>
where
    W: AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    let file = match open {
        Some(file) => file,
        None => Arc::new(File::open(log).map_err(|source| FollowError::Open {
            path: log.to_path_buf(),
            source,
        })?),
    };
    let mut offset = 0u64;
    loop {
        let chunk = read_lines(&file, offset, true).map_err(|source| FollowError::Read {
            path: log.to_path_buf(),
            source,
        })?;
        if chunk.is_empty() {
            out.flush().await.map_err(FollowError::Write)?;
            return Ok(FollowEnd::Complete);
        }
        tokio::select! {
            res = out.write_all(&chunk) => res.map_err(FollowError::Write)?,
            () = stop.as_mut() => return Ok(FollowEnd::Stopped),
        }
        offset += chunk.len() as u64;
    }
}

/// Starts the follower of a running build's log. Its feed begins after the file's last whole
/// line: watchers read what comes before from the file.
fn start_follower(
    feeds: &LogFeeds,
    log: &Path,
    running: watch::Receiver<bool>,
) -> Result<Started<Arc<File>>, Arc<StreamError>> {
    // Subscribe before measuring the file: a write after this point always wakes the follower.
    let subscription = feeds.watcher.subscribe(log).map_err(Arc::new)?;
    let file = subscription.file.clone();
    let start = last_line_end(&file).map_err(|source| {
        Arc::new(StreamError::OpenLog {
            path: log.to_path_buf(),
            source,
        })
    })?;
    let feed = Feed::new(start);
    let task = tokio::spawn(follow_file(
        subscription,
        running,
        feed.clone(),
        start,
        log.to_path_buf(),
        feeds.recent.clone(),
    ));
    Ok(Started {
        feed,
        source: task.abort_handle(),
        extra: file,
    })
}

/// The offset just past the file's last newline (found in its last [`CHUNK`]; a file whose
/// tail holds none starts at that tail).
fn last_line_end(file: &File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let tail_start = len.saturating_sub(CHUNK as u64);
    let mut tail = vec![0u8; (len - tail_start) as usize];
    file.read_exact_at(&mut tail, tail_start)?;
    Ok(tail_start
        + tail
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i as u64 + 1))
}

/// The one follower of a log: publishes its new whole lines until the build ends, then the rest.
async fn follow_file(
    mut subscription: Subscription,
    mut running: watch::Receiver<bool>,
    feed: Arc<Feed>,
    mut offset: u64,
    path: PathBuf,
    recent: Arc<Recent>,
) {
    loop {
        // Read the end flag before the file: whatever was written before the build ended is
        // then in the file when we read it.
        let ended = !*running.borrow_and_update() || running.has_changed().is_err();
        loop {
            match read_lines(&subscription.file, offset, ended) {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => {
                    offset += chunk.len() as u64;
                    feed.publish(Bytes::from(chunk));
                    // A build writing without pause must not keep this worker thread.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "reading a followed log");
                    feed.finish(FeedEnd::Failed);
                    return;
                }
            }
        }
        if ended {
            let mut recent = lock(&recent);
            recent.retain(|_, (_, ended)| ended.elapsed() < RECENT_LINGER);
            recent.insert(path, (subscription.file.clone(), std::time::Instant::now()));
            drop(recent);
            feed.finish(FeedEnd::Complete);
            return;
        }
        tokio::select! {
            _ = subscription.changes.changed() => {}
            // Also an error once the build's sender is gone: the next round sees the end.
            _ = running.changed() => {}
        }
    }
}

/// Catching up from the log file itself (one handle shared by the build's watchers).
pub struct FileCatchUp {
    file: Arc<File>,
}

impl CatchUp for FileCatchUp {
    async fn read_at(&mut self, offset: u64, max: u64) -> io::Result<Bytes> {
        let want = usize::try_from(max).unwrap_or(CHUNK).min(CHUNK);
        let mut buf = vec![0u8; want];
        let mut n = 0;
        while n < want {
            match self.file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(n);
        Ok(Bytes::from(buf))
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads up to [`CHUNK`] bytes at `offset`, cut after the last newline unless the build has
/// ended (then the rest is final) or the chunk holds no newline at all (a line longer than a
/// chunk goes out in pieces).
///
/// The read is a plain `pread` inside the async task: the log was just written, so it is in
/// the page cache and the call costs microseconds; a trip to the blocking pool would cost more.
fn read_lines(file: &File, offset: u64, ended: bool) -> io::Result<Vec<u8>> {
    // Size the buffer to what the file holds past `offset`: with a thousand watchers woken for
    // each short line, zeroing a whole chunk per wake-up would be most of the work.
    let available = file.metadata()?.len().saturating_sub(offset);
    let want = usize::try_from(available).unwrap_or(CHUNK).min(CHUNK);
    if want == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; want];
    let mut n = 0;
    while n < want {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    if !ended && n < CHUNK {
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(end);
    } else if !ended {
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            buf.truncate(i + 1);
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_whole_lines_while_running_and_everything_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"one\ntwo\npart").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(read_lines(&file, 0, false).unwrap(), b"one\ntwo\n");
        assert_eq!(read_lines(&file, 8, false).unwrap(), b"");
        assert_eq!(read_lines(&file, 8, true).unwrap(), b"part");
        let long = vec![b'x'; CHUNK + 10];
        f.write_all(&long).unwrap();
        assert_eq!(read_lines(&file, 8, false).unwrap().len(), CHUNK);
    }

    #[tokio::test]
    async fn follows_until_the_build_ends_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"first\n").unwrap();
        let watcher = LogWatcher::new().unwrap();
        let feeds = LogFeeds::new(watcher.clone());
        let (running_tx, running_rx) = watch::channel(true);
        let (mut client, mut server) = tokio::io::duplex(64);
        let follower = {
            let feeds = feeds.clone();
            let path = path.clone();
            tokio::spawn(async move {
                let stop = std::future::pending::<()>();
                tokio::pin!(stop);
                send_log(&path, Some(running_rx), &feeds, &mut server, stop).await
            })
        };
        let writer = tokio::task::spawn_blocking(move || {
            for i in 0..2000 {
                writeln!(f, "line {i}").unwrap();
            }
            running_tx.send_replace(false);
        });
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got)
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(follower.await.unwrap().unwrap(), FollowEnd::Complete);
        let mut expected = String::from("first\n");
        for i in 0..2000 {
            expected.push_str(&format!("line {i}\n"));
        }
        assert_eq!(String::from_utf8(got).unwrap(), expected);
        assert_eq!(feeds.n_followed(), 0);
        assert_eq!(watcher.n_watched(), 0);
    }
}
