//! Placeholder: replaced by the japanese G2P.

use super::g2p::TextError;
use super::settings::PackFile;

/// Files of the language pack.
pub const PACK_FILES: &[PackFile] = &[];

/// Why this language cannot be spoken here, if it cannot.
pub fn availability() -> Result<(), String> {
    Err("not built yet".into())
}

/// Phonemes of `text`.
pub fn phonemize(text: &str) -> Result<String, TextError> {
    let _ = text;
    Err(TextError::Unavailable("not built yet".into()))
}

/// Drop tables built on first use.
pub fn release() {}
