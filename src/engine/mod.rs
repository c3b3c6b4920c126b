//! Text-to-speech engines and the registry of models the server knows.
//!
//! An engine turns one chunk of text into f32 samples. It knows nothing of HTTP,
//! the pool or the database; the pool sees engines only through [`TtsEngine`].

pub mod chatterbox;
mod device;
pub mod files;
pub mod kokoro;
mod loader;
pub mod nn;
mod registry;
pub mod seed;
pub mod tone;

use std::sync::Arc;

use crate::text::lexicon::Pronunciation;
use crate::text::Language;

pub use device::DeviceSpec;
pub use files::{find_model_file, size_of_files};
pub use loader::{EngineLoader, LoadContext, ModelSpec, WorkerSpec};
pub use registry::{Registry, OPENAI_ALIASES};

/// One chunk of text to speak.
#[derive(Debug, Clone, Copy)]
pub struct SynthRequest<'a> {
    pub text: &'a str,
    /// A voice id the engine lists in [`TtsEngine::voices`].
    pub voice: &'a str,
    /// Speaking rate, 0.25 to 4.0, 1.0 normal.
    pub speed: f32,
    /// `text` is already in the engine's phoneme alphabet (Kokoro), not plain text.
    pub phonemes: bool,
    /// Speak with this cloned voice instead of `voice` (which then names it).
    pub cloned: Option<&'a ClonedVoice>,
    /// Read `text` in this language; `None` lets the voice decide (Kokoro: the
    /// voice name's first letter).
    pub language: Option<Language>,
    /// Stored pronunciations, read before the G2P's own dictionaries.
    pub lexicon: &'a [Pronunciation],
    /// Time each word ([`AudioChunk::words`]).
    pub words: bool,
}

/// A voice cloned from a reference recording: the conditioning its model computed
/// once, as [`TtsEngine::clone_voice`] returned it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClonedVoice {
    /// The stored voice's id (`voice_…`), or `current` for the server's current voice.
    pub id: String,
    pub conditioning: std::sync::Arc<[u8]>,
}

/// A whole speech request: its chunks (sentences) spoken in order with one voice.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpeechJob {
    pub chunks: Vec<String>,
    pub voice: String,
    pub speed: f32,
    pub phonemes: bool,
    pub cloned: Option<ClonedVoice>,
    /// See [`SynthRequest::language`].
    pub language: Option<Language>,
    /// The audio goes out as it is made (a streamed response): an engine that can
    /// hands a chunk's first audio on before the chunk is finished
    /// ([`ChunkSink::send_part`]), at some cost in speed.
    #[serde(default)]
    pub incremental: bool,
    /// Stored pronunciations that may apply to the chunks, read before the G2P's
    /// own dictionaries.
    #[serde(default)]
    pub lexicon: Vec<Pronunciation>,
    /// Time each word of the chunks ([`AudioChunk::words`]).
    #[serde(default)]
    pub words: bool,
}

/// Where the audio of a [`SpeechJob`] goes, one chunk at a time.
pub trait ChunkSink {
    /// Take one chunk's audio (or the error that ends the job); `false` when no
    /// more is wanted (the client left, the time limit passed).
    fn send(&mut self, chunk: Result<AudioChunk, EngineError>) -> bool;
    /// Take the next part of the chunk being spoken, which [`ChunkSink::send`]
    /// ends with its last part; `false` when no more is wanted.
    fn send_part(&mut self, part: AudioChunk) -> bool {
        let _ = part;
        true
    }
    /// Whether the job is still wanted while a chunk is being made (the client is
    /// still there); an engine that can stop early asks.
    fn wanted(&self) -> bool {
        true
    }
}

impl<F: FnMut(Result<AudioChunk, EngineError>) -> bool> ChunkSink for F {
    fn send(&mut self, chunk: Result<AudioChunk, EngineError>) -> bool {
        self(chunk)
    }
}

