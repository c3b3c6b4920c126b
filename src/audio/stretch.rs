//! Pitch-preserving time stretch (WSOLA: waveform-similarity overlap-add), for
//! engines without native rate control: `speed` 2 halves the duration and keeps
//! the voice's pitch.
//!
//! Output frames of [`FRAME`] seconds are Hann-windowed and overlap by half. Each
//! frame is taken from the input near where the speed puts it, shifted by up to
//! [`TOLERANCE`] seconds to the position whose waveform best continues the
//! previous frame (normalised cross-correlation), so periods line up and no
//! phase jumps are heard.

/// Frame length in seconds (long enough to hold two periods of a low voice).
const FRAME: f64 = 0.040;
/// How far a frame may move from its nominal place to match, in seconds.
const TOLERANCE: f64 = 0.010;
/// Correlations are computed on every `DECIMATE`-th sample (the search is coarse
/// first, then refined around the best coarse shift).
const DECIMATE: usize = 4;

/// `samples` at `rate` Hz played `speed` times faster, same pitch. Returns the input
/// unchanged for a speed of 1 (or one too close to it to matter).
pub fn time_stretch(samples: &[f32], rate: u32, speed: f32) -> Vec<f32> {
    if (speed - 1.0).abs() < 1e-3 || samples.is_empty() || !speed.is_finite() || speed <= 0.0 {
        return samples.to_vec();
    }
    let frame = ((FRAME * f64::from(rate)) as usize).max(8) & !1;
    let hop_out = frame / 2;
    let hop_in = f64::from(speed) * hop_out as f64;
    let tolerance = (TOLERANCE * f64::from(rate)) as isize;
    let out_len = (samples.len() as f64 / f64::from(speed)).round() as usize;
    // Periodic Hann: copies shifted by half a frame sum to exactly 1.
    let window: Vec<f32> = (0..frame)
        .map(|i| {
            let x = std::f64::consts::PI * i as f64 / frame as f64;
            (x.sin() * x.sin()) as f32
        })
        .collect();
    // Zero padding around the input: frames may reach past either end.
    let pad = frame + tolerance as usize;
    let mut input = vec![0f32; pad];
    input.extend_from_slice(samples);
    input.resize(
        input.len() + pad + (hop_in.ceil() as usize + frame) * 2,
        0.0,
    );
    let max_start = (input.len() - frame) as isize;

    let frames = out_len.div_ceil(hop_out) + 1;
    let mut out = vec![0f32; frames * hop_out + frame];
    // Where the previous frame came from in the input.
    let mut previous: Option<isize> = None;
    for k in 0..frames {
        let nominal = pad as isize + (k as f64 * hop_in).round() as isize - hop_out as isize;
        let start = match previous {
            None => nominal,
            Some(prev) => {
                // The input that naturally follows the previous frame's first half.
                let target = (prev + hop_out as isize).clamp(0, max_start) as usize;
                let target = &input[target..target + frame];
                let lo = (nominal - tolerance).max(0);
                let hi = (nominal + tolerance).min(max_start);
                best_match(&input, target, lo, hi)
            }
        };
        let start = start.clamp(0, max_start) as usize;
        let dst = k * hop_out;
        for (i, w) in window.iter().enumerate() {
            out[dst + i] += w * input[start + i];
        }
        previous = Some(start as isize);
    }
    // Output sample `hop_out` corresponds to input sample 0 (the first frame starts
    // half a frame before the signal).
    out.drain(..hop_out);
    out.truncate(out_len);
    out
}

/// [`time_stretch`] for audio that arrives in pieces: each piece returns the
/// stretched samples that no later input can change, and [`StretchStream::finish`]
/// the rest, so the pieces put together are exactly `time_stretch` of the whole.
///
/// An output frame reads the input around where the speed puts it, and its match
/// search starts from where the previous frame was taken; both depend only on input
/// up to a frame and the search's tolerance past it. So the whole input is stretched
/// again for each piece (a few milliseconds a second of audio) and the output is sent
/// up to the frames that input still lies ahead of.
pub struct StretchStream {
    rate: u32,
    speed: f32,
    input: Vec<f32>,
    sent: usize,
}

impl StretchStream {
    pub fn new(rate: u32, speed: f32) -> Self {
        Self {
            rate,
            speed,
            input: Vec::new(),
            sent: 0,
        }
    }

    /// Whether [`time_stretch`] returns its input as it is at this speed.
    fn passes_through(&self) -> bool {
        let speed = self.speed;
        (speed - 1.0).abs() < 1e-3 || !speed.is_finite() || speed <= 0.0
    }

