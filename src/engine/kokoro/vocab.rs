//! Kokoro-82M v1.0's phoneme vocabulary (symbol → token id), embedded so text can
//! be phonemized and checked without the checkpoint on disk.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(serde::Deserialize)]
struct VocabFile {
    vocab: HashMap<String, u32>,
}

/// The v1.0 vocabulary.
pub fn v1_0() -> &'static HashMap<String, u32> {
    static VOCAB: OnceLock<HashMap<String, u32>> = OnceLock::new();
    VOCAB.get_or_init(|| {
        serde_json::from_str::<VocabFile>(include_str!("vocab_v1_0.json"))
            .map(|f| f.vocab)
            .expect("the embedded vocabulary is valid JSON, checked by a unit test")
    })
}

/// Token ids of `phonemes`, dropping symbols outside the vocabulary (as the
/// reference does).
pub fn tokens_lossy(vocab: &HashMap<String, u32>, phonemes: &str) -> Vec<u32> {
    phonemes
        .chars()
        .filter_map(|c| vocab.get(c.encode_utf8(&mut [0; 4]) as &str).copied())
        .collect()
}

/// Token ids of `phonemes`, or the symbols that are not in the vocabulary.
pub fn encode(vocab: &HashMap<String, u32>, phonemes: &str) -> Result<Vec<u32>, Vec<char>> {
    let mut ids = Vec::with_capacity(phonemes.len());
    let mut unknown = Vec::new();
    for c in phonemes.chars() {
        match vocab.get(c.encode_utf8(&mut [0; 4]) as &str) {
            Some(id) => ids.push(*id),
            None if !unknown.contains(&c) => unknown.push(c),
            None => {}
        }
    }
    if unknown.is_empty() {
        Ok(ids)
    } else {
        Err(unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vocabulary_has_the_v1_0_symbols() {
        let v = v1_0();
        assert_eq!(v.len(), 114);
        assert_eq!(v[" "], 16);
        assert!(v.values().all(|&id| id < 178));
        assert_eq!(encode(v, "hˈI").unwrap().len(), 3);
        assert_eq!(encode(v, "h#ˈI§#").unwrap_err(), vec!['#', '§']);
    }
}
