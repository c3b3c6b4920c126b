//! AAC-LC in ADTS frames: mono, 64 kbit/s, 1024 samples per frame. Pure Rust
//! (`syom`, MIT). ADTS cannot say how much encoder priming to drop, so, as with every
//! ADTS file, decoders play one frame (1024 samples) of priming first.

use super::AudioError;

const BITRATE: u32 = 64_000;
/// Rates ADTS can signal (the engines' 24 kHz is one); others are resampled to 48 kHz.
const ADTS_RATES: [u32; 12] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
];

fn err(e: impl std::fmt::Display) -> AudioError {
    AudioError::Encode(format!("aac: {e}"))
}

/// An ADTS encoder fed chunk by chunk; each `push` returns the frames completed.
pub struct AacStream {
    encoder: syom::Encoder,
    rate: u32,
    input_rate: u32,
    /// Samples fed so far: the encoder refuses to finish an empty stream.
    fed: usize,
}

impl AacStream {
    pub fn new(input_rate: u32) -> Result<Self, AudioError> {
        let rate = if ADTS_RATES.contains(&input_rate) {
            input_rate
        } else {
            48_000
        };
        let options = syom::EncodeOptions::adts().with_bitrate_bps(BITRATE);
        let encoder = syom::Encoder::new(rate, 1, &options).map_err(err)?;
        Ok(Self {
            encoder,
            rate,
            input_rate,
            fed: 0,
        })
    }

    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        let resampled;
        let samples = if self.rate == self.input_rate {
            samples
        } else {
            resampled = crate::audio::clip::resample(samples, self.input_rate, self.rate);
            &resampled
        };
        // The encoder takes finite samples in [-1, 1] only; the other formats clamp
        // the same way when they convert to 16 bits.
        let pcm: Vec<f32> = samples
            .iter()
            .map(|&s| {
                if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            })
            .collect();
        self.fed += pcm.len();
        let mut out = Vec::new();
        self.encoder
            .feed(&[&pcm], |frame| {
                out.extend_from_slice(frame.au);
                Ok(())
            })
            .map_err(err)?;
        Ok(out)
    }

    /// The last, zero-padded frame and the encoder's overlap.
    pub fn finish(mut self) -> Result<Vec<u8>, AudioError> {
        let mut out = Vec::new();
        if self.fed > 0 {
            self.encoder
                .finish(|frame| {
                    out.extend_from_slice(frame.au);
                    Ok(())
                })
                .map_err(err)?;
        }
        Ok(out)
    }
}

pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let mut stream = AacStream::new(sample_rate)?;
    let mut out = stream.push(samples)?;
    out.extend(stream.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_are_adts_and_an_empty_stream_is_empty() {
        let samples: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.03).sin() * 0.5).collect();
        let bytes = super::encode(&samples, 24_000).unwrap();
        // ADTS sync word, MPEG-4, no CRC.
        assert_eq!((bytes[0], bytes[1] & 0xf6), (0xff, 0xf0));
        assert!(super::encode(&[], 24_000).unwrap().is_empty());
        // Out-of-range and non-finite samples are clamped, not refused.
        assert!(!super::encode(&[2.0, f32::NAN, -3.0], 24_000)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_tone_decodes_back_after_one_frame_of_priming() {
        let rate = 24_000;
        let tone: Vec<f32> = (0..rate)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
            .collect();
        let bytes = super::encode(&tone, rate as u32).unwrap();
        let decoded = crate::audio::clip::decode(&bytes, 10.0).unwrap();
        assert_eq!(decoded.sample_rate, 24_000);
        let out = &decoded.samples[1024..];
        assert!(out.len() >= tone.len());
        // Away from the edges, the decoded tone is the input within 64 kbit/s's noise.
        let (signal, noise) = tone[2048..rate - 2048]
            .iter()
            .zip(&out[2048..rate - 2048])
            .fold((0f64, 0f64), |(s, n), (&a, &b)| {
                (s + f64::from(a * a), n + f64::from((a - b) * (a - b)))
            });
        let snr = 10.0 * (signal / noise).log10();
        assert!(snr > 20.0, "SNR {snr:.1} dB");
    }
}
