//! Subcommands other than `serve`, one file each.

pub mod keys;
pub mod speak;
