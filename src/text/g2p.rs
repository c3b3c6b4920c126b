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
use super::lexicon::{self, Pronunciation};
use super::words::{self, Piece, Spoken};
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
    read(text, language, &[], false).map(|spoken| spoken.phonemes)
}

/// Phonemes of `text` in `language`, whitespace collapsed, with the stored
/// pronunciations of `lexicon` read before the G2P's own dictionaries; with
/// `words`, also where each word's phonemes lie.
pub fn read(
    text: &str,
    language: Language,
    lexicon: &[Pronunciation],
    words: bool,
) -> Result<Spoken, TextError> {
    let (phonemes, pieces) = match language {
        Language::AmericanEnglish | Language::BritishEnglish => {
            let marked;
            let text = if lexicon.iter().any(|p| p.language == language) {
                marked = lexicon::with_inline_phonemes(text, lexicon, language);
                marked.as_str()
            } else {
                text
            };
            let (phonemes, tokens) =
                english_g2p(&english(language == Language::BritishEnglish), text);
            let pieces = if words {
                english_pieces(tokens)
            } else {
                Vec::new()
            };
            (phonemes, pieces)
        }
        other => read_segments(text, other, lexicon, words)?,
    };
    let phonemes = phonemes.split_whitespace().collect::<Vec<_>>().join(" ");
    if phonemes.is_empty() {
        return Err(TextError::Empty);
    }
    let words = words::locate(&phonemes, &pieces);
    Ok(Spoken { phonemes, words })
}

/// misaki's phonemes and tokens of `text`, with every inline pronunciation
/// (`[word](/phonemes/)`) kept: the words inside one take its phonemes (the first
/// token) or none (the others), as misaki reads them, even where a later pass over
/// dictionary words in context would look the word up again.
fn english_g2p(g2p: &G2P, text: &str) -> (String, Vec<misaki_rs::MToken>) {
    use misaki_rs::g2p::LinkFeature;
    let Ok((phonemes, mut tokens)) = g2p.g2p(text) else {
        return Default::default();
    };
    if !text.contains("](") {
        return (phonemes, tokens);
    }
    let (stripped, markers) = g2p.preprocess_links(text);
    let inline: Vec<_> = markers
        .iter()
        .filter_map(|m| match &m.feature {
            LinkFeature::Phonemes(p) => Some((m.byte_start..m.byte_end, p)),
            _ => None,
        })
        .collect();
    if inline.is_empty() {
        return (phonemes, tokens);
    }
    // Tokens follow the text in order: find each one's bytes.
    let mut pos = 0usize;
    let mut started = vec![false; inline.len()];
    for token in &mut tokens {
        let Some(at) = stripped[pos..].find(&token.text).map(|i| pos + i) else {
            continue;
        };
        let span = at..at + token.text.len();
        pos = span.end;
        if let Some(k) = inline
            .iter()
            .position(|(r, _)| r.start <= span.start && span.end <= r.end && !span.is_empty())
        {
            token.phonemes = Some(if started[k] {
                String::new()
            } else {
                inline[k].1.clone()
            });
            started[k] = true;
        }
    }
    let phonemes = tokens
        .iter()
        .map(|t| t.phonemes.clone().unwrap_or_default() + &t.whitespace)
        .collect();
    (phonemes, tokens)
}

/// misaki's tokens as pieces: a word whose phonemes came inline for several
/// tokens (`[New York](/…/)`) is its first token with the others' text added.
fn english_pieces(tokens: Vec<misaki_rs::MToken>) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = Vec::with_capacity(2 * tokens.len());
    let mut space = String::new();
    for token in tokens {
        let phonemes = token.phonemes.unwrap_or_default();
        let last_word = pieces.iter_mut().rev().find(|p| p.word.is_some());
        match last_word {
            Some(last) if phonemes.is_empty() && words::is_word(&token.text) => {
                if let Some(word) = last.word.as_mut() {
                    word.push_str(&space);
                    word.push_str(&token.text);
                }
            }
            _ => pieces.push(Piece::word(token.text, phonemes)),
        }
        pieces.push(Piece {
            word: None,
            phonemes: token.whitespace.clone(),
        });
        space = token.whitespace;
    }
    pieces
}

/// A language other than English: the text cut at its stored words, each
/// stretch read by the language's backend.
fn read_segments(
    text: &str,
    language: Language,
    lexicon: &[Pronunciation],
    words: bool,
) -> Result<(String, Vec<Piece>), TextError> {
    let mut strings = Vec::new();
    let mut pieces = Vec::new();
    let segments = lexicon::segments(text, lexicon, language);
    let several = segments.len() > 1;
    for segment in segments {
        match segment {
            lexicon::Segment::Text(t) => {
                let read = match read_backend(t, language, words) {
                    // A stretch between stored words may be punctuation alone.
                    Err(TextError::Empty) if several => continue,
                    read => read?,
                };
                strings.push(read.0);
                pieces.extend(read.1);
            }
            lexicon::Segment::Entry { word, phonemes } => {
                strings.push(phonemes.to_string());
                pieces.push(Piece::word(word, phonemes));
            }
        }
    }
    Ok((strings.join(" "), pieces))
}

