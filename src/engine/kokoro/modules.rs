//! The text side of Kokoro: text encoder (phonemes → acoustic features) and
//! prosody predictor (durations, F0, energy), from `kokoro/modules.py`.
//! (`CustomAlbert`, from the same file, is in `albert.rs`.)
//!
//! Every sequence here is one unpadded utterance (the reference runs batch 1 at
//! full length). The reference's padding masks and `pack_padded_sequence`
//! calls then change nothing and are left out; several sequences of the same
//! length may still share a batch.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{
    embedding, linear, linear_no_bias, Conv1d, Conv1dConfig, Embedding, Linear, VarBuilder,
};

use super::config::KokoroConfig;
use super::istftnet::AdainResBlk1d;
use crate::engine::nn::ops::leaky_relu;
use crate::engine::nn::{conv1d, Lstm};

/// LayerNorm epsilon of the text encoder and the prosody predictor.
const EPS: f64 = 1e-5;
/// Slope of the text encoder's LeakyReLU.
const LEAKY_SLOPE: f64 = 0.2;

/// kokoro 0.9.4 `kokoro/modules.py`, class `LinearNorm`: a plain linear layer
/// (the name refers to its Xavier initialisation).
#[derive(Debug, Clone)]
pub struct LinearNorm {
    linear_layer: Linear,
}

impl LinearNorm {
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let vb = vb.pp("linear_layer");
        let linear_layer = if bias {
            linear(in_dim, out_dim, vb)?
        } else {
            linear_no_bias(in_dim, out_dim, vb)?
        };
        Ok(Self { linear_layer })
    }
}

impl Module for LinearNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_layer.forward(x)
    }
}

/// kokoro 0.9.4 `kokoro/modules.py`, class `LayerNorm`: layer norm over the
/// channels of a [B, C, T] tensor, with `gamma`/`beta`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            gamma: vb.get(channels, "gamma")?,
            beta: vb.get(channels, "beta")?,
            eps: EPS,
        })
    }

    /// Normalise `x` [B, T, C] over its last dimension (the layout the reference
    /// transposes to); the caller keeps that layout between layers.
    fn forward_channels_last(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.gamma, &self.beta, self.eps as f32)
    }
}

impl Module for LayerNorm {
    /// `x` [B, C, T] → [B, C, T].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_channels_last(&x.transpose(1, 2)?)?
            .transpose(1, 2)
    }
}

/// kokoro 0.9.4 `kokoro/modules.py`, class `TextEncoder`: embedding, `depth`
/// × (weight-normed Conv1d → LayerNorm → LeakyReLU 0.2), BiLSTM.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    embedding: Embedding,
    /// `cnn.i` is `Sequential(conv, LayerNorm, LeakyReLU, Dropout)`: the two
    /// with weights, `cnn.i.0` and `cnn.i.1`.
    cnn: Vec<(Conv1d, LayerNorm)>,
    lstm: Lstm,
}

