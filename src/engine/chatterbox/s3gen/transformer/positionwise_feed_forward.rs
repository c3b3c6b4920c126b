//! chatterbox-tts 0.1.7 `models/s3gen/transformer/positionwise_feed_forward.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::engine::nn::linear::{transposed_linear_b, TransposedLinear};

/// `PositionwiseFeedForward` with the encoder's `swish` (SiLU) activation.
#[derive(Debug, Clone)]
pub struct PositionwiseFeedForward {
    w_1: TransposedLinear,
    w_2: TransposedLinear,
}

impl PositionwiseFeedForward {
    pub fn load(vb: VarBuilder, idim: usize, hidden_units: usize) -> Result<Self> {
        Ok(Self {
            w_1: transposed_linear_b(idim, hidden_units, true, vb.pp("w_1"))?,
            w_2: transposed_linear_b(hidden_units, idim, true, vb.pp("w_2"))?,
        })
    }
}

impl PositionwiseFeedForward {
    /// Quantises both layers to bytes ([`TransposedLinear::quantise_int8`]).
    pub fn quantise_int8(&mut self) {
        self.w_1.quantise_int8();
        self.w_2.quantise_int8();
    }
}

impl Module for PositionwiseFeedForward {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.w_2.forward(&self.w_1.forward(xs)?.silu()?)
    }
}
