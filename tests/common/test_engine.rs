//! A test-only engine: holds a known number of bytes of real, touched memory and
//! speaks a deterministic tone whose length follows the text and the speed.
//! Compiled into tests and benches only; the server never lists it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use voxpool::audio::clip::ReferenceClip;
use voxpool::engine::{
    AudioChunk, EngineError, EngineLoader, LoadContext, ModelSpec, SynthRequest, TtsEngine,
};

pub const SAMPLE_RATE: u32 = 24_000;
/// Samples per character at speed 1.0 (10 ms).
pub const SAMPLES_PER_CHAR: usize = 240;
pub const VOICES: [&str; 2] = ["alloy", "test_voice"];

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

/// Block sizes of the weights, taken in turn: many buffers below and above glibc's
/// mmap threshold, like a model's tensors, so that freeing them exercises the
/// allocator's heaps rather than one big `munmap`.
const BLOCKS: [usize; 3] = [64 << 10, 1 << 20, 96 << 10];

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
        let mut blocks = Vec::new();
        let mut left = self.memory_bytes;
        let mut seed = 1u8;
        let mut i = 0;
        while left > 0 {
            let n = left.min(BLOCKS[i % BLOCKS.len()]);
            i += 1;
            // Written byte by byte: every page is really resident.
            let block: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
            blocks.push(block);
            left -= n;
            seed = seed.wrapping_add(2);
        }
        Ok(Box::new(TestEngine {
            blocks,
            knobs: Arc::clone(&self.knobs),
        }))
    }
}

struct TestEngine {
    blocks: Vec<Vec<u8>>,
    knobs: Arc<Knobs>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// The samples the test engine produces for `text` at `speed`.
pub fn expected_samples(text: &str, speed: f32) -> usize {
    ((text.chars().count() * SAMPLES_PER_CHAR) as f32 / speed).round() as usize
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
        let n = expected_samples(req.text, req.speed);
        // A cloned voice speaks at its own pitch, fixed by its conditioning.
        let freq = match req.cloned {
            Some(voice) => 300.0 + (fnv1a(&voice.conditioning) % 300) as f32,
            None => 220.0 + (checksum % 7) as f32,
        };
        let samples = (0..n)
            .map(|i| {
                0.3 * (2.0 * std::f32::consts::PI * freq * i as f32 / SAMPLE_RATE as f32).sin()
            })
            .collect();
        Ok(AudioChunk {
            samples,
            sample_rate: SAMPLE_RATE,
        })
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
