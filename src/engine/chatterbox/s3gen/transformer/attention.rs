//! chatterbox-tts 0.1.7 `models/s3gen/transformer/attention.py`.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

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
    pub fn forward(&self, x: &Tensor, pos_emb: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, d_k) = (self.h, self.d_k);
        // [B, T, h, d_k]
        let q = self.linear_q.forward(x)?.reshape((b, t, h, d_k))?;
        let k = self.linear_k.forward(x)?.reshape((b, t, h, d_k))?;
        let v = self.linear_v.forward(x)?.reshape((b, t, h, d_k))?;
        let k = k.transpose(1, 2)?.contiguous()?; // [B, h, T, d_k]
        let v = v.transpose(1, 2)?.contiguous()?;
        let n_pos = pos_emb.dim(1)?;
        let p = self
            .linear_pos
            .forward(pos_emb)?
            .reshape((pos_emb.dim(0)?, n_pos, h, d_k))?
            .transpose(1, 2)?
            .contiguous()?; // [1, h, 2T-1, d_k]
                            // `(ac + bd) / √d_k` with the scale applied to the two query tensors
                            // ([B, h, T, d_k]) instead of the [B, h, T, T] scores.
        let scale = 1.0 / (d_k as f64).sqrt();
        let q_u = (q.broadcast_add(&self.pos_bias_u)? * scale)?
            .transpose(1, 2)?
            .contiguous()?;
        let q_v = (q.broadcast_add(&self.pos_bias_v)? * scale)?
            .transpose(1, 2)?
            .contiguous()?;
        let matrix_ac = q_u.matmul(&k.t()?)?; // [B, h, T, T]
        let matrix_bd = q_v.broadcast_matmul(&p.t()?)?; // [B, h, T, 2T-1]
        let matrix_bd = if matrix_bd.dims() != matrix_ac.dims() {
            rel_shift(&matrix_bd)?
        } else {
            matrix_bd
        };
        let scores = (matrix_ac + matrix_bd)?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let x = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h * d_k))?;
        self.linear_out.forward(&x)
    }
}

/// `rel_shift`: `[B, h, T, 2T − 1]` scores against positions `T−1 … −(T−1)` →
/// `[B, h, T, T]` with `out[i, j]` the score for position `i − j`, by the same
/// pad-and-reshape the reference uses.
pub fn rel_shift(x: &Tensor) -> Result<Tensor> {
    let (b, h, t1, n) = x.dims4()?;
    let zero_pad = Tensor::zeros((b, h, t1, 1), x.dtype(), x.device())?;
    let padded = Tensor::cat(&[&zero_pad, x], D::Minus1)?.reshape((b, h, n + 1, t1))?;
    padded
        .narrow(2, 1, n)?
        .contiguous()?
        .reshape((b, h, t1, n))?
        .narrow(3, 0, n / 2 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rel_shift_picks_relative_positions() -> Result<()> {
        // Row i, column k of the input holds the score for position (T − 1 − k);
        // encode (i, position) in the value and check out[i, j] has position i − j.
        let t = 5;
        let n = 2 * t - 1;
        let vals: Vec<f32> = (0..t)
            .flat_map(|i| (0..n).map(move |k| (i * 100) as f32 + (t as f32 - 1.0 - k as f32)))
            .collect();
        let x = Tensor::from_vec(vals, (1, 1, t, n), &Device::Cpu)?;
        let y = rel_shift(&x)?.squeeze(0)?.squeeze(0)?.to_vec2::<f32>()?;
        for (i, row) in y.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(v, (i * 100) as f32 + i as f32 - j as f32, "({i}, {j})");
            }
        }
        Ok(())
    }
}
