//! Text handling before synthesis.

pub mod chunk;

pub use chunk::split_sentences;
