//! One connection per build from the gateway or the web to the build's stream, shared by all
//! the watchers of that build in the process ([`UpstreamFeeds`]).
//!
//! The first watcher of a build opens its stream (through [`StreamRouter`], zones included) and a
//! task publishes what arrives in the build's [`Feed`]; later watchers read the same feed. A
//! watcher that joins when the feed's ring no longer holds the log's beginning, or that falls
//! behind it, catches up through a private connection of its own ([`UpstreamCatchUp`]), dropped
//! as soon as it is back in the ring. So a thousand watchers of one build cost the executor and
//! the gateway one stream, and a slow watcher still gets every line, in order.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::errors::LocateError;
use crate::fanout::{CatchUp, Cursor, Feed, FeedEnd, Hub, Membership, Started};
use crate::locate::StreamRouter;

/// Bytes read from an upstream at once.
const READ_CHUNK: usize = 16 * 1024;

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
async fn pump(mut upstream: TcpStream, feed: Arc<Feed>, uuid: String) {
    loop {
        let mut buf = vec![0u8; READ_CHUNK];
        match upstream.read(&mut buf).await {
            Ok(0) => {
                feed.finish(FeedEnd::Complete);
                return;
            }
            Ok(n) => {
                buf.truncate(n);
                feed.publish(Bytes::from(buf));
            }
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
    stream: TcpStream,
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
