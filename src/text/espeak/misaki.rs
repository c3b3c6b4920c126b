//! misaki 0.9.4's `EspeakG2P` around phonemizer (`version=None`, as Kokoro 0.9.4's
//! `KPipeline` builds it): brackets hidden from the punctuation handling, then
//! espeak's phonemes of two letters joined by a tie mapped to misaki's one-letter
//! symbols.

use super::punctuation::strip;

/// `EspeakG2P.e2m`, in the order misaki applies it (`sorted(e2m.items())`, by key).
const E2M: [(&str, &str); 11] = [
    ("a^ɪ", "I"),
    ("a^ʊ", "W"),
    ("d^z", "ʣ"),
    ("d^ʒ", "ʤ"),
    ("e^ɪ", "A"),
    ("o^ʊ", "O"),
    ("s^s", "S"),
    ("t^s", "ʦ"),
    ("t^ʃ", "ʧ"),
    ("ɔ^ɪ", "Y"),
    ("ə^ʊ", "Q"),
];

/// The text as misaki hands it to phonemizer: « » become curly quotes, and
/// parentheses become « » (which phonemizer keeps as punctuation).
pub fn before(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '«' => '\u{201c}',
            '»' => '\u{201d}',
            '(' => '«',
            ')' => '»',
            c => c,
        })
        .collect()
}

/// misaki's phonemes from phonemizer's line.
pub fn after(phonemes: &str) -> String {
    let mut ps = strip(phonemes).to_string();
    for (old, new) in E2M {
        if ps.contains(old) {
            ps = ps.replace(old, new);
        }
    }
    ps.chars()
        .filter(|&c| c != '^' && c != '-')
        .map(|c| match c {
            '«' => '(',
            '»' => ')',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_misakis_order() {
        assert!(E2M.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn brackets_round_trip() {
        assert_eq!(before("«a» (b)"), "\u{201c}a\u{201d} «b»");
        assert_eq!(after(" «bˈe» "), "(bˈe)");
    }

    #[test]
    fn ties_become_single_symbols() {
        assert_eq!(after("t^ʃˈao d^ʒ a^ɪ-x^y "), "ʧˈao ʤ Ixy");
        assert_eq!(after("o^ʊ ə^ʊ ɔ^ɪ"), "O Q Y");
    }
}
