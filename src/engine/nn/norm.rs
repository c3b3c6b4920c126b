//! Normalisation layers.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::fast_math::simd_dispatch;
use super::ops::with_cpu_f32;
use super::threads::fill_chunks;

const INSTANCE_NORM_EPS: f64 = 1e-5;

/// `torch.nn.InstanceNorm1d(num_features, eps=1e-5)` in inference: every channel of
/// every item normalised over time (biased variance). The affine `weight`/`bias` are
/// read when the checkpoint has them and are otherwise 1 and 0: Kokoro's `AdaIN1d`
/// declares them, but the released checkpoint does not store them.
#[derive(Debug, Clone)]
pub struct InstanceNorm1d {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    eps: f64,
}

impl InstanceNorm1d {
    pub fn load(vb: VarBuilder, num_features: usize) -> Result<Self> {
        let weight = if vb.contains_tensor("weight") {
            Some(vb.get(num_features, "weight")?)
        } else {
            None
        };
        let bias = if vb.contains_tensor("bias") {
            Some(vb.get(num_features, "bias")?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            eps: INSTANCE_NORM_EPS,
        })
    }

    /// `gain · norm(x) + shift`, with `x` [B, C, T] and `gain`, `shift` [B, C]: the
    /// style modulation of AdaIN fused into the normalisation pass.
    pub fn forward_modulated(&self, x: &Tensor, gain: &Tensor, shift: &Tensor) -> Result<Tensor> {
        self.modulated(x, gain, shift, None)
    }

    /// `snake(gain · norm(x) + shift, α)` (`alpha` [1, C, 1] or [C]) in the same pass,
    /// without the normalised tensor in between.
    pub fn forward_modulated_snake(
        &self,
        x: &Tensor,
        gain: &Tensor,
        shift: &Tensor,
        alpha: &Tensor,
    ) -> Result<Tensor> {
        self.modulated(x, gain, shift, Some(alpha))
    }

