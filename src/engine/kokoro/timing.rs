//! When each word is heard, from the samples Kokoro gave its phonemes.
//!
//! A word's phonemes span frames of the model's duration prediction; what is heard
//! differs from those frames in two ways, measured against Whisper's word times and
//! the waveform on the real weights (`tools/speech/word_timestamps.py`):
//! - a word's sound begins before its first frame: a word that follows another
//!   directly is heard from about a frame before the previous word's last phoneme
//!   ends (the space between them carries its onset), and one after a pause or at
//!   the start about two frames before its own first phoneme;
//! - the last phoneme before a pause takes the pause's silence into its frames, so
//!   a word ends where its sound does (the last loud 10 ms), not with its frames.

use crate::engine::WordTiming;

/// One output frame of Kokoro: 25 ms at 24 kHz.
const FRAME: usize = 600;
/// Loudness is measured every 10 ms.
const HOP: usize = 240;
/// Quieter than this share of the chunk's loudest 10 ms is silence: 35 dB down,
/// where a final stop's closure and release still count as speech.
const QUIET: f32 = 0.0178;

/// A word and the samples of its phonemes' frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub word: String,
    pub start: usize,
    pub end: usize,
    /// Only spaces stand between this word's phonemes and the previous word's.
    pub joined: bool,
}

/// When each word of `words` (in order) is heard in `samples`.
pub fn heard(words: &[Framed], samples: &[f32]) -> Vec<WordTiming> {
    if words.is_empty() {
        return Vec::new();
    }
    let loudness: Vec<f32> = samples
        .chunks(HOP)
        .map(|c| (c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt())
        .collect();
    let quiet = loudness.iter().copied().fold(0.0f32, f32::max) * QUIET;
    let mut out: Vec<WordTiming> = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &words[p]);
        let start = match previous {
            Some(p) if word.joined => p.end.saturating_sub(FRAME).max(p.start),
            _ => word.start.saturating_sub(2 * FRAME),
        }
        .min(word.start)
        .max(out.last().map_or(0, |w| w.start + 1));
        // The last loud 10 ms of the word's frames, and the 10 ms after it.
        let first_hop = word.start / HOP;
        let last_hop = word.end.div_ceil(HOP).min(loudness.len());
        let sounding = (first_hop..last_hop)
            .rev()
            .find(|&h| loudness[h] > quiet)
            .map_or(word.end, |h| ((h + 2) * HOP).min(word.end));
        let end = sounding.max(start + 1);
        if let Some(last) = out.last_mut() {
            last.end = last.end.min(start).max(last.start + 1);
        }
        out.push(WordTiming {
            word: word.word.clone(),
            start,
            end,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(word: &str, start: usize, end: usize, joined: bool) -> Framed {
        Framed {
            word: word.into(),
            start,
            end,
            joined,
        }
    }

    #[test]
    fn starts_come_earlier_and_ends_stop_with_the_sound() {
        // Sound from 0.1 s to 1.0 s, silence after (the last phoneme's long frames).
        let mut samples = vec![0.0f32; 36_000];
        for (i, s) in samples.iter_mut().enumerate().take(24_000).skip(2_400) {
            *s = (i as f32 * 0.05).sin() * 0.5;
        }
        let words = [
            framed("one", 3_000, 12_000, false),
            framed("two", 13_200, 33_000, true),
        ];
        let heard = heard(&words, &samples);
        // The first word: two frames early.
        assert_eq!(heard[0].start, 3_000 - 2 * FRAME);
        // Joined: a frame before the previous word's frames end; the previous word
        // ends there.
        assert_eq!(heard[1].start, 12_000 - FRAME);
        assert_eq!(heard[0].end, heard[1].start);
        // The sound stops at 1.0 s: the word ends within 10 ms after it, not at 1.375 s.
        assert!(
            (24_000..=24_480).contains(&heard[1].end),
            "{}",
            heard[1].end
        );
        // After a pause, only the word's own two frames.
        let paused = [
            framed("a", 0, 6_000, false),
            framed("b", 20_000, 23_000, false),
        ];
        let h = super::heard(&paused, &samples);
        assert_eq!(h[1].start, 20_000 - 2 * FRAME);
        assert!(h.iter().all(|w| w.end > w.start));
    }
}
