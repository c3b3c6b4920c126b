//! What phonemizer's `EspeakBackend(language, preserve_punctuation=True,
//! with_stress=True, tie='^', language_switch='remove-flags')` does around
//! espeak-ng: punctuation kept aside, each piece's espeak output cleaned line by
//! line (`_postprocess_line`), the punctuation put back.

use super::punctuation::{preserve, restore, strip};

/// The tie espeak writes inside a phoneme of several letters (phonemizer's
/// default, U+0361), and the one the reference asks for instead.
pub const ESPEAK_TIE: char = '\u{361}';
const TIE: char = '^';

/// phonemizer's `_postprocess_line` for a tie and no phone separator, with
/// stress kept and `strip=False`: every word is followed by a space.
pub fn postprocess_line(line: &str) -> String {
    let line = strip(line).replace('\n', " ").replace("  ", " ");
    let line = squeeze_underscores(&line).replace("_ ", " ");
    let line = remove_language_flags(&line);
    if line.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(line.len() + 8);
    for word in line.split(' ') {
        out.extend(
            strip(word)
                .chars()
                .map(|c| if c == ESPEAK_TIE { TIE } else { c }),
        );
        out.push(' ');
    }
    out
}

/// `re.sub(r'_+', '_', line)`.
fn squeeze_underscores(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out
}

/// `re.sub(r'\(.+?\)', '', line)`: espeak's language switches (`(en)…(fr)`) out.
fn remove_language_flags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('(') {
        let after = &rest[open + 1..];
        // At least one character (not a line break), then the first `)`.
        let close = after
            .chars()
            .next()
            .filter(|&c| c != '\n')
            .and_then(|first| {
                let body = &after[first.len_utf8()..];
                let end = body.find(['\n', ')'])?;
                body[end..]
                    .starts_with(')')
                    .then_some(first.len_utf8() + end)
            });
        match close {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// phonemizer's `phonemize([text])[0]`, with `text_to_phonemes` the wrapper's call
/// of espeak on one piece of text.
pub fn phonemize(text: &str, mut text_to_phonemes: impl FnMut(&str) -> String) -> String {
    let (pieces, marks) = preserve(text);
    let phonemized = pieces
        .iter()
        .map(|piece| postprocess_line(&text_to_phonemes(piece)))
        .collect();
    restore(phonemized, marks)
        .into_iter()
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cleaned_word_by_word() {
        assert_eq!(postprocess_line(" ˈola  mˈundo\n"), "ˈola mˈundo ");
        assert_eq!(postprocess_line("t\u{361}ʃˈao"), "t^ʃˈao ");
        assert_eq!(postprocess_line("a__b_ c"), "a_b c ");
        assert_eq!(postprocess_line(""), "");
        assert_eq!(postprocess_line("  \n "), "");
        // Only one pass of double spaces, as Python's `replace`.
        assert_eq!(postprocess_line("a   b"), "a  b ");
    }

    #[test]
    fn language_flags_go() {
        assert_eq!(
            postprocess_line("ʒɛm lə (en)fˈʊtbɔːl(fr) "),
            "ʒɛm lə fˈʊtbɔːl "
        );
        assert_eq!(remove_language_flags("a () b)"), "a ");
        assert_eq!(remove_language_flags("a (b"), "a (b");
        assert_eq!(remove_language_flags("(x\n)y"), "(x\n)y");
        assert_eq!(remove_language_flags("(en)(es)x"), "x");
    }

    #[test]
    fn pieces_are_phonemized_apart() {
        let calls = std::cell::RefCell::new(Vec::new());
        let out = phonemize("Hola, ¿cómo estás?", |piece| {
            calls.borrow_mut().push(piece.to_string());
            piece.to_lowercase()
        });
        assert_eq!(calls.into_inner(), vec!["Hola", "cómo estás"]);
        assert_eq!(out, "hola, ¿cómo estás? ");
        assert_eq!(phonemize("", |p| p.to_string()), "");
    }
}
