//! Subcommands other than `serve`, one file each.

pub mod speak;
