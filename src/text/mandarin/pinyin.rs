//! pypinyin 0.55.0's `lazy_pinyin(word, style=Style.TONE3,
//! neutral_tone_with_five=True)` as misaki's legacy Mandarin path calls it on
//! each jieba word: the word is cut by pypinyin's forward maximum matching over
//! its phrase dictionary (`seg/mmseg.py`, `no_non_phrases=True`), a phrase takes
//! the first reading of each of its characters from `phrases_dict.json`, any
//! other character the first reading of `pinyin_dict.json`; each reading is then
//! put in `TONE3` style (tone number at the end, `5` for the neutral tone) and
//! turned into IPA once, when the tables are built.

use std::collections::HashMap;

use super::data::{char_readings, phrase_readings};
use super::ipa::syllable_ipa;

/// pypinyin's tables, each reading already in IPA.
pub struct Pinyin {
    /// Character → its first reading (an index into `ipa`).
    chars: HashMap<char, u16>,
    /// Phrase → the first reading of each character, sorted by phrase so that a
    /// binary search answers both "is a phrase" and "starts a phrase".
    phrases: Vec<(Box<str>, Box<[u16]>)>,
    /// IPA of each distinct reading; empty where misaki cannot transcribe it.
    ipa: Vec<String>,
}

/// pypinyin's `phonetic_symbol` table: a tone-marked letter → letter and tone.
fn tone_number(c: char) -> Option<&'static str> {
    Some(match c {
        'ā' => "a1",
        'á' => "a2",
        'ǎ' => "a3",
        'à' => "a4",
        'ē' => "e1",
        'é' => "e2",
        'ě' => "e3",
        'è' => "e4",
        'ō' => "o1",
        'ó' => "o2",
        'ǒ' => "o3",
        'ò' => "o4",
        'ī' => "i1",
        'í' => "i2",
        'ǐ' => "i3",
        'ì' => "i4",
        'ū' => "u1",
        'ú' => "u2",
        'ǔ' => "u3",
        'ù' => "u4",
        'ü' => "v",
        'ǖ' => "v1",
        'ǘ' => "v2",
        'ǚ' => "v3",
        'ǜ' => "v4",
        'ń' => "n2",
        'ň' => "n3",
        'ǹ' => "n4",
        'ḿ' => "m2",
        'ế' => "ê2",
        'ề' => "ê4",
        _ => return None,
    })
}

/// A tone-marked reading (`zhōng`) in pypinyin's `TONE3` style with
/// `neutral_tone_with_five` (`zhong1`; `le` → `le5`).
pub fn tone3(reading: &str) -> String {
    // TONE2: tone marks become digits right after their vowel.
    let mut tone2 = String::with_capacity(reading.len() + 1);
    for c in reading.chars() {
        match tone_number(c) {
            Some(s) => tone2.push_str(s),
            None => tone2.push(c),
        }
    }
    for (marked, number) in [
        ("m\u{304}", "m1"),
        ("m\u{300}", "m4"),
        ("ê\u{304}", "ê1"),
        ("ê\u{30c}", "ê3"),
    ] {
        tone2 = tone2.replace(marked, number);
    }
    // `^([a-zêü]+)([1-5])([a-zêü]*)$` → `\1\3\2`.
    let letter = |c: char| c.is_ascii_lowercase() || c == 'ê' || c == 'ü';
    let digits: Vec<(usize, char)> = tone2.char_indices().filter(|(_, c)| !letter(*c)).collect();
    let mut tone3 = match digits.as_slice() {
        [(at, d @ '1'..='5')] if *at > 0 => {
            let (head, tail) = (&tone2[..*at], &tone2[at + 1..]);
            format!("{head}{tail}{d}")
        }
        _ => tone2,
    };
    // Neutral tone: a 5 where no tone number is.
    if !tone3.is_empty() && !tone3.chars().any(char::is_numeric) {
        tone3.push('5');
    }
    tone3
}

/// Interns readings, transcribing each distinct one once.
#[derive(Default)]
struct Syllables {
    ids: HashMap<String, u16>,
    ipa: Vec<String>,
}

impl Syllables {
    fn id(&mut self, reading: &str) -> Result<u16, String> {
        if let Some(&id) = self.ids.get(reading) {
            return Ok(id);
        }
        let id = u16::try_from(self.ipa.len()).map_err(|_| "too many pinyin readings")?;
        self.ipa
            .push(syllable_ipa(&tone3(reading)).unwrap_or_default());
        self.ids.insert(reading.to_string(), id);
        Ok(id)
    }
}