impl TextEncoder {
    /// `channels` = `hidden_dim`, `depth` = `n_layer`, `n_symbols` = `n_token`.
    pub fn load(
        vb: VarBuilder,
        channels: usize,
        kernel_size: usize,
        depth: usize,
        n_symbols: usize,
    ) -> Result<Self> {
        if kernel_size.is_multiple_of(2) {
            candle_core::bail!("text encoder kernel size {kernel_size} must be odd");
        }
        let conv_cfg = Conv1dConfig {
            padding: (kernel_size - 1) / 2,
            ..Default::default()
        };
        let cnn = (0..depth)
            .map(|i| {
                let vb = vb.pp("cnn").pp(i);
                Ok((
                    conv1d(vb.pp(0), channels, channels, kernel_size, conv_cfg, true)?,
                    LayerNorm::load(vb.pp(1), channels)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embedding: embedding(n_symbols, channels, vb.pp("embedding"))?,
            cnn,
            lstm: Lstm::load(vb.pp("lstm"), channels, channels / 2, true)?,
        })
    }

    pub fn load_config(vb: VarBuilder, cfg: &KokoroConfig) -> Result<Self> {
        Self::load(
            vb,
            cfg.hidden_dim,
            cfg.text_encoder_kernel_size,
            cfg.n_layer,
            cfg.n_token,
        )
    }

    /// `input_ids` [B, T] → `t_en` [B, C, T].
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        // Channels-last [B, T, C] between layers: the norm, the activation and
        // the LSTM want it; only the convolution sees [B, C, T].
        let mut x = self.embedding.forward(input_ids)?;
        for (conv, norm) in &self.cnn {
            let y = conv.forward(&x.transpose(1, 2)?.contiguous()?)?;
            let y = norm.forward_channels_last(&y.transpose(1, 2)?)?;
            x = leaky_relu(&y, LEAKY_SLOPE)?;
        }
        self.lstm.forward(&x)?.transpose(1, 2)
    }
}

/// kokoro 0.9.4 `kokoro/modules.py`, class `AdaLayerNorm`: layer norm over
/// channels without affine weights, then `(1 + γ)·x + β` with `[γ, β] = fc(s)`.
#[derive(Debug, Clone)]
pub struct AdaLayerNorm {
    fc: Linear,
    channels: usize,
    eps: f64,
}

impl AdaLayerNorm {
    pub fn load(vb: VarBuilder, style_dim: usize, channels: usize) -> Result<Self> {
        Ok(Self {
            fc: linear(style_dim, 2 * channels, vb.pp("fc"))?,
            channels,
            eps: EPS,
        })
    }

