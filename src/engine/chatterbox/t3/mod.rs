//! T3, the text → speech-token model of Chatterbox Turbo: chatterbox-tts 0.1.7
//! `chatterbox/models/t3/t3.py` (class `T3`) built as
//! `ChatterboxTurboTTS.from_local` builds it (GPT-2 medium backbone, no learned
//! position embeddings, no perceiver, no emotion input).
//!
//! Input sequence: `[conditioning; text_emb(text); speech_emb(speech)]`, where the
//! conditioning is the projected speaker embedding followed by the embedded voice
//! prompt tokens. The backbone's last hidden states go through `speech_head` to
//! speech-token logits. Generation is in [`inference`].
//!
//! Checkpoint keys (`t3_turbo_v1.safetensors`): `tfmr.*`, `cond_enc.spkr_enc.*`,
//! `text_emb.weight`, `speech_emb.weight`, `speech_head.{weight,bias}`; also
//! `text_head.weight` and `tfmr.wte.weight`, which inference never reads and
//! which are therefore not loaded.

pub mod cond_enc;
pub mod gpt2;
pub mod inference;

use std::sync::{Arc, Mutex};

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};

pub use cond_enc::{T3Cond, T3CondEnc};
pub use gpt2::{Conv1D, Gpt2Cache, Gpt2Model, QLinear};
pub use inference::{sample, softmax, SamplingParams};

pub use crate::engine::chatterbox::config::T3Quant;
use crate::engine::chatterbox::config::{T3Config, T3Hparams};

/// `speech_head`, in f32 or quantised.
#[derive(Debug, Clone)]
enum SpeechHead {
    F32(Conv1D),
    Quantized(QLinear),
}

impl SpeechHead {
    fn load(vb: VarBuilder, dim: usize, vocab: usize, quant: T3Quant) -> Result<Self> {
        // GPT-2 builds (`is_gpt`) give the speech head a bias.
        let weight = vb.get((vocab, dim), "weight")?;
        let bias = vb.get(vocab, "bias")?;
        Ok(match QLinear::quantize(&weight, &bias, quant)? {
            Some(q) => Self::Quantized(q),
            None => Self::F32(Conv1D::from_linear(&weight, bias)?),
        })
    }
}

impl Module for SpeechHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::F32(head) => head.forward(x),
            Self::Quantized(head) => head.forward(x),
        }
    }
}

/// The backbone's keys and values over one voice's conditioning (speaker embedding
/// and prompt tokens), the first positions of every request in that voice.
#[derive(Debug)]
struct CondPrefix {
    speaker: Vec<f32>,
    prompt: Option<Vec<u32>>,
    kv: Vec<(Tensor, Tensor)>,
}

/// What tells voices apart for [`CondPrefix`]: the speaker embedding's and the prompt
/// tokens' values.
fn voice_key(cond: &T3Cond) -> Result<(Vec<f32>, Option<Vec<u32>>)> {
    let speaker = cond
        .speaker_emb
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    let prompt = match &cond.cond_prompt_speech_tokens {
        Some(t) => Some(
            t.flatten_all()?
                .to_dtype(candle_core::DType::U32)?
                .to_vec1::<u32>()?,
        ),
        None => None,
    };
    Ok((speaker, prompt))
}

/// Reference `T3` (inference path).
#[derive(Debug, Clone)]
pub struct T3 {
    tfmr: Gpt2Model,
    cond_enc: T3CondEnc,
    text_emb: Embedding,
    speech_emb: Embedding,
    speech_head: SpeechHead,
    hp: T3Hparams,
    quant: T3Quant,
    /// The last voice's [`CondPrefix`] (see [`T3::prefill`]).
    prefix: Arc<Mutex<Option<Arc<CondPrefix>>>>,
}

impl T3 {
    /// Loads the weights under `vb` (the root of `t3_turbo_v1.safetensors`); an
    /// unsupported configuration or a tensor of the wrong shape fails here.
    pub fn load(vb: VarBuilder, cfg: &T3Config) -> Result<Self> {
        Self::load_quantized(vb, cfg, T3Quant::F32)
    }

