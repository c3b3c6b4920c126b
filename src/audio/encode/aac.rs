//! AAC-LC in ADTS frames: mono, 64 kbit/s, 1024 samples per frame. Pure Rust
//! (`oxideav-aac`, MIT). ADTS cannot say how much encoder priming to drop, so, as
//! with every ADTS file, decoders play one frame (1024 samples) of silence first.

use oxideav_aac::encoder::{EncoderConfig, StreamEncoder, FRAME_LEN};

use super::{to_i16, AudioError};

const BITRATE: u32 = 64_000;
/// Rates ADTS can signal (the engines' 24 kHz is one); others are resampled to 48 kHz.
const ADTS_RATES: [u32; 12] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
];

fn err(e: impl std::fmt::Debug) -> AudioError {
    AudioError::Encode(format!("aac: {e:?}"))
}

/// An ADTS encoder fed chunk by chunk; each `push` returns the frames completed.
pub struct AacStream {
    encoder: StreamEncoder,
    rate: u32,
    input_rate: u32,
    pending: Vec<i16>,
}

impl AacStream {
    pub fn new(input_rate: u32) -> Result<Self, AudioError> {
        let rate = if ADTS_RATES.contains(&input_rate) {
            input_rate
        } else {
            48_000
        };
        let encoder = StreamEncoder::new(EncoderConfig {
            sample_rate: rate,
            channels: 1,
            bitrate: BITRATE,
        })
        .map_err(err)?;
        Ok(Self {
            encoder,
            rate,
            input_rate,
            pending: Vec::new(),
        })
    }

    fn encode_frames(&mut self) -> Result<Vec<u8>, AudioError> {
        let mut out = Vec::new();
        let whole = self.pending.len() / FRAME_LEN * FRAME_LEN;
        for frame in self.pending[..whole].chunks_exact(FRAME_LEN) {
            out.extend(self.encoder.encode_frame(frame).map_err(err)?);
        }
        self.pending.drain(..whole);
        Ok(out)
    }

    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        if self.rate == self.input_rate {
            self.pending.extend(samples.iter().map(|&s| to_i16(s)));
        } else {
            let resampled = crate::audio::clip::resample(samples, self.input_rate, self.rate);
            self.pending.extend(resampled.iter().map(|&s| to_i16(s)));
        }
        self.encode_frames()
    }

    /// The last, zero-padded frame and the encoder's overlap.
    pub fn finish(mut self) -> Result<Vec<u8>, AudioError> {
        let mut out = self.encode_frames()?;
        if !self.pending.is_empty() {
            out.extend(self.encoder.encode_frame(&self.pending).map_err(err)?);
        }
        out.extend(self.encoder.finish().map_err(err)?);
        Ok(out)
    }
}

pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let mut stream = AacStream::new(sample_rate)?;
    let mut out = stream.push(samples)?;
    out.extend(stream.finish()?);
    Ok(out)
}
