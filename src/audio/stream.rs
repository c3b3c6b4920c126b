//! Encoding a response chunk by chunk, so the first sentence can be sent while the
//! next is being spoken.
//!
//! `mp3` sends MP3 frames, `opus` Ogg pages, `aac` ADTS frames, `pcm` samples: the
//! pieces concatenate into one valid file. `wav` and `flac` carry the length in
//! their headers: sent as one file they come whole, with the exact length, so every
//! reader (Python's `wave` and `soundfile`, `sox`, Safari, SDL) gets it right. Where
//! the client takes pieces anyway (SSE), they stream with a header that leaves the
//! length unknown, as ffmpeg writes on a pipe and as OpenAI sends them.

use super::encode::aac::AacStream;
use super::encode::flac::FlacStream;
use super::encode::mp3::Mp3Stream;
use super::encode::opus::OpusStream;
use super::encode::wav::WavStream;
use super::{encode, AudioError, AudioFormat};

pub enum StreamEncoder {
    Pcm {
        sample_rate: u32,
    },
    Mp3(Box<Mp3Stream>),
    Opus(Box<OpusStream>),
    Aac(Box<AacStream>),
    Wav(WavStream),
    Flac(Box<FlacStream>),
    /// Collects everything and encodes it at the end.
    Whole {
        format: AudioFormat,
        sample_rate: u32,
        samples: Vec<f32>,
    },
}

impl StreamEncoder {
    /// An encoder for audio that arrives in `pieces` calls to [`Self::push`]; with
    /// `open_length`, `wav` and `flac` stream with their length left unknown, else
    /// they come whole.
    pub fn new(
        format: AudioFormat,
        sample_rate: u32,
        pieces: usize,
        open_length: bool,
    ) -> Result<Self, AudioError> {
        let streamed = open_length && pieces > 1;
        if !format.is_supported() {
            return Err(AudioError::Unsupported(format));
        }
        Ok(match format {
            AudioFormat::Pcm => Self::Pcm { sample_rate },
            AudioFormat::Mp3 => Self::Mp3(Box::new(Mp3Stream::new(sample_rate)?)),
            AudioFormat::Opus => Self::Opus(Box::new(OpusStream::new(sample_rate)?)),
            AudioFormat::Aac => Self::Aac(Box::new(AacStream::new(sample_rate)?)),
            AudioFormat::Wav if streamed => Self::Wav(WavStream::new(sample_rate)),
            AudioFormat::Flac if streamed => Self::Flac(Box::new(FlacStream::new(sample_rate)?)),
            AudioFormat::Wav | AudioFormat::Flac => Self::Whole {
                format,
                sample_rate,
                samples: Vec::new(),
            },
        })
    }

    /// Whether bytes can come before the last piece.
    pub fn streams(&self) -> bool {
        !matches!(self, Self::Whole { .. })
    }

    /// The bytes ready after `samples` (possibly none).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        match self {
            Self::Pcm { sample_rate } => encode(AudioFormat::Pcm, samples, *sample_rate),
            Self::Mp3(mp3) => mp3.push(samples),
            Self::Opus(opus) => opus.push(samples),
            Self::Aac(aac) => aac.push(samples),
            Self::Wav(wav) => Ok(wav.push(samples)),
            Self::Flac(flac) => flac.push(samples),
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
            Self::Wav(wav) => Ok(wav.finish()),
            Self::Flac(flac) => flac.finish(),
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
        let chunks: Vec<&[f32]> = samples.chunks(4_999).collect();
        for format in AudioFormat::SUPPORTED {
            for (pieces, open_length) in [(1, true), (chunks.len(), true), (chunks.len(), false)] {
                let mut enc = StreamEncoder::new(format, 24_000, pieces, open_length).unwrap();
                let streams = enc.streams();
                let mut out = Vec::new();
                if pieces == 1 {
                    out.extend(enc.push(&samples).unwrap());
                } else {
                    for chunk in &chunks {
                        out.extend(enc.push(chunk).unwrap());
                    }
                }
                // Bytes before `finish` exactly for the encoders that stream.
                assert_eq!(!out.is_empty(), streams, "{format:?}, {pieces} pieces");
                out.extend(enc.finish().unwrap());
                let whole = encode(format, &samples, 24_000).unwrap();
                let has_length = matches!(format, AudioFormat::Wav | AudioFormat::Flac);
                match format {
                    // The same packets; pages end where the chunks did.
                    AudioFormat::Opus => assert_eq!(ogg_packets(&out), ogg_packets(&whole)),
                    // Length left unknown in the header (see their own tests).
                    _ if has_length && streams => {
                        assert_eq!(out.len(), whole.len(), "{format:?}");
                        assert_eq!(out[44..], whole[44..], "{format:?}");
                    }
                    _ => assert_eq!(out, whole, "{format:?}, {pieces} pieces"),
                }
                let expect_streaming = !has_length || (pieces > 1 && open_length);
                assert_eq!(streams, expect_streaming, "{format:?}, {pieces} pieces");
            }
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
