//! misaki 0.9.4's `cutlet.Cutlet.__call__`: text normalisation (wave-dash ranges,
//! small katakana extensions, NFKC, mojimoji, numbers to kana), MeCab's tokens
//! grouped into the words of `ja_words.txt`, and each word's reading to IPA with
//! cutlet's spacing rules.

use std::collections::{HashMap, HashSet};

use unicode_normalization::UnicodeNormalization;

use super::hepburn::{HEPBURN, KATA2HIRA};
use super::mecab::{feature_field, Mecab};
use super::num2kana;
use crate::text::words::Piece;

/// UniDic's feature fields cutlet reads: `pron` and `kana`.
const PRON: usize = 9;
const KANA: usize = 17;
/// MeCab's character categories of unidic-lite's `char.def`.
const SYMBOL: u8 = 3;
const HIRAGANA: u8 = 6;
const KATAKANA: u8 = 7;

const SUTEGANA: &str = "ゃゅょぁぃぅぇぉ";
const ODORI: &str = "〃々ゝゞヽ";

/// One MeCab token, or a group of them, as cutlet sees it.
struct Word {
    surface: String,
    hira: String,
    char_type: u8,
}

/// `jaconv.kata2hira`.
fn kata2hira(text: &str) -> String {
    text.chars()
        .map(|c| {
            if KATA2HIRA.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) {
                char::from_u32(c as u32 - 0x60).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

/// Python's `\d` for the characters that reach it here: ASCII and full-width digits.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || ('０'..='９').contains(&c)
}

/// `Cutlet._normalize_text`.
pub fn normalize(text: &str) -> String {
    // Wave dash before a digit reads as a range: から.
    let chars: Vec<char> = text.chars().collect();
    let mut ranged = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if matches!(c, '〜' | '～') && chars.get(i + 1).is_some_and(|&n| is_digit(n)) {
            ranged.push_str("から");
        } else {
            ranged.push(match c {
                // Katakana phonetic extensions (small ㇰ...ㇿ) as full-size katakana.
                '\u{31f0}'..='\u{31ff}' => "クシストヌハヒフヘホムラリルレロ"
                    .chars()
                    .nth(c as usize - 0x31f0)
                    .unwrap_or(c),
                c => c,
            });
        }
    }
    // NFKC, then mojimoji's zen_to_han (the only full-width characters NFKC
    // leaves are these quotes; han_to_zen has nothing left to do).
    let normal: String = ranged
        .nfkc()
        .map(|c| match c {
            '‘' => '`',
            '’' => '\'',
            '”' => '"',
            c => c,
        })
        .collect();
    // Runs of digits as hiragana numbers, each after a space.
    let mut out = String::with_capacity(normal.len() * 2);
    let mut digits = String::new();
    for c in normal.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            out.push(' ');
            out.push_str(&num2kana::convert(&digits));
            digits.clear();
        }
        out.push(c);
    }
    if !digits.is_empty() {
        out.push(' ');
        out.push_str(&num2kana::convert(&digits));
    }
    out
}

/// Python's `a in b` for strings: `a` is a substring of `b` (the empty string is).
fn within(a: &str, b: &str) -> bool {
    b.contains(a)
}

/// Python's `str.isspace` for the final whitespace clean-up.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

pub struct Cutlet {
    mecab: Mecab,
    words: HashSet<Box<str>>,
    /// Longest entry of `words`, in bytes.
    longest_word: usize,
    table: HashMap<&'static str, &'static str>,
}

impl Cutlet {
    /// A cutlet over `mecab` and the lines of `ja_words.txt`.
    pub fn new(mecab: Mecab, word_list: &str) -> Self {
        let words: HashSet<Box<str>> = word_list
            .lines()
            .map(|line| line.trim_matches(is_space).into())
            .collect();
        let longest_word = words.iter().map(|w| w.len()).max().unwrap_or(0);
        Self {
            mecab,
            words,
            longest_word,
            table: HEPBURN.iter().copied().collect(),
        }
    }

