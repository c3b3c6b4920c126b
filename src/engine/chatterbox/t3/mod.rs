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

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{embedding, linear, Embedding, Linear, VarBuilder};

pub use cond_enc::{T3Cond, T3CondEnc};
pub use gpt2::{Gpt2Cache, Gpt2Model};
pub use inference::{sample, softmax, SamplingParams};

use crate::engine::chatterbox::config::{T3Config, T3Hparams};

/// Reference `T3` (inference path).
#[derive(Debug, Clone)]
pub struct T3 {
    tfmr: Gpt2Model,
    cond_enc: T3CondEnc,
    text_emb: Embedding,
    speech_emb: Embedding,
    speech_head: Linear,
    hp: T3Hparams,
}

impl T3 {
    /// Loads the weights under `vb` (the root of `t3_turbo_v1.safetensors`); an
    /// unsupported configuration or a tensor of the wrong shape fails here.
    pub fn load(vb: VarBuilder, cfg: &T3Config) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let (hp, dim) = (&cfg.t3, cfg.backbone.n_embd);
        Ok(Self {
            tfmr: Gpt2Model::load(vb.pp("tfmr"), &cfg.backbone)?,
            cond_enc: T3CondEnc::load(vb.pp("cond_enc"), cfg)?,
            text_emb: embedding(hp.text_tokens_dict_size, dim, vb.pp("text_emb"))?,
            speech_emb: embedding(hp.speech_tokens_dict_size, dim, vb.pp("speech_emb"))?,
            // GPT-2 builds (`is_gpt`) give the speech head a bias.
            speech_head: linear(dim, hp.speech_tokens_dict_size, vb.pp("speech_head"))?,
            hp: hp.clone(),
        })
    }

    pub fn hp(&self) -> &T3Hparams {
        &self.hp
    }

    pub fn device(&self) -> &Device {
        self.speech_head.weight().device()
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
