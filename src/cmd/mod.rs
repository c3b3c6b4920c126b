//! Subcommands other than `serve`, one file each.

pub mod cleanup;
pub mod client;
pub mod keys;
pub mod pull;
pub mod speak;
