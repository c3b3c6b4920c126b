//! chatterbox-tts 0.1.7 `models/s3gen/transformer/positionwise_feed_forward.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

/// `PositionwiseFeedForward` with the encoder's `swish` (SiLU) activation.
#[derive(Debug, Clone)]
pub struct PositionwiseFeedForward {
    w_1: Linear,
    w_2: Linear,
}

impl PositionwiseFeedForward {
    pub fn load(vb: VarBuilder, idim: usize, hidden_units: usize) -> Result<Self> {
        Ok(Self {
            w_1: linear(idim, hidden_units, vb.pp("w_1"))?,
            w_2: linear(hidden_units, idim, vb.pp("w_2"))?,
        })
    }
}

impl Module for PositionwiseFeedForward {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.w_2.forward(&self.w_1.forward(xs)?.silu()?)
    }
}
