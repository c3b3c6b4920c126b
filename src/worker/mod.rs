//! Worker processes: every model the server loads runs in a process of its own
//! (`voxpool worker`), started on load and ended on unload, so the operating
//! system takes back all of its memory (RAM and device), whatever a library kept,
//! and a crash inside a model ends that worker only.
//!
//! The gateway (the server process) keeps HTTP, the pool, admission, the store
//! and the audio encoders; a worker holds one engine and speaks for it. They talk
//! in [`protocol`] messages over the worker's stdin and stdout.

mod client;
pub mod host;
pub mod protocol;

pub use client::{ExitNotice, Launch, WorkerEngine, WorkerHandle, EXIT_GRACE};
