//! Text handling before synthesis: sentences, then phonemes per language.

pub mod chunk;
pub mod error;
pub mod espeak;
pub mod g2p;
pub mod japanese;
pub mod language;
pub mod lexicon;
pub mod mandarin;
pub mod settings;
pub mod words;

pub use chunk::split_sentences;
pub use language::Language;

/// Every language-pack file the G2P of this build reads.
pub fn pack_files() -> Vec<settings::PackFile> {
    japanese::PACK_FILES
        .iter()
        .chain(mandarin::PACK_FILES)
        .copied()
        .collect()
}
