//! Grapheme-to-phoneme conversion for Kokoro, one backend per language as the
//! reference pipeline chooses it:
//! - `a`, `b`: English through misaki-rs, a Rust port of the reference's `misaki`;
//! - `j`: Japanese, [`super::japanese`] (misaki's cutlet path on UniDic);
//! - `z`: Mandarin, [`super::mandarin`] (misaki's jieba + pypinyin path);
//! - `e`, `f`, `h`, `i`, `p`: the system's espeak-ng, [`super::espeak`], loaded at
//!   run time so that this program stays Apache-2.0.

use std::sync::{Arc, Mutex, PoisonError};

use misaki_rs::G2P;

pub use super::error::TextError;
use super::{espeak, japanese, mandarin, Language};

/// Phonemes of one model call at most (Kokoro's context is 512 tokens with the two pads).
pub const MAX_PHONEMES: usize = 510;

/// `a (American English), b (British English), …`.
pub fn describe(languages: &[Language]) -> String {
    let listed: Vec<String> = languages
        .iter()
        .map(|l| format!("{} ({})", l.code(), l.name()))
        .collect();
    if listed.is_empty() {
        "none".into()
    } else {
        listed.join(", ")
    }
}

/// Parse a language code or alias ([`Language::parse`]), or say which exist.
pub fn parse_language(code: &str) -> Result<Language, TextError> {
    Language::parse(code).ok_or_else(|| TextError::UnknownLanguage {
        given: code.to_string(),
        available: describe(&available_languages()),
    })
}

/// Whether `language` can be spoken here, or why not and what to install.
pub fn availability(language: Language) -> Result<(), String> {
    let why = match language {
        Language::AmericanEnglish | Language::BritishEnglish => Ok(()),
        Language::Japanese => japanese::availability(),
        Language::Mandarin => mandarin::availability(),
        other => espeak::has_voice(other).and_then(|found| {
            found.then_some(()).ok_or_else(|| {
                format!(
                    "the installed espeak-ng has no '{}' voice",
                    other.espeak_voice().unwrap_or_default()
                )
            })
        }),
    };
    why.map_err(|e| unavailable(language, &e))
}

/// Why `language` cannot be spoken, as users read it.
fn unavailable(language: Language, why: &str) -> String {
    format!(
        "{} ({}) is not available here: {why}",
        language.name(),
        language.code()
    )
}

/// The languages this build speaks on this machine, in the reference's order.
pub fn available_languages() -> Vec<Language> {
    Language::ALL
        .into_iter()
        .filter(|l| availability(*l).is_ok())
        .collect()
}

/// The English G2P of each variant: built on first use (about half a second,
/// ~50 MiB of tables each), shared, and dropped by [`release`].
static US: Mutex<Option<Arc<G2P>>> = Mutex::new(None);
static GB: Mutex<Option<Arc<G2P>>> = Mutex::new(None);

fn english_slot(british: bool) -> &'static Mutex<Option<Arc<G2P>>> {
    if british {
        &GB
    } else {
        &US
    }
}

fn english(british: bool) -> Arc<G2P> {
    let mut slot = english_slot(british)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(slot.get_or_insert_with(|| {
        let mut g = G2P::new(if british {
            misaki_rs::Language::EnglishGB
        } else {
            misaki_rs::Language::EnglishUS
        });
        // Unpronounceable words are dropped rather than spoken as a marker.
        g.unk = String::new();
        Arc::new(g)
    }))
}

/// Drop the tables of every language (the Kokoro engine does on unload, so its
/// memory really comes back); calls in progress keep theirs, and the next call
/// builds them again.
pub fn release() {
    for british in [false, true] {
        english_slot(british)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
    japanese::release();
    mandarin::release();
    espeak::release();
}

/// Whether the English tables of `language` are built.
pub fn is_built(language: Language) -> bool {
    let british = match language {
        Language::AmericanEnglish => false,
        Language::BritishEnglish => true,
        _ => return false,
    };
    english_slot(british)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
}

/// Phonemes of `text` in `language`, whitespace collapsed.
pub fn phonemize(text: &str, language: Language) -> Result<String, TextError> {
    let phonemes = match language {
        Language::AmericanEnglish | Language::BritishEnglish => {
            english(language == Language::BritishEnglish)
                .g2p(text)
                .map(|(p, _)| p)
                .unwrap_or_default()
        }
        // Each backend says what it lacks when it loads: no check of files per call.
        other => match other {
            Language::Japanese => japanese::phonemize(text),
            Language::Mandarin => mandarin::phonemize(text),
            _ => espeak::phonemize(text, other),
        }
        .map_err(|e| match e {
            TextError::Unavailable(why) => TextError::Unavailable(unavailable(other, &why)),
            e => e,
        })?,
    };
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
            phonemize(
                "They record a record every week.",
                Language::AmericanEnglish
            )
            .unwrap(),
            "ðˌA ɹəkˈɔɹd ɐ ɹˈɛkəɹd ˈɛvəɹi wˈik."
        );
        let gb = phonemize("The schedule is full.", Language::BritishEnglish).unwrap();
        assert!(!gb.is_empty());
        assert!(matches!(
            parse_language("xx"),
            Err(TextError::UnknownLanguage { .. })
        ));
        assert_eq!(
            phonemize("   ", Language::AmericanEnglish),
            Err(TextError::Empty)
        );
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