impl Pinyin {
    /// Build the tables from the text of `pinyin_dict.json` and
    /// `phrases_dict.json`.
    pub fn from_json(pinyin_dict: &str, phrases_dict: &str) -> Result<Self, String> {
        let mut syllables = Syllables::default();
        let chars = char_readings(pinyin_dict)?;
        let mut char_table = HashMap::with_capacity(chars.len());
        for (c, first) in chars {
            char_table.insert(c, syllables.id(&first)?);
        }
        let phrases = phrase_readings(phrases_dict)?;
        let mut phrase_table = Vec::with_capacity(phrases.len());
        for (phrase, readings) in phrases {
            let ids = readings
                .iter()
                .map(|r| syllables.id(r))
                .collect::<Result<Vec<u16>, String>>()?;
            phrase_table.push((Box::<str>::from(&*phrase), ids.into_boxed_slice()));
        }
        phrase_table.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Pinyin {
            chars: char_table,
            phrases: phrase_table,
            ipa: syllables.ipa,
        })
    }

    /// Where `key` is or would be in the sorted phrases.
    fn position(&self, key: &str) -> usize {
        self.phrases.partition_point(|(p, _)| &**p < key)
    }

    fn phrase(&self, word: &str) -> Option<&[u16]> {
        self.phrases
            .get(self.position(word))
            .filter(|(p, _)| &**p == word)
            .map(|(_, ids)| &**ids)
    }

    /// Whether some phrase starts with `prefix`.
    fn starts_phrase(&self, prefix: &str) -> bool {
        self.phrases
            .get(self.position(prefix))
            .is_some_and(|(p, _)| p.starts_with(prefix))
    }

    /// pypinyin's `mmseg.seg.cut`: forward maximum matching over the phrases,
    /// where only whole phrases count (`no_non_phrases=True`).
    pub fn segment<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut remain = text;
        while !remain.is_empty() {
            let mut last_valid = 0;
            let mut all_prefixes = true;
            for end in remain.char_indices().map(|(i, c)| i + c.len_utf8()) {
                let word = &remain[..end];
                if !self.starts_phrase(word) {
                    all_prefixes = false;
                    break;
                }
                if self.phrase(word).is_some() {
                    last_valid = end;
                }
            }
            if last_valid > 0 {
                out.push(&remain[..last_valid]);
                remain = &remain[last_valid..];
            } else if all_prefixes {
                // The rest only starts phrases: one character at a time.
                out.extend(
                    remain
                        .char_indices()
                        .map(|(i, c)| &remain[i..i + c.len_utf8()]),
                );
                break;
            } else {
                let first = remain.chars().next().map_or(0, char::len_utf8);
                out.push(&remain[..first]);
                remain = &remain[first..];
            }
        }
        out
    }

    /// Append the IPA of `word` (one jieba word of Han characters), syllable
    /// after syllable. A character without a reading adds nothing (misaki
    /// raises on it).
    pub fn word_ipa(&self, word: &str, out: &mut String) {
        for part in self.segment(word) {
            if let Some(ids) = self.phrase(part) {
                for &id in ids {
                    out.push_str(&self.ipa[usize::from(id)]);
                }
            } else {
                for c in part.chars() {
                    if let Some(&id) = self.chars.get(&c) {
                        out.push_str(&self.ipa[usize::from(id)]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{tone3, Pinyin};

    #[test]
    fn readings_in_tone3_style() {
        assert_eq!(tone3("zhōng"), "zhong1");
        assert_eq!(tone3("lǜ"), "lv4");
        assert_eq!(tone3("lüè"), "lve4");
        assert_eq!(tone3("le"), "le5");
        assert_eq!(tone3("ḿ"), "m2");
        assert_eq!(tone3("ê̄"), "ê1");
        assert_eq!(tone3(""), "");
    }

    fn tables() -> Pinyin {
        let chars = r#"{"38134": "yín", "34892": "xíng,háng", "38271": "cháng,zhǎng",
            "22823": "dà,dài", "20102": "le,liǎo", "35299": "jiě"}"#;
        let phrases = r#"{"银行": [["yín"], ["háng"]], "行长": [["háng"], ["zhǎng"]],
            "长大": [["zhǎng"], ["dà"]], "了解": [["liǎo"], ["jiě"]],
            "银行行长室": [["yín"], ["háng"], ["háng"], ["zhǎng"], ["shì"]]}"#;
        Pinyin::from_json(chars, phrases).unwrap()
    }

    #[test]
    fn longest_phrase_first() {
        let p = tables();
        assert_eq!(p.segment("银行行长"), ["银行", "行长"]);
        assert_eq!(p.segment("长大了"), ["长大", "了"]);
        assert_eq!(p.segment("了解"), ["了解"]);
        // What only starts a phrase goes one character at a time.
        assert_eq!(p.segment("银"), ["银"]);
        assert_eq!(p.segment("行长大"), ["行长", "大"]);
    }

    #[test]
    fn phrase_readings_before_single_ones() {
        let p = tables();
        let mut out = String::new();
        p.word_ipa("银行行长", &mut out);
        assert_eq!(out, "i↗nxa↗ŋxa↗ŋꭧa↓ŋ");
        out.clear();
        p.word_ipa("行了", &mut out);
        assert_eq!(out, "ɕi↗ŋlɤ");
        // A character without a reading adds nothing.
        out.clear();
        p.word_ipa("兙解", &mut out);
        assert_eq!(out, "ʨje↓");
    }
}
