//! Raw 24 kHz signed 16-bit little-endian mono, as OpenAI's `pcm` format.

use super::{s16le, AudioError};

/// The only rate OpenAI clients expect for raw PCM; other rates are resampled.
pub const PCM_RATE: u32 = 24_000;

pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let resampled;
    let samples = if sample_rate == PCM_RATE {
        samples
    } else {
        resampled = crate::audio::clip::resample(samples, sample_rate, PCM_RATE);
        &resampled
    };
    Ok(s16le(samples))
}

#[cfg(test)]
mod tests {
    #[test]
    fn little_endian_16_bit() {
        let bytes = super::encode(&[0.0, 1.0, -1.0], 24_000).unwrap();
        assert_eq!(bytes, vec![0, 0, 0xff, 0x7f, 0x01, 0x80]);
    }

    #[test]
    fn other_rates_become_24_khz() {
        let bytes = super::encode(&vec![0.25; 22_050], 22_050).unwrap();
        assert_eq!(bytes.len(), 2 * 24_000);
    }
}
