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
