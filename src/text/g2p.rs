//! Grapheme-to-phoneme conversion for Kokoro: American (`a`) and British (`b`)
//! English through misaki-rs, a Rust port of the reference's `misaki` G2P.

use std::cell::RefCell;
use std::collections::HashMap;

use misaki_rs::{Language, G2P};

/// Languages this build can speak, as Kokoro's one-letter codes.
pub const LANGUAGES: [&str; 2] = ["a", "b"];

/// Phonemes of one model call at most (Kokoro's context is 512 tokens with the two pads).
pub const MAX_PHONEMES: usize = 510;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TextError {
    #[error("language '{0}' is not available in this build; available: a (American English), b (British English)")]
    UnsupportedLanguage(String),
    #[error("the text has nothing to pronounce")]
    Empty,
}

fn language(code: &str) -> Result<Language, TextError> {
    match code {
        "a" | "en-us" | "en" => Ok(Language::EnglishUS),
        "b" | "en-gb" => Ok(Language::EnglishGB),
        other => Err(TextError::UnsupportedLanguage(other.to_string())),
    }
}

thread_local! {
    // misaki's G2P is built once per thread (it is not shareable across threads)
    // and reused for every call on that thread.
    static G2PS: RefCell<HashMap<&'static str, G2P>> = RefCell::new(HashMap::new());
}

/// Phonemes of `text` in `lang` (`a` or `b`). Words misaki cannot pronounce are
/// dropped rather than spelled out as an unknown-word marker.
pub fn phonemize(text: &str, lang: &str) -> Result<String, TextError> {
    let language = language(lang)?;
    let key = match language {
        Language::EnglishUS => "a",
        Language::EnglishGB => "b",
    };
    let phonemes = G2PS.with(|cell| {
        let mut map = cell.borrow_mut();
        let g2p = map.entry(key).or_insert_with(|| {
            let mut g = G2P::new(language);
            g.unk = String::new();
            g
        });
        g2p.g2p(text).map(|(p, _)| p).unwrap_or_default()
    });
    let phonemes = phonemes.split_whitespace().collect::<Vec<_>>().join(" ");
    if phonemes.is_empty() {
        return Err(TextError::Empty);
    }
    Ok(phonemes)
}

/// Split a phoneme string into pieces of at most [`MAX_PHONEMES`] characters,
/// at spaces where possible.
pub fn split_phonemes(phonemes: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = phonemes.trim();
    while rest.chars().count() > MAX_PHONEMES {
        let limit = rest
            .char_indices()
            .nth(MAX_PHONEMES)
            .map_or(rest.len(), |(i, _)| i);
        let cut = rest[..limit].rfind(' ').filter(|&i| i > 0).unwrap_or(limit);
        out.push(rest[..cut].trim().to_string());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn american_and_british_english() {
        assert_eq!(
            phonemize("They record a record every week.", "a").unwrap(),
            "ðˌA ɹəkˈɔɹd ɐ ɹˈɛkəɹd ˈɛvəɹi wˈik."
        );
        let gb = phonemize("The schedule is full.", "b").unwrap();
        assert!(!gb.is_empty());
        assert!(matches!(
            phonemize("Bonjour", "f"),
            Err(TextError::UnsupportedLanguage(_))
        ));
        assert_eq!(phonemize("   ", "a"), Err(TextError::Empty));
    }

    #[test]
    fn long_phoneme_strings_split_at_spaces() {
        let long = "hˈɛlO ".repeat(200);
        let parts = split_phonemes(&long);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_PHONEMES));
        assert_eq!(parts.join(" ").split(' ').count(), 200);
    }
}
