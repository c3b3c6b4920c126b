//! Mandarin G2P for Kokoro-82M v1.0 (language `z`), the same phonemes as the
//! reference: kokoro 0.9.4's `KPipeline('z')` runs `misaki.zh.ZHG2P(version=None)`
//! (misaki 0.9.4, Apache-2.0), its legacy path:
//!
//! 1. cn2an's `transform(text, "an2cn")` (MIT): Arabic numerals to Chinese
//!    ([`numbers`]);
//! 2. full-width punctuation to ASCII (`map_punctuation`);
//! 3. runs of U+4E00–U+9FFF cut into words by jieba 0.42.1 (MIT, through the
//!    `jieba-rs` crate, [`segment`]), each word to pinyin by pypinyin 0.55.0
//!    (MIT, [`pinyin`]) and the pinyin to IPA with tone arrows by misaki's
//!    `transcription.py` ([`ipa`]); words are joined with spaces;
//! 4. everything else (Latin letters, punctuation, spaces) as written.
//!
//! pypinyin's dictionaries (`pinyin_dict.json`, `phrases_dict.json`) are not
//! compiled in: they are the Mandarin language pack, [`PACK_FILES`], which
//! `voxpool pull kokoro` fetches. The tables are built on first use (jieba's
//! dictionary, pypinyin's JSON) and dropped by [`release`].

mod data;
mod ipa;
mod numbers;
mod pinyin;
mod segment;

use std::sync::{Arc, Mutex, PoisonError};

use super::error::TextError;
use super::settings::{settings, PackFile};
use super::words::Piece;

use pinyin::Pinyin;
use segment::Segmenter;

/// pypinyin's data files, the Mandarin language pack.
pub const PACK_FILES: &[PackFile] = &[
    PackFile {
        pack: "zh",
        package: "pypinyin",
        version: "0.55.0",
        member: "pypinyin/pinyin_dict.json",
        file: "pinyin_dict.json",
    },
    PackFile {
        pack: "zh",
        package: "pypinyin",
        version: "0.55.0",
        member: "pypinyin/phrases_dict.json",
        file: "phrases_dict.json",
    },
];

struct Tables {
    segmenter: Segmenter,
    pinyin: Pinyin,
}

static TABLES: Mutex<Option<Arc<Tables>>> = Mutex::new(None);

fn missing(file: &PackFile) -> String {
    format!(
        "Mandarin needs {} of the Mandarin language pack (from {} {}); \
         `voxpool pull kokoro` fetches it",
        settings().pack_file(file).display(),
        file.package,
        file.version
    )
}

/// Why this language cannot be spoken here, if it cannot.
pub fn availability() -> Result<(), String> {
    match PACK_FILES
        .iter()
        .find(|f| !settings().pack_file(f).is_file())
    {
        Some(file) => Err(missing(file)),
        None => Ok(()),
    }
}

fn read(file: &PackFile) -> Result<String, String> {
    let path = settings().pack_file(file);
    std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => missing(file),
        _ => format!("cannot read {}: {e}", path.display()),
    })
}

fn build() -> Result<Tables, String> {
    let pinyin = Pinyin::from_json(&read(&PACK_FILES[0])?, &read(&PACK_FILES[1])?)?;
    Ok(Tables {
        segmenter: Segmenter::new(),
        pinyin,
    })
}

fn tables() -> Result<Arc<Tables>, TextError> {
    let mut slot = TABLES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(tables) = slot.as_ref() {
        return Ok(Arc::clone(tables));
    }
    let tables = Arc::new(build().map_err(TextError::Unavailable)?);
    *slot = Some(Arc::clone(&tables));
    Ok(tables)
}

/// Phonemes of `text`.
pub fn phonemize(text: &str) -> Result<String, TextError> {
    if text.trim_matches(is_python_space).is_empty() {
        return Ok(String::new());
    }
    let tables = tables()?;
    let text = map_punctuation(&numbers::an2cn_transform(text));
    Ok(legacy_call(&tables, &text, &mut Vec::new()))
}

/// Phonemes of `text` and each word's: a word is the segmenter's, and a run of
/// other characters is as written.
pub fn read_words(text: &str) -> Result<(String, Vec<Piece>), TextError> {
    if text.trim_matches(is_python_space).is_empty() {
        return Ok((String::new(), Vec::new()));
    }
    let tables = tables()?;
    let text = map_punctuation(&numbers::an2cn_transform(text));
    let mut pieces = Vec::new();
    let phonemes = legacy_call(&tables, &text, &mut pieces);
    Ok((phonemes, pieces))
}

/// Drop tables built on first use.
pub fn release() {
    TABLES.lock().unwrap_or_else(PoisonError::into_inner).take();
}

/// misaki's `ZHG2P.map_punctuation`.
fn map_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '、' | '，' => out.push_str(", "),
            '。' | '．' => out.push_str(". "),
            '！' => out.push_str("! "),
            '：' => out.push_str(": "),
            '；' => out.push_str("; "),
            '？' => out.push_str("? "),
            '«' | '《' | '「' | '【' => out.push_str(" “"),
            '»' | '》' | '」' | '】' => out.push_str("” "),
            '（' => out.push_str(" ("),
            '）' => out.push_str(") "),
            c => out.push(c),
        }
    }
    out.trim_matches(is_python_space).to_string()
}

/// Python's `str.isspace`, which `str.strip` uses: Unicode white space and the
/// separators U+001C–U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

fn is_han(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// misaki's `ZHG2P.legacy_call`: Han runs to IPA words joined by spaces, the
/// rest as written, without U+032F.
/// Each word's phonemes go to `pieces`.
fn legacy_call(tables: &Tables, text: &str, pieces: &mut Vec<Piece>) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let han = is_han(first);
        let end = rest.find(|c| is_han(c) != han).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        if han {
            for (i, word) in tables.segmenter.cut(run).into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let from = out.len();
                tables.pinyin.word_ipa(word, &mut out);
                pieces.push(Piece::word(word, out[from..].replace('\u{32F}', "")));
            }
        } else {
            out.push_str(run);
            pieces.extend(run.split_whitespace().map(|w| Piece::word(w, w)));
        }
        rest = tail;
    }
    out.replace('\u{32F}', "")
}

#[cfg(test)]
mod tests {
    use super::map_punctuation;

    #[test]
    fn punctuation_as_misaki_maps_it() {
        assert_eq!(map_punctuation("你好，世界。"), "你好, 世界.");
        assert_eq!(
            map_punctuation("《红楼梦》（小说）！"),
            "“红楼梦”  (小说) !"
        );
        assert_eq!(map_punctuation("问：好；吗？"), "问: 好; 吗?");
        assert_eq!(map_punctuation("\u{1C}好\u{3000}"), "好");
    }
}