    fn modulated(
        &self,
        x: &Tensor,
        gain: &Tensor,
        shift: &Tensor,
        snake_alpha: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, c, _) = x.dims3()?;
        let gain = gain.reshape((b, c))?;
        let shift = shift.reshape((b, c))?;
        // The affine step of the norm, then the modulation, as per-channel f32 values.
        let (w, bias) = self.affine(c, x)?;
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            let g = gain.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let s = shift
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let w = w.to_vec1::<f32>()?;
            let bias = bias.to_vec1::<f32>()?;
            let alphas = match snake_alpha {
                Some(a) => Some(a.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
                None => None,
            };
            if alphas.as_ref().is_some_and(|a| a.len() != c) {
                candle_core::bail!("snake: alphas for {c} channels expected");
            }
            let out = with_cpu_f32(x, |data| {
                normalize_rows(
                    data,
                    x,
                    self.eps,
                    |row| {
                        let ch = row % c;
                        (w[ch], bias[ch], g[row], s[row])
                    },
                    |row, o| {
                        if let Some(a) = &alphas {
                            super::fast_math::snake_row_inplace(a[row % c], o);
                        }
                    },
                )
            });
            if let Some(out) = out {
                return out;
            }
        }
        let y = self.normalize(x)?;
        let y = y
            .broadcast_mul(&w.reshape((1, c, 1))?)?
            .broadcast_add(&bias.reshape((1, c, 1))?)?;
        let y = y
            .broadcast_mul(&gain.unsqueeze(2)?)?
            .broadcast_add(&shift.unsqueeze(2)?)?;
        match snake_alpha {
            Some(a) => super::ops::snake(&y, a),
            None => Ok(y),
        }
    }

    /// The statistics of every row of `data` (`[C, t]` f32, one item) and the
    /// modulation `gain`, `shift` (and snake `alphas`), each per channel, as a
    /// [`Modulation`].
    pub fn modulation(
        &self,
        data: &[f32],
        t: usize,
        gain: &[f32],
        shift: &[f32],
        alphas: Option<Vec<f32>>,
    ) -> Result<Modulation> {
        let c = gain.len();
        if data.len() != c * t || shift.len() != c || alphas.as_ref().is_some_and(|a| a.len() != c)
        {
            candle_core::bail!("instance norm: [{c}, {t}] values and {c} parameters each expected");
        }
        let x = Tensor::zeros(0, DType::F32, &candle_core::Device::Cpu)?;
        let (w, bias) = self.affine(c, &x)?;
        let (w, bias) = (w.to_vec1::<f32>()?, bias.to_vec1::<f32>()?);
        let mut rows = vec![(0f32, 0f32, 0f32, 0f32); c];
        let threads = if data.len() < 1 << 16 {
            1
        } else {
            candle_core::utils::get_num_threads().max(1)
        };
        let per = c.div_ceil(threads).max(1);
        let eps = self.eps;
        std::thread::scope(|scope| {
            for (k, part) in rows.chunks_mut(per).enumerate() {
                let (w, bias) = (&w, &bias);
                scope.spawn(move || {
                    for (j, p) in part.iter_mut().enumerate() {
                        let ch = k * per + j;
                        let (a, b) = row_stats(&data[ch * t..(ch + 1) * t], eps, w[ch], bias[ch]);
                        *p = (a, b, gain[ch], shift[ch]);
                    }
                });
            }
        });
        Ok(Modulation {
            rows,
            snake: alphas,
        })
    }

    /// The per-channel affine weight and bias, 1 and 0 when the checkpoint has none.
    fn affine(&self, c: usize, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let w = match &self.weight {
            Some(w) => w.to_dtype(DType::F32)?,
            None => Tensor::ones(c, DType::F32, x.device())?,
        };
        let b = match &self.bias {
            Some(b) => b.to_dtype(DType::F32)?,
            None => Tensor::zeros(c, DType::F32, x.device())?,
        };
        Ok((w.to_dtype(x.dtype())?, b.to_dtype(x.dtype())?))
    }

    /// `(x − mean) / sqrt(var + eps)` over the last dimension, with candle ops.
    fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(2)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(2)?;
        xc.broadcast_div(&(var + self.eps)?.sqrt()?)
    }
}