    /// `x` [B, T, C], `s` [B, style_dim] → [B, T, C].
    pub fn forward(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let c = self.channels;
        let h = self.fc.forward(s)?;
        let gain = (h.narrow(D::Minus1, 0, c)? + 1.0)?;
        let shift = h.narrow(D::Minus1, c, c)?;
        let x = x.contiguous()?;
        // The style's gain and shift fold into the fused norm's weight and bias,
        // one sequence at a time.
        let rows = (0..x.dim(0)?)
            .map(|b| {
                candle_nn::ops::layer_norm(
                    &x.get(b)?,
                    &gain.get(b)?.contiguous()?,
                    &shift.get(b)?.contiguous()?,
                    self.eps as f32,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        match rows.as_slice() {
            [one] => one.unsqueeze(0),
            _ => Tensor::stack(&rows, 0),
        }
    }
}

/// kokoro 0.9.4 `kokoro/modules.py`, class `DurationEncoder`: `nlayers` ×
/// (BiLSTM → AdaLayerNorm), the style concatenated to every step before each.
#[derive(Debug, Clone)]
pub struct DurationEncoder {
    /// `lstms` alternates `nn.LSTM` (`lstms.2i`) and `AdaLayerNorm` (`lstms.2i+1`).
    lstms: Vec<(Lstm, AdaLayerNorm)>,
    sty_dim: usize,
}

impl DurationEncoder {
    pub fn load(vb: VarBuilder, sty_dim: usize, d_model: usize, nlayers: usize) -> Result<Self> {
        let lstms = (0..nlayers)
            .map(|i| {
                Ok((
                    Lstm::load(
                        vb.pp("lstms").pp(2 * i),
                        d_model + sty_dim,
                        d_model / 2,
                        true,
                    )?,
                    AdaLayerNorm::load(vb.pp("lstms").pp(2 * i + 1), sty_dim, d_model)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self { lstms, sty_dim })
    }

    /// `x` = `d_en` [B, d_model, T], `style` [B, sty_dim] → `d` [B, T, d_model + sty_dim].
    pub fn forward(&self, x: &Tensor, style: &Tensor) -> Result<Tensor> {
        let (b, _, t) = x.dims3()?;
        let s = style
            .unsqueeze(1)?
            .broadcast_as((b, t, self.sty_dim))?
            .contiguous()?;
        let mut x = Tensor::cat(&[&x.transpose(1, 2)?, &s], D::Minus1)?;
        for (lstm, norm) in &self.lstms {
            let y = norm.forward(&lstm.forward(&x)?, style)?;
            x = Tensor::cat(&[&y, &s], D::Minus1)?;
        }
        Ok(x)
    }
}

/// kokoro 0.9.4 `kokoro/modules.py`, class `ProsodyPredictor`.
#[allow(non_snake_case)]
#[derive(Debug, Clone)]
pub struct ProsodyPredictor {
    pub text_encoder: DurationEncoder,
    pub lstm: Lstm,
    pub duration_proj: LinearNorm,
    pub shared: Lstm,
    pub F0: Vec<AdainResBlk1d>,
    pub N: Vec<AdainResBlk1d>,
    pub F0_proj: Conv1d,
    pub N_proj: Conv1d,
}

impl ProsodyPredictor {
    /// `vb` at the checkpoint group `predictor`.
    pub fn load(vb: VarBuilder, cfg: &KokoroConfig) -> Result<Self> {
        let (d_hid, style_dim) = (cfg.hidden_dim, cfg.style_dim);
        Ok(Self {
            text_encoder: DurationEncoder::load(
                vb.pp("text_encoder"),
                style_dim,
                d_hid,
                cfg.n_layer,
            )?,
            lstm: Lstm::load(vb.pp("lstm"), d_hid + style_dim, d_hid / 2, true)?,
            duration_proj: LinearNorm::load(vb.pp("duration_proj"), d_hid, cfg.max_dur, true)?,
            shared: Lstm::load(vb.pp("shared"), d_hid + style_dim, d_hid / 2, true)?,
            F0: Self::load_branch(vb.pp("F0"), d_hid, style_dim)?,
            N: Self::load_branch(vb.pp("N"), d_hid, style_dim)?,
            F0_proj: conv1d(vb.pp("F0_proj"), d_hid / 2, 1, 1, Default::default(), true)?,
            N_proj: conv1d(vb.pp("N_proj"), d_hid / 2, 1, 1, Default::default(), true)?,
        })
    }

    /// The `F0` or `N` blocks: d → d, d → d/2 at twice the frame rate, d/2 → d/2.
    fn load_branch(vb: VarBuilder, d_hid: usize, style_dim: usize) -> Result<Vec<AdainResBlk1d>> {
        Ok(vec![
            AdainResBlk1d::load(vb.pp(0), d_hid, d_hid, style_dim, false)?,
            AdainResBlk1d::load(vb.pp(1), d_hid, d_hid / 2, style_dim, true)?,
            AdainResBlk1d::load(vb.pp(2), d_hid / 2, d_hid / 2, style_dim, false)?,
        ])
    }

    /// `d` [B, T, H + S] (the duration encoder's output) → duration logits
    /// [B, T, max_dur].
    pub fn duration_logits(&self, d: &Tensor) -> Result<Tensor> {
        self.duration_proj.forward(&self.lstm.forward(d)?)
    }

    /// The reference's `F0Ntrain`: `en` [B, H + S, F] (the duration encoder's
    /// output repeated per frame), `s` [B, S] → (F0, N), each [B, 2F].
    pub fn f0_ntrain(&self, en: &Tensor, s: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self
            .shared
            .forward(&en.transpose(1, 2)?)?
            .transpose(1, 2)?
            .contiguous()?;
        let branch = |blocks: &[AdainResBlk1d], proj: &Conv1d| -> Result<Tensor> {
            let mut y = x.clone();
            for block in blocks {
                y = block.forward(&y, s)?;
            }
            proj.forward(&y)?.squeeze(1)
        };
        Ok((
            branch(&self.F0, &self.F0_proj)?,
            branch(&self.N, &self.N_proj)?,
        ))
    }
}

/// Frames per token before rounding: `sigmoid(logits).sum(-1) / speed`
/// (logits [B, T, max_dur] → [B, T]). The division is a true f32 division,
/// as in the reference, not a multiplication by `1 / speed`.
pub fn duration(logits: &Tensor, speed: f32) -> Result<Tensor> {
    let sum = candle_nn::ops::sigmoid(logits)?.sum(D::Minus1)?;
    let speed = Tensor::new(speed, logits.device())?.to_dtype(sum.dtype())?;
    sum.broadcast_div(&speed)
}

/// Frames per token: `torch.round(duration).clamp(min=1)`, where `torch.round`
/// rounds half to even. A NaN duration gives 1 frame.
pub fn pred_dur(duration: &[f32]) -> Vec<u32> {
    duration
        .iter()
        .map(|d| (d.round_ties_even() as u32).max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::collections::HashMap;

    #[test]
    fn pred_dur_rounds_half_to_even_and_keeps_one_frame() {
        let got = pred_dur(&[0.2, 0.5, 1.5, 2.5, 3.5, 2.49, 2.51, -3.0, f32::NAN]);
        assert_eq!(got, vec![1, 1, 2, 2, 4, 2, 3, 1, 1]);
    }

    #[test]
    fn duration_divides_by_speed_in_f32() -> Result<()> {
        // sigmoid(0) = 0.5 per bin; 3 bins → 1.5; then / 1.3 as f32 division.
        let logits = Tensor::zeros((1, 2, 3), DType::F32, &Device::Cpu)?;
        let got = duration(&logits, 1.3)?.to_vec2::<f32>()?;
        assert_eq!(got, vec![vec![1.5f32 / 1.3f32; 2]]);
        Ok(())
    }

    #[test]
    fn ada_layer_norm_applies_one_plus_gamma_and_beta_per_sequence() -> Result<()> {
        let dev = Device::Cpu;
        // fc maps style (a) to gamma = [a, a], beta = [-a, -a].
        let w = Tensor::new(&[[1f32], [1.0], [-1.0], [-1.0]], &dev)?;
        let map = HashMap::from([
            ("fc.weight".to_string(), w),
            ("fc.bias".to_string(), Tensor::zeros(4, DType::F32, &dev)?),
        ]);
        let norm = AdaLayerNorm::load(VarBuilder::from_tensors(map, DType::F32, &dev), 1, 2)?;
        // Each row [m - 1, m + 1] normalises to [-1, 1] (up to eps).
        let x = Tensor::new(&[[[0f32, 2.0], [5.0, 7.0]], [[1.0, 3.0], [1.0, 3.0]]], &dev)?;
        let s = Tensor::new(&[[1f32], [2.0]], &dev)?;
        let got = norm.forward(&x, &s)?.to_vec3::<f32>()?;
        let want = [[[-3f32, 1.0], [-3.0, 1.0]], [[-5.0, 1.0], [-5.0, 1.0]]];
        for (g, w) in got
            .iter()
            .flatten()
            .flatten()
            .zip(want.iter().flatten().flatten())
        {
            assert!((g - w).abs() < 1e-4, "{got:?}");
        }
        Ok(())
    }

    #[test]
    fn channel_layer_norm_normalises_each_time_step_over_channels() -> Result<()> {
        let dev = Device::Cpu;
        let map = HashMap::from([
            ("gamma".to_string(), Tensor::new(&[2f32, 2.0], &dev)?),
            ("beta".to_string(), Tensor::new(&[0f32, 1.0], &dev)?),
        ]);
        let norm = LayerNorm::load(VarBuilder::from_tensors(map, DType::F32, &dev), 2)?;
        // [B=1, C=2, T=2]: time step 0 has channels (0, 4), step 1 has (3, 1).
        let x = Tensor::new(&[[[0f32, 3.0], [4.0, 1.0]]], &dev)?;
        let got = norm.forward(&x)?.to_vec3::<f32>()?;
        let want = [[-2f32, 2.0], [3.0, -1.0]];
        for (g, w) in got[0].iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-4, "{got:?}");
        }
        Ok(())
    }
}
