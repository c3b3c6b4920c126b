//! chatterbox-tts 0.1.7 `models/s3gen/matcha/decoder.py`.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

/// `SinusoidalPosEmb`: a diffusion time `t` [B] → `[sin(1000·t·f_i), cos(1000·t·f_i)]`
/// [B, dim], `f_i = exp(−i · ln(10000)/(dim/2 − 1))`.
#[derive(Debug, Clone)]
pub struct SinusoidalPosEmb {
    dim: usize,
}

impl SinusoidalPosEmb {
    pub fn new(dim: usize) -> Result<Self> {
        if !dim.is_multiple_of(2) || dim < 4 {
            candle_core::bail!("SinusoidalPosEmb needs an even dim of at least 4, got {dim}");
        }
        Ok(Self { dim })
    }

    /// Embeds each value of `t` (f32 values, any device).
    pub fn forward(&self, t: &[f32], device: &Device) -> Result<Tensor> {
        let half = self.dim / 2;
        // The reference's f32 arithmetic: exp(i · −c) then (1000 · t) · f_i.
        let c = -(10000f64.ln() / (half - 1) as f64) as f32;
        let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * c).exp()).collect();
        let mut out = Vec::with_capacity(t.len() * self.dim);
        for &tv in t {
            let args: Vec<f32> = freqs.iter().map(|&f| 1000f32 * tv * f).collect();
            out.extend(args.iter().map(|&a| (a as f64).sin() as f32));
            out.extend(args.iter().map(|&a| (a as f64).cos() as f32));
        }
        Tensor::from_vec(out, (t.len(), self.dim), device)
    }
}

/// `TimestepEmbedding` with the decoder's settings: `linear_1 → SiLU → linear_2`.
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn load(vb: VarBuilder, in_channels: usize, time_embed_dim: usize) -> Result<Self> {
        Ok(Self {
            linear_1: linear(in_channels, time_embed_dim, vb.pp("linear_1"))?,
            linear_2: linear(time_embed_dim, time_embed_dim, vb.pp("linear_2"))?,
        })
    }
}

impl Module for TimestepEmbedding {
    fn forward(&self, sample: &Tensor) -> Result<Tensor> {
        self.linear_2
            .forward(&self.linear_1.forward(sample)?.silu()?)
    }
}
