//! The `chatterbox-turbo` engine (`tts_turbo.py`, class `ChatterboxTurboTTS`): text →
//! `punc_norm` → GPT-2 BPE → T3 speech tokens → S3Gen mel (two meanflow steps) → HiFT
//! → 24 kHz audio, with the built-in voice of `conds.pt`.
//!
//! Files, in the Hugging Face cache layout of `ResembleAI/chatterbox-turbo` or in
//! `<models_dir>/chatterbox-turbo/`: `t3_turbo_v1.safetensors`,
//! `s3gen_meanflow.safetensors`, `conds.pt` and the tokenizer files (`vocab.json`,
//! `merges.txt`, `added_tokens.json`, … or `tokenizer.json`). A checkpoint of other
//! sizes may carry `voxpool_chatterbox.json` with `{"t3": …, "s3gen": …, "hift": …}`
//! configurations (each optional; the released Turbo sizes otherwise) and
//! `"t3_quant": "f32" | "q8_0" | "q4k"`, the storage of T3's matrix-product
//! weights (q8_0 when absent; see [`T3Quant`]), and `"s3gen_quant": "f32" | "int8"`,
//! how S3Gen's flow multiplies (f32 when absent; see [`S3GenQuant`]).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};

use super::cloner::{ClonerConfig, VoiceCloner};
use super::conds::Conditionals;
use super::config::{S3GenQuant, T3Config, T3Quant};
use super::s3gen::hifigan::{HiFTConfig, HiFTGenerator};
use super::s3gen::{S3GenConfig, S3Token2Mel};
use super::stream::{SpeechRenderer, StreamPlan};
use super::t3::inference::SamplingParams;
use super::t3::{QuantCache, T3};
use super::text::{punc_norm, TextTokenizer};
use crate::audio::clip::ReferenceClip;
use crate::audio::stretch::StretchStream;
use crate::engine::files::find_model_file;
use crate::engine::nn::safetensors_file::{var_builder, SafetensorsFile};
use crate::engine::seed::Fnv1a64;
use crate::engine::{
    AudioChunk, ChunkSink, ClonedVoice, EngineError, EngineLoader, LoadContext, SpeechJob,
    SynthRequest, TtsEngine,
};

pub const MODEL: &str = "chatterbox-turbo";
pub const HUB_REPO: &str = "ResembleAI/chatterbox-turbo";
pub const T3_WEIGHTS: &str = "t3_turbo_v1.safetensors";
pub const S3GEN_WEIGHTS: &str = "s3gen_meanflow.safetensors";
pub const CONDS: &str = "conds.pt";
/// The voice encoder, needed only to clone voices.
pub const VE_WEIGHTS: &str = "ve.safetensors";
/// Optional configurations for checkpoints that are not the released size.
pub const CONFIG_OVERRIDES: &str = "voxpool_chatterbox.json";
pub const SAMPLE_RATE: u32 = 24_000;
/// The voice that `conds.pt` holds.
pub const BUILTIN_VOICE: &str = "default";
/// OpenAI's voice names; Turbo has one built-in voice, so each means it.
pub const OPENAI_VOICES: [&str; 11] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
];
/// `S3GEN_SIL`: the silence token appended three times after the speech tokens.
const SILENCE_TOKEN: u32 = 4299;
/// Speech token ids at or above this are not audio (start/stop) and are dropped.
const SPEECH_VOCAB: u32 = 6561;

/// Where one Turbo checkpoint lives.
#[derive(Debug, Clone)]
pub struct TurboFiles {
    pub dir: PathBuf,
}

fn missing() -> EngineError {
    EngineError::FilesMissing {
        model: MODEL.into(),
    }
}

