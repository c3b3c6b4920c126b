//! chatterbox-tts 0.1.7 `models/s3gen/transformer/encoder_layer.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use super::attention::RelPositionMultiHeadedAttention;
use super::positionwise_feed_forward::PositionwiseFeedForward;
use crate::engine::chatterbox::s3gen::config::EncoderConfig;

/// LayerNorm epsilon of the conformer layers.
const EPS: f64 = 1e-12;

/// `ConformerEncoderLayer` as Turbo builds it: pre-norm self-attention and
/// feed-forward, each with a residual (no macaron feed-forward, no convolution
/// module: both rejected at load by the config check).
#[derive(Debug, Clone)]
pub struct ConformerEncoderLayer {
    self_attn: RelPositionMultiHeadedAttention,
    feed_forward: PositionwiseFeedForward,
    norm_ff: LayerNorm,
    norm_mha: LayerNorm,
}

impl ConformerEncoderLayer {
    pub fn load(vb: VarBuilder, cfg: &EncoderConfig) -> Result<Self> {
        let size = cfg.output_size;
        Ok(Self {
            self_attn: RelPositionMultiHeadedAttention::load(
                vb.pp("self_attn"),
                cfg.attention_heads,
                size,
                cfg.key_bias,
            )?,
            feed_forward: PositionwiseFeedForward::load(
                vb.pp("feed_forward"),
                size,
                cfg.linear_units,
            )?,
            norm_ff: layer_norm(size, EPS, vb.pp("norm_ff"))?,
            norm_mha: layer_norm(size, EPS, vb.pp("norm_mha"))?,
        })
    }

    /// `x` [B, T, size], `pos_emb` [1, 2T − 1, size] → [B, T, size].
    /// The attention's and feed-forward's projections in 8-bit integers.
    pub fn quantise_int8(&mut self) {
        self.self_attn.quantise_int8();
        self.feed_forward.quantise_int8();
    }

    pub fn forward(&self, x: &Tensor, pos_emb: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("conformer_layer").entered();
        let att = self
            .self_attn
            .forward(&self.norm_mha.forward(x)?, pos_emb)?;
        let x = (x + att)?;
        let ff = self.feed_forward.forward(&self.norm_ff.forward(&x)?)?;
        x + ff
    }
}
