//! Text handling before synthesis: sentences, then phonemes per language.

pub mod chunk;
pub mod espeak;
pub mod g2p;
pub mod japanese;
pub mod language;
pub mod mandarin;
pub mod settings;

pub use chunk::split_sentences;
pub use language::Language;
