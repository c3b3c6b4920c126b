//! Which phonemes came from which word: how word timestamps find their words in
//! a phoneme string.
//!
//! Every G2P backend knows the phonemes of each word it read before it joins them
//! and tidies the spaces. [`locate`] maps those pieces onto the final string: the
//! tidying only removes or adds spaces, so the final string's other symbols are
//! the pieces' symbols in order. Where a backend rewrites across words (espeak-ng
//! reads a number as two words, joins a clitic to its host), [`spread`] shares the
//! phonemes out in proportion to each word's own phonemes.

use std::ops::Range;

/// A word of the text and where its phonemes lie in the phoneme string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpokenWord {
    /// The word as written (after the G2P's normalisation: numbers read out in
    /// Japanese and Chinese).
    pub text: String,
    /// Char indices into the phoneme string.
    pub phonemes: Range<usize>,
}

/// A text's phonemes and its words.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spoken {
    pub phonemes: String,
    pub words: Vec<SpokenWord>,
}

/// One piece of a backend's output: its phonemes, and the word they read (`None`
/// for punctuation and spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub word: Option<String>,
    pub phonemes: String,
}

impl Piece {
    pub fn word(word: impl Into<String>, phonemes: impl Into<String>) -> Self {
        let word = word.into();
        Self {
            word: is_word(&word).then_some(word),
            phonemes: phonemes.into(),
        }
    }
}

/// Whether `text` is a word (it has a letter or a digit) rather than punctuation.
pub fn is_word(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// Place `pieces`, whose symbols other than white space are those of `phonemes`
/// in order, on `phonemes`. Words with no phonemes are left out.
pub fn locate(phonemes: &str, pieces: &[Piece]) -> Vec<SpokenWord> {
    // The owner of each non-space symbol, in order.
    let mut owners: Vec<Option<usize>> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let owner = piece.word.as_ref().map(|_| i);
        owners.extend(
            piece
                .phonemes
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(|_| owner),
        );
    }
    let mut ranges: Vec<Option<Range<usize>>> = vec![None; pieces.len()];
    let mut next = owners.into_iter();
    for (at, c) in phonemes.chars().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        let Some(owner) = next.next() else { break };
        if let Some(i) = owner {
            let range = ranges[i].get_or_insert(at..at);
            range.end = at + 1;
        }
    }
    pieces
        .iter()
        .zip(ranges)
        .filter_map(|(piece, range)| {
            Some(SpokenWord {
                text: piece.word.clone()?,
                phonemes: range?,
            })
        })
        .collect()
}

/// Share the phonemes of `phonemes` out among `words`, each weighted by the
/// length of its own phonemes, when a backend's output cannot be traced word by
/// word. Spaces and punctuation marks are nobody's; a word's share ends at a space
/// where one is near.
pub fn spread(phonemes: &str, words: &[(String, usize)]) -> Vec<SpokenWord> {
    let symbols: Vec<usize> = phonemes
        .chars()
        .enumerate()
        .filter(|(_, c)| c.is_alphanumeric() || is_modifier(*c))
        .map(|(i, _)| i)
        .collect();
    let total: usize = words.iter().map(|(_, n)| n).sum();
    if symbols.is_empty() || total == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(words.len());
    let mut before = 0usize;
    for (text, weight) in words {
        let from = before * symbols.len() / total;
        before += weight;
        let to = (before * symbols.len() / total).max(from + 1);
        if *weight == 0 || from >= symbols.len() {
            continue;
        }
        let to = to.min(symbols.len());
        out.push(SpokenWord {
            text: text.clone(),
            phonemes: symbols[from]..symbols[to - 1] + 1,
        });
    }
    out
}

/// Pieces that trace `phonemes` with `words` placed on it (sorted, apart).
pub fn pieces_of(phonemes: &str, words: &[SpokenWord]) -> Vec<Piece> {
    let chars: Vec<char> = phonemes.chars().collect();
    let mut out = Vec::with_capacity(2 * words.len() + 1);
    let mut at = 0usize;
    for word in words {
        let range = word.phonemes.start.max(at)..word.phonemes.end.min(chars.len());
        if range.start >= range.end {
            continue;
        }
        out.push(Piece {
            word: None,
            phonemes: chars[at..range.start].iter().collect(),
        });
        out.push(Piece {
            word: Some(word.text.clone()),
            phonemes: chars[range.clone()].iter().collect(),
        });
        at = range.end;
    }
    out.push(Piece {
        word: None,
        phonemes: chars[at.min(chars.len())..].iter().collect(),
    });
    out
}

/// Stress and length marks, which belong to the word they stand in.
fn is_modifier(c: char) -> bool {
    matches!(c, 'ˈ' | 'ˌ' | 'ː' | 'ˑ') || ('\u{0300}'..='\u{036F}').contains(&c)
}

/// Words of `phonemes` itself (phoneme input): each run between spaces that has
/// a letter.
pub fn phoneme_words(phonemes: &str) -> Vec<SpokenWord> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let chars: Vec<char> = phonemes.chars().collect();
    for i in 0..=chars.len() {
        let space = chars.get(i).is_none_or(|c| c.is_whitespace());
        match (space, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                let text: String = chars[s..i].iter().collect();
                if text.chars().any(|c| c.is_alphabetic()) {
                    out.push(SpokenWord {
                        text,
                        phonemes: s..i,
                    });
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(s: &str, r: &Range<usize>) -> String {
        s.chars().skip(r.start).take(r.end - r.start).collect()
    }

    #[test]
    fn pieces_are_found_after_spaces_change() {
        let pieces = vec![
            Piece::word("Hello", "həlˈO"),
            Piece::word(",", ","),
            Piece::word("big", " bˈɪɡ "),
            Piece::word("world", "wˈɜɹld"),
            Piece::word("!", "!"),
        ];
        let final_ = "həlˈO, bˈɪɡ wˈɜɹld!";
        let words = locate(final_, &pieces);
        let texts: Vec<_> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["Hello", "big", "world"]);
        assert_eq!(slice(final_, &words[0].phonemes), "həlˈO");
        assert_eq!(slice(final_, &words[1].phonemes), "bˈɪɡ");
        assert_eq!(slice(final_, &words[2].phonemes), "wˈɜɹld");
        // Spaces dropped between words (Japanese glottal stops) change nothing.
        let joined = locate("ab cd", &[Piece::word("x", "a b"), Piece::word("y", "cd")]);
        assert_eq!(joined[0].phonemes, 0..2);
        assert_eq!(joined[1].phonemes, 3..5);
    }

    #[test]
    fn spread_shares_by_weight_and_skips_punctuation() {
        let ps = "twˈɛnti fˈIv, dˈɔɡz.";
        let words = spread(ps, &[("25".into(), 10), ("dogs".into(), 4)]);
        assert_eq!(words.len(), 2);
        assert_eq!(slice(ps, &words[0].phonemes), "twˈɛnti fˈIv");
        assert!(slice(ps, &words[1].phonemes).starts_with('d'));
        assert!(words[0].phonemes.end <= words[1].phonemes.start);
        assert!(spread("", &[("a".into(), 1)]).is_empty());
    }

    #[test]
    fn phoneme_input_words_are_its_runs() {
        let words = phoneme_words("həlˈO , wˈɜɹld!");
        assert_eq!(words.len(), 2);
        assert_eq!(words[1].text, "wˈɜɹld!");
        assert_eq!(words[1].phonemes, 8..15);
    }
}
