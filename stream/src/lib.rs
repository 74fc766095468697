//! Live build logs: the executor's finger streamer, the finger gateway and Zuul's websocket
//! console stream, all speaking Zuul's protocols so that Zuul's clients and UI work unchanged.
//!
//! Main types: [`FingerServer`] (on each executor), [`FingerGateway`] (`sluice fingergw`),
//! [`web::router`] with [`ConsoleState`] (the websocket and log routes), [`StreamRouter`] (finds
//! a build's executor and opens its stream, with zone routing), [`LogWatcher`] (inotify),
//! [`fanout::Hub`] (one source per build, a cursor per watcher).
//!
//! Why this shape: each hop reads a build's stream once, however many watch it. On the
//! executor one follower per running build reads the new lines of `job-output.txt` (woken by
//! inotify) into the build's feed; in the gateway and the web one connection per build does the
//! same with the executor's stream ([`upstream`]). A feed keeps only a bounded ring of recent
//! chunks shared by its watchers; each watcher keeps just its offset, and one that falls behind
//! the ring (or joins late) catches up from the file itself, or over a private connection, so a
//! slow watcher never holds memory or slows anyone, and never loses or reorders a line.
//!
//! # Layout
//! - [`request`]: finger request framing (check, then parse).
//! - [`watcher`]: one inotify watcher per process, a change counter per file.
//! - [`fanout`]: one source per build, a bounded ring of recent chunks, a cursor per watcher
//!   that catches up from the file (or a private upstream) when it falls behind.
//! - [`follow`]: the one follower of each running build's log, and sending it to a watcher.
//! - [`finger`]: the executor's finger server (transport and command).
//! - [`locate`]: the executors file, [`BuildLocator`], zone routing.
//! - [`store_locate`]: [`BuildLocator`] over the scheduler's store; zone gateways' registration.
//! - [`upstream`]: one shared connection per build in the gateway and the web.
//! - [`gateway`]: the finger gateway.
//! - [`tls`]: finger over TLS (client certificates, hostname checks) and [`FingerStream`].
//! - [`web`]: the websocket console stream and the build log route (axum).
//! - [`shutdown`]: the drain every server's `run` uses.
//! - [`errors`]: the crate's errors.
#![warn(missing_docs)]

pub mod errors;
pub mod fanout;
pub mod finger;
pub mod follow;
pub mod gateway;
pub mod locate;
pub mod request;
mod server;
pub mod shutdown;
pub mod store_locate;
pub mod tls;
pub mod upstream;
pub mod watcher;
pub mod web;

pub use errors::{LocateError, StreamError};
pub use finger::{FingerConfig, FingerServer, DEFAULT_FINGER_PORT};
pub use gateway::{FingerGateway, GatewayConfig, DEFAULT_GATEWAY_PORT};
pub use locate::{BuildLocation, BuildLocator, ExecutorsFile, StaticExecutors, StreamRouter};
pub use store_locate::{GatewayRegistration, StoreLocator};
pub use tls::{ClientTls, FingerStream, ServerTls, TlsSettings};
pub use watcher::LogWatcher;
pub use web::{router, ConsoleState};
