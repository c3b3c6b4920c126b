//! Audio out of the engines: encoders for the response formats. Engines hand over
//! f32 samples and a rate; this module never sees a tensor.

pub mod encode;
pub mod stream;
pub mod stretch;

pub use encode::{encode, AudioError, AudioFormat};
