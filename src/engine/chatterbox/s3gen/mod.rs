//! S3Gen (chatterbox-tts 0.1.7 `models/s3gen/`, built as `S3Gen(meanflow=True)` for
//! Chatterbox Turbo): speech tokens from T3 → an 80-band mel at 50 frames per second
//! in the voice of a prompt (the flow, here), then 24 kHz audio (the HiFT vocoder,
//! [`hifigan`]).
//!
//! ```text
//! [prompt tokens, speech tokens] → input_embedding → UpsampleConformerEncoder (×2 frames)
//!   → encoder_proj = mu ─┐
//! x-vector → normalize → spk_embed_affine_layer ─┤→ ConditionalDecoder, 2 meanflow Euler
//! prompt mel → conds ────┘   steps from the noise → mel, prompt frames dropped
//! ```
//!
//! The reference draws the flow's start noise itself; here the caller passes it
//! (`randn` of shape [1, 80, 2·(prompt + speech tokens)]), which makes runs
//! reproducible and lets the parity tests inject the reference's draw.

pub mod config;
pub mod decoder;
pub mod f0_predictor;
pub mod flow;
pub mod flow_matching;
pub mod hifigan;
pub mod matcha;
pub mod transformer;

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::S3GenConfig;
pub use flow::CausalMaskedDiffWithXvec;

/// A voice for S3Gen: what `S3Token2Mel.embed_ref` extracts from a reference clip
/// (or `conds.pt` ships for the built-in voice), batch 1.
#[derive(Debug, Clone)]
pub struct PromptRef {
    /// Speech tokens of the reference clip, [1, m] (u32 or i64).
    pub prompt_token: Tensor,
    /// Its 24 kHz log-mel, time-major, [1, 2m, 80].
    pub prompt_feat: Tensor,
    /// Its CAMPPlus speaker x-vector, [1, 192].
    pub embedding: Tensor,
}

/// chatterbox-tts 0.1.7 `models/s3gen/s3gen.py`, class `S3Token2Mel`: only its
/// `flow` (the tokenizer, mel extractor and speaker encoder serve voice cloning).
#[derive(Debug, Clone)]
pub struct S3Token2Mel {
    flow: CausalMaskedDiffWithXvec,
}

impl S3Token2Mel {
    /// Loads `flow.*` from an S3Gen checkpoint (`s3gen_meanflow.safetensors`);
    /// unsupported settings in `cfg` are an error.
    pub fn load(vb: VarBuilder, cfg: &S3GenConfig) -> Result<Self> {
        crate::engine::nn::reuse_freed_heap();
        Ok(Self {
            flow: CausalMaskedDiffWithXvec::load(vb.pp("flow"), cfg)?,
        })
    }

    /// The flow's velocity network with 8-bit integer products
    /// (`CHATTERBOX_S3GEN_QUANT=int8`; see [`crate::engine::nn::int8`]).
    pub fn quantise_int8(&mut self) {
        self.flow.quantise_int8();
    }

    pub fn flow(&self) -> &CausalMaskedDiffWithXvec {
        &self.flow
    }

    /// Shape of the noise [`Self::mel`] needs for `n_speech` tokens after `prompt`.
    pub fn noise_shape(
        &self,
        n_speech: usize,
        prompt: &PromptRef,
    ) -> Result<(usize, usize, usize)> {
        let m = prompt.prompt_token.dim(1)?;
        Ok((
            1,
            prompt.prompt_feat.dim(2)?,
            self.flow.frames(m + n_speech),
        ))
    }

    /// Standard normal noise of [`Self::noise_shape`], from candle's generator.
    pub fn draw_noise(
        &self,
        n_speech: usize,
        prompt: &PromptRef,
        device: &Device,
    ) -> Result<Tensor> {
        Tensor::randn(0f32, 1f32, self.noise_shape(n_speech, prompt)?, device)
    }

    /// `speech_tokens` [1, n] → mel [1, 80, 2n] (the prompt's frames removed), the
    /// flow starting from `noise` ([`Self::noise_shape`]).
    pub fn mel(
        &self,
        speech_tokens: &Tensor,
        prompt: &PromptRef,
        noise: &Tensor,
    ) -> Result<Tensor> {
        self.mel_observed(speech_tokens, prompt, noise, &mut |_, _| {})
    }

    /// [`Self::mel`], handing every stage's output to `observe` (names as in
    /// `tools/chatterbox_s3gen_fixtures.py`).
    pub fn mel_observed(
        &self,
        speech_tokens: &Tensor,
        prompt: &PromptRef,
        noise: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let mel = self.flow.inference_observed(
            speech_tokens,
            &prompt.prompt_token,
            &prompt.prompt_feat,
            &prompt.embedding,
            noise,
            observe,
        )?;
        observe("mel", &mel);
        Ok(mel)
    }
}
