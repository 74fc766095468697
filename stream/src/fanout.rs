//! One source per build, any number of watchers: a [`Hub`] holds a [`Feed`] per key (a log
//! file on the executor, a build uuid in the gateway and the web), filled by one source task
//! (the file's follower, or one upstream connection), and every watcher reads it with its own
//! [`Cursor`].
//!
//! A feed keeps the most recent chunks in a ring bounded in bytes, shared by all its watchers;
//! a watcher holds only its offset. New data wakes every watcher (one `watch` channel per feed)
//! and each takes what it lacks from the ring, so a line is read once from its source however
//! many watch it. A watcher that falls behind the ring (a slow client, or one that joins late)
//! catches up from its [`CatchUp`]: the file itself on the executor, a private connection to the
//! executor elsewhere. Offsets are byte offsets in `job-output.txt`, identical on every hop
//! (each stream is the file from its first byte), so catching up never drops, repeats or
//! reorders a byte, and a stalled watcher costs neither the source nor the other watchers.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, OnceCell};

/// Bytes a feed keeps for its watchers (at least its last chunk, whatever its size).
pub const RING_BYTES: usize = 128 * 1024;
/// The most bytes a cursor hands out at once when it joins several chunks.
const MAX_PIECE: usize = 16 * 1024;

/// How a feed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEnd {
    /// Its source was read to the end.
    Complete,
    /// Its source failed; what it published is still whole and in order.
    Failed,
}

/// What watchers wait on: how far the feed goes and whether it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedState {
    /// The offset just past the last published byte.
    pub published: u64,
    /// Set once no more bytes will come.
    pub end: Option<FeedEnd>,
}

/// The shared part of one source: recent chunks and the state.
#[derive(Debug)]
pub struct Feed {
    ring: Mutex<Ring>,
    state: watch::Sender<FeedState>,
}

#[derive(Debug)]
struct Ring {
    /// `(offset, bytes)`, contiguous and in order.
    chunks: VecDeque<(u64, Bytes)>,
    /// The offset of the first byte the ring holds (`published` when it is empty).
    start: u64,
    len: usize,
}

impl Feed {
    /// A feed whose first byte will be at `start` (everything before it is in the source's file
    /// and reached with a [`CatchUp`]).
    pub fn new(start: u64) -> Arc<Feed> {
        Arc::new(Feed {
            ring: Mutex::new(Ring {
                chunks: VecDeque::new(),
                start,
                len: 0,
            }),
            state: watch::channel(FeedState {
                published: start,
                end: None,
            })
            .0,
        })
    }

    /// Appends the next bytes and wakes the watchers.
    pub fn publish(&self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        let n = bytes.len();
        {
            let mut ring = lock(&self.ring);
            let offset = self.state.borrow().published;
            ring.chunks.push_back((offset, bytes));
            ring.len += n;
            while ring.len > RING_BYTES && ring.chunks.len() > 1 {
                if let Some((_, old)) = ring.chunks.pop_front() {
                    ring.len -= old.len();
                }
                ring.start = ring.chunks.front().map_or(offset + n as u64, |c| c.0);
            }
            // Inside the ring's lock: a cursor never sees `published` past what the ring has.
            self.state.send_modify(|s| s.published += n as u64);
        }
    }

    /// Marks the end; watchers finish once they have every published byte.
    pub fn finish(&self, end: FeedEnd) {
        self.state.send_modify(|s| {
            if s.end.is_none() {
                s.end = Some(end);
            }
        });
    }

    /// The current state.
    pub fn state(&self) -> FeedState {
        *self.state.borrow()
    }

    /// The ring's bytes from `offset` on (joined up to [`MAX_PIECE`]), or `Err(start)` when
    /// `offset` is before the ring's first byte.
    fn read_from(&self, offset: u64) -> Result<Option<Bytes>, u64> {
        let ring = lock(&self.ring);
        if offset < ring.start {
            return Err(ring.start);
        }
        let mut pieces = ring
            .chunks
            .iter()
            .skip_while(|(at, b)| at + b.len() as u64 <= offset)
            .map(|(at, b)| b.slice((offset.saturating_sub(*at)) as usize..));
        let Some(first) = pieces.next() else {
            return Ok(None);
        };
        let mut joined: Option<BytesMut> = None;
        for piece in pieces {
            let buf = joined.get_or_insert_with(|| BytesMut::from(&first[..]));
            if buf.len() + piece.len() > MAX_PIECE {
                break;
            }
            buf.extend_from_slice(&piece);
        }
        Ok(Some(joined.map_or(first, BytesMut::freeze)))
    }
}

/// Where a watcher that fell behind a feed's ring reads the bytes it lacks.
pub trait CatchUp: Send {
    /// At most `max` (> 0) bytes at `offset`; empty only if the source has nothing there.
    fn read_at(&mut self, offset: u64, max: u64) -> impl Future<Output = io::Result<Bytes>> + Send;
    /// Called once the watcher reads from the ring of an ended feed: it needs no catching up
    /// any more, so private resources may go.
    fn release(&mut self) {}
}

