//! 16-bit mono WAV.

use std::io::Cursor;

use super::{s16le, to_i16, AudioError};

pub fn encode(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, AudioError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    let mut writer =
        hound::WavWriter::new(&mut out, spec).map_err(|e| AudioError::Encode(e.to_string()))?;
    for &s in samples {
        writer
            .write_sample(to_i16(s))
            .map_err(|e| AudioError::Encode(e.to_string()))?;
    }
    writer
        .finalize()
        .map_err(|e| AudioError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

/// The length written in the RIFF and `data` chunk sizes of a WAV file sent before
/// its length is known, as ffmpeg writes to a pipe: decoders read to the end.
pub const UNKNOWN_LENGTH: u32 = u32::MAX;

/// A WAV file sent as it is spoken: a header with [`UNKNOWN_LENGTH`], then samples.
pub struct WavStream {
    sample_rate: u32,
    header_sent: bool,
}

impl WavStream {
    pub fn new(sample_rate: u32) -> Self {
        Self {
            sample_rate,
            header_sent: false,
        }
    }

    pub fn push(&mut self, samples: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(44 + samples.len() * 2);
        if !self.header_sent {
            out.extend(streaming_header(self.sample_rate));
            self.header_sent = true;
        }
        out.extend(s16le(samples));
        out
    }

    /// A stream with no samples still is a file.
    pub fn finish(mut self) -> Vec<u8> {
        if self.header_sent {
            Vec::new()
        } else {
            self.push(&[])
        }
    }
}

/// The 44-byte canonical header of 16-bit mono PCM with unknown length.
fn streaming_header(sample_rate: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"RIFF");
    put(4, &UNKNOWN_LENGTH.to_le_bytes());
    put(8, b"WAVEfmt ");
    put(16, &16u32.to_le_bytes()); // fmt chunk size
    put(20, &1u16.to_le_bytes()); // PCM
    put(22, &1u16.to_le_bytes()); // mono
    put(24, &sample_rate.to_le_bytes());
    put(28, &(sample_rate * 2).to_le_bytes()); // bytes per second
    put(32, &2u16.to_le_bytes()); // block align
    put(34, &16u16.to_le_bytes()); // bits per sample
    put(36, b"data");
    put(40, &UNKNOWN_LENGTH.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_describes_the_samples() {
        let samples: Vec<f32> = (0..2400).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        let bytes = encode(&samples, 24_000).unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        let reader = hound::WavReader::new(std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(reader.spec().sample_rate, 24_000);
        assert_eq!(reader.spec().channels, 1);
        assert_eq!(reader.len(), 2400);
        assert_eq!(bytes.len(), 44 + 2 * 2400);
    }

    #[test]
    fn streamed_file_differs_only_in_the_lengths() {
        let samples: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.02).sin() * 0.5).collect();
        let whole = encode(&samples, 24_000).unwrap();
        let mut stream = WavStream::new(24_000);
        let mut streamed = Vec::new();
        for chunk in samples.chunks(1234) {
            streamed.extend(stream.push(chunk));
        }
        streamed.extend(stream.finish());
        assert_eq!(streamed.len(), whole.len());
        for (at, (a, b)) in streamed.iter().zip(&whole).enumerate() {
            let in_a_length = (4..8).contains(&at) || (40..44).contains(&at);
            assert!(a == b || in_a_length, "byte {at} differs");
        }
        assert_eq!(streamed[4..8], [0xff; 4]);
        assert_eq!(streamed[40..44], [0xff; 4]);
        // An empty stream is a header alone.
        assert_eq!(WavStream::new(16_000).finish().len(), 44);
    }
}