/// Mono audio produced by an engine.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// When each word of the chunk is spoken, where the job asked
    /// ([`SpeechJob::words`]) and the engine can tell.
    pub words: Vec<WordTiming>,
}

/// A word and the samples it is spoken in, counted from its chunk's start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WordTiming {
    pub word: String,
    pub start: usize,
    pub end: usize,
}

impl AudioChunk {
    /// Audio without word timings.
    pub fn new(samples: Vec<f32>, sample_rate: u32) -> Self {
        Self {
            samples,
            sample_rate,
            words: Vec::new(),
        }
    }

    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// A loaded text-to-speech model. Weights are immutable; per-request state lives
/// in the call, so one engine serves concurrent requests.
pub trait TtsEngine: Send + Sync {
    /// Speak one chunk of text.
    fn synthesize(&self, req: &SynthRequest<'_>) -> Result<AudioChunk, EngineError>;
    /// Output sample rate in Hz.
    fn sample_rate(&self) -> u32;
    /// Voice ids this engine lists.
    fn voices(&self) -> Vec<String>;
    /// Whether `voice` can be spoken (engines with blends accept more than they list).
    fn accepts_voice(&self, voice: &str) -> bool {
        self.voices().iter().any(|v| v == voice)
    }
    /// Language codes this engine can speak (Kokoro's one-letter codes).
    fn languages(&self) -> Vec<String>;
    /// Bytes of weights and buffers this engine holds (RAM or device memory), with
    /// the caches it fills while serving counted at their largest: what the pool's
    /// memory budget charges it.
    fn memory_bytes(&self) -> u64;
    /// Compute a voice's conditioning from a reference clip, serialised for storage
    /// and later use through [`SynthRequest::cloned`]. Models that speak only their
    /// own voices refuse.
    fn clone_voice(
        &self,
        clip: &crate::audio::clip::ReferenceClip,
    ) -> Result<Vec<u8>, EngineError> {
        let _ = clip;
        Err(EngineError::Unsupported {
            param: "model".into(),
            message: "This model cannot clone voices; use chatterbox-turbo".into(),
        })
    }
    /// Speak every chunk of `job` in order, handing each chunk's audio to `sink` as
    /// soon as it exists; stops after an error or when `sink` returns `false`. An
    /// engine in a worker process overrides it to run the whole job there.
    fn synthesize_each(&self, job: &SpeechJob, sink: &mut dyn ChunkSink) {
        speak_each(|req| self.synthesize(req), job, sink);
    }
    /// Text to phonemes in the engine's alphabet, for `language` (Kokoro's letters).
    /// Models that read plain text only refuse.
    /// `lexicon` holds stored pronunciations, read before the G2P's own dictionaries.
    fn phonemize(
        &self,
        text: &str,
        language: &str,
        lexicon: &[Pronunciation],
    ) -> Result<String, EngineError> {
        let _ = (text, language, lexicon);
        Err(EngineError::Unsupported {
            param: "model".into(),
            message: "This model reads plain text; phonemes are for kokoro".into(),
        })
    }
    /// Free the weights; with `release_device_cache`, also give the device allocator's
    /// cached blocks back to the driver so the memory shows as free.
    fn unload(self: Box<Self>, release_device_cache: bool) {
        let _ = release_device_cache;
        drop(self);
    }
}

/// [`TtsEngine::synthesize_each`] with `synthesize` speaking each chunk: every chunk
/// in order, to `sink`, until an error or until `sink` wants no more.
pub fn speak_each(
    mut synthesize: impl FnMut(&SynthRequest<'_>) -> Result<AudioChunk, EngineError>,
    job: &SpeechJob,
    sink: &mut dyn ChunkSink,
) {
    for text in &job.chunks {
        let spoken = synthesize(&SynthRequest {
            text,
            voice: &job.voice,
            speed: job.speed,
            phonemes: job.phonemes,
            cloned: job.cloned.as_ref(),
            language: job.language,
            lexicon: &job.lexicon,
            words: job.words,
        });
        let failed = spoken.is_err();
        if !sink.send(spoken) || failed {
            return;
        }
    }
}

/// Speak every chunk of `job` and join the audio; the first error ends it.
pub fn synthesize_job(engine: &dyn TtsEngine, job: &SpeechJob) -> Result<AudioChunk, EngineError> {
    struct Collect(Result<AudioChunk, EngineError>);
    impl ChunkSink for Collect {
        fn send(&mut self, chunk: Result<AudioChunk, EngineError>) -> bool {
            match (&mut self.0, chunk) {
                (Ok(all), Ok(chunk)) => all.samples.extend(chunk.samples),
                (_, Err(e)) => self.0 = Err(e),
                (Err(_), Ok(_)) => {}
            }
            self.0.is_ok()
        }

        fn send_part(&mut self, part: AudioChunk) -> bool {
            self.send(Ok(part))
        }
    }
    let mut collect = Collect(Ok(AudioChunk {
        samples: Vec::new(),
        sample_rate: engine.sample_rate(),
        words: Vec::new(),
    }));
    engine.synthesize_each(job, &mut collect);
    collect.0
}

/// What can go wrong loading or running an engine. Crosses the worker protocol as is.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EngineError {
    /// The weights are not on disk; `voxpool pull` fetches them.
    #[error("Model files not found in cache. Run: voxpool pull {model}")]
    FilesMissing { model: String },
    /// A file exists but cannot be used.
    #[error("Cannot load {model} from {path}: {reason}")]
    BadFile {
        model: String,
        path: String,
        reason: String,
    },
    #[error("Voice '{voice}' is not available for model {model}")]
    UnknownVoice { model: String, voice: String },
    /// A request option this engine cannot honour (`param` names it).
    #[error("{message}")]
    Unsupported {
        param: std::borrow::Cow<'static, str>,
        message: String,
    },
    /// The input cannot be spoken (e.g. nothing pronounceable).
    #[error("{0}")]
    InvalidInput(String),
    /// The engine panicked (a bug); the model is reloaded for the next requests.
    #[error("synthesis failed: the engine panicked")]
    Panicked,
    /// The model's worker process could not start, or ended (crash, signal, out of
    /// memory) while it had work.
    #[error("The {model} worker process {reason}")]
    Worker { model: String, reason: String },
    /// A computation inside the model failed (a tensor op, a stored voice that cannot
    /// be read). `message` is the error's whole text, which is what crosses the worker
    /// protocol; in-process the error itself stays reachable as the source.
    #[error("synthesis failed: {message}")]
    Compute {
        message: String,
        #[serde(skip)]
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// Anything else that failed around the model, with no error value to keep (a
    /// synthesis thread that could not be joined, an unexpected worker reply).
    #[error("synthesis failed: {0}")]
    Synthesis(String),
    /// The configured device cannot be opened (no GPU, driver missing).
    #[error("Cannot open device {device}: {reason}")]
    Device { device: String, reason: String },
    /// The model alone holds more than `MODEL_MEMORY_BUDGET` allows all models together.
    #[error("{model} holds {} MiB, more than MODEL_MEMORY_BUDGET allows ({} MiB); raise the budget", .bytes.div_ceil(1 << 20), .budget >> 20)]
    OverBudget {
        model: String,
        bytes: u64,
        budget: u64,
    },
}

impl EngineError {
    /// A failure inside the model, `error` kept as the source.
    pub fn compute(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Compute {
            message: error.to_string(),
            source: Some(Arc::new(error)),
        }
    }

    /// [`Self::compute`] with what was being done said first: `"{context}: {error}"`.
    pub fn compute_in(
        context: impl std::fmt::Display,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Compute {
            message: format!("{context}: {error}"),
            source: Some(Arc::new(error)),
        }
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(error: candle_core::Error) -> Self {
        Self::compute(error)
    }
}
