//! chatterbox-tts 0.1.7 `models/s3gen/transformer/subsampling.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};

use super::embedding::EspnetRelPositionalEncoding;

/// `LinearNoSubsampling`: `Linear → LayerNorm(eps 1e-5) → (dropout)` then the
/// positional encoding (keys `out.0`, `out.1`).
#[derive(Debug, Clone)]
pub struct LinearNoSubsampling {
    out: (Linear, LayerNorm),
    pos_enc: EspnetRelPositionalEncoding,
}

impl LinearNoSubsampling {
    pub fn load(vb: VarBuilder, idim: usize, odim: usize) -> Result<Self> {
        let out = (
            linear(idim, odim, vb.pp("out.0"))?,
            layer_norm(odim, 1e-5, vb.pp("out.1"))?,
        );
        Ok(Self {
            out,
            pos_enc: EspnetRelPositionalEncoding::new(odim),
        })
    }

    /// `x` [B, T, idim] → (`x` [B, T, odim], positional encodings [1, 2T − 1, odim]).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self.out.1.forward(&self.out.0.forward(x)?)?;
        self.pos_enc.forward(&x)
    }
}
