//! G2P of Kokoro's espeak-ng languages (Spanish, French, Hindi, Italian, Brazilian
//! Portuguese), as the reference reads them: Kokoro 0.9.4's `KPipeline` uses
//! misaki 0.9.4's `EspeakG2P`, which runs phonemizer's espeak backend
//! (`preserve_punctuation=True, with_stress=True, tie='^',
//! language_switch='remove-flags'`) and maps the result to misaki's symbols.
//!
//! espeak-ng itself is GPL-3 and is never linked: its shared library is loaded at
//! run time, the system's `libespeak-ng.so.1` (`apt-get install espeak-ng`) or the
//! one named by the `espeak_library` text setting. A library with an
//! `espeak-ng-data` folder beside it (the layout of the Python `espeakng_loader`
//! package, the exact build the reference uses) is initialised with that data.
//! The library keeps global state, so calls are serialised; it is initialised
//! once and the voice is selected per call.

mod library;
mod misaki;
mod phonemizer;
mod punctuation;

use std::sync::{Mutex, PoisonError};

use super::error::TextError;
use super::settings::settings;
use super::words::{self, is_word, Piece};
use super::Language;
use library::Espeak;

/// The loaded library, once loaded; `None` again after [`release`].
static ESPEAK: Mutex<Option<Espeak>> = Mutex::new(None);

/// Run `f` on the loaded library, loading it first if needed (a failed load is
/// tried again on the next call, so installing espeak-ng needs no restart).
fn with_espeak<T>(f: impl FnOnce(&mut Espeak) -> Result<T, String>) -> Result<T, String> {
    let mut slot = ESPEAK.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.is_none() {
        *slot = Some(Espeak::open(settings().espeak_library.as_deref())?);
    }
    match slot.as_mut() {
        Some(espeak) => f(espeak),
        None => Err("espeak-ng is not loaded".into()),
    }
}

/// Why espeak-ng cannot be used here, if it cannot.
pub fn availability() -> Result<(), String> {
    with_espeak(|_| Ok(()))
}

/// The loaded espeak-ng's version (`1.51` for Debian 12's, `1.52.0` for the
/// reference's `espeakng_loader` build).
pub fn version() -> Result<String, String> {
    with_espeak(|espeak| Ok(espeak.version().to_string()))
}

/// Whether the loaded espeak-ng has a voice for `language`.
pub fn has_voice(language: Language) -> Result<bool, String> {
    let Some(voice) = language.espeak_voice() else {
        return Ok(false);
    };
    with_espeak(|espeak| Ok(espeak.has_language(voice)))
}

/// Phonemes of `text` in `language` (one with an espeak voice), in Kokoro's
/// symbols. [`TextError::Empty`] when espeak reads nothing in it.
pub fn phonemize(text: &str, language: Language) -> Result<String, TextError> {
    let voice = language.espeak_voice().ok_or_else(|| {
        TextError::Unavailable(format!("{} is not read by espeak-ng", language.name()))
    })?;
    let text = misaki::before(text);
    let line = with_espeak(|espeak| {
        espeak.set_language(voice)?;
        Ok(phonemizer::phonemize(&text, |piece| {
            espeak.text_to_phonemes(piece)
        }))
    })
    .map_err(TextError::Unavailable)?;
    let phonemes = misaki::after(&line);
    if phonemes.is_empty() {
        return Err(TextError::Empty);
    }
    Ok(phonemes)
}

/// Phonemes of `text` and each word's. espeak-ng gives no word boundaries: when its
/// output has as many words as the text, they pair up in order; otherwise (a
/// number read as several words, words run together) each text word is read
/// alone and the phonemes are shared out by those readings' lengths.
pub fn read_words(text: &str, language: Language) -> Result<(String, Vec<Piece>), TextError> {
    let phonemes = phonemize(text, language)?;
    let words: Vec<&str> = text.split_whitespace().filter(|w| is_word(w)).collect();
    let groups = phonemes.split_whitespace().filter(|g| is_word(g)).count();
    if groups == words.len() {
        let mut words = words.into_iter();
        let pieces = phonemes
            .split_whitespace()
            .map(
                |group| match is_word(group).then(|| words.next()).flatten() {
                    Some(word) => Piece::word(word, group),
                    None => Piece {
                        word: None,
                        phonemes: group.to_string(),
                    },
                },
            )
            .collect();
        return Ok((phonemes, pieces));
    }
    let mut weighted = Vec::with_capacity(words.len());
    for word in words {
        let own = match phonemize(word, language) {
            Ok(p) => p.chars().filter(|c| c.is_alphanumeric()).count(),
            Err(TextError::Empty) => 0,
            Err(e) => return Err(e),
        };
        weighted.push((word.to_string(), own));
    }
    let pieces = words::pieces_of(&phonemes, &words::spread(&phonemes, &weighted));
    Ok((phonemes, pieces))
}

/// Unload the library (the next call loads it again).
pub fn release() {
    ESPEAK.lock().unwrap_or_else(PoisonError::into_inner).take();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls on the real library, when this machine has it.
    #[test]
    fn phonemizes_through_the_library_and_again_after_release() {
        if let Err(why) = availability() {
            eprintln!("skipped: {why}");
            return;
        }
        let first = phonemize("Hola, ¿cómo estás?", Language::Spanish).unwrap();
        assert_eq!(first, "ˈola, ¿kˈomo estˈas?");
        let french = phonemize("Bonjour !", Language::French).unwrap();
        assert_eq!(french, "bɔ̃ʒˈuʁ !");
        release();
        assert_eq!(
            phonemize("Hola, ¿cómo estás?", Language::Spanish).unwrap(),
            first
        );
        // Punctuation alone is kept; nothing at all is an error.
        assert_eq!(phonemize("…", Language::Italian), Ok("…".to_string()));
        assert_eq!(phonemize(" ", Language::Italian), Err(TextError::Empty));
        assert!(matches!(
            phonemize("x", Language::Japanese),
            Err(TextError::Unavailable(_))
        ));
        assert!(has_voice(Language::Hindi).unwrap());
    }
}
