//! One connection per build from the gateway or the web to the build's stream, shared by all
//! the watchers of that build in the process ([`UpstreamFeeds`]).
//!
//! The first watcher of a build opens its stream (through [`StreamRouter`], zones included) and a
//! task publishes what arrives in the build's [`Feed`]; later watchers read the same feed. A
//! watcher that joins when the feed's ring no longer holds the log's beginning, or that falls
//! behind it, catches up through a private connection of its own ([`UpstreamCatchUp`]). That
//! connection stays open until the build's stream has ended and the watcher is back in the
//! ring: reopened later, it could find the build's directory removed. So a thousand watchers of one build cost the executor and
//! the gateway one stream, and a slow watcher still gets every line, in order.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use crate::errors::LocateError;
use crate::fanout::{CatchUp, Cursor, Feed, FeedEnd, Hub, Membership, Started};
use crate::locate::StreamRouter;
use crate::tls::FingerStream;

/// Bytes read from an upstream at once.
const READ_CHUNK: usize = 16 * 1024;
/// The least free space the shared stream reads into; below it, a new block is taken.
const MIN_READ: usize = 2 * 1024;

/// Feeds are per tenant and build: the locator checks the tenant.
type Key = (Option<String>, String);
type UpstreamHub = Hub<Key, (), LocateError>;

/// A watcher's place in a build's shared stream; the stream stays open while one exists.
pub struct Watch {
    /// Reads the build's stream from its first byte.
    pub cursor: Cursor<UpstreamCatchUp>,
    _membership: Membership<Key, (), LocateError>,
}

/// The shared upstream streams of one process (the gateway, or the web).
#[derive(Debug, Clone)]
pub struct UpstreamFeeds {
    router: StreamRouter,
    hub: Arc<UpstreamHub>,
}

impl UpstreamFeeds {
    /// Streams reached through `router`.
    pub fn new(router: StreamRouter) -> Self {
        Self {
            router,
            hub: Hub::new(),
        }
    }

    /// The router.
    pub fn router(&self) -> &StreamRouter {
        &self.router
    }

    /// How many builds have an open shared stream.
    pub fn n_streams(&self) -> usize {
        self.hub.n_feeds()
    }

    /// Starts watching a build (of `tenant`, if given): its shared stream is opened unless one
    /// is open already; the error says why there is no stream (Zuul's texts).
    pub async fn watch(&self, uuid: &str, tenant: Option<&str>) -> Result<Watch, LocateError> {
        let router = self.router.clone();
        let key = (tenant.map(str::to_string), uuid.to_string());
        let (membership, feed, ()) = self
            .hub
            .join(key, || async move {
                let (upstream, _) = router.open(uuid, tenant).await?;
                let feed = Feed::new(0);
                let task = tokio::spawn(pump(upstream, feed.clone(), uuid.to_string()));
                Ok(Started {
                    feed,
                    source: task.abort_handle(),
                    extra: (),
                })
            })
            .await?;
        Ok(Watch {
            cursor: Cursor::new(
                feed,
                UpstreamCatchUp {
                    router: self.router.clone(),
                    uuid: uuid.to_string(),
                    tenant: tenant.map(str::to_string),
                    private: None,
                },
            ),
            _membership: membership,
        })
    }
}

/// The shared stream's reader: publishes every read until the upstream ends.
async fn pump(mut upstream: FingerStream, feed: Arc<Feed>, uuid: String) {
    // Reads go into the free end of one block shared by the chunks cut from it: a chunk made
    // from a fresh zeroed `Vec` per read would cost a 16 KiB memset per line and keep its whole
    // allocation alive in the ring (which counts bytes, not allocations) for a short line.
    let mut buf = BytesMut::new();
    loop {
        if buf.capacity() < MIN_READ {
            buf.reserve(READ_CHUNK);
        }
        match upstream.read_buf(&mut buf).await {
            Ok(0) => {
                feed.finish(FeedEnd::Complete);
                return;
            }
            Ok(_) => feed.publish(buf.split().freeze()),
            Err(e) => {
                tracing::debug!(build = %uuid, error = %e, "upstream stream failed");
                feed.finish(FeedEnd::Failed);
                return;
            }
        }
    }
}