    /// [`T3::load`] with the backbone's `Conv1D` weights and the speech head
    /// quantised to `quant` (CPU): a layer whose input width is not a multiple
    /// of the GGML block (32 for q8_0, 256 for q4k) stays f32, as do the
    /// embeddings, layer norms and biases. `T3Quant::F32` is [`T3::load`].
    pub fn load_quantized(vb: VarBuilder, cfg: &T3Config, quant: T3Quant) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let (hp, dim) = (&cfg.t3, cfg.backbone.n_embd);
        Ok(Self {
            tfmr: Gpt2Model::load(vb.pp("tfmr"), &cfg.backbone, quant)?,
            cond_enc: T3CondEnc::load(vb.pp("cond_enc"), cfg)?,
            text_emb: embedding(hp.text_tokens_dict_size, dim, vb.pp("text_emb"))?,
            speech_emb: embedding(hp.speech_tokens_dict_size, dim, vb.pp("speech_emb"))?,
            speech_head: SpeechHead::load(
                vb.pp("speech_head"),
                dim,
                hp.speech_tokens_dict_size,
                quant,
            )?,
            hp: hp.clone(),
            quant,
            prefix: Arc::default(),
        })
    }

    pub fn hp(&self) -> &T3Hparams {
        &self.hp
    }

    /// How the matrix-product weights are stored.
    pub fn quant(&self) -> T3Quant {
        self.quant
    }

    /// Bytes the quantised weights take less than the f32 ones they were made from.
    pub fn quantization_bytes_saved(&self) -> u64 {
        let head = match &self.speech_head {
            SpeechHead::Quantized(q) => q.bytes_saved(),
            SpeechHead::F32(_) => 0,
        };
        self.tfmr.bytes_saved() + head
    }

    /// Bytes of the conditioning keys and values kept for the last voice (see
    /// [`T3::prefill`]): speaker and `speech_cond_prompt_len` prompt positions.
    pub fn voice_prefix_bytes(&self) -> u64 {
        (1 + self.hp.speech_cond_prompt_len) as u64 * self.tfmr.cache_bytes_per_position()
    }

    pub fn device(&self) -> &Device {
        self.text_emb.embeddings().device()
    }

    pub fn tfmr(&self) -> &Gpt2Model {
        &self.tfmr
    }

    /// `T3.prepare_conditioning`: embeds the prompt tokens, then `cond_enc`
    /// → [B, 1 + P, D].
    pub fn prepare_conditioning(&self, cond: &T3Cond) -> Result<Tensor> {
        let prompt = match &cond.cond_prompt_speech_tokens {
            Some(tokens) => Some(self.speech_emb.forward(tokens)?),
            None => None,
        };
        self.cond_enc.forward(&cond.speaker_emb, prompt.as_ref())
    }

    /// `T3.prepare_input_embeds` (no CFG in Turbo): `text_tokens` [B, T] and
    /// `speech_tokens` [B, S] → (`[cond; text; speech]` [B, L, D], conditioning length).
    pub fn prepare_input_embeds(
        &self,
        cond: &T3Cond,
        text_tokens: &Tensor,
        speech_tokens: &Tensor,
    ) -> Result<(Tensor, usize)> {
        let cond_emb = self.prepare_conditioning(cond)?;
        let text_emb = self.text_emb.forward(text_tokens)?;
        let speech_emb = self.speech_emb.forward(speech_tokens)?;
        let (b, len_cond, dim) = cond_emb.dims3()?;
        let batch = text_emb.dim(0)?;
        let cond_emb = if b != batch {
            cond_emb.expand((batch, len_cond, dim))?
        } else {
            cond_emb
        };
        Ok((
            Tensor::cat(&[&cond_emb, &text_emb, &speech_emb], 1)?,
            len_cond,
        ))
    }

    /// The prompt's pass for one utterance: `[cond; text; speech]` (`text_tokens`
    /// [1, T], `speech_tokens` [1, S]) through the backbone into a new cache with room
    /// for `headroom` more positions → (last hidden states of the text and speech
    /// positions [1, T + S, D], the cache).
    ///
    /// The backbone is causal and its positions absolute, so the conditioning's keys
    /// and values depend on the voice alone: the first request in a voice runs every
    /// position and keeps a copy of the conditioning's (for the last voice used, ~74 MB
    /// at full size); a later request in that voice starts its cache from that copy
    /// and runs only the text and speech positions (with the built-in voice's 376
    /// conditioning positions, 41 of 417 for a sentence of 40 tokens).
    pub fn prefill(
        &self,
        cond: &T3Cond,
        text_tokens: &Tensor,
        speech_tokens: &Tensor,
        headroom: usize,
    ) -> Result<(Tensor, Gpt2Cache)> {
        if text_tokens.dim(0)? != 1 || speech_tokens.dim(0)? != 1 {
            candle_core::bail!("prefill: one utterance at a time");
        }
        let (speaker, prompt) = voice_key(cond)?;
        let kept = self
            .prefix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(kept) = kept.filter(|p| p.speaker == speaker && p.prompt == prompt) {
            let text_emb = self.text_emb.forward(text_tokens)?;
            let speech_emb = self.speech_emb.forward(speech_tokens)?;
            let embeds = Tensor::cat(&[&text_emb, &speech_emb], 1)?;
            let held = kept.kv.first().map_or(Ok(0), |(k, _)| k.dim(2))?;
            let mut cache = Gpt2Cache::from_prefix(&kept.kv, held + embeds.dim(1)? + headroom)?;
            let hidden = self.forward_hidden(&embeds, &mut cache)?;
            return Ok((hidden, cache));
        }
        let (embeds, len_cond) = self.prepare_input_embeds(cond, text_tokens, speech_tokens)?;
        if embeds.dim(0)? != 1 {
            candle_core::bail!("prefill: one voice at a time");
        }
        let len = embeds.dim(1)?;
        let mut cache = self.tfmr.new_cache(len + headroom);
        let hidden = self.forward_hidden(&embeds, &mut cache)?;
        let prefix = CondPrefix {
            speaker,
            prompt,
            kv: cache.prefix(len_cond)?,
        };
        *self.prefix.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(prefix));
        Ok((hidden.narrow(1, len_cond, len - len_cond)?, cache))
    }

    /// Drops the kept conditioning (the next [`T3::prefill`] runs every position
    /// again).
    pub fn forget_voice_prefix(&self) {
        *self.prefix.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Speech-token embeddings, `tokens` [B, S] → [B, S, D].
    pub fn embed_speech(&self, tokens: &Tensor) -> Result<Tensor> {
        self.speech_emb.forward(tokens)
    }

    /// Backbone over `embeds` [B, L, D] after the positions in `cache` → last
    /// hidden states [B, L, D].
    pub fn forward_hidden(&self, embeds: &Tensor, cache: &mut Gpt2Cache) -> Result<Tensor> {
        self.tfmr.forward(embeds, cache)
    }

    /// `speech_head`: hidden states [.., D] → speech logits [.., V].
    pub fn speech_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.speech_head.forward(hidden)
    }
}
