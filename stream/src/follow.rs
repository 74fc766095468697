//! Sending a build's log to one watcher: the whole file from its first byte, then what is
//! appended, until the build ends.
//!
//! The file on disk is the only buffer. Each watcher keeps just its offset and reads from there
//! in whole lines when the [`LogWatcher`] says the file changed, so a watcher that falls behind
//! catches up from the file by construction: nothing is queued for it, nothing is dropped, and a
//! stalled watcher costs the build and the other watchers nothing. Memory per watcher is one
//! chunk while it sends and none while it waits.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

pub use crate::errors::FollowError;
use crate::watcher::LogWatcher;

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

/// Sends `log` to `out`. With `running` (the registry's flag of a running build) it follows the
/// file until the build has ended and the file is read to its end; without, it sends what the
/// file holds. `stop` resolves when the watcher is gone or the server shuts down; the log is
/// then left at a line boundary unless a write was in progress.
pub async fn send_log<W, S>(
    log: &Path,
    mut running: Option<watch::Receiver<bool>>,
    watcher: &LogWatcher,
    out: &mut W,
    mut stop: Pin<&mut S>,
) -> Result<FollowEnd, FollowError>
where
    W: AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    // Subscribe before the first read: a write after this point always wakes us.
    // Followers of a running build share the watcher's handle on the log (one fd per build).
    let (mut subscription, file) = match running {
        Some(_) => {
            let subscription = watcher.subscribe(log)?;
            let file = subscription.file.clone();
            (Some(subscription), file)
        }
        None => {
            let file = File::open(log).map_err(|source| FollowError::Open {
                path: log.to_path_buf(),
                source,
            })?;
            (None, std::sync::Arc::new(file))
        }
    };
    let mut offset = 0u64;
    loop {
        // Read the end flag before the file: whatever was written before the build ended is
        // then in the file when we read it.
        let ended = running
            .as_ref()
            .is_none_or(|r| !*r.borrow() || r.has_changed().is_err());
        loop {
            let chunk = read_lines(&file, offset, ended).map_err(|source| FollowError::Read {
                path: log.to_path_buf(),
                source,
            })?;
            if chunk.is_empty() {
                break;
            }
            tokio::select! {
                res = out.write_all(&chunk) => res.map_err(FollowError::Write)?,
                () = stop.as_mut() => return Ok(FollowEnd::Stopped),
            }
            offset += chunk.len() as u64;
        }
        out.flush().await.map_err(FollowError::Write)?;
        if ended {
            return Ok(FollowEnd::Complete);
        }
        let (Some(sub), Some(run)) = (subscription.as_mut(), running.as_mut()) else {
            return Ok(FollowEnd::Complete);
        };
        tokio::select! {
            _ = sub.changes.changed() => {}
            // Also an error once the build's sender is gone: the next round sees the end.
            _ = run.changed() => {}
            () = stop.as_mut() => return Ok(FollowEnd::Stopped),
        }
    }
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
        let (running_tx, running_rx) = watch::channel(true);
        let (mut client, mut server) = tokio::io::duplex(64);
        let follower = {
            let watcher = watcher.clone();
            let path = path.clone();
            tokio::spawn(async move {
                let stop = std::future::pending::<()>();
                tokio::pin!(stop);
                send_log(&path, Some(running_rx), &watcher, &mut server, stop).await
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
        assert_eq!(watcher.n_watched(), 0);
    }
}
