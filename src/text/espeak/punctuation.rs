//! Punctuation kept through phonemization, as phonemizer's `Punctuation.preserve`
//! and `Punctuation.restore` do it (`preserve_punctuation=True`): the text is cut
//! at every run of punctuation marks (with the spaces around them), each piece is
//! phonemized alone, and the marks are put back between the phonemized pieces.
//!
//! The reference's quirks are kept on purpose, since the goal is its exact output:
//! a decimal point or comma inside a number cuts the number in two, and a piece is
//! cut at the first place its mark's text occurs.

/// phonemizer's default marks (`Punctuation.default_marks()`).
const MARKS: &str = ";:,.!?¡¿—…\"«»“”(){}[]";

fn is_mark(c: char) -> bool {
    MARKS.contains(c)
}

/// Python's `\s` on text: Unicode white space, and the four separators
/// U+001C–U+001F that `str.isspace` also counts.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn strip(text: &str) -> &str {
    text.trim_matches(is_space)
}

/// Where a run of marks stands in its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Opens the line.
    Begin,
    /// Between two pieces.
    Inner,
    /// Closes the line.
    End,
    /// Is the whole line.
    Alone,
}

/// A run of punctuation marks and the spaces around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub mark: String,
    pub position: Position,
}

/// The matches of phonemizer's `(\s*[marks]+\s*)+`, left to right: a run of spaces
/// and marks holding at least one mark, as long as it goes.
fn mark_runs(line: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let byte = |i: usize| chars.get(i).map_or(line.len(), |&(b, _)| b);
    let mut runs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if !is_space(c) && !is_mark(c) {
            i += 1;
            continue;
        }
        // Spaces, then a mark: a match starts here.
        let mut j = i;
        while j < chars.len() && is_space(chars[j].1) {
            j += 1;
        }
        if j < chars.len() && is_mark(chars[j].1) {
            while j < chars.len() && (is_space(chars[j].1) || is_mark(chars[j].1)) {
                j += 1;
            }
            runs.push(&line[byte(i)..byte(j)]);
        }
        // Spaces not followed by a mark start no match, and neither does any
        // position inside them.
        i = j.max(i + 1);
    }
    runs
}

/// The pieces of `line` to phonemize (empty ones dropped) and its punctuation.
pub fn preserve(line: &str) -> (Vec<String>, Vec<Mark>) {
    let runs = mark_runs(line);
    if runs.is_empty() {
        return (keep_nonempty(vec![line.to_string()]), Vec::new());
    }
    if runs.len() == 1 && runs[0] == line {
        let mark = Mark {
            mark: line.to_string(),
            position: Position::Alone,
        };
        return (Vec::new(), vec![mark]);
    }
    let last = runs.len() - 1;
    let marks: Vec<Mark> = runs
        .iter()
        .enumerate()
        .map(|(n, run)| {
            let position = if n == 0 && line.starts_with(run) {
                Position::Begin
            } else if n == last && line.ends_with(run) {
                Position::End
            } else {
                Position::Inner
            };
            Mark {
                mark: run.to_string(),
                position,
            }
        })
        .collect();
    let mut pieces = Vec::new();
    let mut rest = line;
    for mark in &marks {
        // Python's `prefix, suffix = split[0], mark.join(split[1:])`.
        match rest.find(mark.mark.as_str()) {
            Some(at) => {
                pieces.push(rest[..at].to_string());
                rest = &rest[at + mark.mark.len()..];
            }
            None => {
                pieces.push(rest.to_string());
                rest = "";
            }
        }
    }
    pieces.push(rest.to_string());
    (keep_nonempty(pieces), marks)
}

