//! The web side: Zuul's websocket console stream at `/api/tenant/{tenant}/console-stream` and
//! a finished build's log at `/api/tenant/{tenant}/build/{uuid}/log`, both relaying the finger
//! stream of the build's executor (through zone gateways as Zuul).
//!
//! Protocol (Zuul's): the client's first text frame is JSON `{"uuid": ..., "logfile": ...}`
//! (`token` optional, ignored until tenants have access rules); later frames are ignored. Close
//! codes: 4000 `'uuid' missing from request payload` / `'logfile' missing from request payload`;
//! 4011 `Build not found`, `Build did not start yet`, or `Unknown error` (a first frame that is not
//! a JSON object, or the executor unreachable); 1000 `No more data` at the end of the stream,
//! 1000 `Remote error` when the executor's connection fails; 1001 `Server shutting down`.
//! A ping goes out every 20 s, as Zuul's heartbeat.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::errors::LocateError;
use crate::fanout::Cursor;
use crate::locate::StreamRouter;
use crate::request::is_build_id;
use crate::upstream::{UpstreamCatchUp, UpstreamFeeds};

/// How often a ping goes to each websocket client.
pub const HEARTBEAT: Duration = Duration::from_secs(20);
/// The longest a plain HTTP request may take to produce its response head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from the executor per frame at most (also the relay's whole buffer per session).
const READ_CHUNK: usize = 4 * 1024;
/// The client sends one small JSON frame: a small read buffer and message limit are enough
/// (tungstenite's defaults, 128 KiB of read buffer per session, would dominate an idle watcher).
const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// The largest frame a client may send.
const CLIENT_MAX_MESSAGE: usize = 64 * 1024;

/// The state behind [`router`]: how builds are reached, and the live websocket sessions (so
/// that shutdown can close them: upgraded connections outlive axum's graceful shutdown).
#[derive(Debug, Clone)]
pub struct ConsoleState {
    feeds: UpstreamFeeds,
    sessions: Arc<Sessions>,
}

#[derive(Debug)]
struct Sessions {
    /// `true` once shutdown starts.
    notice: watch::Sender<bool>,
    /// How many websocket sessions are open.
    count: watch::Sender<usize>,
}

/// Counts one session for as long as it lives.
struct SessionGuard(Arc<Sessions>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.count.send_modify(|n| *n -= 1);
    }
}

impl ConsoleState {
    /// State reaching builds through `router`.
    pub fn new(router: StreamRouter) -> Self {
        Self {
            feeds: UpstreamFeeds::new(router),
            sessions: Arc::new(Sessions {
                notice: watch::channel(false).0,
                count: watch::channel(0).0,
            }),
        }
    }

    /// Closes every websocket session (code 1001) and waits until all are gone. Whoever mounts
    /// [`router`] calls it once its HTTP server has stopped accepting.
    pub async fn shutdown(&self) {
        self.sessions.notice.send_replace(true);
        let mut count = self.sessions.count.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }

    /// Tells every websocket session that shutdown started (they close with 1001). Whoever
    /// mounts [`router`] calls it when its HTTP server stops accepting: axum does not wait for
    /// upgraded connections.
    pub fn notify_shutdown(&self) {
        self.sessions.notice.send_replace(true);
    }

    /// How many websocket sessions are open.
    pub fn n_sessions(&self) -> usize {
        *self.sessions.count.borrow()
    }

    fn session(&self) -> (SessionGuard, watch::Receiver<bool>) {
        self.sessions.count.send_modify(|n| *n += 1);
        (
            SessionGuard(self.sessions.clone()),
            self.sessions.notice.subscribe(),
        )
    }
}

/// The console routes, for mounting into Sluice's web server.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/api/tenant/{tenant}/console-stream", get(console_stream))
        .route("/api/tenant/{tenant}/build/{uuid}/log", get(build_log))
        .with_state(state)
}

/// Serves [`router`] alone (`sluice web`) until `shutdown` resolves, then closes the websocket
/// sessions and returns once they are all gone.
pub async fn serve(
    listener: TcpListener,
    state: ConsoleState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    #[expect(
        deprecated,
        reason = "TimeoutLayer::new answers 408, which suits plain requests"
    )]
    let timeout = tower_http::timeout::TimeoutLayer::new(REQUEST_TIMEOUT);
    let app = router(state.clone()).layer(timeout);
    let sessions = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            sessions.notify_shutdown();
        })
        .await?;
    state.shutdown().await;
    Ok(())
}