    fn get(&self, c: char) -> Option<&'static str> {
        self.table.get(c.encode_utf8(&mut [0; 4]) as &str).copied()
    }

    fn get_pair(&self, a: char, b: char) -> Option<&'static str> {
        let mut buf = [0; 8];
        let la = a.encode_utf8(&mut buf).len();
        let lb = b.encode_utf8(&mut buf[la..]).len();
        let key = std::str::from_utf8(&buf[..la + lb]).ok()?;
        self.table.get(key).copied()
    }

    /// MeCab's tokens of `text`.
    pub fn tokenize(&self, text: &str) -> Vec<super::Token> {
        self.mecab
            .parse(text)
            .into_iter()
            .map(|m| super::Token {
                surface: m.surface.to_string(),
                pron: feature_field(m.feature, PRON),
                kana: feature_field(m.feature, KANA),
                char_type: m.char_type,
                is_unknown: m.is_unknown,
            })
            .collect()
    }

    /// The phonemes of `text`: `Cutlet.__call__`.
    pub fn phonemize(&self, text: &str) -> String {
        self.read(text).0
    }

    /// [`Cutlet::phonemize`], and each word's phonemes (a word is one of MeCab's
    /// tokens, or a group of them listed in `ja_words.txt`).
    pub fn read(&self, text: &str) -> (String, Vec<Piece>) {
        if text.is_empty() {
            return (String::new(), Vec::new());
        }
        let text = normalize(text);
        let words: Vec<Word> = self
            .mecab
            .parse(&text)
            .into_iter()
            .map(|m| {
                let reading = [PRON, KANA]
                    .iter()
                    .filter_map(|&i| feature_field(m.feature, i))
                    .find(|f| !f.is_empty())
                    .unwrap_or_else(|| m.surface.to_string());
                Word {
                    surface: m.surface.to_string(),
                    hira: kata2hira(&reading),
                    char_type: if m.char_type == KATAKANA || !m.is_unknown {
                        HIRAGANA
                    } else {
                        m.char_type
                    },
                }
            })
            .collect();
        let grouped = self.group(words);
        let surfaces: Vec<String> = grouped.iter().map(|w| w.surface.clone()).collect();
        let mut out = String::new();
        let mut pieces = Vec::with_capacity(surfaces.len());
        for ((roma, space), surface) in self.romaji_tokens(grouped).into_iter().zip(surfaces) {
            out.push_str(&roma);
            if space {
                out.push(' ');
            }
            pieces.push(Piece::word(surface, roma));
        }
        let collapsed = out
            .trim_matches(is_space)
            .split(is_space)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .replace('(', "«")
            .replace(')', "»");
        (drop_spaces_around_glottal_stops(&collapsed), pieces)
    }

    /// Words of `ja_words.txt` made of several tokens of one kind, joined.
    fn group(&self, words: Vec<Word>) -> Vec<Word> {
        let mut groups = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let kind = words[i].char_type;
            let z = (i + 1..words.len())
                .find(|&z| words[z].char_type != kind)
                .unwrap_or(words.len());
            // Candidates longer than the longest listed word cannot be listed.
            let mut joined = String::new();
            let mut ends = Vec::new();
            for w in &words[i..z] {
                if joined.len() > self.longest_word {
                    break;
                }
                joined.push_str(&w.surface);
                ends.push(joined.len());
            }
            let count = (1..=ends.len())
                .rev()
                .find(|&k| self.words.contains(&joined[..ends[k - 1]]))
                .unwrap_or(1);
            let j = i + count;
            groups.push(Word {
                surface: joined[..ends[count - 1]].to_string(),
                hira: words[i..j].iter().map(|w| w.hira.as_str()).collect(),
                char_type: kind,
            });
            i = j;
        }
        groups
    }

    /// `_romaji_tokens` after grouping: each word's romaji and whether a space follows.
    fn romaji_tokens(&self, words: Vec<Word>) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::with_capacity(words.len());
        for word in &words {
            let roma = self.romaji_word(word);
            let surface = word.surface.as_str();
            let space = if within(surface, "「『«") || within(&roma, "([") {
                if let Some(prev) = out.last_mut() {
                    prev.1 = true;
                }
                false
            } else if within(surface, "」』»") || within(&roma, "]).,?!:") {
                if let Some(prev) = out.last_mut() {
                    prev.1 = false;
                }
                true
            } else {
                roma != " "
            };
            out.push((roma, space));
        }
        for token in &mut out {
            token.0 = token.0.replace('っ', "");
        }
        out
    }

    /// `_romaji_word`.
    fn romaji_word(&self, word: &Word) -> String {
        let surface = word.surface.as_str();
        if surface.is_ascii() {
            return surface.to_string();
        }
        if word.char_type == SYMBOL {
            return surface
                .chars()
                .map(|c| self.get(c).map_or_else(|| c.to_string(), str::to_string))
                .collect();
        }
        if word.char_type != HIRAGANA {
            return String::new();
        }
        let hira: Vec<char> = word.hira.chars().collect();
        let mut out = String::new();
        for (i, &kana) in hira.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| hira[p]);
            let next = hira.get(i + 1).copied();
            out.push_str(&self.single_mapping(prev, kana, next));
        }
        out
    }

    /// `_get_single_mapping`: one kana's phonemes given its neighbours.
    fn single_mapping(&self, prev: Option<char>, kana: char, next: Option<char>) -> String {
        if ODORI.contains(kana) {
            return match kana {
                'ゝ' | 'ヽ' => prev.map(String::from).unwrap_or_default(),
                'ゞ' | 'ヾ' => prev
                    .and_then(add_dakuten)
                    .and_then(|v| self.get(v))
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            };
        }
        if let Some(p) = prev.and_then(|p| self.get_pair(p, kana)) {
            return p.to_string();
        }
        if next.is_some_and(|n| self.get_pair(kana, n).is_some()) {
            return String::new();
        }
        if let Some(n) = next.filter(|&n| SUTEGANA.contains(n)) {
            if kana == 'っ' {
                return String::new();
            }
            let mut own: Vec<char> = self.get(kana).unwrap_or("").chars().collect();
            own.pop();
            let mut out: String = own.into_iter().collect();
            out.push_str(self.get(n).unwrap_or(""));
            return out;
        }
        if SUTEGANA.contains(kana) {
            return String::new();
        }
        match kana {
            'ー' => "ː".into(),
            'っ' => "ʔ".into(),
            'ん' => {
                let next = next.and_then(|n| self.get(n)).unwrap_or("");
                let first = next.chars().next();
                match first {
                    Some('m' | 'p' | 'b') => "m",
                    Some('k' | 'ɡ') => "ŋ",
                    Some('ɲ' | 'ʨ' | 'ʥ') => "ɲ",
                    Some('n' | 't' | 'd' | 'ɾ' | 'z') => "n",
                    _ => "ɴ",
                }
                .into()
            }
            _ => self.get(kana).unwrap_or("").to_string(),
        }
    }
}

