//! chatterbox-tts 0.1.7 `models/s3gen/transformer/attention.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::engine::nn::attention::rel_pos_self_attention;
use crate::engine::nn::linear::{transposed_linear_b, TransposedLinear};

/// `RelPositionMultiHeadedAttention`: self-attention whose scores add a term from the
/// relative-position encodings (Transformer-XL, with the learned biases
/// `pos_bias_u` for content and `pos_bias_v` for position).
#[derive(Debug, Clone)]
pub struct RelPositionMultiHeadedAttention {
    linear_q: TransposedLinear,
    linear_k: TransposedLinear,
    linear_v: TransposedLinear,
    linear_out: TransposedLinear,
    linear_pos: TransposedLinear,
    pos_bias_u: Tensor,
    pos_bias_v: Tensor,
    h: usize,
    d_k: usize,
}

impl RelPositionMultiHeadedAttention {
    pub fn load(vb: VarBuilder, n_head: usize, n_feat: usize, key_bias: bool) -> Result<Self> {
        let d_k = n_feat / n_head;
        Ok(Self {
            linear_q: transposed_linear_b(n_feat, n_feat, true, vb.pp("linear_q"))?,
            linear_k: transposed_linear_b(n_feat, n_feat, key_bias, vb.pp("linear_k"))?,
            linear_v: transposed_linear_b(n_feat, n_feat, true, vb.pp("linear_v"))?,
            linear_out: transposed_linear_b(n_feat, n_feat, true, vb.pp("linear_out"))?,
            linear_pos: transposed_linear_b(n_feat, n_feat, false, vb.pp("linear_pos"))?,
            pos_bias_u: vb.get((n_head, d_k), "pos_bias_u")?,
            pos_bias_v: vb.get((n_head, d_k), "pos_bias_v")?,
            h: n_head,
            d_k,
        })
    }

    /// `x` [B, T, n_feat] attends to itself; `pos_emb` [1, 2T − 1, n_feat].
    /// Quantises the projections to bytes ([`TransposedLinear::quantise_int8`]); the
    /// relative-position attention itself stays f32.
    pub fn quantise_int8(&mut self) {
        for p in [
            &mut self.linear_q,
            &mut self.linear_k,
            &mut self.linear_v,
            &mut self.linear_out,
            &mut self.linear_pos,
        ] {
            p.quantise_int8();
        }
    }

    pub fn forward(&self, x: &Tensor, pos_emb: &Tensor) -> Result<Tensor> {
        let width = self.h * self.d_k;
        let q = self.linear_q.forward(x)?;
        let k = self.linear_k.forward(x)?;
        let v = self.linear_v.forward(x)?;
        let p = self.linear_pos.forward(pos_emb)?;
        // The 1/√d scale goes on the queries rather than the scores.
        let scale = 1.0 / (self.d_k as f64).sqrt();
        let q_u = (q.broadcast_add(&self.pos_bias_u.reshape(width)?)? * scale)?;
        let q_v = (q.broadcast_add(&self.pos_bias_v.reshape(width)?)? * scale)?;
        let x = rel_pos_self_attention(&q_u, &q_v, &k, &v, &p, self.h)?;
        self.linear_out.forward(&x)
    }
}