async fn console_stream(
    ws: WebSocketUpgrade,
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
) -> Response {
    let ws = ws
        .read_buffer_size(CLIENT_READ_BUFFER)
        // Each frame is flushed by `send`; no extra buffering before writing.
        .write_buffer_size(0)
        .max_message_size(CLIENT_MAX_MESSAGE)
        .max_frame_size(CLIENT_MAX_MESSAGE);
    ws.on_upgrade(move |socket: WebSocket| async move {
        let (guard, notice) = state.session();
        console_session(&state.feeds, &tenant, socket, notice).await;
        drop(guard);
    })
}

/// A close frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code.
    pub code: u16,
    /// The reason text.
    pub reason: &'static str,
}

const NO_MORE_DATA: Close = Close {
    code: 1000,
    reason: "No more data",
};
const REMOTE_ERROR: Close = Close {
    code: 1000,
    reason: "Remote error",
};
const GOING_AWAY: Close = Close {
    code: 1001,
    reason: "Server shutting down",
};
const UNKNOWN_ERROR: Close = Close {
    code: 4011,
    reason: "Unknown error",
};

/// Reads the client's first frame: the build's uuid, or how to close.
pub fn parse_first_message(text: &str) -> Result<String, Close> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| UNKNOWN_ERROR)?;
    let object = value.as_object().ok_or(UNKNOWN_ERROR)?;
    let uuid = object.get("uuid").ok_or(Close {
        code: 4000,
        reason: "'uuid' missing from request payload",
    })?;
    if !object.contains_key("logfile") {
        return Err(Close {
            code: 4000,
            reason: "'logfile' missing from request payload",
        });
    }
    // A uuid that is not a build id is a build that cannot be found.
    match uuid.as_str() {
        Some(uuid) if is_build_id(uuid) => Ok(uuid.to_string()),
        _ => Err(locate_close(&LocateError::NotFound)),
    }
}

fn locate_close(error: &LocateError) -> Close {
    match error {
        LocateError::NotFound => Close {
            code: 4011,
            reason: "Build not found",
        },
        LocateError::NotStarted => Close {
            code: 4011,
            reason: "Build did not start yet",
        },
        LocateError::Internal(_) => UNKNOWN_ERROR,
    }
}

/// One websocket session. The socket is not split: with a thousand watchers of a build every
/// line wakes a thousand sessions, and a split socket would take a lock for each poll of each
/// half; one owner that either waits on both directions or sends needs none.
async fn console_session<W, E>(
    feeds: &UpstreamFeeds,
    tenant: &str,
    mut socket: W,
    mut notice: watch::Receiver<bool>,
) where
    W: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    let first = tokio::select! {
        first = first_text(&mut socket) => first,
        () = stopped(&mut notice) => {
            close(&mut socket, GOING_AWAY).await;
            return;
        }
    };
    let Some(first) = first else {
        return;
    };
    let uuid = match parse_first_message(&first) {
        Ok(uuid) => uuid,
        Err(frame) => {
            close(&mut socket, frame).await;
            return;
        }
    };
    let watch = tokio::select! {
        res = feeds.watch(&uuid, Some(tenant)) => res,
        () = stopped(&mut notice) => {
            close(&mut socket, GOING_AWAY).await;
            return;
        }
    };
    let mut watch = match watch {
        Ok(watch) => watch,
        Err(e) => {
            if let LocateError::Internal(detail) = &e {
                tracing::warn!(tenant, build = %uuid, detail = %detail, "console stream");
            }
            close(&mut socket, locate_close(&e)).await;
            return;
        }
    };
    let end = pump(&mut watch.cursor, &mut socket, &mut notice).await;
    if let Some(frame) = end {
        close(&mut socket, frame).await;
    }
}

/// Waits for the first text frame; `None` if the client leaves first.
async fn first_text<S, E>(stream: &mut S) -> Option<String>
where
    S: Stream<Item = Result<Message, E>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Relays the build's stream as text frames; returns the close frame to send (`None`: the
/// client left).
async fn pump<W, E>(
    cursor: &mut Cursor<UpstreamCatchUp>,
    socket: &mut W,
    notice: &mut watch::Receiver<bool>,
) -> Option<Close>
where
    W: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    let mut decoder = Utf8Decoder::default();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    // One shutdown wait for the whole session, not one per frame: every session waits on the
    // same channel, and a wait made anew for each frame would register and unregister with it
    // (a lock shared by all the sessions) twice per frame and watcher.
    let stop = stopped(notice);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            res = cursor.next() => {
                let text = match res {
                    Ok(None) => {
                        let rest = decoder.finish();
                        if !rest.is_empty() && socket.send(Message::Text(rest.into())).await.is_err() {
                            return None;
                        }
                        return Some(NO_MORE_DATA);
                    }
                    Ok(Some(bytes)) => decoder.decode_bytes(bytes),
                    Err(_) => return Some(REMOTE_ERROR),
                };
                if !text.is_empty() {
                    // Back-pressure: until the client takes this frame, this watcher takes
                    // nothing more; if the build's feed moves on meanwhile, it catches up.
                    tokio::select! {
                        res = socket.send(Message::Text(text)) => if res.is_err() { return None },
                        () = &mut stop => return Some(GOING_AWAY),
                    }
                }
            }
            frame = socket.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            },
            _ = heartbeat.tick() => {
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return None;
                }
            }
            () = &mut stop => return Some(GOING_AWAY),
        }
    }
}

