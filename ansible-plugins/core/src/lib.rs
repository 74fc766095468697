//! The pure-Rust core of Sluice's Ansible callbacks: the node console client (protocol v1),
//! Zuul's `job-output.txt` line format, the `job-output.json` entries and their writer.
#![warn(missing_docs)]

pub mod console;
pub mod errors;
pub mod format;
pub mod jobjson;
pub mod output;
pub mod pyjson;
pub mod record;
pub mod redact;
pub mod timefmt;
pub mod unreachable;

pub use console::{spawn as spawn_stream, StreamHandle, StreamOptions, StreamRequest};
pub use errors::CallbackError;
pub use format::{format_event, format_event_json, Event};
pub use jobjson::JobJson;
pub use output::{ControlSink, JobOutput, StdoutControl};
pub use record::PlaybookRecord;
