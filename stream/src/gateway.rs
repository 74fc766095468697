//! The finger gateway (`sluice fingergw`): takes the same request as an executor's streamer,
//! finds the executor running the build, and relays its stream, through the gateway of the
//! build's zone when that is not this gateway's zone. Errors are Zuul's texts: `Build not found`,
//! `Build did not start yet`, `Internal streaming error`.

use std::future::Future;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::errors::LocateError;
use crate::fanout::Cursor;
use crate::finger::discard_input;
use crate::locate::StreamRouter;
use crate::request::{read_request, Request};
use crate::shutdown::Token;
use crate::tls::{FingerStream, ServerTls};
use crate::upstream::{UpstreamCatchUp, UpstreamFeeds};

/// Zuul's finger gateway port.
pub const DEFAULT_GATEWAY_PORT: u16 = 79;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The most connections relayed at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// TLS towards this gateway's clients, with client certificates (Zuul's `tls_cert`,
    /// `tls_key`, `tls_ca` without `tls_client_only`); plain finger when `None`. TLS towards
    /// executors and other gateways is the router's.
    pub tls: Option<ServerTls>,
}

/// A finger gateway.
#[derive(Debug, Clone)]
pub struct FingerGateway {
    config: GatewayConfig,
    feeds: UpstreamFeeds,
}

impl FingerGateway {
    /// A gateway that reaches builds through `router`.
    pub fn new(config: GatewayConfig, router: StreamRouter) -> Self {
        Self {
            config,
            feeds: UpstreamFeeds::new(router),
        }
    }

    /// Serves until `shutdown` resolves, then closes every relay and returns once all are gone.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future) {
        let max = self.config.max_connections;
        let tls = self.config.tls.clone();
        crate::server::serve(listener, max, tls, shutdown, move |stream, token| {
            let gateway = self.clone();
            async move { gateway.handle(stream, token).await }
        })
        .await;
    }

    async fn handle(self, mut client: FingerStream, mut token: Token) {
        let request = tokio::select! {
            res = read_request(&mut client) => res,
            () = token.requested() => return,
        };
        let uuid = match request {
            Ok(Request::Stream(uuid)) => uuid,
            Ok(Request::Status(_) | Request::Invalid(_)) => {
                let _ = client.write_all(b"Build not found").await;
                let _ = client.shutdown().await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "gateway request");
                return;
            }
        };
        let watch = tokio::select! {
            res = self.feeds.watch(&uuid, None) => res,
            () = token.requested() => return,
        };
        match watch {
            Ok(mut watch) => {
                let (mut reader, mut writer) = tokio::io::split(client);
                let stop = async {
                    tokio::select! {
                        () = discard_input(&mut reader) => {}
                        () = token.requested() => {}
                    }
                };
                tokio::pin!(stop);
                if let Err(e) = relay(&mut watch.cursor, &mut writer, stop).await {
                    tracing::debug!(build = %uuid, error = %e, "relay ended");
                }
                let _ = writer.shutdown().await;
            }
            Err(e) => {
                if let LocateError::Internal(detail) = &e {
                    tracing::warn!(build = %uuid, detail = %detail, "gateway");
                }
                let _ = client.write_all(e.to_string().as_bytes()).await;
                let _ = client.shutdown().await;
            }
        }
    }
}

/// Copies the build's stream to `out` until its end or `stop`.
async fn relay<W, S>(
    cursor: &mut Cursor<UpstreamCatchUp>,
    out: &mut W,
    mut stop: std::pin::Pin<&mut S>,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    loop {
        let next = tokio::select! {
            next = cursor.next() => next,
            () = stop.as_mut() => return Ok(()),
        };
        let Some(chunk) = next.map_err(std::io::Error::other)? else {
            return Ok(());
        };
        tokio::select! {
            res = out.write_all(&chunk) => res?,
            () = stop.as_mut() => return Ok(()),
        }
    }
}