/// A watcher's private connection to the build's stream, for catching up.
pub struct UpstreamCatchUp {
    router: StreamRouter,
    uuid: String,
    tenant: Option<String>,
    private: Option<Private>,
}

struct Private {
    stream: FingerStream,
    /// The offset of `pending`'s first byte.
    at: u64,
    /// Read but not handed out yet.
    pending: Bytes,
}

impl CatchUp for UpstreamCatchUp {
    async fn read_at(&mut self, offset: u64, max: u64) -> io::Result<Bytes> {
        loop {
            let private = match &mut self.private {
                Some(p) if p.at <= offset => p,
                _ => {
                    let (stream, _) = self
                        .router
                        .open(&self.uuid, self.tenant.as_deref())
                        .await
                        .map_err(|e| match e {
                            LocateError::Internal(detail) => io::Error::other(detail),
                            other => io::Error::other(other.to_string()),
                        })?;
                    self.private.insert(Private {
                        stream,
                        at: 0,
                        pending: Bytes::new(),
                    })
                }
            };
            let end = private.at + private.pending.len() as u64;
            if offset < end {
                let from = (offset - private.at) as usize;
                let take = (end - offset).min(max) as usize;
                let out = private.pending.slice(from..from + take);
                private.pending = private.pending.slice(from + take..);
                private.at = offset + take as u64;
                return Ok(out);
            }
            private.at = end;
            private.pending = Bytes::new();
            let mut buf = vec![0u8; READ_CHUNK];
            let n = private.stream.read(&mut buf).await?;
            if n == 0 {
                self.private = None;
                return Ok(Bytes::new());
            }
            buf.truncate(n);
            private.pending = Bytes::from(buf);
        }
    }

    fn release(&mut self) {
        self.private = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finger::{FingerConfig, FingerServer};
    use crate::locate::{Executor, StaticExecutors};
    use crate::watcher::LogWatcher;
    use sluice_executor::registry::BuildRegistry;
    use std::io::Write;

    async fn read_all(watch: &mut Watch) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(chunk) = watch.cursor.next().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        got
    }

    /// A real finger server with one running build; two watchers share one upstream, and the
    /// one that starts reading after the ring has moved on catches up over its own connection,
    /// even after the build ended and its directory is gone.
    #[tokio::test]
    async fn a_late_watcher_catches_up_over_a_private_connection() {
        let work = tempfile::tempdir().unwrap();
        let uuid = "00ab";
        let log = work.path().join(uuid).join("work/logs/job-output.txt");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let mut file = std::fs::File::create(&log).unwrap();
        file.write_all(b"first line\n").unwrap();
        let registry = BuildRegistry::new();
        let guard = registry.register(uuid, log.clone());
        let server = FingerServer::new(
            FingerConfig {
                work_root: work.path().to_path_buf(),
                max_connections: 64,
                tls: None,
            },
            registry,
            LogWatcher::new().unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(server.run(listener, std::future::pending::<()>()));
        let executor = Executor {
            name: "ze".into(),
            host: "127.0.0.1".into(),
            finger_port: port,
            zone: None,
        };
        let router = StreamRouter::new(
            Arc::new(StaticExecutors::new(vec![executor], None)),
            None,
            Vec::new(),
        );
        let feeds = UpstreamFeeds::new(router);
        let mut prompt = feeds.watch(uuid, None).await.unwrap();
        let mut late = feeds.watch(uuid, None).await.unwrap();
        assert_eq!(feeds.n_streams(), 1);
        // Far more than the ring holds, written while the build runs.
        let writer = tokio::task::spawn_blocking(move || {
            for i in 0..20_000 {
                writeln!(file, "line {i} of the build").unwrap();
            }
            file
        });
        let prompt_task = tokio::spawn(async move { (read_all(&mut prompt).await, prompt) });
        writer.await.unwrap();
        // The build ends and its directory goes, as an executor without keep-jobdir does.
        let expected = std::fs::read(&log).unwrap();
        drop(guard);
        let (got_prompt, _prompt) = prompt_task.await.unwrap();
        assert_eq!(got_prompt, expected);
        std::fs::remove_dir_all(work.path().join(uuid)).unwrap();
        assert_eq!(read_all(&mut late).await, expected);
    }
}
