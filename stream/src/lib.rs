//! Live build logs: the executor's finger streamer, the finger gateway and Zuul's websocket
//! console stream, all speaking Zuul's protocols so that Zuul's clients and UI work unchanged.
//!
//! Main types: [`FingerServer`] (on each executor), [`FingerGateway`] (`sluice fingergw`),
//! [`web::router`] with [`ConsoleState`] (the websocket and log routes), [`StreamRouter`] (finds
//! a build's executor and opens its stream, with zone routing), [`LogWatcher`] (inotify).
//!
//! Why this shape: the build's `job-output.txt` is the only buffer. The callbacks in
//! `ansible-playbook` and the executor append to it; every watcher follows it from its own
//! offset, woken by inotify. A slow watcher therefore never holds memory or slows anyone, and
//! one that falls behind catches up from the file without losing or reordering a line. Gateways
//! and the web relay bytes with bounded buffers, so TCP back-pressure reaches the executor's
//! follower, which then just waits.
//!
//! # Layout
//! - [`request`]: finger request framing (check, then parse).
//! - [`watcher`]: one inotify watcher per process, a change counter per file.
//! - [`follow`]: sending one log to one watcher until its build ends.
//! - [`finger`]: the executor's finger server (transport and command).
//! - [`locate`]: the executors file, [`BuildLocator`], zone routing.
//! - [`gateway`]: the finger gateway.
//! - [`web`]: the websocket console stream and the build log route (axum).
//! - [`shutdown`]: the drain every server's `run` uses.
//! - [`errors`]: the crate's errors.
#![warn(missing_docs)]

pub mod errors;
pub mod finger;
pub mod follow;
pub mod gateway;
pub mod locate;
pub mod request;
mod server;
pub mod shutdown;
pub mod watcher;
pub mod web;

pub use errors::{LocateError, StreamError};
pub use finger::{FingerConfig, FingerServer, DEFAULT_FINGER_PORT};
pub use gateway::{FingerGateway, GatewayConfig, DEFAULT_GATEWAY_PORT};
pub use locate::{BuildLocation, BuildLocator, ExecutorsFile, StaticExecutors, StreamRouter};
pub use watcher::LogWatcher;
pub use web::{router, ConsoleState};