/// One pass per row of `x` [B, C, T] (contiguous f32 `data`): statistics as PyTorch's
/// CPU batch norm takes them (sum in f64, mean rounded to f32, squared deviations
/// summed in f64, `1/sqrt(var + eps)` rounded to f32), then
/// `(x·α + β)·gain + shift` with `α = w/std`, `β = bias − mean·α`.
fn normalize_rows(
    data: &[f32],
    x: &Tensor,
    eps: f64,
    params: impl Fn(usize) -> (f32, f32, f32, f32) + Sync,
    then: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<Tensor> {
    let (_, _, t) = x.dims3()?;
    let mut out = vec![0f32; data.len()];
    if t > 0 {
        fill_chunks(&mut out, t, |row, o| {
            let xs = &data[row * t..(row + 1) * t];
            let (w, bias, gain, shift) = params(row);
            normalize_row(xs, o, eps, (w, bias, gain, shift));
            then(row, o);
        });
    }
    Tensor::from_vec(out, x.shape(), x.device())
}

simd_dispatch! {
    /// One row of [`normalize_rows`]: its statistics, then `o = (x·α + β)·gain + shift`.
    fn normalize_row(xs: &[f32], o: &mut [f32], eps: f64, p: (f32, f32, f32, f32)) => normalize_row_any
}

#[inline(always)]
fn normalize_row_any(
    xs: &[f32],
    o: &mut [f32],
    eps: f64,
    (w, bias, gain, shift): (f32, f32, f32, f32),
) {
    let (alpha, beta) = row_stats_any(xs, eps, w, bias);
    modulate_row_any(xs, o, (alpha, beta, gain, shift));
}

simd_dispatch! {
    /// `(α, β)` of one row: `α = w/std`, `β = bias − mean·α` (see [`normalize_rows`]).
    fn row_stats(xs: &[f32], eps: f64, w: f32, bias: f32) -> (f32, f32) => row_stats_any
}

#[inline(always)]
fn row_stats_any(xs: &[f32], eps: f64, w: f32, bias: f32) -> (f32, f32) {
    let t = xs.len() as f64;
    let mean = (sum_f64(xs, |v| v) / t) as f32;
    let var_sum = sum_f64(xs, |v| {
        let d = v - mean;
        d * d
    });
    let inv_std = (1.0 / (var_sum / t + eps).sqrt()) as f32;
    let alpha = inv_std * w;
    (alpha, bias - mean * alpha)
}

simd_dispatch! {
    /// `o = (x·α + β)·gain + shift`.
    fn modulate_row(xs: &[f32], o: &mut [f32], p: (f32, f32, f32, f32)) => modulate_row_any
}

#[inline(always)]
fn modulate_row_any(xs: &[f32], o: &mut [f32], (alpha, beta, gain, shift): (f32, f32, f32, f32)) {
    for (o, &v) in o.iter_mut().zip(xs) {
        *o = (v * alpha + beta) * gain + shift;
    }
}

/// A modulated instance norm (and optionally snake) with its statistics taken, to be
/// applied to any stretch of each row: the same values as
/// [`InstanceNorm1d::forward_modulated_snake`] without its output existing whole.
#[derive(Debug, Clone)]
pub struct Modulation {
    /// `(α, β, gain, shift)` per row: `o = (x·α + β)·gain + shift`.
    rows: Vec<(f32, f32, f32, f32)>,
    /// Snake α per row, when the activation follows.
    snake: Option<Vec<f32>>,
}

impl Modulation {
    /// Row `row`'s values for `xs` (a stretch of that row) into `o`.
    pub fn apply(&self, row: usize, xs: &[f32], o: &mut [f32]) {
        modulate_row(xs, o, self.rows[row]);
        if let Some(a) = &self.snake {
            super::fast_math::snake_row_inplace(a[row], o);
        }
    }
}

/// `Σ f(x)` over `xs`, each term widened to f64, in independent lanes (a single
/// running sum is one dependent add per value; the lanes vectorise). In f64 the sum of
/// f32 terms is exact up to ~2²⁹ values of one binade, so the lane order does not
/// change the f32 statistics drawn from it.
#[inline(always)]
fn sum_f64(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    const LANES: usize = 32;
    let chunks = xs.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(f(v))).sum();
    let mut acc = [0f64; LANES];
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f64::from(f(v));
        }
    }
    acc.iter().sum::<f64>() + tail
}

