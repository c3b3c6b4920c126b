//! The messages between the server (the gateway) and a worker process, and their
//! framing: each message is serialised with postcard and sent as one frame with a
//! 4-byte big-endian length (tokio-util's `LengthDelimitedCodec`), over the
//! worker's stdin (requests) and a copy of its stdout (replies).

use serde::{Deserialize, Serialize};
use tokio_util::bytes::Bytes;
use tokio_util::codec::LengthDelimitedCodec;

use crate::engine::{EngineError, SpeechJob, WordTiming};
use crate::text::lexicon::Pronunciation;

/// Largest frame either side accepts: a reference clip for cloning, or one long
/// sentence's audio, fits many times over.
const MAX_FRAME: usize = 256 << 20;

/// The framing both sides use.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Gateway → worker. `id`s are chosen by the gateway, unique per worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Speak every chunk of `job`: one [`Reply::Audio`] per chunk, then
    /// [`Reply::Done`], or [`Reply::Failed`] at the first error.
    Synthesize { id: u64, job: SpeechJob },
    /// Stop `id` at the next chunk, or sooner where the engine asks while it speaks
    /// (Chatterbox Turbo stops at T3's next token); it ends with `Done`.
    Cancel { id: u64 },
    /// A voice's conditioning from a prepared reference clip.
    CloneVoice {
        id: u64,
        wav_24k: Vec<f32>,
        wav_16k: Vec<f32>,
    },
    /// Text to the engine's phonemes.
    Phonemize {
        id: u64,
        text: String,
        language: String,
        /// Stored pronunciations that may apply to `text`.
        lexicon: Vec<Pronunciation>,
    },
    /// What the worker holds now.
    Memory { id: u64 },
    /// Exit now; the operating system takes back everything the worker held.
    Exit,
}

/// What a worker tells the gateway once its engine is loaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub sample_rate: u32,
    pub voices: Vec<String>,
    pub languages: Vec<String>,
    /// What the engine says it holds (its weights and caches at their largest).
    pub engine_bytes: u64,
    /// Bytes the engine holds on an accelerator (0 on the CPU).
    pub device_bytes: u64,
}

/// Worker → gateway.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The engine is loaded; requests may follow.
    Ready(Ready),
    /// The engine could not be loaded; the worker exits after this.
    LoadFailed(EngineError),
    /// One chunk's audio, f32 at the engine's sample rate; with `part`, the next
    /// part of a chunk still being spoken ([`crate::engine::ChunkSink::send_part`]).
    Audio {
        id: u64,
        samples: Vec<f32>,
        #[serde(default)]
        part: bool,
        /// The chunk's words, where the job asked for them.
        #[serde(default)]
        words: Vec<WordTiming>,
    },
    /// `id` has ended (all chunks spoken, or cancelled).
    Done {
        id: u64,
    },
    Failed {
        id: u64,
        error: EngineError,
    },
    Conditioning {
        id: u64,
        bytes: Vec<u8>,
    },
    Phonemes {
        id: u64,
        phonemes: String,
    },
    Memory {
        id: u64,
        memory: Memory,
    },
}

impl Reply {
    /// The request this reply answers, if any.
    pub fn id(&self) -> Option<u64> {
        match self {
            Self::Ready(_) | Self::LoadFailed(_) => None,
            Self::Audio { id, .. }
            | Self::Done { id }
            | Self::Failed { id, .. }
            | Self::Conditioning { id, .. }
            | Self::Phonemes { id, .. }
            | Self::Memory { id, .. } => Some(*id),
        }
    }
}

/// A worker's memory, as it measures it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Resident set of the whole process.
    pub rss_bytes: u64,
    /// Bytes held on an accelerator (0 on the CPU).
    pub device_bytes: u64,
}

/// Serialise one message into a frame's payload.
pub fn encode<T: Serialize>(message: &T) -> Bytes {
    Bytes::from(postcard::to_allocvec(message).expect("protocol messages always serialise"))
}

/// Read one message from a frame's payload.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(frame)
}

/// Resident set size of process `pid` (`/proc/<pid>/statm`), 0 when unreadable.
pub fn rss_of(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/statm"),
        None => "/proc/self/statm".to_string(),
    };
    let pages = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ClonedVoice;

    #[test]
    fn messages_round_trip() {
        let job = SpeechJob {
            chunks: vec!["Hello there.".into(), "Again.".into()],
            voice: "af_heart".into(),
            speed: 1.25,
            phonemes: false,
            cloned: Some(ClonedVoice {
                id: "voice_1".into(),
                conditioning: vec![1u8, 2, 3].into(),
            }),
            language: Some(crate::text::Language::Japanese),
            incremental: true,
            lexicon: vec![crate::text::lexicon::Pronunciation {
                word: "Kokoro".into(),
                phonemes: "kˈOkəɹO".into(),
                language: crate::text::Language::AmericanEnglish,
            }],
            words: true,
        };
        let frame = encode(&Request::Synthesize {
            id: 7,
            job: job.clone(),
        });
        match decode::<Request>(&frame).unwrap() {
            Request::Synthesize { id, job: back } => {
                assert_eq!(id, 7);
                assert_eq!(back, job);
            }
            other => panic!("{other:?}"),
        }
        let samples = vec![0.5f32, -1.0, f32::MIN_POSITIVE];
        let frame = encode(&Reply::Audio {
            id: 9,
            samples: samples.clone(),
            part: true,
            words: vec![WordTiming {
                word: "Hello".into(),
                start: 10,
                end: 2400,
            }],
        });
        match decode::<Reply>(&frame).unwrap() {
            Reply::Audio {
                id,
                samples: back,
                part,
                words,
            } => {
                assert_eq!((id, back, part), (9, samples, true));
                assert_eq!(words[0].end, 2400);
            }
            other => panic!("{other:?}"),
        }
        let error = EngineError::Unsupported {
            param: "input_format".into(),
            message: "no".into(),
        };
        let frame = encode(&Reply::Failed { id: 1, error });
        let back: Reply = decode(&frame).unwrap();
        assert_eq!(back.id(), Some(1));
        assert!(
            matches!(back, Reply::Failed { error: EngineError::Unsupported { param, .. }, .. } if param == "input_format")
        );
        assert!(decode::<Reply>(&frame[..frame.len() - 1]).is_err());
    }

    #[test]
    fn a_computation_error_crosses_as_its_text_and_keeps_its_source_in_process() {
        let cause = candle_core::Error::Msg("shape mismatch".into());
        let error = EngineError::compute_in("voice v cannot be read", cause);
        assert_eq!(
            error.to_string(),
            "synthesis failed: voice v cannot be read: shape mismatch"
        );
        let source = std::error::Error::source(&error).expect("the error is kept");
        assert_eq!(source.to_string(), "shape mismatch");
        let frame = encode(&Reply::Failed {
            id: 3,
            error: error.clone(),
        });
        match decode::<Reply>(&frame).unwrap() {
            Reply::Failed { error: back, .. } => {
                assert_eq!(back.to_string(), error.to_string());
                assert!(std::error::Error::source(&back).is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn own_rss_is_read() {
        assert!(rss_of(None) > 1 << 20);
        assert_eq!(rss_of(Some(u32::MAX)), 0);
    }
}
