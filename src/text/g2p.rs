//! Grapheme-to-phoneme conversion for Kokoro: American (`a`) and British (`b`)
//! English through misaki-rs, a Rust port of the reference's `misaki` G2P.

use std::sync::{Arc, Mutex, PoisonError};

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
    /// The language exists but cannot be spoken on this machine; the text says why
    /// and what to install.
    #[error("{0}")]
    Unavailable(String),
}

fn language(code: &str) -> Result<Language, TextError> {
    match code {
        "a" | "en-us" | "en" => Ok(Language::EnglishUS),
        "b" | "en-gb" => Ok(Language::EnglishGB),
        other => Err(TextError::UnsupportedLanguage(other.to_string())),
    }
}

/// The G2P of each language: built on first use (about half a second, ~50 MiB of
/// tables each), shared, and dropped by [`release`].
static US: Mutex<Option<Arc<G2P>>> = Mutex::new(None);
static GB: Mutex<Option<Arc<G2P>>> = Mutex::new(None);

fn slot(language: Language) -> &'static Mutex<Option<Arc<G2P>>> {
    match language {
        Language::EnglishUS => &US,
        Language::EnglishGB => &GB,
    }
}

fn g2p_for(language: Language) -> Arc<G2P> {
    let mut slot = slot(language)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(slot.get_or_insert_with(|| {
        let mut g = G2P::new(language);
        // Unpronounceable words are dropped rather than spoken as a marker.
        g.unk = String::new();
        Arc::new(g)
    }))
}

/// Drop the G2P tables (the Kokoro engine does on unload, so its memory really comes
/// back); calls in progress keep theirs, and the next call builds them again.
pub fn release() {
    for language in [Language::EnglishUS, Language::EnglishGB] {
        slot(language)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// Whether the tables of `lang` are built.
pub fn is_built(lang: &str) -> bool {
    language(lang).is_ok_and(|l| {
        slot(l)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    })
}

/// Phonemes of `text` in `lang` (`a` or `b`).
pub fn phonemize(text: &str, lang: &str) -> Result<String, TextError> {
    let phonemes = g2p_for(language(lang)?)
        .g2p(text)
        .map(|(p, _)| p)
        .unwrap_or_default();
    let phonemes = phonemes.split_whitespace().collect::<Vec<_>>().join(" ");
    if phonemes.is_empty() {
        return Err(TextError::Empty);
    }
    Ok(phonemes)
}

/// Clause marks a long phoneme string is preferably cut after.
const CLAUSE_MARKS: [char; 7] = [',', ';', ':', '.', '!', '?', '—'];

/// Split a phoneme string into pieces of at most [`MAX_PHONEMES`] characters: after
/// the last clause mark that fits, else at the last space, else anywhere.
pub fn split_phonemes(phonemes: &str) -> Vec<String> {
    split_phonemes_at(phonemes, MAX_PHONEMES)
}

/// [`split_phonemes`] with pieces of at most `max` characters (a model whose text
/// encoder holds fewer positions than Kokoro-82M's 512).
pub fn split_phonemes_at(phonemes: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut rest = phonemes.trim();
    while rest.chars().count() > max {
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let head = &rest[..limit];
        let cut = head
            .rfind(CLAUSE_MARKS)
            .filter(|&i| i > 0)
            .map(|i| i + head[i..].chars().next().map_or(1, char::len_utf8))
            .or_else(|| head.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(limit);
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
        // A clause mark that fits wins over the last space.
        let clause = format!("{}, {}", "ab ".repeat(100).trim(), "cd ".repeat(150).trim());
        let parts = split_phonemes(&clause);
        assert!(parts[0].ends_with("ab,"), "{}", parts[0]);
        assert!(parts[1].starts_with("cd"));
    }
}