impl Module for InstanceNorm1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _) = x.dims3()?;
        let ones = Tensor::ones((b, c), x.dtype(), x.device())?;
        let zeros = Tensor::zeros((b, c), x.dtype(), x.device())?;
        self.forward_modulated(x, &ones, &zeros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};
    use std::collections::HashMap;

    /// A three-channel norm with checkpoint affine parameters.
    fn norm_with_affine() -> Result<InstanceNorm1d> {
        let dev = Device::Cpu;
        let mut map = HashMap::new();
        map.insert(
            "weight".to_string(),
            Tensor::new(&[0.5f32, 1.0, 2.0], &dev)?,
        );
        map.insert("bias".to_string(), Tensor::new(&[0.1f32, -0.2, 0.3], &dev)?);
        InstanceNorm1d::load(VarBuilder::from_tensors(map, DType::F32, &dev), 3)
    }

    fn empty_vb() -> VarBuilder<'static> {
        VarBuilder::from_tensors(HashMap::new(), DType::F32, &Device::Cpu)
    }

    #[test]
    fn normalises_each_channel_over_time() -> Result<()> {
        let dev = Device::Cpu;
        let norm = InstanceNorm1d::load(empty_vb(), 2)?;
        let x = Tensor::new(&[[[1f32, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 9.0]]], &dev)?;
        let y = norm.forward(&x)?;
        // Channel 0: mean 2.5, biased variance 1.25.
        let s = (1.25f32 + 1e-5).sqrt();
        let want0 = [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s];
        for (g, w) in y.i((0, 0))?.to_vec1::<f32>()?.iter().zip(want0) {
            assert!((g - w).abs() < 1e-6);
        }
        // Channel 1: mean 6, variance 3.
        let got = y.i((0, 1))?.to_vec1::<f32>()?;
        assert!((got[3] - 3.0 / (3f32 + 1e-5).sqrt()).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn fused_path_matches_candle_ops_with_affine_and_modulation() -> Result<()> {
        let dev = Device::Cpu;
        let (b, c, t) = (2, 3, 30_000);
        let norm = norm_with_affine()?;
        let x = (Tensor::randn(0f32, 3.0, (b, c, t), &dev)? + 7.0)?;
        let gain = Tensor::randn(1f32, 0.3, (b, c), &dev)?;
        let shift = Tensor::randn(0f32, 0.3, (b, c), &dev)?;
        let got = norm.forward_modulated(&x, &gain, &shift)?;
        let (w, bias) = norm.affine(c, &x)?;
        let want = norm
            .normalize(&x)?
            .broadcast_mul(&w.reshape((1, c, 1))?)?
            .broadcast_add(&bias.reshape((1, c, 1))?)?
            .broadcast_mul(&gain.unsqueeze(2)?)?
            .broadcast_add(&shift.unsqueeze(2)?)?;
        let diff = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        Ok(())
    }

    #[test]
    fn fused_snake_equals_snake_after_the_norm() -> Result<()> {
        let dev = Device::Cpu;
        let (c, t) = (4, 5_000);
        let norm = InstanceNorm1d::load(empty_vb(), c)?;
        let x = Tensor::randn(0f32, 2.0, (1, c, t), &dev)?;
        let gain = Tensor::randn(1f32, 0.3, (1, c), &dev)?;
        let shift = Tensor::randn(0f32, 0.3, (1, c), &dev)?;
        // One channel's α·x beyond the vectorised sin's range takes the library path.
        let alpha = Tensor::new(&[[[0.3f32], [1.0], [2.5], [9000.0]]], &dev)?;
        let got = norm.forward_modulated_snake(&x, &gain, &shift, &alpha)?;
        let want = super::super::ops::snake(&norm.forward_modulated(&x, &gain, &shift)?, &alpha)?;
        let diff = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }

    #[test]
    fn modulation_applied_by_stretches_equals_the_fused_pass() -> Result<()> {
        let dev = Device::Cpu;
        let (c, t) = (3, 70_001);
        let norm = norm_with_affine()?;
        let x = (Tensor::randn(0f32, 3.0, (1, c, t), &dev)? + 7.0)?;
        let gain = Tensor::randn(1f32, 0.3, (1, c), &dev)?;
        let shift = Tensor::randn(0f32, 0.3, (1, c), &dev)?;
        let alpha = Tensor::new(&[0.3f32, 1.0, 2.5], &dev)?;
        let want = norm
            .forward_modulated_snake(&x, &gain, &shift, &alpha)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let modulation = norm.modulation(
            &xs,
            t,
            &gain.flatten_all()?.to_vec1::<f32>()?,
            &shift.flatten_all()?.to_vec1::<f32>()?,
            Some(alpha.to_vec1::<f32>()?),
        )?;
        let mut got = vec![0f32; c * t];
        for (ch, (row, out)) in xs.chunks(t).zip(got.chunks_mut(t)).enumerate() {
            // Uneven stretches, as a convolution's stretches and margins cut them.
            let mut at = 0;
            for len in [1, 999, 30_000, 39_001] {
                modulation.apply(ch, &row[at..at + len], &mut out[at..at + len]);
                at += len;
            }
        }
        // The same arithmetic value by value: identical, not merely close.
        assert!(got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // Parameters that do not fit the values are an error.
        assert!(norm
            .modulation(&xs, t + 1, &[1.0; 3], &[0.0; 3], None)
            .is_err());
        Ok(())
    }
}