/// One backend's phonemes of `text`, and with `words` its pieces.
fn read_backend(
    text: &str,
    language: Language,
    words: bool,
) -> Result<(String, Vec<Piece>), TextError> {
    // Each backend says what it lacks when it loads: no check of files per call.
    let read = match (language, words) {
        (Language::Japanese, true) => japanese::read_words(text),
        (Language::Japanese, false) => japanese::phonemize(text).map(|p| (p, Vec::new())),
        (Language::Mandarin, true) => mandarin::read_words(text),
        (Language::Mandarin, false) => mandarin::phonemize(text).map(|p| (p, Vec::new())),
        (other, true) => espeak::read_words(text, other),
        (other, false) => espeak::phonemize(text, other).map(|p| (p, Vec::new())),
    };
    read.map_err(|e| match e {
        TextError::Unavailable(why) => TextError::Unavailable(unavailable(language, &why)),
        e => e,
    })
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
    let chars: Vec<char> = phonemes.chars().collect();
    split_phonemes_ranges(phonemes, max)
        .into_iter()
        .map(|r| chars[r].iter().collect())
        .collect()
}

/// [`split_phonemes_at`] as char ranges of `phonemes`.
pub fn split_phonemes_ranges(phonemes: &str, max: usize) -> Vec<std::ops::Range<usize>> {
    let max = max.max(1);
    let chars: Vec<char> = phonemes.chars().collect();
    let skip_space = |mut i: usize| {
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        i
    };
    let trim_end = |mut i: usize, from: usize| {
        while i > from && chars[i - 1].is_whitespace() {
            i -= 1;
        }
        i
    };
    let end = trim_end(chars.len(), 0);
    let mut out = Vec::new();
    let mut start = skip_space(0);
    while end.saturating_sub(start) > max {
        let limit = start + max;
        let last = |pred: &dyn Fn(char) -> bool| (start + 1..limit).rev().find(|&i| pred(chars[i]));
        let cut = last(&|c| CLAUSE_MARKS.contains(&c))
            .map(|i| i + 1)
            .or_else(|| last(&|c| c == ' '))
            .unwrap_or(limit);
        out.push(start..trim_end(cut, start));
        start = skip_space(cut);
    }
    if start < end {
        out.push(start..end);
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

    fn slice(s: &str, r: &std::ops::Range<usize>) -> String {
        s.chars().skip(r.start).take(r.end - r.start).collect()
    }

    #[test]
    fn english_words_and_stored_pronunciations() {
        let spoken = read(
            "They record a record, every week.",
            Language::AmericanEnglish,
            &[],
            true,
        )
        .unwrap();
        assert_eq!(spoken.phonemes, "ðˌA ɹəkˈɔɹd ɐ ɹˈɛkəɹd, ˈɛvəɹi wˈik.");
        let texts: Vec<&str> = spoken.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["They", "record", "a", "record", "every", "week"]);
        assert_eq!(
            slice(&spoken.phonemes, &spoken.words[3].phonemes),
            "ɹˈɛkəɹd"
        );
        assert_eq!(slice(&spoken.phonemes, &spoken.words[5].phonemes), "wˈik");
        let lexicon = [Pronunciation {
            word: "kokoro".into(),
            phonemes: "kˈOkəɹO".into(),
            language: Language::AmericanEnglish,
        }];
        let with = read("Kokoro speaks.", Language::AmericanEnglish, &lexicon, true).unwrap();
        assert!(with.phonemes.starts_with("kˈOkəɹO "), "{}", with.phonemes);
        assert_eq!(with.words[0].text, "Kokoro");
        assert_eq!(slice(&with.phonemes, &with.words[0].phonemes), "kˈOkəɹO");
        // A dictionary word takes the stored pronunciation too, inline or stored.
        let inline = read(
            "A [tomato](/təmˈɑːtO/), tomato.",
            Language::AmericanEnglish,
            &[],
            false,
        )
        .unwrap();
        assert!(inline.phonemes.contains("təmˈɑːtO,"), "{}", inline.phonemes);
        // An entry of another language changes nothing.
        let british = read("Kokoro speaks.", Language::BritishEnglish, &lexicon, false).unwrap();
        assert!(!british.phonemes.starts_with("kˈOkəɹO"));
        // Phrases: the words after the first join it.
        let phrase = [Pronunciation {
            word: "New York".into(),
            phonemes: "nuː jˈɔɹk".into(),
            language: Language::AmericanEnglish,
        }];
        let ny = read("I love New York.", Language::AmericanEnglish, &phrase, true).unwrap();
        let texts: Vec<&str> = ny.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["I", "love", "New York"], "{}", ny.phonemes);
    }

    #[test]
    fn phonemes_split_into_ranges() {
        let text = "  ab cd, ef gh ";
        let ranges = split_phonemes_ranges(text, 6);
        let pieces: Vec<String> = ranges.iter().map(|r| slice(text, r)).collect();
        assert_eq!(pieces, ["ab cd,", "ef gh"]);
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
