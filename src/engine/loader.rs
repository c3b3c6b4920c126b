//! How a model is built from its files: the [`EngineLoader`] each engine provides,
//! the [`LoadContext`] it loads in, and the [`WorkerSpec`] of the process that hosts it.

use std::path::PathBuf;
use std::sync::Arc;

use super::chatterbox::config::{S3GenQuant, T3Quant};
use super::{DeviceSpec, EngineError, TtsEngine};

/// Where and on what a model is loaded.
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub models_dir: PathBuf,
    pub device: DeviceSpec,
    /// Chatterbox Turbo's T3 weight storage, when the operator chose one.
    pub t3_quant: Option<T3Quant>,
    /// How Chatterbox Turbo's S3Gen flow multiplies, when the operator chose.
    pub s3gen_quant: Option<S3GenQuant>,
}

impl LoadContext {
    /// The candle device the engines run on.
    pub fn candle_device(&self) -> Result<candle_core::Device, EngineError> {
        let device = match self.device {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => candle_core::Device::new_cuda(n),
            DeviceSpec::Metal => candle_core::Device::new_metal(0),
        };
        device.map_err(|e| EngineError::Device {
            device: self.device.to_string(),
            reason: e.to_string(),
        })
    }
}

/// How a worker process hosts a model: the engine it builds (`voxpool worker
/// --engine`) and that engine's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    pub engine: String,
    pub options: Vec<(String, String)>,
}

impl WorkerSpec {
    pub fn new(engine: &str) -> Self {
        Self {
            engine: engine.to_string(),
            options: Vec::new(),
        }
    }
}

/// Builds an engine from files on disk. Runs on a blocking thread.
pub trait EngineLoader: Send + Sync {
    /// Build the engine in this process.
    fn load(&self, ctx: &LoadContext) -> Result<Box<dyn TtsEngine>, EngineError>;
    /// The worker process the server runs this model in; `None` loads it in the
    /// server's own process (models an embedding program registers itself).
    fn worker(&self) -> Option<WorkerSpec> {
        None
    }
    /// The voices the model's files on disk offer, found without loading the model
    /// (what `voices()` of the loaded engine lists); empty when the files are missing.
    fn builtin_voices(&self, ctx: &LoadContext) -> Vec<String> {
        let _ = ctx;
        Vec::new()
    }
    /// The languages the model would speak if loaded now, where that depends on
    /// the machine (Kokoro's language packs and espeak-ng); `None`: the spec's.
    fn languages(&self) -> Option<Vec<String>> {
        None
    }
    /// Whether the model times the words it speaks ([`crate::engine::AudioChunk::words`]).
    fn times_words(&self) -> bool {
        false
    }
    /// The language a voice speaks, as a code of [`ModelSpec::languages`]; `None`
    /// when the model's one language applies.
    fn voice_language(&self, voice: &str) -> Option<String> {
        let _ = voice;
        None
    }
    /// Bytes of the files a load reads, found without loading: what the pool makes
    /// room for under `MODEL_MEMORY_BUDGET` before it loads. 0 when unknown.
    fn file_bytes(&self, ctx: &LoadContext) -> u64 {
        let _ = ctx;
        0
    }
    /// Whether the model's engine clones voices ([`TtsEngine::clone_voice`]).
    fn clones_voices(&self) -> bool {
        false
    }
}

/// One model the server offers.
#[derive(Clone)]
pub struct ModelSpec {
    pub id: String,
    pub owned_by: String,
    /// Languages this build can really speak with the model (empty when not built).
    pub languages: Vec<String>,
    pub loader: Arc<dyn EngineLoader>,
}

impl std::fmt::Debug for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSpec")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
