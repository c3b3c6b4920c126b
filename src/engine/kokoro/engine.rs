//! Kokoro as a [`TtsEngine`]: text → phonemes (misaki) → tokens → [`KModel`] →
//! 24 kHz samples, with the voice's style vector for the phoneme count.

use std::ops::Range;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::model::KModel;
use super::timing::{self, Framed};
use super::voices::VoiceLibrary;
use super::weights::KokoroFiles;
use super::KokoroConfig;
use crate::engine::{AudioChunk, EngineError, EngineLoader, LoadContext, SynthRequest, TtsEngine};
use crate::text::lexicon::Pronunciation;
use crate::text::words::{self, Spoken};
use crate::text::{g2p, Language};

pub const SAMPLE_RATE: u32 = 24_000;

/// The samples a phoneme symbol is spoken in (`None`: a symbol the model skips).
type SymbolSpan = Option<Range<usize>>;

/// OpenAI voice names and the Kokoro voices that stand for them.
pub const OPENAI_VOICES: [(&str, &str); 11] = [
    ("alloy", "af_alloy"),
    ("ash", "am_adam"),
    ("ballad", "bm_lewis"),
    ("coral", "af_kore"),
    ("echo", "am_echo"),
    ("fable", "bm_fable"),
    ("onyx", "am_onyx"),
    ("nova", "af_nova"),
    ("sage", "af_sarah"),
    ("shimmer", "af_heart"),
    ("verse", "am_michael"),
];

/// The Kokoro voice for an OpenAI name, or the name itself.
pub fn kokoro_voice(name: &str) -> &str {
    OPENAI_VOICES
        .iter()
        .find(|(openai, _)| *openai == name)
        .map_or(name, |(_, kokoro)| kokoro)
}

/// Kokoro voice names followed by the OpenAI names that map to one of them.
fn with_openai_names(mut names: Vec<String>) -> Vec<String> {
    for (openai, kokoro) in OPENAI_VOICES {
        if names.iter().any(|n| n == kokoro) {
            names.push(openai.to_string());
        }
    }
    names
}

/// G2P language for a voice, as the reference picks it: the first letter of a Kokoro
/// voice name names its language (`a` American, `b` British, `j` Japanese, ...).
/// A name without one (a voice file of the user's own) reads American English.
fn language_of(voice: &str) -> Language {
    Language::of_voice(voice).unwrap_or(Language::AmericanEnglish)
}

/// A G2P refusal as the engine reports it: an unknown or unavailable language
/// names the `language` parameter.
fn text_error(e: g2p::TextError) -> EngineError {
    match e {
        g2p::TextError::UnknownLanguage { .. } | g2p::TextError::Unavailable(_) => {
            EngineError::Unsupported {
                param: "language".into(),
                message: e.to_string(),
            }
        }
        g2p::TextError::Empty => EngineError::InvalidInput(e.to_string()),
    }
}

pub struct KokoroEngine {
    model: KModel,
    voices: VoiceLibrary,
    cfg: KokoroConfig,
    device: Device,
    memory_bytes: u64,
}

impl KokoroEngine {
    /// Load from a located checkpoint; `cache_dir` holds the safetensors conversion.
    pub fn load(
        files: &KokoroFiles,
        cache_dir: &Path,
        device: &Device,
    ) -> Result<Self, EngineError> {
        let cfg = files.read_config()?;
        if cfg.vocab.is_empty() {
            return Err(EngineError::BadFile {
                model: "kokoro".into(),
                path: files.config.display().to_string(),
                reason: "config.json has no vocab".into(),
            });
        }
        let weights = files.weights_file(cache_dir)?;
        let read = weights.loaded();
        let vb = weights.into_var_builder(DType::F32, device);
        let model = KModel::load(vb, &cfg).map_err(|e| EngineError::BadFile {
            model: "kokoro".into(),
            path: files.weights.display().to_string(),
            reason: e.to_string(),
        })?;
        let voices = VoiceLibrary::new(files.voices.clone(), device.clone());
        // The tensors the model read, and every voice pack on disk as f32 (the
        // library keeps each one it loads).
        let memory_bytes = read.get() + voices.bytes_when_all_loaded(2 * cfg.style_dim);
        Ok(Self {
            model,
            voices,
            cfg,
            device: device.clone(),
            memory_bytes,
        })
    }

