//! Encoding a response chunk by chunk, so the first sentence can be sent while the
//! next is being spoken.
//!
//! `mp3`, `opus` (Ogg pages), `aac` (ADTS frames) and `pcm` stream: their pieces
//! concatenate into one valid file. `wav` and `flac` carry the total length in their
//! header, so they are sent whole, once the last chunk is spoken.

use super::encode::aac::AacStream;
use super::encode::mp3::Mp3Stream;
use super::encode::opus::OpusStream;
use super::{encode, AudioError, AudioFormat};

/// Whether `format` is sent as it is spoken (rather than whole at the end).
pub fn streams(format: AudioFormat) -> bool {
    matches!(
        format,
        AudioFormat::Mp3 | AudioFormat::Pcm | AudioFormat::Opus | AudioFormat::Aac
    )
}

pub enum StreamEncoder {
    Pcm {
        sample_rate: u32,
    },
    Mp3(Box<Mp3Stream>),
    Opus(Box<OpusStream>),
    Aac(Box<AacStream>),
    /// Collects everything and encodes it at the end.
    Whole {
        format: AudioFormat,
        sample_rate: u32,
        samples: Vec<f32>,
    },
}

impl StreamEncoder {
    pub fn new(format: AudioFormat, sample_rate: u32) -> Result<Self, AudioError> {
        if !format.is_supported() {
            return Err(AudioError::Unsupported(format));
        }
        Ok(match format {
            AudioFormat::Pcm => Self::Pcm { sample_rate },
            AudioFormat::Mp3 => Self::Mp3(Box::new(Mp3Stream::new(sample_rate)?)),
            AudioFormat::Opus => Self::Opus(Box::new(OpusStream::new(sample_rate)?)),
            AudioFormat::Aac => Self::Aac(Box::new(AacStream::new(sample_rate)?)),
            _ => Self::Whole {
                format,
                sample_rate,
                samples: Vec::new(),
            },
        })
    }

    /// The bytes ready after `samples` (possibly none).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        match self {
            Self::Pcm { sample_rate } => encode(AudioFormat::Pcm, samples, *sample_rate),
            Self::Mp3(mp3) => mp3.push(samples),
            Self::Opus(opus) => opus.push(samples),
            Self::Aac(aac) => aac.push(samples),
            Self::Whole { samples: all, .. } => {
                all.extend_from_slice(samples);
                Ok(Vec::new())
            }
        }
    }

    /// The remaining bytes.
    pub fn finish(self) -> Result<Vec<u8>, AudioError> {
        match self {
            Self::Pcm { .. } => Ok(Vec::new()),
            Self::Mp3(mp3) => mp3.finish(),
            Self::Opus(opus) => opus.finish(),
            Self::Aac(aac) => aac.finish(),
            Self::Whole {
                format,
                sample_rate,
                samples,
            } => encode(format, &samples, sample_rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_bytes_equal_the_whole_file() {
        let samples: Vec<f32> = (0..20_000).map(|i| (i as f32 * 0.02).sin() * 0.4).collect();
        for format in AudioFormat::SUPPORTED {
            let mut enc = StreamEncoder::new(format, 24_000).unwrap();
            let mut out = Vec::new();
            for chunk in samples.chunks(4_999) {
                out.extend(enc.push(chunk).unwrap());
            }
            // Bytes before `finish` exactly for the formats that stream.
            let early = !out.is_empty();
            out.extend(enc.finish().unwrap());
            let whole = encode(format, &samples, 24_000).unwrap();
            if format == AudioFormat::Opus {
                // The same packets; pages end where the chunks did.
                assert_eq!(ogg_packets(&out), ogg_packets(&whole));
            } else {
                assert_eq!(out, whole, "{format:?}");
            }
            assert_eq!(early, super::streams(format), "{format:?}");
        }
    }

    fn ogg_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
        let mut out = Vec::new();
        while let Some(p) = reader.read_packet().unwrap() {
            out.push(p.data);
        }
        out
    }
}
