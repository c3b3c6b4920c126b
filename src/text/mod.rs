//! Text handling before synthesis.

pub mod chunk;
pub mod g2p;

pub use chunk::split_sentences;
