//! Split input into sentence-sized chunks, so the first one can be spoken (and,
//! when streaming, sent) before the rest is computed.

/// Characters per chunk above which a sentence is split further at a comma or space.
pub const MAX_CHUNK_CHARS: usize = 400;

/// Split `text` into trimmed, non-empty chunks at sentence ends (`.`, `!`, `?`, `;`,
/// newlines and their CJK forms), keeping each under [`MAX_CHUNK_CHARS`] characters.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let ends_sentence = match c {
            '\n' | '。' | '！' | '？' => true,
            '.' | '!' | '?' | ';' => chars.peek().is_none_or(|n| n.is_whitespace()),
            _ => false,
        };
        if ends_sentence {
            push_chunk(&mut chunks, &current);
            current.clear();
        }
    }
    push_chunk(&mut chunks, &current);
    chunks
}

fn push_chunk(chunks: &mut Vec<String>, piece: &str) {
    let piece = piece.trim();
    if piece.is_empty() {
        return;
    }
    let mut rest = piece;
    while rest.chars().count() > MAX_CHUNK_CHARS {
        let limit = rest
            .char_indices()
            .nth(MAX_CHUNK_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let head = &rest[..limit];
        // Prefer a comma, then a space, in the second half of the window, outside
        // bracketed tags (`[clear throat]`, Kokoro's `[word](/phonemes/)`).
        let cut = [',', ' ']
            .iter()
            .find_map(|sep| {
                head.rmatch_indices(*sep)
                    .map(|(i, _)| i)
                    .take_while(|&i| i > limit / 2)
                    .find(|&i| !inside_tag(rest, i))
            })
            .map_or(limit, |i| i + 1);
        chunks.push(rest[..cut].trim().to_string());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        chunks.push(rest.to_string());
    }
}

/// Whether byte `i` of `text` lies between a `[` and the `]` that closes it.
fn inside_tag(text: &str, i: usize) -> bool {
    let brackets = ['[', ']'];
    let opened = text[..i]
        .rfind(brackets)
        .is_some_and(|j| text.as_bytes()[j] == b'[');
    opened
        && text[i..]
            .find(brackets)
            .is_some_and(|j| text.as_bytes()[i + j] == b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_sentence_ends() {
        assert_eq!(
            split_sentences("Hello there. How are you?  Fine!\nNext line"),
            vec!["Hello there.", "How are you?", "Fine!", "Next line"]
        );
        assert_eq!(
            split_sentences("Version 1.5 is out."),
            vec!["Version 1.5 is out."]
        );
        assert!(split_sentences("   \n ").is_empty());
    }

    #[test]
    fn long_sentences_are_split_and_nothing_is_lost() {
        let long = "word, ".repeat(200);
        let chunks = split_sentences(&long);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.chars().count() <= MAX_CHUNK_CHARS));
        let joined: String = chunks.join(" ");
        assert_eq!(
            joined.split_whitespace().count(),
            long.split_whitespace().count()
        );
        // A tag is never cut in two; a lone bracket does not stop a cut.
        for filler in ["word ", "[word "] {
            let text = format!("{}[clear throat] and more.", filler.repeat(78));
            let chunks = split_sentences(&text);
            assert!(chunks.len() > 1);
            assert!(
                chunks.iter().any(|c| c.contains("[clear throat]")),
                "{chunks:?}"
            );
            assert!(chunks.iter().all(|c| c.chars().count() <= MAX_CHUNK_CHARS));
        }
        // No separator at all: hard cut, still on char boundaries.
        let cjk = "語".repeat(1000);
        let chunks = split_sentences(&cjk);
        assert_eq!(chunks.concat(), cjk);
    }
}
