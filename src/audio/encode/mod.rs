//! One file per response format.

pub mod aac;
pub mod flac;
pub mod mp3;
pub mod opus;
mod pcm;
pub mod wav;

/// The response formats of OpenAI's speech API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Mp3,
    Opus,
    Aac,
    Flac,
    Wav,
    Pcm,
}

impl AudioFormat {
    /// Formats this build can encode.
    pub const SUPPORTED: [AudioFormat; 6] = [
        AudioFormat::Mp3,
        AudioFormat::Opus,
        AudioFormat::Aac,
        AudioFormat::Flac,
        AudioFormat::Wav,
        AudioFormat::Pcm,
    ];

    /// The format called `name` in OpenAI's API (also a file extension).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "mp3" => Self::Mp3,
            "opus" => Self::Opus,
            "aac" => Self::Aac,
            "flac" => Self::Flac,
            "wav" => Self::Wav,
            "pcm" => Self::Pcm,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
            Self::Aac => "aac",
            Self::Flac => "flac",
            Self::Wav => "wav",
            Self::Pcm => "pcm",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/ogg",
            Self::Aac => "audio/aac",
            Self::Flac => "audio/flac",
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/pcm",
        }
    }

    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }
}

/// What can go wrong encoding audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("response_format '{}' is not supported by this build yet; supported: {}", .0.name(), supported_list())]
    Unsupported(AudioFormat),
    #[error("encoding failed: {0}")]
    Encode(String),
}

fn supported_list() -> String {
    AudioFormat::SUPPORTED
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Encode mono `samples` at `sample_rate` Hz as a whole file.
pub fn encode(
    format: AudioFormat,
    samples: &[f32],
    sample_rate: u32,
) -> Result<Vec<u8>, AudioError> {
    match format {
        AudioFormat::Mp3 => mp3::encode(samples, sample_rate),
        AudioFormat::Opus => opus::encode(samples, sample_rate),
        AudioFormat::Aac => aac::encode(samples, sample_rate),
        AudioFormat::Flac => flac::encode(samples, sample_rate),
        AudioFormat::Wav => wav::encode(samples, sample_rate),
        AudioFormat::Pcm => pcm::encode(samples, sample_rate),
    }
}

/// Samples as 16-bit little-endian PCM bytes (the `pcm` format and WAV's data).
pub(crate) fn s16le(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|&s| to_i16(s).to_le_bytes())
        .collect()
}

/// f32 in [-1, 1] to 16-bit PCM, clamping anything outside.
pub(crate) fn to_i16(sample: f32) -> i16 {
    let s = if sample.is_finite() {
        sample.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    (s * f32::from(i16::MAX)).round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_conversion_clamps() {
        assert_eq!(to_i16(0.0), 0);
        assert_eq!(to_i16(1.0), i16::MAX);
        assert_eq!(to_i16(2.0), i16::MAX);
        assert_eq!(to_i16(-1.5), -i16::MAX);
        assert_eq!(to_i16(f32::NAN), 0);
    }
}