    /// Token ids for a phoneme string: symbols outside the vocabulary are dropped,
    /// as the reference does.
    pub fn tokens(&self, phonemes: &str) -> Vec<u32> {
        super::vocab::tokens_lossy(&self.cfg.vocab, phonemes)
    }

    /// Token ids with the pads, `[1, T + 2]`, and the voice's style vector; `None`
    /// when nothing in `phonemes` is in the vocabulary.
    fn inputs(&self, phonemes: &str, voice: &str) -> Result<Option<(Tensor, Tensor)>, EngineError> {
        let ids = self.tokens(phonemes);
        if ids.is_empty() {
            return Ok(None);
        }
        let style = self.voices.style(voice, ids.len())?;
        let mut padded = Vec::with_capacity(ids.len() + 2);
        padded.push(0);
        padded.extend(&ids);
        padded.push(0);
        let input = Tensor::new(padded.as_slice(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(EngineError::from)?;
        Ok(Some((input, style)))
    }

    /// Speak one phoneme string of at most 510 symbols: its audio, and the samples
    /// each symbol is spoken in (`None` for a symbol outside the vocabulary, which
    /// the model does not read).
    fn speak_phonemes(
        &self,
        phonemes: &str,
        voice: &str,
        speed: f32,
    ) -> Result<(Vec<f32>, Vec<SymbolSpan>), EngineError> {
        let Some((input, style)) = self.inputs(phonemes, voice)? else {
            return Ok((Vec::new(), vec![None; phonemes.chars().count()]));
        };
        let out = self
            .model
            .forward_with_tokens(&input, &style, speed, None)
            .map_err(EngineError::from)?;
        let spans = self.symbol_spans(phonemes, &out.pred_dur, out.audio.len());
        Ok((out.audio, spans))
    }

    /// The samples each symbol of `phonemes` is spoken in, from the frames the
    /// model gave each token (`frames[0]` and the last are the pads) and the
    /// length of the audio they made.
    fn symbol_spans(&self, phonemes: &str, frames: &[u32], samples: usize) -> Vec<SymbolSpan> {
        let total: u64 = frames.iter().map(|&f| u64::from(f)).sum();
        let at =
            |frame: u64| usize::try_from(frame * samples as u64 / total.max(1)).unwrap_or(samples);
        let mut frame = frames.first().copied().map_or(0, u64::from);
        let mut token = 1usize;
        phonemes
            .chars()
            .map(|c| {
                if !self
                    .cfg
                    .vocab
                    .contains_key(c.encode_utf8(&mut [0; 4]) as &str)
                {
                    return None;
                }
                let length = frames.get(token).copied().map_or(0, u64::from);
                token += 1;
                let span = at(frame)..at(frame + length);
                frame += length;
                Some(span)
            })
            .collect()
    }

    /// Frames the model gives each token of `phonemes` (pads included), without
    /// running the decoder; every frame is 600 samples of audio.
    pub fn predicted_frames(
        &self,
        phonemes: &str,
        voice: &str,
        speed: f32,
    ) -> Result<Vec<u32>, EngineError> {
        let Some((input, style)) = self.inputs(phonemes, kokoro_voice(voice))? else {
            return Ok(Vec::new());
        };
        self.model
            .predict_durations(&input, &style, speed)
            .map_err(EngineError::from)
    }
}

impl TtsEngine for KokoroEngine {
    fn unload(self: Box<Self>, _release_device_cache: bool) {
        drop(self);
        // The English G2P tables (~95 MiB) leave with the model; the next load or
        // `/v1/audio/phonemize` builds them again.
        crate::text::g2p::release();
    }

    fn synthesize(&self, req: &SynthRequest<'_>) -> Result<AudioChunk, EngineError> {
        let voice = kokoro_voice(req.voice);
        let spoken = if req.phonemes {
            Spoken {
                words: if req.words {
                    words::phoneme_words(req.text)
                } else {
                    Vec::new()
                },
                phonemes: req.text.to_string(),
            }
        } else {
            let language = req.language.unwrap_or_else(|| language_of(voice));
            g2p::read(req.text, language, req.lexicon, req.words).map_err(text_error)?
        };
        let chars: Vec<char> = spoken.phonemes.chars().collect();
        let mut samples = Vec::new();
        let mut spans: Vec<SymbolSpan> = vec![None; chars.len()];
        // Pieces the text encoder holds with its two pad tokens (510 for Kokoro-82M).
        let capacity = self
            .cfg
            .plbert
            .max_position_embeddings
            .saturating_sub(2)
            .min(g2p::MAX_PHONEMES);
        for range in g2p::split_phonemes_ranges(&spoken.phonemes, capacity) {
            let piece: String = chars[range.clone()].iter().collect();
            let (audio, own) = self.speak_phonemes(&piece, voice, req.speed)?;
            let base = samples.len();
            for (slot, span) in spans[range].iter_mut().zip(own) {
                *slot = span.map(|s| s.start + base..s.end + base);
            }
            samples.extend(audio);
        }
        let mut before = 0usize;
        let framed: Vec<Framed> = spoken
            .words
            .into_iter()
            .filter_map(|word| {
                let mut times = spans[word.phonemes.clone()].iter().flatten();
                let first = times.next()?.clone();
                let end = times.last().map_or(first.end, |s| s.end);
                let joined = before > 0
                    && chars[before..word.phonemes.start]
                        .iter()
                        .all(|c| c.is_whitespace());
                before = word.phonemes.end;
                Some(Framed {
                    word: word.text,
                    start: first.start,
                    end,
                    joined,
                })
            })
            .collect();
        let words = timing::heard(&framed, &samples);
        Ok(AudioChunk {
            samples,
            sample_rate: SAMPLE_RATE,
            words,
        })
    }

    fn phonemize(
        &self,
        text: &str,
        language: &str,
        lexicon: &[Pronunciation],
    ) -> Result<String, EngineError> {
        let language = g2p::parse_language(language).map_err(text_error)?;
        g2p::read(text, language, lexicon, false)
            .map(|spoken| spoken.phonemes)
            .map_err(text_error)
    }

    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn voices(&self) -> Vec<String> {
        with_openai_names(self.voices.names())
    }

    fn accepts_voice(&self, voice: &str) -> bool {
        let names = self.voices.names();
        super::voices::VoiceBlend::parse(voice).is_ok_and(|blend| {
            blend
                .parts
                .iter()
                .all(|(name, _)| names.iter().any(|n| n == kokoro_voice(name)))
        })
    }

    fn languages(&self) -> Vec<String> {
        g2p::available_languages()
            .iter()
            .map(|l| l.code().to_string())
            .collect()
    }

    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
}

/// Loads Kokoro from the models folder for the pool.
pub struct KokoroLoader;

impl EngineLoader for KokoroLoader {
    fn worker(&self) -> Option<crate::engine::WorkerSpec> {
        Some(crate::engine::WorkerSpec::new("kokoro"))
    }

    fn load(&self, ctx: &LoadContext) -> Result<Box<dyn TtsEngine>, EngineError> {
        let files = KokoroFiles::locate(&ctx.models_dir)?;
        let cache = ctx.models_dir.join("voxpool-cache").join("kokoro");
        let engine = KokoroEngine::load(&files, &cache, &ctx.candle_device()?)?;
        Ok(Box::new(engine))
    }

    fn file_bytes(&self, ctx: &LoadContext) -> u64 {
        KokoroFiles::locate(&ctx.models_dir).map_or(0, |files| {
            crate::engine::files::size_of_files([files.weights.as_path(), files.voices.as_path()])
        })
    }

    fn languages(&self) -> Option<Vec<String>> {
        Some(
            g2p::available_languages()
                .iter()
                .map(|l| l.code().to_string())
                .collect(),
        )
    }

    fn times_words(&self) -> bool {
        true
    }

    fn voice_language(&self, voice: &str) -> Option<String> {
        Some(language_of(kokoro_voice(voice)).code().to_string())
    }

    fn builtin_voices(&self, ctx: &LoadContext) -> Vec<String> {
        match KokoroFiles::locate(&ctx.models_dir) {
            Ok(files) => with_openai_names(VoiceLibrary::new(files.voices, Device::Cpu).names()),
            Err(_) => Vec::new(),
        }
    }
}
