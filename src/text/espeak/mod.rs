//! Placeholder: replaced by the espeak-ng G2P.

use super::g2p::TextError;
use super::Language;

/// Why espeak-ng cannot be used here, if it cannot.
pub fn availability() -> Result<(), String> {
    Err("not built yet".into())
}

/// Phonemes of `text` in `language` (one with an espeak voice).
pub fn phonemize(text: &str, language: Language) -> Result<String, TextError> {
    let _ = (text, language);
    Err(TextError::Unavailable("not built yet".into()))
}

/// Drop what was loaded on first use.
pub fn release() {}
