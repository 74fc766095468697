//! Graceful shutdown shared by the servers, after mini-redis: a notice every connection watches,
//! and "all connections drained" detected when the last completion sender is dropped.

use tokio::sync::{mpsc, watch};

/// Owned by a server's `run`: hands out [`Token`]s and, at shutdown, waits for all of them.
#[derive(Debug)]
pub struct Drain {
    notice: watch::Sender<bool>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// Held by one connection for its whole life: says when shutdown starts; dropping it tells the
/// server this connection is done.
#[derive(Debug, Clone)]
pub struct Token {
    notice: watch::Receiver<bool>,
    // Never sent on: only its drop matters (the channel closes when every clone is gone).
    _done: mpsc::Sender<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// A drain with no connection yet.
    pub fn new() -> Self {
        let (notice, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        Self {
            notice,
            done_tx,
            done_rx,
        }
    }

    /// A token for one more connection.
    pub fn token(&self) -> Token {
        Token {
            notice: self.notice.subscribe(),
            _done: self.done_tx.clone(),
        }
    }

    /// Announces shutdown and waits until every token is dropped.
    pub async fn shutdown(self) {
        let Drain {
            notice,
            done_tx,
            mut done_rx,
        } = self;
        notice.send_replace(true);
        // Our own sender must go, or `recv` would wait for ourselves.
        drop(done_tx);
        // `None` once the last connection's token is dropped.
        let _ = done_rx.recv().await;
    }
}

impl Token {
    /// Resolves once shutdown has started (at once if it already has).
    pub async fn requested(&mut self) {
        // An error means the drain itself is gone: that is a shutdown too.
        let _ = self.notice.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has started.
    pub fn is_requested(&self) -> bool {
        *self.notice.borrow()
    }
}
