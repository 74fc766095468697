//! The finger gateway (`sluice fingergw`): takes the same request as an executor's streamer,
//! finds the executor running the build, and relays its stream, through the gateway of the
//! build's zone when that is not this gateway's zone. Errors are Zuul's texts: `Build not found`,
//! `Build did not start yet`, `Internal streaming error`.

use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::errors::LocateError;
use crate::finger::discard_input;
use crate::locate::StreamRouter;
use crate::request::{read_request, Request};
use crate::shutdown::Token;

/// Zuul's finger gateway port.
pub const DEFAULT_GATEWAY_PORT: u16 = 79;

/// Relay buffer size per connection (Zuul relays 1024-byte reads; lines are short).
const RELAY_CHUNK: usize = 4 * 1024;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The most connections relayed at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// A finger gateway.
#[derive(Debug, Clone)]
pub struct FingerGateway {
    config: GatewayConfig,
    router: StreamRouter,
}

impl FingerGateway {
    /// A gateway that reaches builds through `router`.
    pub fn new(config: GatewayConfig, router: StreamRouter) -> Self {
        Self { config, router }
    }

    /// Serves until `shutdown` resolves, then closes every relay and returns once all are gone.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future) {
        let max = self.config.max_connections;
        crate::server::serve(listener, max, shutdown, move |stream, token| {
            let gateway = self.clone();
            async move { gateway.handle(stream, token).await }
        })
        .await;
    }

    async fn handle(self, mut client: TcpStream, mut token: Token) {
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
        let upstream = tokio::select! {
            res = self.router.open(&uuid) => res,
            () = token.requested() => return,
        };
        match upstream {
            Ok((upstream, _)) => {
                let (mut reader, mut writer) = client.split();
                let stop = async {
                    tokio::select! {
                        () = discard_input(&mut reader) => {}
                        () = token.requested() => {}
                    }
                };
                tokio::pin!(stop);
                if let Err(e) = relay(upstream, &mut writer, stop).await {
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

/// Copies `upstream` to `out` until upstream EOF or `stop`.
pub(crate) async fn relay<R, W, S>(
    mut upstream: R,
    out: &mut W,
    mut stop: std::pin::Pin<&mut S>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    let mut buf = vec![0u8; RELAY_CHUNK];
    loop {
        let n = tokio::select! {
            res = upstream.read(&mut buf) => res?,
            () = stop.as_mut() => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        tokio::select! {
            res = out.write_all(&buf[..n]) => res?,
            () = stop.as_mut() => return Ok(()),
        }
    }
}