/// Resolves once shutdown has started.
async fn stopped(notice: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any other await.
    let _ = notice.wait_for(|stop| *stop).await;
}

async fn close<K: Sink<Message> + Unpin>(sink: &mut K, frame: Close) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: frame.code,
            reason: frame.reason.into(),
        })))
        .await;
    let _ = sink.close().await;
}

/// Decodes UTF-8 split anywhere across reads: an incomplete sequence at the end waits for the
/// next read; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Like [`Utf8Decoder::decode`], without copying when `bytes` is whole UTF-8 by itself (the
    /// usual case: streams carry whole lines).
    pub fn decode_bytes(&mut self, bytes: Bytes) -> Utf8Bytes {
        if self.pending.is_empty() {
            if let Ok(text) = Utf8Bytes::try_from(bytes.clone()) {
                return text;
            }
        }
        self.decode(&bytes).into()
    }

    /// Decodes what can be decoded of `pending + bytes`.
    pub fn decode(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::with_capacity(self.pending.len());
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(len) => {
                            out.push('\u{FFFD}');
                            rest = &after[len..];
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

async fn build_log(
    State(state): State<ConsoleState>,
    Path((tenant, uuid)): Path<(String, String)>,
) -> Response {
    let text = |status: StatusCode, body: &'static str| (status, body).into_response();
    if !is_build_id(&uuid) {
        return text(StatusCode::NOT_FOUND, "Build not found");
    }
    match state.feeds.router().locate(&uuid, Some(&tenant)).await {
        Err(LocateError::NotFound) => text(StatusCode::NOT_FOUND, "Build not found"),
        Err(LocateError::NotStarted) => text(StatusCode::CONFLICT, "Build did not start yet"),
        Err(LocateError::Internal(detail)) => {
            tracing::warn!(build = %uuid, detail = %detail, "build log");
            text(StatusCode::BAD_GATEWAY, "Internal streaming error")
        }
        Ok(location) if location.running => text(
            StatusCode::CONFLICT,
            "Build is running: follow it with the console stream",
        ),
        Ok(_) => match state.feeds.router().open(&uuid, Some(&tenant)).await {
            Ok((upstream, _)) => {
                let body = futures_util::stream::unfold(upstream, |mut upstream| async move {
                    let mut buf = vec![0u8; READ_CHUNK];
                    match upstream.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok::<_, io::Error>(Bytes::from(buf)), upstream))
                        }
                        Err(e) => Some((Err(e), upstream)),
                    }
                });
                (
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    Body::from_stream(body),
                )
                    .into_response()
            }
            Err(e) => text(StatusCode::BAD_GATEWAY, locate_close(&e).reason),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_message_errors_use_zuul_codes() {
        assert_eq!(
            parse_first_message(r#"{"uuid": "abc1", "logfile": "console.log"}"#),
            Ok("abc1".into())
        );
        assert_eq!(
            parse_first_message(r#"{"logfile": "x"}"#).unwrap_err().code,
            4000
        );
        assert_eq!(
            parse_first_message(r#"{"uuid": "abc1"}"#)
                .unwrap_err()
                .reason,
            "'logfile' missing from request payload"
        );
        assert_eq!(parse_first_message("not json"), Err(UNKNOWN_ERROR));
        assert_eq!(parse_first_message("[1]"), Err(UNKNOWN_ERROR));
        assert_eq!(
            parse_first_message(r#"{"uuid": "../x", "logfile": "x"}"#)
                .unwrap_err()
                .reason,
            "Build not found"
        );
    }

    #[test]
    fn utf8_split_across_reads() {
        let mut d = Utf8Decoder::default();
        let bytes = "é€".as_bytes();
        assert_eq!(d.decode(&bytes[..1]), "");
        assert_eq!(d.decode(&bytes[1..3]), "é");
        assert_eq!(d.decode(&bytes[3..]), "€");
        assert_eq!(d.decode(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(d.decode(b"\xe2"), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
