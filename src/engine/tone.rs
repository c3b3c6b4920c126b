//! `tone`: an engine with no model files, for tests and benchmarks of the server
//! itself. It holds a chosen number of bytes of real, touched memory and speaks a
//! sine tone whose length follows the text and the speed (10 ms per character at
//! speed 1.0), optionally after a delay per chunk. The server offers it only where
//! a program registers it ([`ToneLoader::spec`]); `Registry::builtin` never does.

use std::sync::Arc;
use std::time::Duration;

use super::{AudioChunk, EngineError, EngineLoader, LoadContext, ModelSpec, SynthRequest};
use super::{TtsEngine, WorkerSpec};

pub const SAMPLE_RATE: u32 = 24_000;
/// Samples per character at speed 1.0 (10 ms).
pub const SAMPLES_PER_CHAR: usize = 240;
pub const VOICES: [&str; 2] = ["alloy", "test_voice"];

/// Samples `tone` speaks for `text` at `speed`.
pub fn expected_samples(text: &str, speed: f32) -> usize {
    ((text.chars().count() * SAMPLES_PER_CHAR) as f32 / speed).round() as usize
}

/// Block sizes of the held memory, taken in turn: many buffers below and above
/// glibc's mmap threshold, like a model's tensors, so that freeing them exercises
/// the allocator's heaps rather than one big `munmap`.
const BLOCKS: [usize; 3] = [64 << 10, 1 << 20, 96 << 10];

/// `bytes` of memory in blocks, written byte by byte so every page is resident.
pub fn touched_blocks(bytes: usize) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut left = bytes;
    let mut seed = 1u8;
    while left > 0 {
        let n = left.min(BLOCKS[blocks.len() % BLOCKS.len()]);
        blocks.push((0..n).map(|i| (i as u8).wrapping_mul(seed)).collect());
        left -= n;
        seed = seed.wrapping_add(2);
    }
    blocks
}

/// Builds a `tone` engine; in a worker process unless `in_process`.
#[derive(Debug, Clone, Default)]
pub struct ToneLoader {
    pub memory_bytes: usize,
    pub delay: Duration,
    pub in_process: bool,
    /// The load aborts the process (a model that crashes its worker while loading).
    pub abort_on_load: bool,
}

impl ToneLoader {
    /// A model `id` served by `tone`.
    pub fn spec(id: &str, loader: ToneLoader) -> ModelSpec {
        ModelSpec {
            id: id.to_string(),
            owned_by: "voxpool".into(),
            languages: vec!["a".into()],
            loader: Arc::new(loader),
        }
    }

    /// The loader a worker builds from `--option memory_bytes=N --option delay_ms=N`.
    pub fn from_options(options: &[(String, String)]) -> Result<Self, String> {
        let mut loader = Self::default();
        for (key, value) in options {
            let n: u64 = value
                .parse()
                .map_err(|_| format!("tone option {key}={value}: expected a number"))?;
            match key.as_str() {
                "memory_bytes" => loader.memory_bytes = n as usize,
                "delay_ms" => loader.delay = Duration::from_millis(n),
                "abort_on_load" => loader.abort_on_load = n != 0,
                other => return Err(format!("tone has no option {other:?}")),
            }
        }
        Ok(loader)
    }
}

impl EngineLoader for ToneLoader {
    fn load(&self, _ctx: &LoadContext) -> Result<Box<dyn TtsEngine>, EngineError> {
        if self.abort_on_load {
            std::process::abort();
        }
        Ok(Box::new(ToneEngine {
            blocks: touched_blocks(self.memory_bytes),
            delay: self.delay,
        }))
    }

    fn worker(&self) -> Option<WorkerSpec> {
        (!self.in_process).then(|| WorkerSpec {
            engine: "tone".into(),
            options: vec![
                ("memory_bytes".into(), self.memory_bytes.to_string()),
                ("delay_ms".into(), self.delay.as_millis().to_string()),
                (
                    "abort_on_load".into(),
                    u8::from(self.abort_on_load).to_string(),
                ),
            ],
        })
    }

    fn file_bytes(&self, _ctx: &LoadContext) -> u64 {
        self.memory_bytes as u64
    }

    fn builtin_voices(&self, _ctx: &LoadContext) -> Vec<String> {
        VOICES.iter().map(|v| v.to_string()).collect()
    }

    fn clones_voices(&self) -> bool {
        true
    }
}

struct ToneEngine {
    blocks: Vec<Vec<u8>>,
    delay: Duration,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// The pitch a voice speaks at: a cloned voice's follows from its conditioning,
/// a built-in one's from `checksum` (of the memory the engine holds).
pub fn pitch(cloned: Option<&super::ClonedVoice>, checksum: u32) -> f32 {
    match cloned {
        Some(voice) => 300.0 + (fnv1a(&voice.conditioning) % 300) as f32,
        None => 220.0 + (checksum % 7) as f32,
    }
}

/// `n` samples of a sine at `freq` Hz.
pub fn sine(freq: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * freq * i as f32 / SAMPLE_RATE as f32).sin())
        .collect()
}

impl TtsEngine for ToneEngine {
    fn synthesize(&self, req: &SynthRequest<'_>) -> Result<AudioChunk, EngineError> {
        std::thread::sleep(self.delay);
        if req.text.contains("[panic]") {
            panic!("tone was asked to panic");
        }
        // Read the held memory so it is used like weights.
        let checksum: u32 = self.blocks.iter().map(|b| u32::from(b[b.len() / 2])).sum();
        let freq = pitch(req.cloned, checksum);
        Ok(AudioChunk {
            samples: sine(freq, expected_samples(req.text, req.speed)),
            sample_rate: SAMPLE_RATE,
            words: Vec::new(),
        })
    }

    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn clone_voice(
        &self,
        clip: &crate::audio::clip::ReferenceClip,
    ) -> Result<Vec<u8>, EngineError> {
        let rms = (clip.wav_16k.iter().map(|s| s * s).sum::<f32>()
            / clip.wav_16k.len().max(1) as f32)
            .sqrt();
        let mut conditioning = b"tone-voice".to_vec();
        conditioning.extend(rms.to_le_bytes());
        conditioning.extend((clip.wav_24k.len() as u32).to_le_bytes());
        Ok(conditioning)
    }

    fn voices(&self) -> Vec<String> {
        VOICES.iter().map(|v| v.to_string()).collect()
    }

    fn languages(&self) -> Vec<String> {
        vec!["a".into()]
    }

    fn memory_bytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.len() as u64).sum()
    }
}
