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
pub mod quant_cache;

use std::sync::{Arc, Mutex};

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};

pub use cond_enc::{T3Cond, T3CondEnc};
pub use gpt2::{Conv1D, Gpt2Cache, Gpt2Model, QLinear, QuantWeights};
pub use inference::{sample, softmax, SamplingParams};
pub use quant_cache::QuantCache;

pub use crate::engine::chatterbox::config::T3Quant;
use crate::engine::chatterbox::config::{T3Config, T3Hparams};

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
    /// `speech_head`, an `nn.Linear` (GPT-2 builds, `is_gpt`, give it a bias).
    speech_head: Conv1D,
    hp: T3Hparams,
    quant: T3Quant,
    /// Whether the quantised weights were read from a [`QuantCache`] rather than
    /// quantised from the checkpoint's.
    quant_from_cache: bool,
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
        Self::load_with(vb, cfg, &QuantWeights::quantize(quant))
    }

    /// [`T3::load_quantized`] keeping the quantised weights in `cache` (for `quant`;
    /// see [`QuantCache`]): when the cache file holds every weight this configuration
    /// quantises, they are read from it and the checkpoint's f32 ones are not read at
    /// all; otherwise (no file, or one that cannot be read or does not match, with a
    /// warning) they are quantised from the checkpoint and the file is written, and a
    /// cache that cannot be written costs a warning, not the load. Without a cache, or
    /// for f32, this is [`T3::load_quantized`].
    pub fn load_cached(
        vb: VarBuilder,
        cfg: &T3Config,
        quant: T3Quant,
        cache: Option<&QuantCache>,
    ) -> Result<Self> {
        let Some(cache) = cache.filter(|c| c.quant() == quant && quant.ggml_dtype().is_some())
        else {
            return Self::load_quantized(vb, cfg, quant);
        };
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let path = cache.path().display().to_string();
        let started = std::time::Instant::now();
        match cache.read(&quantized_layers(cfg, quant)) {
            Ok(Some(tensors)) => {
                let t3 = Self::load_with(vb, cfg, &QuantWeights::cached(quant, tensors))?;
                tracing::info!(
                    %path,
                    %quant,
                    seconds = started.elapsed().as_secs_f64(),
                    "quantised T3 weights read from the cache"
                );
                return Ok(t3);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                %path,
                error = %e,
                "ignoring the cache of quantised T3 weights; quantising again"
            ),
        }
        let weights = QuantWeights::quantize(quant);
        let t3 = Self::load_with(vb, cfg, &weights)?;
        let quantized = started.elapsed().as_secs_f64();
        match cache.write(&weights.into_made()) {
            Ok(()) => tracing::info!(
                %path,
                %quant,
                seconds = quantized,
                "T3 weights quantised; kept in the cache for later loads"
            ),
            Err(e) => tracing::warn!(
                %path,
                error = %e,
                "could not write the cache of quantised T3 weights; the next load \
                 quantises again"
            ),
        }
        Ok(t3)
    }

    fn load_with(vb: VarBuilder, cfg: &T3Config, weights: &QuantWeights) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let (hp, dim) = (&cfg.t3, cfg.backbone.n_embd);
        Ok(Self {
            tfmr: Gpt2Model::load(vb.pp("tfmr"), &cfg.backbone, weights)?,
            cond_enc: T3CondEnc::load(vb.pp("cond_enc"), cfg)?,
            text_emb: embedding(hp.text_tokens_dict_size, dim, vb.pp("text_emb"))?,
            speech_emb: embedding(hp.speech_tokens_dict_size, dim, vb.pp("speech_emb"))?,
            speech_head: Conv1D::load_linear(
                vb.pp("speech_head"),
                dim,
                hp.speech_tokens_dict_size,
                weights,
            )?,
            hp: hp.clone(),
            quant: weights.quant(),
            quant_from_cache: weights.is_cached(),
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

    /// Bytes the quantised weights take less than the f32 ones they stand for.
    pub fn quantization_bytes_saved(&self) -> u64 {
        self.tfmr.bytes_saved() + self.speech_head.bytes_saved()
    }

    /// Whether the quantised weights were read from a [`QuantCache`] (see
    /// [`T3::load_cached`]).
    pub fn quant_from_cache(&self) -> bool {
        self.quant_from_cache
    }

    /// Bytes T3's weights hold, given `read`, the bytes of the tensors its load took
    /// from the checkpoint: the quantised weights replaced the f32 ones they were made
    /// from, or, read from the cache, come on top of the others.
    pub fn weight_bytes(&self, read: u64) -> u64 {
        if self.quant_from_cache {
            read + self.tfmr.quantized_bytes() + self.speech_head.quantized_bytes()
        } else {
            read.saturating_sub(self.quantization_bytes_saved())
        }
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

/// The weights `quant` quantises in a T3 of configuration `cfg`, by checkpoint key,
/// with their `[out, in]` shapes: every layer of the backbone whose input width is a
/// multiple of the GGML block, and the speech head likewise (what [`QuantWeights`]
/// quantises).
pub fn quantized_layers(cfg: &T3Config, quant: T3Quant) -> Vec<(String, (usize, usize))> {
    let (e, inner) = (cfg.backbone.n_embd, cfg.backbone.inner_dim());
    let mut layers = Vec::new();
    for i in 0..cfg.backbone.n_layer {
        for (name, shape) in [
            ("attn.c_attn", (3 * e, e)),
            ("attn.c_proj", (e, e)),
            ("mlp.c_fc", (inner, e)),
            ("mlp.c_proj", (e, inner)),
        ] {
            layers.push((format!("tfmr.h.{i}.{name}.weight"), shape));
        }
    }
    layers.push((
        "speech_head.weight".to_string(),
        (cfg.t3.speech_tokens_dict_size, e),
    ));
    layers.retain(|(_, (_, n_in))| QuantWeights::quantizes(quant, *n_in));
    layers
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn quantized_layers_are_those_a_load_quantizes() -> Result<()> {
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        for (width, quant) in [
            (64, T3Quant::Q8_0),
            (64, T3Quant::Q4K),
            (256, T3Quant::Q4K),
            (64, T3Quant::F32),
        ] {
            let mut cfg = T3Config::turbo();
            cfg.backbone.n_embd = width;
            cfg.backbone.n_head = 4;
            cfg.backbone.n_layer = 2;
            cfg.backbone.n_positions = 64;
            cfg.t3.text_tokens_dict_size = 300;
            let weights = QuantWeights::quantize(quant);
            let t3 = T3::load_with(vb.clone(), &cfg, &weights)?;
            let made: Vec<(String, (usize, usize))> = weights
                .into_made()
                .into_iter()
                .map(|(name, w)| Ok((name, w.shape().dims2()?)))
                .collect::<Result<_>>()?;
            assert_eq!(made, quantized_layers(&cfg, quant), "{width} wide, {quant}");
            assert_eq!(made.is_empty(), t3.quantization_bytes_saved() == 0);
        }
        Ok(())
    }
}
