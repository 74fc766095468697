//! The accept loop shared by the finger server and the gateway: a connection cap whose permits
//! live as long as the connection, the TLS handshake when the server has TLS (in the
//! connection's task, bounded by the request timeout), a [`Token`] per connection, and a drained
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::request::REQUEST_TIMEOUT;
use crate::shutdown::{Drain, Token};
use crate::tls::{FingerStream, ServerTls};

/// Accepts connections until `shutdown` resolves, runs `handle` for each (at most
/// `max_connections` at once), then announces shutdown and waits for every handler.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    max_connections: usize,
    tls: Option<ServerTls>,
    shutdown: impl Future,
    handle: H,
) where
    H: Fn(FingerStream, Token) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let drain = Drain::new();
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let handle = Arc::new(handle);
    tokio::select! {
        () = accept_loop(&listener, &limit, &drain, &tls, &handle) => {}
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
    tls: &Option<ServerTls>,
    handle: &Arc<H>,
) where
    H: Fn(FingerStream, Token) -> F + Send + Sync + 'static,
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
                let token = drain.token();
                let handle = handle.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Some(stream) = secure(stream, tls).await {
                        handle(stream, token).await;
                    }
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

/// The connection as the server speaks it: TLS after a handshake within [`REQUEST_TIMEOUT`]
/// (`None`: it failed, e.g. a client without a certificate the CA signed), or plain.
async fn secure(stream: TcpStream, tls: Option<ServerTls>) -> Option<FingerStream> {
    let Some(tls) = tls else {
        return Some(FingerStream::Plain(stream));
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "finger TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!("finger TLS handshake timed out");
            None
        }
    }
}
