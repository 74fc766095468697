//! The accept loop shared by the finger server and the gateway: a connection cap whose permits
//! live as long as the connection, a [`Token`] per connection, and a drained shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::shutdown::{Drain, Token};

/// Accepts connections until `shutdown` resolves, runs `handle` for each (at most
/// `max_connections` at once), then announces shutdown and waits for every handler.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: impl Future,
    handle: H,
) where
    H: Fn(TcpStream, Token) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let drain = Drain::new();
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::select! {
        () = accept_loop(&listener, &limit, &drain, &handle) => {}
        _ = shutdown => {}
    }
    // Stop accepting before draining, so no new connection starts during the drain.
    drop(listener);
    drain.shutdown().await;
}

async fn accept_loop<H, F>(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    drain: &Drain,
    handle: &H,
) where
    H: Fn(TcpStream, Token) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_millis(10);
    loop {
        // The permit is taken before accepting: over the cap, clients wait in the backlog.
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _peer)) => {
                backoff = Duration::from_millis(10);
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "set_nodelay");
                }
                let connection = handle(stream, drain.token());
                tokio::spawn(async move {
                    connection.await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait and go on; a server that exits
                // here would take every watcher with it.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
