//! The iSTFTNet decoder: style-conditioned residual blocks turn the aligned text
//! features, F0 and energy into a magnitude/phase spectrogram, excited by a harmonic
//! sine source built from F0, and an inverse STFT turns that into 24 kHz audio.
//!
//! Port of `kokoro/istftnet.py` (kokoro 0.9.4, hexgrad/kokoro), itself adapted from
//! StyleTTS2's `Modules/istftnet.py`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, ConvTranspose1dConfig, Linear, VarBuilder};

use crate::engine::nn::norm::InstanceNorm1d;
use crate::engine::nn::ops::{leaky_relu, upsample_nearest2x, DepthwiseConvTranspose1d};
use crate::engine::nn::{conv1d, conv_transpose1d};

/// `(residual + shortcut) · torch.rsqrt(torch.tensor(2))`, rounded to f32 as there.
const RSQRT_2: f64 = std::f32::consts::FRAC_1_SQRT_2 as f64;

/// LeakyReLU slope of `AdainResBlk1d` (`nn.LeakyReLU(0.2)`).
const ADAIN_RESBLK_SLOPE: f64 = 0.2;

fn conv_cfg(padding: usize, stride: usize, dilation: usize) -> Conv1dConfig {
    Conv1dConfig {
        padding,
        stride,
        dilation,
        ..Default::default()
    }
}

// kokoro/istftnet.py `AdaIN1d`
/// Adaptive instance norm: `(1 + γ) · norm(x) + β` with `[γ, β] = fc(s)`.
#[derive(Debug, Clone)]
pub struct AdaIN1d {
    norm: InstanceNorm1d,
    fc: Linear,
    num_features: usize,
}

impl AdaIN1d {
    pub fn load(vb: VarBuilder, style_dim: usize, num_features: usize) -> Result<Self> {
        Ok(Self {
            norm: InstanceNorm1d::load(vb.pp("norm"), num_features)?,
            fc: candle_nn::linear(style_dim, 2 * num_features, vb.pp("fc"))?,
            num_features,
        })
    }

    /// `x` [B, C, T], `s` [B, style_dim] → [B, C, T].
    pub fn forward(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let h = self.fc.forward(s)?;
        let gamma = h.narrow(1, 0, self.num_features)?;
        let beta = h.narrow(1, self.num_features, self.num_features)?;
        self.norm.forward_modulated(x, &(gamma + 1.0)?, &beta)
    }
}

// kokoro/istftnet.py `UpSample1d`
/// Nearest-neighbour ×2 along time, or nothing (`layer_type == "none"`).
#[derive(Debug, Clone, Copy)]
pub struct UpSample1d {
    nearest: bool,
}

impl UpSample1d {
    pub fn new(nearest: bool) -> Self {
        Self { nearest }
    }
}

impl Module for UpSample1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.nearest {
            upsample_nearest2x(x)
        } else {
            Ok(x.clone())
        }
    }
}

// kokoro/istftnet.py `AdainResBlk1d`
/// Style-conditioned residual block, optionally doubling the time axis (a depthwise
/// transposed convolution on the residual, nearest ×2 on the shortcut).
#[derive(Debug, Clone)]
pub struct AdainResBlk1d {
    upsample: UpSample1d,
    pool: Option<DepthwiseConvTranspose1d>,
    conv1: Conv1d,
    conv2: Conv1d,
    norm1: AdaIN1d,
    norm2: AdaIN1d,
    conv1x1: Option<Conv1d>,
}

impl AdainResBlk1d {
    pub fn load(
        vb: VarBuilder,
        dim_in: usize,
        dim_out: usize,
        style_dim: usize,
        upsample: bool,
    ) -> Result<Self> {
        let pool = if upsample {
            let cfg = ConvTranspose1dConfig {
                padding: 1,
                output_padding: 1,
                stride: 2,
                dilation: 1,
                groups: dim_in,
            };
            let conv = conv_transpose1d(vb.pp("pool"), dim_in, dim_in, 3, cfg, true)?;
            Some(DepthwiseConvTranspose1d::from_conv(&conv)?)
        } else {
            None
        };
        let conv1x1 = if dim_in != dim_out {
            Some(conv1d(
                vb.pp("conv1x1"),
                dim_in,
                dim_out,
                1,
                conv_cfg(0, 1, 1),
                false,
            )?)
        } else {
            None
        };
        Ok(Self {
            upsample: UpSample1d::new(upsample),
            pool,
            conv1: conv1d(vb.pp("conv1"), dim_in, dim_out, 3, conv_cfg(1, 1, 1), true)?,
            conv2: conv1d(vb.pp("conv2"), dim_out, dim_out, 3, conv_cfg(1, 1, 1), true)?,
            norm1: AdaIN1d::load(vb.pp("norm1"), style_dim, dim_in)?,
            norm2: AdaIN1d::load(vb.pp("norm2"), style_dim, dim_out)?,
            conv1x1,
        })
    }

    /// Whether this block doubles the time axis.
    pub fn upsamples(&self) -> bool {
        self.pool.is_some()
    }

    fn shortcut(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.upsample.forward(x)?;
        match &self.conv1x1 {
            Some(conv) => conv.forward(&x),
            None => Ok(x),
        }
    }

    fn residual(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let x = leaky_relu(&self.norm1.forward(x, s)?, ADAIN_RESBLK_SLOPE)?;
        let x = match &self.pool {
            Some(pool) => pool.forward(&x)?,
            None => x,
        };
        let x = self.conv1.forward(&x)?;
        let x = leaky_relu(&self.norm2.forward(&x, s)?, ADAIN_RESBLK_SLOPE)?;
        self.conv2.forward(&x)
    }

    /// `x` [B, dim_in, T], `s` [B, style_dim] → [B, dim_out, T] (2T when upsampling).
    pub fn forward(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let out = (self.residual(x, s)? + self.shortcut(x)?)?;
        out * RSQRT_2
    }
}