/// Why a cursor stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// The feed's source failed.
    #[error("the stream's source failed")]
    SourceFailed,
    /// Catching up failed.
    #[error("catching up at byte {offset}")]
    CatchUp {
        /// Where.
        offset: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One watcher's position in a feed.
pub struct Cursor<C> {
    feed: Arc<Feed>,
    state: watch::Receiver<FeedState>,
    offset: u64,
    catch_up: C,
}

impl<C: CatchUp> Cursor<C> {
    /// A cursor at the feed's byte 0.
    pub fn new(feed: Arc<Feed>, catch_up: C) -> Self {
        let state = feed.state.subscribe();
        Self {
            feed,
            state,
            offset: 0,
            catch_up,
        }
    }

    /// How many bytes were handed out.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next bytes, in order; `Ok(None)` at the feed's complete end. Cancel safe: a call
    /// dropped while waiting loses nothing.
    pub async fn next(&mut self) -> Result<Option<Bytes>, CursorError> {
        loop {
            let state = *self.state.borrow_and_update();
            if self.offset < state.published {
                match self.feed.read_from(self.offset) {
                    Ok(Some(bytes)) => {
                        // Once the feed has ended the ring no longer moves, so a watcher in it
                        // cannot fall behind again. Before, a catch-up source is kept: the log
                        // may be gone by the time it would be needed anew (a finished build's
                        // directory is removed; only an open stream still reads it).
                        if state.end.is_some() {
                            self.catch_up.release();
                        }
                        self.offset += bytes.len() as u64;
                        return Ok(Some(bytes));
                    }
                    Ok(None) => {}
                    Err(start) => {
                        let offset = self.offset;
                        let bytes = self
                            .catch_up
                            .read_at(offset, start - offset)
                            .await
                            .map_err(|source| CursorError::CatchUp { offset, source })?;
                        if bytes.is_empty() {
                            return Err(CursorError::CatchUp {
                                offset,
                                source: io::ErrorKind::UnexpectedEof.into(),
                            });
                        }
                        let take = bytes.len().min((start - offset) as usize);
                        self.offset += take as u64;
                        return Ok(Some(bytes.slice(..take)));
                    }
                }
                continue;
            }
            match state.end {
                Some(FeedEnd::Complete) => return Ok(None),
                Some(FeedEnd::Failed) => return Err(CursorError::SourceFailed),
                None => {}
            }
            if self.state.changed().await.is_err() {
                // The feed itself is gone without an end: its source died.
                return Err(CursorError::SourceFailed);
            }
        }
    }
}

/// Feeds by key, each started by its first watcher and stopped with its last.
pub struct Hub<K, T, E> {
    slots: Mutex<Slots<K, T, E>>,
}

/// Each key's slot and how many watchers hold it.
type Slots<K, T, E> = HashMap<K, (Arc<Slot<T, E>>, usize)>;

/// What a feed's start gives: the feed, its source task, and what watchers need besides (the
/// executor's shared file handle, for instance).
pub struct Started<T> {
    /// The feed.
    pub feed: Arc<Feed>,
    /// The source task, aborted when the last watcher leaves.
    pub source: tokio::task::AbortHandle,
    /// Shared with every watcher.
    pub extra: T,
}

impl<K, T, E> std::fmt::Debug for Hub<K, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("feeds", &lock(&self.slots).len())
            .finish()
    }
}

impl<K, T, E> Default for Hub<K, T, E> {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
        }
    }
}

struct Slot<T, E> {
    started: OnceCell<Result<(Arc<Feed>, T), E>>,
    /// Aborts the source task when the last watcher's slot is dropped.
    source: OnceLock<AbortOnDrop>,
}