fn bad_file(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::BadFile {
        model: MODEL.into(),
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl TurboFiles {
    /// Finds the checkpoint folder in `models_dir`; every file the engine reads must
    /// be there.
    pub fn locate(models_dir: &Path) -> Result<Self, EngineError> {
        let t3 = find_model_file(models_dir, HUB_REPO, MODEL, T3_WEIGHTS).ok_or_else(missing)?;
        let dir = t3.parent().ok_or_else(missing)?.to_path_buf();
        let tokenizer = dir.join("tokenizer.json").is_file()
            || (dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file());
        if !dir.join(S3GEN_WEIGHTS).is_file() || !dir.join(CONDS).is_file() || !tokenizer {
            return Err(missing());
        }
        Ok(Self { dir })
    }

    fn overrides(&self) -> Result<Overrides, EngineError> {
        let path = self.dir.join(CONFIG_OVERRIDES);
        if !path.is_file() {
            return Ok(Overrides::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| bad_file(&path, e))?;
        serde_json::from_str(&text).map_err(|e| bad_file(&path, e))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct Overrides {
    t3: Option<T3Config>,
    s3gen: Option<S3GenConfig>,
    hift: Option<HiFTConfig>,
    #[serde(default)]
    t3_quant: T3Quant,
    #[serde(default)]
    s3gen_quant: S3GenQuant,
    /// Voice-cloning networks (`ve`, `s3tokenizer`, `campplus`, `features`).
    #[serde(flatten)]
    cloner: ClonerConfig,
}

pub struct ChatterboxTurboEngine {
    t3: T3,
    s3gen: S3Token2Mel,
    /// How the flow multiplies, as loaded (f32 where int8 was asked for but the CPU
    /// cannot run it fast).
    s3gen_quant: S3GenQuant,
    hift: HiFTGenerator,
    tokenizer: TextTokenizer,
    voice: Conditionals,
    sampling: SamplingParams,
    /// GPT-2's position table: conditioning, text and speech tokens must fit in it.
    n_positions: usize,
    device: Device,
    memory_bytes: u64,
    /// Cloned voices recently spoken with, on the device, most recent last.
    cloned: Mutex<Vec<(u64, Arc<Conditionals>)>>,
    /// The cloning encoders, loaded on the first clone (they are not needed to speak).
    cloner: Mutex<Option<Arc<VoiceCloner>>>,
    cloner_cfg: ClonerConfig,
    dir: PathBuf,
}

/// How many cloned voices stay ready on the device.
const CLONED_CACHE: usize = 16;

impl ChatterboxTurboEngine {
    /// `t3_quant`, when given, wins over the checkpoint's `voxpool_chatterbox.json`.
    pub fn load(
        files: &TurboFiles,
        device: &Device,
        t3_quant: Option<T3Quant>,
    ) -> Result<Self, EngineError> {
        Self::load_cached(files, device, t3_quant, None)
    }

    /// [`Self::load`] keeping T3's quantised weights in `t3_cache` (a folder; see
    /// [`QuantCache`]), read from there by later loads.
    pub fn load_cached(
        files: &TurboFiles,
        device: &Device,
        t3_quant: Option<T3Quant>,
        t3_cache: Option<&Path>,
    ) -> Result<Self, EngineError> {
        Self::load_with(files, device, (t3_quant, None), t3_cache)
    }

    /// [`Self::load_cached`] with the flow's products chosen too: `quant` is
    /// `(T3's weights, S3Gen's flow)`, each, when given, winning over the checkpoint's
    /// `voxpool_chatterbox.json`.
    pub fn load_with(
        files: &TurboFiles,
        device: &Device,
        (t3_quant, s3gen_quant): (Option<T3Quant>, Option<S3GenQuant>),
        t3_cache: Option<&Path>,
    ) -> Result<Self, EngineError> {
        let mut overrides = files.overrides()?;
        if let Some(q) = t3_quant {
            overrides.t3_quant = q;
        }
        if let Some(q) = s3gen_quant {
            overrides.s3gen_quant = q;
        }
        let t3_cfg = overrides.t3.unwrap_or_else(T3Config::turbo);
        let s3gen_cfg = overrides.s3gen.unwrap_or_else(S3GenConfig::turbo);
        let hift_cfg = overrides.hift.unwrap_or_else(HiFTConfig::s3gen);
        let t3_path = files.dir.join(T3_WEIGHTS);
        let s3gen_path = files.dir.join(S3GEN_WEIGHTS);
        let tokenizer = TextTokenizer::from_dir(&files.dir)?;
        // An id past T3's text table could not be embedded; the reference warns when
        // the tokenizer is not exactly the table's size (the released files match).
        let table = t3_cfg.t3.text_tokens_dict_size;
        if tokenizer.len() > table {
            return Err(bad_file(
                &files.dir,
                format!(
                    "the tokenizer has {} tokens, more than T3's {table} text embeddings",
                    tokenizer.len()
                ),
            ));
        }
        if tokenizer.len() != table {
            tracing::warn!(
                tokens = tokenizer.len(),
                embeddings = table,
                "the tokenizer is smaller than T3's text table"
            );
        }
        let open = |path: &Path| SafetensorsFile::open(path).map_err(|e| bad_file(path, e));
        let t3_file = open(&t3_path)?;
        let t3_read = t3_file.loaded();
        let quant_cache =
            t3_cache.and_then(|dir| QuantCache::new(dir, &t3_path, overrides.t3_quant));
        let t3 = T3::load_cached(
            t3_file.into_var_builder(DType::F32, device),
            &t3_cfg,
            overrides.t3_quant,
            quant_cache.as_ref(),
        )
        .map_err(|e| bad_file(&t3_path, e))?;
        let s3gen_file = open(&s3gen_path)?;
        let s3gen_read = s3gen_file.loaded();
        // The cloning encoders load on the first clone: their share is reserved now
        // when their files are there.
        let ve_path = files.dir.join(VE_WEIGHTS);
        let cloner_bytes = if ve_path.is_file() {
            ["tokenizer.", "speaker_encoder."]
                .iter()
                .map(|p| s3gen_file.bytes_under(p, DType::F32))
                .sum::<u64>()
                + open(&ve_path)?.bytes_under("", DType::F32)
        } else {
            0
        };
        let s3_vb = s3gen_file.into_var_builder(DType::F32, device);
        let mut s3gen =
            S3Token2Mel::load(s3_vb.clone(), &s3gen_cfg).map_err(|e| bad_file(&s3gen_path, e))?;
        let s3gen_quant = match overrides.s3gen_quant {
            S3GenQuant::Int8 if device.is_cpu() && crate::engine::nn::int8::int8_available() => {
                s3gen.quantise_int8();
                S3GenQuant::Int8
            }
            S3GenQuant::Int8 => {
                tracing::warn!(
                    "S3Gen int8 products need an x86-64 CPU with AVX2 or AVX-512 VNNI; the flow stays f32"
                );
                S3GenQuant::F32
            }
            S3GenQuant::F32 => S3GenQuant::F32,
        };
        let hift = HiFTGenerator::load(s3_vb.pp("mel2wav"), &hift_cfg)
            .map_err(|e| bad_file(&s3gen_path, e))?;
        let conds_path = files.dir.join(CONDS);
        let voice =
            Conditionals::load(&conds_path, device).map_err(|e| bad_file(&conds_path, e))?;
        // What the weights hold (the tensors read, T3's quantised ones at their size
        // whether quantised now or read from the cache), and the caches filled while
        // speaking and cloning, at their largest.
        let memory_bytes = t3.weight_bytes(t3_read.get())
            + s3gen_read.get()
            + t3.voice_prefix_bytes()
            + (1 + CLONED_CACHE as u64) * voice.bytes()
            + cloner_bytes;
        Ok(Self {
            t3,
            s3gen,
            s3gen_quant,
            hift,
            tokenizer,
            voice,
            sampling: SamplingParams::default(),
            n_positions: t3_cfg.backbone.n_positions,
            device: device.clone(),
            memory_bytes,
            cloned: Mutex::new(Vec::new()),
            cloner: Mutex::new(None),
            cloner_cfg: overrides.cloner,
            dir: files.dir.clone(),
        })
    }

    /// How S3Gen's flow multiplies, as loaded.
    pub fn s3gen_quant(&self) -> S3GenQuant {
        self.s3gen_quant
    }

    /// How T3's matrix-product weights are stored (`"t3_quant"` of the overrides file).
    pub fn t3_quant(&self) -> T3Quant {
        self.t3.quant()
    }

    /// Speech tokens for `text` with the built-in voice, as `generate` feeds S3Gen:
    /// ids ≥ 6561 dropped, three silence tokens appended.
    pub fn speech_tokens(&self, text: &str, rng: &mut impl Rng) -> Result<Vec<u32>, EngineError> {
        self.speech_tokens_for(text, &self.voice, rng)
    }

    /// Speech tokens → 24 kHz samples with the built-in voice.
    pub fn vocode(&self, tokens: &[u32], rng: &mut impl Rng) -> Result<Vec<f32>, EngineError> {
        self.vocode_for(tokens, &self.voice, rng)
    }

    /// [`Self::speech_tokens`] with `voice`.
    pub fn speech_tokens_for(
        &self,
        text: &str,
        voice: &Conditionals,
        rng: &mut impl Rng,
    ) -> Result<Vec<u32>, EngineError> {
        let (ids, params) = self.t3_input(text, voice)?;
        let mut tokens = self
            .t3
            .inference(&ids, &voice.t3, &params, rng)
            .map_err(EngineError::from)?;
        tokens.retain(|&t| t < SPEECH_VOCAB);
        tokens.extend([SILENCE_TOKEN; 3]);
        Ok(tokens)
    }

    /// T3's text ids for `text` and its sampling, with the speech tokens limited to
    /// what is left of the position table once `voice`'s conditioning and the text
    /// are in it (8196 for Turbo, far beyond its 1000-token limit; smaller
    /// checkpoints stop earlier instead of failing).
    fn t3_input(
        &self,
        text: &str,
        voice: &Conditionals,
    ) -> Result<(Vec<u32>, SamplingParams), EngineError> {
        let ids = self.tokenizer.encode(&punc_norm(text))?;
        let prompt = match &voice.t3.cond_prompt_speech_tokens {
            Some(t) => t.dim(1).map_err(EngineError::from)?,
            None => 0,
        };
        let room = self
            .n_positions
            .checked_sub(prompt + ids.len() + 3)
            .filter(|&r| r > 0)
            .ok_or_else(|| {
                EngineError::InvalidInput(format!(
                    "the text is too long for chatterbox-turbo ({} tokens); split it",
                    ids.len()
                ))
            })?;
        let params = SamplingParams {
            max_gen_len: self.sampling.max_gen_len.min(room),
            ..self.sampling.clone()
        };
        Ok((ids, params))
    }

    /// Speech tokens → 24 kHz samples (S3Gen, HiFT, the reference's fade-in) with
    /// `voice`, rendered whole; `rng` gives the seed of the random draws.
    pub fn vocode_for(
        &self,
        tokens: &[u32],
        voice: &Conditionals,
        rng: &mut impl Rng,
    ) -> Result<Vec<f32>, EngineError> {
        let mut renderer = self
            .renderer(voice, rng.random())
            .map_err(EngineError::from)?;
        renderer.finish(tokens).map_err(EngineError::from)
    }

    fn renderer<'a>(
        &'a self,
        voice: &'a Conditionals,
        seed: u64,
    ) -> candle_core::Result<SpeechRenderer<'a>> {
        SpeechRenderer::new(
            &self.s3gen,
            &self.hift,
            &voice.gen,
            StreamPlan::default(),
            seed,
            SAMPLE_RATE,
        )
    }

    /// One sentence in `voice`: T3's tokens, then their audio, stretched to `speed`.
    /// With `incremental`, the audio is rendered in chunks while T3 goes on and each
    /// part but the last goes to `sink` as it is made; the rest is returned. `None`
    /// when `sink` wanted no more (the client left) before the end.
    fn speak_sentence(
        &self,
        text: &str,
        voice: &Conditionals,
        seed: u64,
        speed: f32,
        incremental: bool,
        sink: &mut dyn ChunkSink,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        // T3 samples from the seed as it always has; the vocoder's draws come from a
        // second seed made from it, so they do not depend on how many T3 took.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let vocoder_seed = Fnv1a64::new()
            .bytes(&seed.to_le_bytes())
            .bytes(b"vocoder")
            .finish();
        let (ids, params) = self.t3_input(text, voice)?;
        let mut renderer = self.renderer(voice, vocoder_seed)?;
        let mut stretch = StretchStream::new(SAMPLE_RATE, speed);
        let mut stopped = false;
        let mut speech = Vec::new();
        let tokens = self.t3.inference_with(
            &ids,
            &voice.t3,
            &params,
            &mut rng,
            &mut |generated: &[u32]| {
                if !sink.wanted() {
                    stopped = true;
                    return Ok(false);
                }
                if incremental {
                    speech.clear();
                    speech.extend(generated.iter().copied().filter(|&t| t < SPEECH_VOCAB));
                    let audio = stretch.push(&renderer.push(&speech)?);
                    if !audio.is_empty()
                        && !sink.send_part(AudioChunk {
                            samples: audio,
                            sample_rate: SAMPLE_RATE,
                            words: Vec::new(),
                        })
                    {
                        stopped = true;
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )?;
        if stopped {
            return Ok(None);
        }
        let mut speech: Vec<u32> = tokens.into_iter().filter(|&t| t < SPEECH_VOCAB).collect();
        speech.extend([SILENCE_TOKEN; 3]);
        let mut samples = stretch.push(&renderer.finish(&speech)?);
        samples.extend(stretch.finish());
        Ok(Some(samples))
    }

    /// The voice a request speaks with: a cloned voice's conditioning, or the
    /// built-in one; refuses voices it does not know and phoneme input.
    fn request_voice(
        &self,
        voice: &str,
        cloned: Option<&ClonedVoice>,
        phonemes: bool,
    ) -> Result<Option<Arc<Conditionals>>, EngineError> {
        let cloned = cloned.map(|v| self.cloned_voice(v)).transpose()?;
        if cloned.is_none() && !self.accepts_voice(voice) {
            return Err(EngineError::UnknownVoice {
                model: MODEL.into(),
                voice: voice.into(),
            });
        }
        if phonemes {
            return Err(EngineError::Unsupported {
                param: "input_format".into(),
                message: "chatterbox-turbo reads plain text; phoneme input is for kokoro".into(),
            });
        }
        Ok(cloned)
    }
}

impl ChatterboxTurboEngine {
    /// The cloning encoders, loaded on first use from `ve.safetensors` and the
    /// tokenizer and speaker encoder inside the S3Gen file.
    fn cloner(&self) -> Result<Arc<VoiceCloner>, EngineError> {
        let mut slot = self.cloner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let ve_path = self.dir.join(VE_WEIGHTS);
        if !ve_path.is_file() {
            return Err(missing());
        }
        let s3gen_path = self.dir.join(S3GEN_WEIGHTS);
        let ve =
            var_builder(&ve_path, DType::F32, &self.device).map_err(|e| bad_file(&ve_path, e))?;
        let s3 = var_builder(&s3gen_path, DType::F32, &self.device)
            .map_err(|e| bad_file(&s3gen_path, e))?;
        let started = std::time::Instant::now();
        let cloner = Arc::new(VoiceCloner::load(ve, s3, &self.cloner_cfg).map_err(|e| {
            bad_file(
                &self.dir,
                format!("the voice-cloning encoders cannot be read: {e}"),
            )
        })?);
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "voice-cloning encoders loaded"
        );
        *slot = Some(cloner.clone());
        Ok(cloner)
    }

    /// A cloned voice's conditioning on the device, read once and kept among the
    /// [`CLONED_CACHE`] most recent. Keyed by content, so a voice replaced under the
    /// same id (the server's current voice) is never served stale.
    fn cloned_voice(&self, voice: &ClonedVoice) -> Result<Arc<Conditionals>, EngineError> {
        let key = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            voice.conditioning.hash(&mut h);
            h.finish()
        };
        let mut cache = self.cloned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
            let entry = cache.remove(i);
            let found = entry.1.clone();
            cache.push(entry);
            return Ok(found);
        }
        drop(cache);
        let conds = Conditionals::from_bytes(&voice.conditioning, &self.device).map_err(|e| {
            EngineError::compute_in(format_args!("voice {} cannot be read", voice.id), e)
        })?;
        let conds = Arc::new(conds);
        let mut cache = self.cloned.lock().unwrap_or_else(|e| e.into_inner());
        cache.push((key, conds.clone()));
        if cache.len() > CLONED_CACHE {
            cache.remove(0);
        }
        Ok(conds)
    }
}

/// The sampling seed of one chunk: FNV-1a over the text's bytes, a 0xff byte (never
/// in UTF-8, so the text ends there), then 0 and the built-in voice's name, or 1 and
/// the cloned voice's conditioning bytes.
fn request_seed(text: &str, cloned: Option<&ClonedVoice>) -> u64 {
    let h = Fnv1a64::new().bytes(text.as_bytes()).bytes(&[0xff]);
    match cloned {
        Some(voice) => h.bytes(&[1]).bytes(&voice.conditioning),
        None => h.bytes(&[0]).bytes(BUILTIN_VOICE.as_bytes()),
    }
    .finish()
}

impl TtsEngine for ChatterboxTurboEngine {
    fn synthesize(&self, req: &SynthRequest<'_>) -> Result<AudioChunk, EngineError> {
        let cloned = self.request_voice(req.voice, req.cloned, req.phonemes)?;
        let voice = cloned.as_deref().unwrap_or(&self.voice);
        // Sampling is seeded by the input: the same text in the same voice gives the
        // same audio, whatever else runs at the same time, and after an upgrade.
        let seed = request_seed(req.text, req.cloned);
        let mut everything = |_: Result<AudioChunk, EngineError>| true;
        let samples = self
            .speak_sentence(req.text, voice, seed, req.speed, false, &mut everything)?
            .unwrap_or_default();
        Ok(AudioChunk {
            samples,
            sample_rate: SAMPLE_RATE,
            words: Vec::new(),
        })
    }

    /// Each sentence in turn; for a streamed response its audio goes out in parts
    /// while T3 is still speaking it. A client that leaves stops T3 at its next token.
    fn synthesize_each(&self, job: &SpeechJob, sink: &mut dyn ChunkSink) {
        let cloned = match self.request_voice(&job.voice, job.cloned.as_ref(), job.phonemes) {
            Ok(cloned) => cloned,
            Err(e) => {
                sink.send(Err(e));
                return;
            }
        };
        let voice = cloned.as_deref().unwrap_or(&self.voice);
        for text in &job.chunks {
            let seed = request_seed(text, job.cloned.as_ref());
            match self.speak_sentence(text, voice, seed, job.speed, job.incremental, sink) {
                Ok(Some(samples)) => {
                    let taken = sink.send(Ok(AudioChunk {
                        samples,
                        sample_rate: SAMPLE_RATE,
                        words: Vec::new(),
                    }));
                    if !taken {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    sink.send(Err(e));
                    return;
                }
            }
        }
    }

    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn clone_voice(&self, clip: &ReferenceClip) -> Result<Vec<u8>, EngineError> {
        let voice = self
            .cloner()?
            .conditionals(clip)
            .map_err(EngineError::from)?;
        voice.to_bytes().map_err(EngineError::compute)
    }

    fn voices(&self) -> Vec<String> {
        builtin_voices()
    }

    fn languages(&self) -> Vec<String> {
        vec!["en".into()]
    }

    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
}

fn builtin_voices() -> Vec<String> {
    std::iter::once(BUILTIN_VOICE)
        .chain(OPENAI_VOICES)
        .map(String::from)
        .collect()
}

/// Loads Chatterbox Turbo from the models folder for the pool.
pub struct TurboLoader;

impl EngineLoader for TurboLoader {
    fn worker(&self) -> Option<crate::engine::WorkerSpec> {
        Some(crate::engine::WorkerSpec::new("chatterbox-turbo"))
    }

    fn load(&self, ctx: &LoadContext) -> Result<Box<dyn TtsEngine>, EngineError> {
        let files = TurboFiles::locate(&ctx.models_dir)?;
        let cache = ctx.models_dir.join("voxpool-cache").join(MODEL);
        let engine = ChatterboxTurboEngine::load_with(
            &files,
            &ctx.candle_device()?,
            (ctx.t3_quant, ctx.s3gen_quant),
            Some(&cache),
        )?;
        Ok(Box::new(engine))
    }

    fn clones_voices(&self) -> bool {
        true
    }

    /// The two checkpoints; T3's includes its unused text head, and quantising it at
    /// load shrinks it, so this is an upper bound.
    fn file_bytes(&self, ctx: &LoadContext) -> u64 {
        TurboFiles::locate(&ctx.models_dir).map_or(0, |files| {
            crate::engine::files::size_of_files([
                files.dir.join(T3_WEIGHTS).as_path(),
                files.dir.join(S3GEN_WEIGHTS).as_path(),
            ])
        })
    }

    fn builtin_voices(&self, ctx: &LoadContext) -> Vec<String> {
        match TurboFiles::locate(&ctx.models_dir) {
            Ok(_) => builtin_voices(),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_fixed_by_the_text_and_the_voice() {
        // Pinned: a change here changes every request's audio.
        assert_eq!(request_seed("Hello.", None), 0x7eae_a046_1f49_0e5d);
        let voice = ClonedVoice {
            id: "voice_1".into(),
            conditioning: vec![1u8, 2, 3].into(),
        };
        let other = ClonedVoice {
            id: "voice_1".into(),
            conditioning: vec![1u8, 2, 4].into(),
        };
        let seeds = [
            request_seed("Hello.", None),
            request_seed("Hello!", None),
            request_seed("Hello.", Some(&voice)),
            request_seed("Hello.", Some(&other)),
        ];
        for (i, a) in seeds.iter().enumerate() {
            assert!(seeds[i + 1..].iter().all(|b| a != b), "{seeds:x?}");
        }
    }
}