/// `add_dakuten`.
fn add_dakuten(kana: char) -> Option<char> {
    let plain = "かきくけこさしすせそたちつてとはひふへほ";
    let voiced = "がぎぐげござじずぜぞだぢづでどばびぶべぼ";
    let i = plain.chars().position(|c| c == kana)?;
    voiced.chars().nth(i)
}

/// `re.sub(r'(?<![!",.:;?»—…”]) (?=ʔ)|(?<=ʔ) (?!["«“])', '', ps)`.
fn drop_spaces_around_glottal_stops(ps: &str) -> String {
    let chars: Vec<char> = ps.chars().collect();
    let mut out = String::with_capacity(ps.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let before_stop =
                next == Some('ʔ') && !prev.is_some_and(|p| "!\",.:;?»—…”".contains(p));
            let after_stop = prev == Some('ʔ') && !next.is_some_and(|n| "\"«“".contains(n));
            if before_stop || after_stop {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_as_misaki() {
        assert_eq!(normalize("１２０００円"), " いちまんにせん円");
        assert_eq!(normalize("10〜20人"), " じゅうから にじゅう人");
        assert_eq!(normalize("ｶﾀｶﾅ ＡＢＣ"), "カタカナ ABC");
        assert_eq!(normalize("ㇰㇱ"), "クシ");
        assert_eq!(normalize("3.14"), " さん. じゅうよん");
    }

    #[test]
    fn katakana_to_hiragana() {
        assert_eq!(kata2hira("パンヤ・ヴヷー"), "ぱんや・ゔヷー");
    }

    #[test]
    fn glottal_stop_spacing() {
        assert_eq!(drop_spaces_around_glottal_stops("a ʔ b"), "aʔb");
        assert_eq!(drop_spaces_around_glottal_stops("a. ʔb"), "a. ʔb");
        assert_eq!(drop_spaces_around_glottal_stops("ʔ «x"), "ʔ «x");
    }
}
