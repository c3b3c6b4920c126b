//! A test-only engine: holds a known number of bytes of real, touched memory and
//! speaks a deterministic tone whose length follows the text and the speed.
//! Compiled into tests and benches only; the server never lists it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxpool::audio::clip::ReferenceClip;
use voxpool::engine::{
    AudioChunk, ChunkSink, EngineError, EngineLoader, LoadContext, ModelSpec, SpeechJob,
    SynthRequest, TtsEngine,
};
use voxpool::text::lexicon::Pronunciation;

pub use voxpool::engine::tone::{expected_samples, SAMPLE_RATE, VOICES};
use voxpool::engine::tone::{pitch, sine, touched_blocks};

/// Knobs a test turns while the server runs.
#[derive(Default)]
pub struct Knobs {
    pub loads: AtomicUsize,
    pub unloads: AtomicUsize,
    pub load_delay_ms: AtomicU64,
    pub synth_delay_ms: AtomicU64,
    pub fail_loads: AtomicBool,
    /// Synthesis panics (a bug in an engine).
    pub panic_synth: AtomicBool,
    /// The model clones voices (a fingerprint of the clip stands for its conditioning).
    pub clones: AtomicBool,
    pub clone_delay_ms: AtomicU64,
    /// The stored pronunciations the last speech job carried.
    pub last_lexicon: Mutex<Vec<Pronunciation>>,
}

pub struct TestLoader {
    pub memory_bytes: usize,
    pub knobs: Arc<Knobs>,
}

impl TestLoader {
    pub fn spec(id: &str, memory_bytes: usize) -> (ModelSpec, Arc<Knobs>) {
        let knobs = Arc::new(Knobs::default());
        let spec = ModelSpec {
            id: id.to_string(),
            owned_by: "tests".into(),
            languages: vec!["a".into()],
            loader: Arc::new(TestLoader {
                memory_bytes,
                knobs: Arc::clone(&knobs),
            }),
        };
        (spec, knobs)
    }
}

impl EngineLoader for TestLoader {
    fn clones_voices(&self) -> bool {
        self.knobs.clones.load(Ordering::SeqCst)
    }

    fn builtin_voices(&self, _ctx: &LoadContext) -> Vec<String> {
        VOICES.iter().map(|v| v.to_string()).collect()
    }

    fn load(&self, _ctx: &LoadContext) -> Result<Box<dyn TtsEngine>, EngineError> {
        self.knobs.loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(
            self.knobs.load_delay_ms.load(Ordering::SeqCst),
        ));
        if self.knobs.fail_loads.load(Ordering::SeqCst) {
            return Err(EngineError::BadFile {
                model: "test".into(),
                path: "weights.bin".into(),
                reason: "truncated file".into(),
            });
        }
        Ok(Box::new(TestEngine {
            blocks: touched_blocks(self.memory_bytes),
            knobs: Arc::clone(&self.knobs),
        }))
    }
}

struct TestEngine {
    blocks: Vec<Vec<u8>>,
    knobs: Arc<Knobs>,
}

impl TtsEngine for TestEngine {
    fn synthesize(&self, req: &SynthRequest<'_>) -> Result<AudioChunk, EngineError> {
        std::thread::sleep(Duration::from_millis(
            self.knobs.synth_delay_ms.load(Ordering::SeqCst),
        ));
        assert!(
            !self.knobs.panic_synth.load(Ordering::SeqCst),
            "test engine told to panic"
        );
        // Read the weights so they are used like a model's.
        let checksum: u32 = self.blocks.iter().map(|b| u32::from(b[b.len() / 2])).sum();
        // A cloned voice speaks at its own pitch, fixed by its conditioning.
        let freq = pitch(req.cloned, checksum);
        Ok(AudioChunk {
            samples: sine(freq, expected_samples(req.text, req.speed)),
            sample_rate: SAMPLE_RATE,
            words: Vec::new(),
        })
    }

    fn synthesize_each(&self, job: &SpeechJob, sink: &mut dyn ChunkSink) {
        *self
            .knobs
            .last_lexicon
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = job.lexicon.clone();
        voxpool::engine::speak_each(|req| self.synthesize(req), job, sink);
    }

    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn clone_voice(&self, clip: &ReferenceClip) -> Result<Vec<u8>, EngineError> {
        std::thread::sleep(Duration::from_millis(
            self.knobs.clone_delay_ms.load(Ordering::SeqCst),
        ));
        let rms =
            (clip.wav_16k.iter().map(|s| s * s).sum::<f32>() / clip.wav_16k.len() as f32).sqrt();
        let mut conditioning = b"test-voice".to_vec();
        conditioning.extend(rms.to_le_bytes());
        conditioning.extend((clip.wav_24k.len() as u32).to_le_bytes());
        conditioning.extend((clip.wav_16k.len() as u32).to_le_bytes());
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

    fn unload(self: Box<Self>, _release_device_cache: bool) {
        self.knobs.unloads.fetch_add(1, Ordering::SeqCst);
        drop(self);
    }
}
