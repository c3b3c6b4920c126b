//! Encoding a response chunk by chunk, so the first sentence can be sent while the
//! next is being spoken.
//!
//! Every format streams: the pieces concatenate into one valid file. `mp3` sends
//! MP3 frames, `opus` Ogg pages, `aac` ADTS frames, `pcm` samples; `wav` and `flac`,
//! whose headers carry the length, send a header that leaves it unknown (as ffmpeg
//! does on a pipe) when the audio comes in several pieces, and the exact file when it
//! comes in one.

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
    /// An encoder for audio that arrives in `pieces` calls to [`Self::push`].
    pub fn new(format: AudioFormat, sample_rate: u32, pieces: usize) -> Result<Self, AudioError> {
        if !format.is_supported() {
            return Err(AudioError::Unsupported(format));
        }
        Ok(match format {
            AudioFormat::Pcm => Self::Pcm { sample_rate },
            AudioFormat::Mp3 => Self::Mp3(Box::new(Mp3Stream::new(sample_rate)?)),
            AudioFormat::Opus => Self::Opus(Box::new(OpusStream::new(sample_rate)?)),
            AudioFormat::Aac => Self::Aac(Box::new(AacStream::new(sample_rate)?)),
            AudioFormat::Wav if pieces > 1 => Self::Wav(WavStream::new(sample_rate)),
            AudioFormat::Flac if pieces > 1 => Self::Flac(Box::new(FlacStream::new(sample_rate)?)),
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
            for pieces in [1, chunks.len()] {
                let mut enc = StreamEncoder::new(format, 24_000, pieces).unwrap();
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
                match format {
                    // The same packets; pages end where the chunks did.
                    AudioFormat::Opus => assert_eq!(ogg_packets(&out), ogg_packets(&whole)),
                    // Length left unknown in the header (see their own tests).
                    AudioFormat::Wav | AudioFormat::Flac if pieces > 1 => {
                        assert_eq!(out.len(), whole.len(), "{format:?}");
                        assert_eq!(out[44..], whole[44..], "{format:?}");
                    }
                    _ => assert_eq!(out, whole, "{format:?}, {pieces} pieces"),
                }
                let expect_streaming =
                    pieces > 1 || !matches!(format, AudioFormat::Wav | AudioFormat::Flac);
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
