//! A depthwise transposed convolution, split into output phases.

use candle_core::{Result, Tensor};
use candle_nn::{ConvTranspose1d, ConvTranspose1dConfig};

/// A depthwise `nn.ConvTranspose1d` (groups = in = out channels, dilation 1). Candle
/// runs a grouped transposed convolution as one small convolution per group; this
/// splits the output into `stride` phases instead, each a sum of `⌈k/stride⌉` shifted,
/// per-channel scaled copies of the input, then interleaves them.
#[derive(Debug, Clone)]
pub struct DepthwiseConvTranspose1d {
    /// [C, K]
    weight: Tensor,
    /// [1, C, 1]
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    output_padding: usize,
}

impl DepthwiseConvTranspose1d {
    /// From a loaded (weight-norm folded) depthwise `ConvTranspose1d`; fails unless it is
    /// depthwise with dilation 1.
    pub fn from_conv(conv: &ConvTranspose1d) -> Result<Self> {
        let cfg: &ConvTranspose1dConfig = conv.config();
        let (c, per_group, k) = conv.weight().dims3()?;
        if cfg.groups != c || per_group != 1 || cfg.dilation != 1 {
            candle_core::bail!(
                "depthwise conv_transpose1d: weight {:?}, groups {}, dilation {}",
                conv.weight().shape(),
                cfg.groups,
                cfg.dilation
            );
        }
        if cfg.stride == 0 || cfg.output_padding >= cfg.stride.max(cfg.dilation) {
            candle_core::bail!("depthwise conv_transpose1d: bad stride/output padding");
        }
        let bias = conv.bias().map(|b| b.reshape((1, c, 1))).transpose()?;
        Ok(Self {
            weight: conv.weight().reshape((c, k))?,
            bias,
            stride: cfg.stride,
            padding: cfg.padding,
            output_padding: cfg.output_padding,
        })
    }

    /// `x` [B, C, T] → [B, C, (T−1)·stride − 2·padding + K + output_padding].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let (_, k) = self.weight.dims2()?;
        let s = self.stride;
        let taps = k.div_ceil(s);
        let q = t + taps - 1;
        let l_out = ((t - 1) * s + k + self.output_padding)
            .checked_sub(2 * self.padding)
            .ok_or_else(|| candle_core::Error::Msg("conv_transpose1d: output too short".into()))?;
        // Full output u[q·s + r] = Σ_m w[r + m·s] · x[q − m]: phase r of every block.
        let xp = x.pad_with_zeros(2, taps - 1, taps - 1)?;
        let mut phases = Vec::with_capacity(s);
        for r in 0..s {
            let mut acc: Option<Tensor> = None;
            for m in 0..taps {
                let tap = r + m * s;
                if tap >= k {
                    break;
                }
                let w = self.weight.narrow(1, tap, 1)?.reshape((1, c, 1))?;
                let term = xp.narrow(2, taps - 1 - m, q)?.broadcast_mul(&w)?;
                acc = Some(match acc {
                    None => term,
                    Some(a) => (a + term)?,
                });
            }
            phases.push(match acc {
                Some(a) => a,
                None => Tensor::zeros((b, c, q), x.dtype(), x.device())?,
            });
        }
        let full = Tensor::stack(&phases, 3)?.reshape((b, c, q * s))?;
        let need = self.padding + l_out;
        let full = if need > q * s {
            full.pad_with_zeros(2, 0, need - q * s)?
        } else {
            full
        };
        let out = full.narrow(2, self.padding, l_out)?;
        match &self.bias {
            Some(bias) => out.broadcast_add(bias),
            None => out.contiguous(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    use crate::engine::nn::max_diff;

    #[test]
    fn depthwise_transposed_conv_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let c = 5;
        let x = Tensor::randn(0f32, 1.0, (2, c, 9), &dev)?;
        for (k, stride, padding, output_padding) in [(3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 0, 2)] {
            let w = Tensor::randn(0f32, 1.0, (c, 1, k), &dev)?;
            let b = Tensor::randn(0f32, 1.0, c, &dev)?;
            let cfg = ConvTranspose1dConfig {
                padding,
                output_padding,
                stride,
                dilation: 1,
                groups: c,
            };
            let conv = ConvTranspose1d::new(w, Some(b), cfg);
            let want = candle_core::Module::forward(&conv, &x)?;
            let got = DepthwiseConvTranspose1d::from_conv(&conv)?.forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            assert!(max_diff(&got, &want) < 1e-5, "k {k} stride {stride}");
        }
        Ok(())
    }
}
