//! chatterbox-tts 0.1.7 `models/s3gen/flow.py`: `CausalMaskedDiffWithXvec`, speech
//! tokens → mel conditioned on a prompt (its tokens and mel) and a speaker x-vector.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{embedding, linear, Embedding, Linear, VarBuilder};

use super::config::S3GenConfig;
use super::flow_matching::CausalConditionalCFM;
use super::transformer::UpsampleConformerEncoder;

/// `CausalMaskedDiffWithXvec.inference` with `finalize=True` (the whole utterance is
/// known: the encoder's lookahead frames are kept).
#[derive(Debug, Clone)]
pub struct CausalMaskedDiffWithXvec {
    input_embedding: Embedding,
    spk_embed_affine_layer: Linear,
    encoder: UpsampleConformerEncoder,
    encoder_proj: Linear,
    decoder: CausalConditionalCFM,
    vocab_size: usize,
    output_size: usize,
    token_mel_ratio: usize,
}

impl CausalMaskedDiffWithXvec {
    /// The encoder's and the velocity network's products in 8-bit integers (see
    /// [`UpsampleConformerEncoder::quantise_int8`] and
    /// [`super::decoder::ConditionalDecoder::quantise_int8`]).
    pub fn quantise_int8(&mut self) {
        self.encoder.quantise_int8();
        self.decoder.quantise_int8();
    }

    pub fn load(vb: VarBuilder, cfg: &S3GenConfig) -> Result<Self> {
        cfg.check_supported().map_err(candle_core::Error::Msg)?;
        Ok(Self {
            input_embedding: embedding(cfg.vocab_size, cfg.input_size, vb.pp("input_embedding"))?,
            spk_embed_affine_layer: linear(
                cfg.spk_embed_dim,
                cfg.output_size,
                vb.pp("spk_embed_affine_layer"),
            )?,
            encoder: UpsampleConformerEncoder::load(vb.pp("encoder"), cfg)?,
            encoder_proj: linear(
                cfg.encoder.output_size,
                cfg.output_size,
                vb.pp("encoder_proj"),
            )?,
            decoder: CausalConditionalCFM::load(vb.pp("decoder"), cfg)?,
            vocab_size: cfg.vocab_size,
            output_size: cfg.output_size,
            token_mel_ratio: cfg.token_mel_ratio,
        })
    }

    pub fn encoder(&self) -> &UpsampleConformerEncoder {
        &self.encoder
    }

    pub fn decoder(&self) -> &CausalConditionalCFM {
        &self.decoder
    }

    /// Mel frames of the whole sequence (prompt and speech) for this many tokens:
    /// the length the flow's noise must have.
    pub fn frames(&self, n_tokens: usize) -> usize {
        n_tokens * self.token_mel_ratio
    }

    /// `input_embedding` of `[prompt_token, token]` ([B, n] integer ids) → [B, n, D].
    pub fn embed_tokens(&self, prompt_token: &Tensor, token: &Tensor) -> Result<Tensor> {
        let ids = Tensor::cat(&[prompt_token, token], 1)?.to_dtype(DType::U32)?;
        let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()? as usize;
        if max >= self.vocab_size {
            candle_core::bail!(
                "speech token {max} out of range for the flow's {} tokens",
                self.vocab_size
            );
        }
        self.input_embedding.forward(&ids)
    }

    /// `spk_embed_affine_layer(F.normalize(embedding, dim=1))`: x-vector [B, 192] →
    /// [B, 80].
    pub fn project_speaker(&self, embedding: &Tensor) -> Result<Tensor> {
        let norm = embedding
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?
            .to_dtype(embedding.dtype())?;
        self.spk_embed_affine_layer
            .forward(&embedding.broadcast_div(&norm)?)
    }

    /// The decoder's conditions [B, 80, frames]: the prompt mel (`prompt_feat`
    /// [B, n, 80], time-major) in the first `n` frames, zeros after.
    pub fn conditions(&self, prompt_feat: &Tensor, frames: usize) -> Result<Tensor> {
        let (_, n, bands) = prompt_feat.dims3()?;
        if bands != self.output_size || n > frames {
            candle_core::bail!(
                "prompt mel [_, {n}, {bands}] does not fit {frames} frames of {} bands",
                self.output_size
            );
        }
        prompt_feat
            .transpose(1, 2)?
            .pad_with_zeros(D::Minus1, 0, frames - n)?
            .contiguous()
    }

    /// Speech tokens `token` [B, n] → mel [B, 80, ratio·n] after the prompt
    /// (`prompt_token` [B, m], `prompt_feat` [B, ratio·m, 80], x-vector `embedding`
    /// [B, 192]), starting the flow from `noise` [B, 80, ratio·(m + n)]. Stage
    /// outputs go to `observe` under the fixture's names.
    pub fn inference_observed(
        &self,
        token: &Tensor,
        prompt_token: &Tensor,
        prompt_feat: &Tensor,
        embedding: &Tensor,
        noise: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let _span = tracing::trace_span!("s3gen_flow").entered();
        let spks = self.project_speaker(embedding)?;
        observe("spk_emb", &spks);
        let xs = self.embed_tokens(prompt_token, token)?;
        observe("token_emb", &xs);
        let h = self
            .encoder
            .forward_observed(&xs, &mut |name, t| observe(&format!("encoder.{name}"), t))?;
        observe("encoder.out", &h);
        let mu = self
            .encoder_proj
            .forward(&h)?
            .transpose(1, 2)?
            .contiguous()?;
        observe("mu", &mu);
        let frames = mu.dim(2)?;
        let conds = self.conditions(prompt_feat, frames)?;
        observe("conds", &conds);
        if noise.dims3()? != mu.dims3()? {
            candle_core::bail!(
                "flow noise has shape {:?}, want {:?}",
                noise.dims(),
                mu.dims()
            );
        }
        let feat = self
            .decoder
            .forward_observed(noise, &mu, &spks, &conds, observe)?;
        let mel_len1 = prompt_feat.dim(1)?;
        feat.narrow(2, mel_len1, frames - mel_len1)
    }
}
