//! Audio out of the engines (encoders for the response formats) and into them
//! (reference clips for voice cloning). This module never sees a tensor.

pub mod clip;
pub mod encode;
pub mod stream;
pub mod stretch;

pub use encode::{encode, AudioError, AudioFormat};
