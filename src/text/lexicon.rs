//! Stored pronunciations as G2P applies them: a word (or, in Japanese and
//! Chinese, a surface form) and the Kokoro phonemes it is read as, per language.

use super::Language;

/// One pronunciation: `word` is read as `phonemes` in `language`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pronunciation {
    pub word: String,
    pub phonemes: String,
    pub language: Language,
}

/// The entries of `entries` that may apply to `input`: those whose word occurs in
/// it, ignoring case. What a speech job carries to its engine.
pub fn relevant<'a>(
    entries: impl IntoIterator<Item = &'a Pronunciation>,
    input: &str,
) -> Vec<Pronunciation> {
    let folded = input.to_lowercase();
    entries
        .into_iter()
        .filter(|p| !p.word.is_empty() && folded.contains(&p.word.to_lowercase()))
        .cloned()
        .collect()
}

/// A text cut at the stored words it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Text the G2P reads.
    Text(&'a str),
    /// A stored word, as written in the text, and its phonemes.
    Entry { word: &'a str, phonemes: &'a str },
}

/// Whether `language` writes words without spaces between them, so that a
/// stored word is found wherever its surface form occurs (longest first) rather
/// than as a whole word.
fn unspaced(language: Language) -> bool {
    matches!(language, Language::Japanese | Language::Mandarin)
}

fn same_letter(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
}

/// `text` cut at the words of `entries` in `language`, ignoring case. In spaced
/// languages a word matches whole (not inside a longer word); in Japanese and
/// Chinese the longest stored surface form at each place wins.
pub fn segments<'a>(
    text: &'a str,
    entries: &'a [Pronunciation],
    language: Language,
) -> Vec<Segment<'a>> {
    let mut words: Vec<(Vec<char>, &str)> = entries
        .iter()
        .filter(|p| p.language == language && !p.word.trim().is_empty())
        .map(|p| (p.word.trim().chars().collect(), p.phonemes.as_str()))
        .collect();
    if words.is_empty() {
        return vec![Segment::Text(text)];
    }
    words.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
    let whole = !unspaced(language);
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
    let mut out = Vec::new();
    let mut copied = 0usize;
    let mut i = 0usize;
    while i < chars.len() {
        let starts_word = !whole || i == 0 || !chars[i - 1].1.is_alphanumeric();
        let found = starts_word
            .then(|| {
                words.iter().find(|(word, _)| {
                    let end = i + word.len();
                    end <= chars.len()
                        && word
                            .iter()
                            .zip(&chars[i..end])
                            .all(|(a, (_, b))| same_letter(*a, *b))
                        && (!whole || chars.get(end).is_none_or(|(_, c)| !c.is_alphanumeric()))
                })
            })
            .flatten();
        match found {
            Some((word, phonemes)) => {
                let (from, to) = (byte_at(i), byte_at(i + word.len()));
                if from > copied {
                    out.push(Segment::Text(&text[copied..from]));
                }
                out.push(Segment::Entry {
                    word: &text[from..to],
                    phonemes,
                });
                copied = to;
                i += word.len();
            }
            None => i += 1,
        }
    }
    if copied < text.len() {
        out.push(Segment::Text(&text[copied..]));
    }
    out
}

/// Byte ranges of the inline markup already in `text`: `[text](feature)`, as
/// misaki finds it.
fn inline_links(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0usize;
    while let Some(open) = text[from..].find('[').map(|i| from + i) {
        let link = text[open + 1..].find(']').and_then(|close| {
            let close = open + 1 + close;
            let rest = &text[close + 1..];
            (close > open + 1 && rest.starts_with('('))
                .then(|| rest.find(')').map(|end| close + 1 + end + 1))
                .flatten()
        });
        match link {
            Some(end) => {
                out.push(open..end);
                from = end;
            }
            None => from = open + 1,
        }
    }
    out
}

/// `text` with each stored word of `entries` written as misaki's inline
/// pronunciation, `[word](/phonemes/)`, which the English G2P reads before its
/// dictionaries. Markup the text already has is left as written.
pub fn with_inline_phonemes(text: &str, entries: &[Pronunciation], language: Language) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    for link in inline_links(text) {
        out.push_str(&marked(&text[at..link.start], entries, language));
        out.push_str(&text[link.clone()]);
        at = link.end;
    }
    out.push_str(&marked(&text[at..], entries, language));
    out
}

/// `text` (without markup) with its stored words marked.
fn marked(text: &str, entries: &[Pronunciation], language: Language) -> String {
    segments(text, entries, language)
        .into_iter()
        .map(|segment| match segment {
            Segment::Text(t) => t.to_string(),
            Segment::Entry { word, phonemes } => {
                let phonemes: String = phonemes
                    .chars()
                    .filter(|c| !matches!(c, '/' | '(' | ')' | '[' | ']'))
                    .collect();
                let word: String = word.chars().filter(|c| !matches!(c, '[' | ']')).collect();
                format!("[{word}](/{phonemes}/)")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(word: &str, phonemes: &str, language: Language) -> Pronunciation {
        Pronunciation {
            word: word.into(),
            phonemes: phonemes.into(),
            language,
        }
    }

    #[test]
    fn spaced_languages_match_whole_words_ignoring_case() {
        let entries = [
            entry("kokoro", "kˈOkəɹO", Language::AmericanEnglish),
            entry("koko", "x", Language::AmericanEnglish),
            entry("kokoro", "y", Language::French),
        ];
        let segs = segments(
            "KOKORO's kokoros, Kokoro.",
            &entries,
            Language::AmericanEnglish,
        );
        assert_eq!(
            segs,
            [
                Segment::Entry {
                    word: "KOKORO",
                    phonemes: "kˈOkəɹO"
                },
                Segment::Text("'s kokoros, "),
                Segment::Entry {
                    word: "Kokoro",
                    phonemes: "kˈOkəɹO"
                },
                Segment::Text("."),
            ]
        );
        assert_eq!(
            with_inline_phonemes("I like Kokoro.", &entries, Language::AmericanEnglish),
            "I like [Kokoro](/kˈOkəɹO/)."
        );
        // Markup already there wins.
        assert_eq!(
            with_inline_phonemes(
                "[Kokoro](/kəkˈɔɹO/) and Kokoro, [a] (b)",
                &entries,
                Language::AmericanEnglish
            ),
            "[Kokoro](/kəkˈɔɹO/) and [Kokoro](/kˈOkəɹO/), [a] (b)"
        );
        assert_eq!(
            segments("no match", &entries, Language::AmericanEnglish),
            [Segment::Text("no match")]
        );
    }

    #[test]
    fn japanese_and_chinese_take_the_longest_surface_form() {
        let entries = [
            entry("東京", "toːkjoː", Language::Japanese),
            entry("東京都", "toːkjoːto", Language::Japanese),
        ];
        let segs = segments("東京都と東京に", &entries, Language::Japanese);
        assert_eq!(
            segs,
            [
                Segment::Entry {
                    word: "東京都",
                    phonemes: "toːkjoːto"
                },
                Segment::Text("と"),
                Segment::Entry {
                    word: "東京",
                    phonemes: "toːkjoː"
                },
                Segment::Text("に"),
            ]
        );
    }

    #[test]
    fn only_words_in_the_input_travel() {
        let entries = [
            entry("Kokoro", "k", Language::AmericanEnglish),
            entry("other", "o", Language::AmericanEnglish),
        ];
        let found = relevant(&entries, "say KOKORO");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].word, "Kokoro");
    }
}