impl<T, E> Slot<T, E> {
    fn stale(&self) -> bool {
        match self.started.get() {
            Some(Ok((feed, _))) => feed.state().end.is_some(),
            Some(Err(_)) => true,
            None => false,
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A watcher's share of a feed: the source runs as long as one exists.
pub struct Membership<K: Hash + Eq + Clone, T, E> {
    hub: Arc<Hub<K, T, E>>,
    key: K,
    slot: Arc<Slot<T, E>>,
}

impl<K: Hash + Eq + Clone, T, E> Drop for Membership<K, T, E> {
    fn drop(&mut self) {
        let mut slots = lock(&self.hub.slots);
        if let Some((slot, n)) = slots.get_mut(&self.key) {
            if Arc::ptr_eq(slot, &self.slot) {
                *n -= 1;
                if *n == 0 {
                    slots.remove(&self.key);
                }
            }
        }
    }
}

impl<K, T, E> Hub<K, T, E>
where
    K: Hash + Eq + Clone,
    T: Clone,
    E: Clone,
{
    /// A hub without feeds.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// How many feeds have watchers.
    pub fn n_feeds(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Joins the feed of `key`, starting it if no live one exists: `start` gets the new feed
    /// and returns its source task (spawned), or why there is none (every watcher waiting for
    /// that start gets the error).
    pub async fn join<F, Fut>(
        self: &Arc<Self>,
        key: K,
        start: F,
    ) -> Result<(Membership<K, T, E>, Arc<Feed>, T), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Started<T>, E>>,
    {
        let slot = {
            let mut slots = lock(&self.slots);
            match slots.get_mut(&key) {
                Some((slot, n)) if !slot.stale() => {
                    *n += 1;
                    slot.clone()
                }
                _ => {
                    let slot = Arc::new(Slot {
                        started: OnceCell::new(),
                        source: OnceLock::new(),
                    });
                    slots.insert(key.clone(), (slot.clone(), 1));
                    slot
                }
            }
        };
        let membership = Membership {
            hub: self.clone(),
            key,
            slot: slot.clone(),
        };
        let started = slot
            .started
            .get_or_init(|| async {
                let started = start().await?;
                let _ = slot.source.set(AbortOnDrop(started.source));
                Ok((started.feed, started.extra))
            })
            .await;
        match started {
            Ok((feed, extra)) => Ok((membership, feed.clone(), extra.clone())),
            Err(e) => Err(e.clone()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches up from a byte string standing for the file.
    struct Whole(Bytes);

    impl CatchUp for Whole {
        async fn read_at(&mut self, offset: u64, max: u64) -> io::Result<Bytes> {
            let from = offset as usize;
            let to = (from + max as usize).min(self.0.len()).min(from + 7);
            Ok(self.0.slice(from..to))
        }
    }

    fn line(i: usize) -> String {
        format!("line {i} {}\n", "x".repeat(i % 200))
    }

    #[tokio::test]
    async fn watchers_late_or_slow_get_every_byte_in_order() {
        let mut all = String::new();
        let feed = Feed::new(0);
        let mut early = Cursor::new(feed.clone(), Whole(Bytes::new()));
        let mut lines = Vec::new();
        for i in 0..3000 {
            lines.push(line(i));
        }
        // A late watcher whose catch-up source is the whole log.
        let whole: Bytes = lines.concat().into();
        let mut got_early = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            feed.publish(Bytes::from(l.clone()));
            all.push_str(l);
            // The early watcher keeps up for a while, then stalls past the ring.
            if i < 100 {
                while let Some(b) = tokio::time::timeout(std::time::Duration::ZERO, early.next())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
                {
                    got_early.extend_from_slice(&b);
                }
            }
        }
        feed.finish(FeedEnd::Complete);
        // The stalled early watcher's catch-up source is the file too.
        early.catch_up = Whole(whole.clone());
        while let Some(b) = early.next().await.unwrap() {
            got_early.extend_from_slice(&b);
        }
        assert_eq!(String::from_utf8(got_early).unwrap(), all);
        let mut late = Cursor::new(feed.clone(), Whole(whole));
        let mut got_late = Vec::new();
        while let Some(b) = late.next().await.unwrap() {
            got_late.extend_from_slice(&b);
        }
        assert_eq!(String::from_utf8(got_late).unwrap(), all);
        assert!(lock(&feed.ring).len <= RING_BYTES);
    }

    #[tokio::test]
    async fn one_start_for_many_watchers_and_the_source_stops_with_the_last() {
        let hub: Arc<Hub<&str, (), String>> = Hub::new();
        let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = || {
            let starts = starts.clone();
            move || async move {
                starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let task = tokio::spawn(std::future::pending::<()>());
                Ok::<_, String>(Started {
                    feed: Feed::new(0),
                    source: task.abort_handle(),
                    extra: (),
                })
            }
        };
        let (a, b) = tokio::join!(hub.join("k", start()), hub.join("k", start()));
        let (a, feed_a, ()) = a.unwrap();
        let (b, feed_b, ()) = b.unwrap();
        assert!(Arc::ptr_eq(&feed_a, &feed_b));
        assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(hub.n_feeds(), 1);
        drop(a);
        assert_eq!(hub.n_feeds(), 1);
        drop(b);
        assert_eq!(hub.n_feeds(), 0);
        // An ended feed is not joined: the next watcher starts a new one.
        let (c, feed_c, ()) = hub.join("k", start()).await.unwrap();
        feed_c.finish(FeedEnd::Complete);
        let (_d, feed_d, ()) = hub.join("k", start()).await.unwrap();
        assert!(!Arc::ptr_eq(&feed_c, &feed_d));
        drop(c);
        assert_eq!(hub.n_feeds(), 1);
        // A failed start reaches its watcher and is not kept.
        let failed = hub
            .join("e", || async { Err::<Started<()>, _>("no".to_string()) })
            .await;
        assert_eq!(failed.err(), Some("no".to_string()));
        assert_eq!(hub.n_feeds(), 1);
    }
}