fn keep_nonempty(pieces: Vec<String>) -> Vec<String> {
    pieces.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The phonemized pieces with their punctuation back, as phonemizer's
/// `Punctuation.restore` with a space between words and `strip=False`: usually one
/// line, ending in a space.
pub fn restore(pieces: Vec<String>, marks: Vec<Mark>) -> Vec<String> {
    const SEP: char = ' ';
    let mut text: std::collections::VecDeque<String> = pieces.into();
    let mut marks: std::collections::VecDeque<Mark> = marks.into();
    let mut out = Vec::new();
    // The line the next mark belongs to; every mark of one input line is on line 0.
    let mut pos = 0usize;
    while !text.is_empty() || !marks.is_empty() {
        if marks.is_empty() {
            for mut line in text.drain(..) {
                if !line.ends_with(SEP) {
                    line.push(SEP);
                }
                out.push(line);
            }
        } else if text.is_empty() {
            out.push(marks.drain(..).map(|m| m.mark).collect());
        } else if pos == 0 {
            let Some(mark) = marks.pop_front() else { break };
            if text[0].ends_with(SEP) {
                text[0].pop();
            }
            let closing = if mark.mark.ends_with(SEP) { "" } else { " " };
            match mark.position {
                Position::Begin => text[0].insert_str(0, &mark.mark),
                Position::End => {
                    let first = text.pop_front().unwrap_or_default();
                    out.push(format!("{first}{}{closing}", mark.mark));
                    pos += 1;
                }
                Position::Alone => {
                    out.push(format!("{}{closing}", mark.mark));
                    pos += 1;
                }
                Position::Inner => {
                    if text.len() == 1 {
                        text[0].push_str(&mark.mark);
                    } else {
                        let first = text.pop_front().unwrap_or_default();
                        text[0] = format!("{first}{}{}", mark.mark, text[0]);
                    }
                }
            }
        } else {
            out.extend(text.pop_front());
            pos += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(line: &str) -> Vec<(String, Position)> {
        preserve(line)
            .1
            .into_iter()
            .map(|m| (m.mark, m.position))
            .collect()
    }

    #[test]
    fn runs_of_marks_take_their_spaces() {
        assert_eq!(
            mark_runs("Hola, ¿cómo estás? Tengo 25 años."),
            vec![", ¿", "? ", "."]
        );
        assert_eq!(mark_runs("a  , b"), vec!["  , "]);
        assert_eq!(mark_runs("no marks here"), Vec::<&str>::new());
        assert_eq!(mark_runs(" «a» "), vec![" «", "» "]);
        assert_eq!(mark_runs("25.000,50"), vec![".", ","]);
    }

    #[test]
    fn pieces_and_positions() {
        let (pieces, _) = preserve("Hola, ¿cómo estás? Tengo 25 años.");
        assert_eq!(pieces, vec!["Hola", "cómo estás", "Tengo 25 años"]);
        assert_eq!(
            marks("Hola, ¿cómo estás? Tengo 25 años."),
            vec![
                (", ¿".into(), Position::Inner),
                ("? ".into(), Position::Inner),
                (".".into(), Position::End),
            ]
        );
        assert_eq!(
            marks("¡Hola!"),
            vec![("¡".into(), Position::Begin), ("!".into(), Position::End)]
        );
        assert_eq!(preserve("¡Hola!").0, vec!["Hola"]);
        // A number is cut at its decimal comma, as the reference does.
        assert_eq!(
            preserve("Cuesta 19,99 euros").0,
            vec!["Cuesta 19", "99 euros"]
        );
        assert_eq!(preserve("sin puntuación").0, vec!["sin puntuación"]);
        assert_eq!(preserve("…!").0, Vec::<String>::new());
        assert_eq!(marks("…!"), vec![("…!".into(), Position::Alone)]);
        assert_eq!(preserve(""), (Vec::new(), Vec::new()));
    }

    #[test]
    fn restoring_puts_marks_between_pieces() {
        let (_, m) = preserve("Hola, ¿cómo estás? Tengo 25 años.");
        let pieces = vec![
            "ˈola ".into(),
            "kˈomo estˈas ".into(),
            "tˈɛŋɡo ˈaɲos ".into(),
        ];
        assert_eq!(
            restore(pieces, m),
            vec!["ˈola, ¿kˈomo estˈas? tˈɛŋɡo ˈaɲos. "]
        );
        let (_, m) = preserve("¡Hola!");
        assert_eq!(restore(vec!["ˈola ".into()], m), vec!["¡ˈola! "]);
        let (_, m) = preserve("«a» b");
        assert_eq!(
            restore(vec!["ˈa ".into(), "bˈe ".into()], m),
            vec!["«ˈa» bˈe "]
        );
        assert_eq!(restore(vec!["sin ".into()], Vec::new()), vec!["sin "]);
        assert_eq!(restore(vec!["sin".into()], Vec::new()), vec!["sin "]);
        let (_, m) = preserve("…!");
        assert_eq!(restore(Vec::new(), m), vec!["…!"]);
        assert_eq!(restore(Vec::new(), Vec::new()), Vec::<String>::new());
    }

    #[test]
    fn an_empty_piece_keeps_its_marks() {
        // A piece espeak reads as nothing loses the space before its mark (as in the
        // reference).
        let (pieces, m) = preserve("a, *, b.");
        assert_eq!(pieces, vec!["a", "*", "b"]);
        assert_eq!(
            restore(vec!["ˈa ".into(), String::new(), "bˈe ".into()], m),
            vec!["ˈa,, bˈe. "]
        );
    }

    #[test]
    fn python_whitespace() {
        assert!(is_space('\u{1f}') && is_space('\u{a0}') && !is_space('\u{200b}'));
        assert_eq!(strip(" \u{1c}ab\n"), "ab");
    }
}
