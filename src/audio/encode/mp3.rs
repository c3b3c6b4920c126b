//! MP3 (MPEG-2 layer III at 24 kHz, mono, 96 kbit/s constant) through LAME.

use mp3lame_encoder::{Bitrate, Builder, Encoder, FlushGap, MonoPcm, Quality};

use super::{to_i16, AudioError};

fn err(e: impl std::fmt::Display) -> AudioError {
    AudioError::Encode(format!("mp3: {e}"))
}

/// An MP3 encoder fed chunk by chunk: the frames of consecutive chunks join without
/// a gap (one encoder delay at the very start, one padded frame at the end).
pub struct Mp3Stream {
    encoder: Encoder,
}

impl Mp3Stream {
    pub fn new(sample_rate: u32) -> Result<Self, AudioError> {
        let encoder = Builder::new()
            .ok_or_else(|| err("cannot create the LAME encoder"))?
            .with_num_channels(1)
            .map_err(err)?
            .with_sample_rate(sample_rate)
            .map_err(err)?
            .with_brate(Bitrate::Kbps96)
            .map_err(err)?
            .with_quality(Quality::Good)
            .map_err(err)?
            .build()
            .map_err(err)?;
        Ok(Self { encoder })
    }

    /// The frames completed by `samples` (LAME keeps up to a frame and its look-ahead).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        let pcm: Vec<i16> = samples.iter().map(|&s| to_i16(s)).collect();
        let mut out = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(pcm.len()));
        self.encoder
            .encode_to_vec(MonoPcm(&pcm), &mut out)
            .map_err(err)?;
        Ok(out)
    }

    /// The last frames, padded with silence.
    pub fn finish(mut self) -> Result<Vec<u8>, AudioError> {
        // LAME asks for 7200 bytes of room for its final frames.
        let mut out = Vec::with_capacity(7200);
        self.encoder
            .flush_to_vec::<FlushGap>(&mut out)
            .map_err(err)?;
        Ok(out)
    }
}

pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let mut stream = Mp3Stream::new(sample_rate)?;
    let mut out = stream.push(samples)?;
    out.extend(stream.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_are_written() {
        let samples: Vec<f32> = (0..24_000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let bytes = super::encode(&samples, 24_000).unwrap();
        // MPEG-2 layer III frames start with the 0xFFF(2|3) sync word.
        assert_eq!(bytes[0], 0xFF, "{:02x?}", &bytes[..8.min(bytes.len())]);
        assert_eq!(bytes[1] & 0xF6, 0xF2, "{:02x?}", &bytes[..8]);
        // 96 kbit/s for one second, within a frame or two.
        assert!(
            (11_000..13_500).contains(&bytes.len()),
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn chunks_join_like_one_piece() {
        let samples: Vec<f32> = (0..30_000).map(|i| (i as f32 * 0.03).sin() * 0.5).collect();
        let whole = super::encode(&samples, 24_000).unwrap();
        let mut stream = super::Mp3Stream::new(24_000).unwrap();
        let mut joined = Vec::new();
        for chunk in samples.chunks(7_001) {
            joined.extend(stream.push(chunk).unwrap());
        }
        joined.extend(stream.finish().unwrap());
        assert_eq!(joined, whole);
    }

    #[test]
    fn empty_and_tiny_inputs_encode() {
        for n in [0usize, 1, 575, 577] {
            let bytes = super::encode(&vec![0.25; n], 24_000).unwrap();
            assert!(
                bytes.is_empty() || bytes[0] == 0xFF,
                "{n}: {:02x?}",
                &bytes[..4.min(bytes.len())]
            );
        }
    }
}