    /// The next piece of input; returns the output now final.
    pub fn push(&mut self, samples: &[f32]) -> Vec<f32> {
        if self.passes_through() {
            return samples.to_vec();
        }
        self.input.extend_from_slice(samples);
        let frame = ((FRAME * f64::from(self.rate)) as usize).max(8) & !1;
        let hop_out = frame / 2;
        let hop_in = f64::from(self.speed) * hop_out as f64;
        let tolerance = (TOLERANCE * f64::from(self.rate)) as usize;
        // Frames whose reads all lie inside the input so far (with a frame to spare),
        // and the output samples only they write.
        let room = self.input.len().saturating_sub(3 * frame + 2 * tolerance);
        let frames = (room as f64 / hop_in).floor() as usize;
        let stable = frames.saturating_sub(1) * hop_out;
        if stable <= self.sent {
            return Vec::new();
        }
        let out = time_stretch(&self.input, self.rate, self.speed);
        let stable = stable.min(out.len());
        let piece = out[self.sent..stable].to_vec();
        self.sent = stable;
        piece
    }

    /// The rest of the output once the input is complete.
    pub fn finish(&mut self) -> Vec<f32> {
        if self.passes_through() {
            return Vec::new();
        }
        let out = time_stretch(&self.input, self.rate, self.speed);
        let piece = out
            .get(self.sent..)
            .map(<[f32]>::to_vec)
            .unwrap_or_default();
        self.sent = out.len();
        piece
    }
}

/// The start in `lo..=hi` whose frame correlates best with `target`.
fn best_match(input: &[f32], target: &[f32], lo: isize, hi: isize) -> isize {
    if hi <= lo {
        return lo;
    }
    let score = |start: isize, step: usize| -> f32 {
        let s = &input[start as usize..start as usize + target.len()];
        let (mut dot, mut energy) = (0f32, 1e-9f32);
        for i in (0..target.len()).step_by(step) {
            dot += s[i] * target[i];
            energy += s[i] * s[i];
        }
        dot / energy.sqrt()
    };
    let coarse = (lo..=hi)
        .step_by(DECIMATE)
        .map(|s| (s, score(s, DECIMATE)))
        .fold(
            (lo, f32::NEG_INFINITY),
            |best, c| if c.1 > best.1 { c } else { best },
        );
    let fine_lo = (coarse.0 - DECIMATE as isize).max(lo);
    let fine_hi = (coarse.0 + DECIMATE as isize).min(hi);
    (fine_lo..=fine_hi)
        .map(|s| (s, score(s, 1)))
        .fold((coarse.0, f32::NEG_INFINITY), |best, c| {
            if c.1 > best.1 {
                c
            } else {
                best
            }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 24_000;

    fn tone(freq: f32, seconds: f32) -> Vec<f32> {
        (0..(seconds * RATE as f32) as usize)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * freq * i as f32 / RATE as f32).sin())
            .collect()
    }

    /// Frequency from upward zero crossings over the middle of the signal.
    fn pitch(x: &[f32]) -> f32 {
        let mid = &x[x.len() / 4..x.len() * 3 / 4];
        let crossings = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        crossings as f32 * RATE as f32 / mid.len() as f32
    }

    #[test]
    fn duration_scales_and_pitch_stays() {
        let x = tone(220.0, 2.0);
        for speed in [0.25f32, 0.5, 0.8, 1.5, 2.0, 4.0] {
            let y = time_stretch(&x, RATE, speed);
            let want = (x.len() as f32 / speed).round() as usize;
            assert_eq!(y.len(), want, "speed {speed}");
            let f = pitch(&y);
            assert!((f - 220.0).abs() < 5.0, "speed {speed}: pitch {f} Hz");
            // No clicks: a clean tone stays clean (no sample step beyond the tone's own).
            let max_step = y[RATE as usize / 20..y.len() - RATE as usize / 20]
                .windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .fold(0f32, f32::max);
            let tone_step = 0.5 * 2.0 * std::f32::consts::PI * 220.0 / RATE as f32;
            assert!(max_step < tone_step * 1.5, "speed {speed}: step {max_step}");
        }
    }

    #[test]
    fn pieces_stretch_as_the_whole_does() {
        let mut input = tone(180.0, 1.3);
        input.extend(tone(240.0, 0.9));
        for speed in [0.5f32, 0.8, 1.0, 1.7, 3.0] {
            let whole = time_stretch(&input, RATE, speed);
            for piece in [333usize, 4_800, 20_000] {
                let mut stream = StretchStream::new(RATE, speed);
                let mut out = Vec::new();
                for chunk in input.chunks(piece) {
                    out.extend(stream.push(chunk));
                }
                out.extend(stream.finish());
                assert_eq!(out, whole, "speed {speed}, pieces of {piece}");
            }
        }
    }

    #[test]
    fn speed_one_and_odd_input_are_passed_through() {
        let x = tone(300.0, 0.3);
        assert_eq!(time_stretch(&x, RATE, 1.0), x);
        assert!(time_stretch(&[], RATE, 2.0).is_empty());
        assert_eq!(time_stretch(&[0.1; 10], RATE, 2.0).len(), 5);
        assert_eq!(time_stretch(&x, RATE, f32::NAN), x);
    }
}
