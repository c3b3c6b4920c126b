//! Non-text conditioning of T3: chatterbox-tts 0.1.7
//! `chatterbox/models/t3/modules/cond_enc.py` (`T3Cond`, `T3CondEnc`) as Turbo
//! configures it: a speaker-embedding projection followed by the voice prompt's
//! speech-token embeddings. Turbo has no perceiver resampler, no emotion input
//! and no CLAP embedding; the configuration check rejects them at load.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::engine::chatterbox::config::T3Config;

/// Conditioning for one voice (the reference `T3Cond` fields Turbo uses).
#[derive(Debug, Clone)]
pub struct T3Cond {
    /// Voice-encoder speaker embedding, [B, speaker_embed_size] (or [B, 1, …]).
    pub speaker_emb: Tensor,
    /// Speech tokens of the voice prompt, [B, P] (u32 or i64); `None` for no prompt.
    pub cond_prompt_speech_tokens: Option<Tensor>,
}

/// Reference `T3CondEnc`: `cat([spkr_enc(speaker_emb)[:, None], prompt_emb], 1)`.
#[derive(Debug, Clone)]
pub struct T3CondEnc {
    spkr_enc: Linear,
    speaker_embed_size: usize,
}

impl T3CondEnc {
    pub fn load(vb: VarBuilder, cfg: &T3Config) -> Result<Self> {
        let size = cfg.t3.speaker_embed_size;
        Ok(Self {
            spkr_enc: linear(size, cfg.backbone.n_embd, vb.pp("spkr_enc"))?,
            speaker_embed_size: size,
        })
    }

    /// `speaker_emb` [B, speaker_embed_size]; `cond_prompt_speech_emb` [B, P, D]
    /// (already embedded by `T3::prepare_conditioning`) → [B, 1 + P, D].
    pub fn forward(
        &self,
        speaker_emb: &Tensor,
        cond_prompt_speech_emb: Option<&Tensor>,
    ) -> Result<Tensor> {
        let b = speaker_emb.elem_count() / self.speaker_embed_size;
        let spkr = self
            .spkr_enc
            .forward(&speaker_emb.reshape((b, self.speaker_embed_size))?)?
            .unsqueeze(1)?;
        match cond_prompt_speech_emb {
            Some(prompt) => Tensor::cat(&[&spkr, prompt], 1),
            None => Ok(spkr),
        }
    }
}
