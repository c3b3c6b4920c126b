//! Captions from timed words: cues of a line each, as WebVTT or SubRip (SRT).

use super::WordTime;

/// Longest cue line, in characters (the usual limit for subtitles).
const MAX_LINE: usize = 42;
/// Longest cue, in seconds.
const MAX_CUE: f64 = 5.0;
/// A silence this long between words starts a new cue (a sentence's end).
const PAUSE: f64 = 0.25;

/// One caption: a line of words shown from `start` to `end` (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// Whether a word is written without spaces around it (Japanese, Chinese).
fn unspaced(word: &str) -> bool {
    word.chars().any(|c| {
        matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xFF66..=0xFF9F)
    })
}

/// `words` grouped into cues: a cue ends at a pause, before its line would pass
/// 42 characters, or at 5 seconds.
pub fn cues(words: &[WordTime]) -> Vec<Cue> {
    let mut out: Vec<Cue> = Vec::new();
    let mut last: Option<&WordTime> = None;
    for word in words {
        let joined = last.is_some_and(|l| unspaced(&l.word) && unspaced(&word.word));
        let fits = out.last().is_some_and(|cue| {
            let gap = last.map_or(0.0, |l| word.start - l.end);
            let length =
                cue.text.chars().count() + word.word.chars().count() + usize::from(!joined);
            gap < PAUSE && length <= MAX_LINE && word.end - cue.start <= MAX_CUE
        });
        match out.last_mut() {
            Some(cue) if fits => {
                if !joined {
                    cue.text.push(' ');
                }
                cue.text.push_str(&word.word);
                cue.end = cue.end.max(word.end);
            }
            _ => out.push(Cue {
                start: word.start,
                end: word.end,
                text: word.word.clone(),
            }),
        }
        last = Some(word);
    }
    out
}

/// `hh:mm:ss` and milliseconds after `separator`.
fn timestamp(seconds: f64, separator: char) -> String {
    let millis = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// WebVTT of `words`.
pub fn vtt(words: &[WordTime]) -> String {
    let mut out = String::from("WEBVTT\n");
    for cue in cues(words) {
        out.push_str(&format!(
            "\n{} --> {}\n{}\n",
            timestamp(cue.start, '.'),
            timestamp(cue.end, '.'),
            cue.text
        ));
    }
    out
}

/// SubRip (SRT) of `words`.
pub fn srt(words: &[WordTime]) -> String {
    let mut out = String::new();
    for (i, cue) in cues(words).into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n",
            i + 1,
            timestamp(cue.start, ','),
            timestamp(cue.end, ','),
            cue.text
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(word: &str, start: f64, end: f64) -> WordTime {
        WordTime {
            word: word.into(),
            start,
            end,
        }
    }

    #[test]
    fn cues_break_at_pauses_and_long_lines() {
        let words = [
            word("Hello", 0.1, 0.4),
            word("there", 0.45, 0.8),
            word("Next", 1.3, 1.6),
            word("東京", 2.0, 2.4),
            word("に", 2.4, 2.5),
        ];
        let cues = cues(&words);
        let texts: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Hello there", "Next", "東京に"]);
        assert_eq!((cues[0].start, cues[0].end), (0.1, 0.8));
        let long: Vec<WordTime> = (0..20)
            .map(|i| word("word", f64::from(i) * 0.2, f64::from(i) * 0.2 + 0.15))
            .collect();
        assert!(super::cues(&long)
            .iter()
            .all(|c| c.text.chars().count() <= MAX_LINE && c.end - c.start <= MAX_CUE));
    }

    #[test]
    fn vtt_and_srt_formats() {
        let words = [word("Hi", 0.0, 0.5), word("again", 3661.25, 3662.0)];
        assert_eq!(
            vtt(&words),
            "WEBVTT\n\n00:00:00.000 --> 00:00:00.500\nHi\n\n01:01:01.250 --> 01:01:02.000\nagain\n"
        );
        assert_eq!(
            srt(&words),
            "1\n00:00:00,000 --> 00:00:00,500\nHi\n\n2\n01:01:01,250 --> 01:01:02,000\nagain\n"
        );
        assert_eq!(vtt(&[]), "WEBVTT\n");
    }
}
