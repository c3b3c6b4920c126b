//! Small tensor ops the engines need that candle 0.11 lacks, or has only in a slow
//! form (many passes, or a loop over channel groups).
//!
//! On a contiguous f32 CPU tensor each op is one pass over the data, split across
//! threads when the tensor is large; on other devices it falls back to candle's own
//! ops (or, for the few ops candle cannot express, a trip through host memory).

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};

use super::fast_math::{gelu_erf_f32, gelu_tanh_f32, map_slice, snake_row_inplace};
use super::threads::fill_chunks;

/// Runs `f` on the f32 values of `x` when it lives in CPU memory as f32; `None` on any
/// other device or dtype. A strided CPU tensor is made contiguous first.
pub(crate) fn with_cpu_f32<R>(
    x: &Tensor,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Option<Result<R>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return None;
    }
    let x = match x.contiguous() {
        Ok(x) => x,
        Err(e) => return Some(Err(e)),
    };
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    Some(f(&data[start..end]))
}

/// Applies `f` to every value of a CPU f32 tensor, in chunks over candle's threads
/// with [`map_slice`] (so a branch-free `f` runs on the widest vectors there are), or
/// returns `None` on any other device or dtype.
pub(crate) fn map_cpu(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Option<Result<Tensor>> {
    with_cpu_f32(x, |data| {
        let mut out = vec![0f32; data.len()];
        let chunk = 1 << 14;
        fill_chunks(&mut out, chunk, |i, o| {
            map_slice(&data[i * chunk..i * chunk + o.len()], o, &f);
        });
        Tensor::from_vec(out, x.shape(), x.device())
    })
}

/// `F.leaky_relu(x, slope)`: `x` where `x > 0`, else `slope · x`.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let s = slope as f32;
    if let Some(out) = map_cpu(x, |v| if v > 0.0 { v } else { v * s }) {
        return out;
    }
    let zeros = x.zeros_like()?;
    x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?
}

/// `F.elu(x, alpha)`: `x` where `x > 0`, else `alpha · (eˣ − 1)`, the difference taken
/// with `expm1` as PyTorch's CPU kernel does (a plain `exp − 1` loses the low bits of
/// small negative values). Off the CPU, candle's `elu`.
pub fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let a = alpha as f32;
    if let Some(out) = map_cpu(x, |v| if v > 0.0 { v } else { a * v.exp_m1() }) {
        return out;
    }
    x.elu(alpha)
}

/// Snake activation `x + sin²(α·x)/α` with one `α` per channel: `x` is [B, C, T] and
/// `alpha` has C values (the reference stores it as [1, C, 1]). Rounds like the
/// reference: `x + (1/α) · sin(α·x)²`.
pub fn snake(x: &Tensor, alpha: &Tensor) -> Result<Tensor> {
    let (_, c, t) = x.dims3()?;
    let alpha = alpha.flatten_all()?;
    if alpha.dim(0)? != c {
        candle_core::bail!("snake: {} alphas for {c} channels", alpha.dim(0)?);
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        let a = alpha.to_vec1::<f32>()?;
        if let Some(out) = with_cpu_f32(x, |data| {
            let mut out = data.to_vec();
            fill_chunks(&mut out, t, |row, o| snake_row_inplace(a[row % c], o));
            Tensor::from_vec(out, x.shape(), x.device())
        }) {
            return out;
        }
    }
    let a = alpha.reshape((1, c, 1))?;
    let s = x.broadcast_mul(&a)?.sin()?.sqr()?;
    x + s.broadcast_mul(&a.recip()?)?
}

/// `acc = (acc + y) · scale` in place when both are contiguous f32 CPU tensors of one
/// shape (no third activation alive); a new tensor otherwise. `acc` must not share its
/// storage with another tensor still in use (a layer's fresh output).
pub fn add_scaled_into(acc: Tensor, y: &Tensor, scale: f32) -> Result<Tensor> {
    struct AddScaled(f32);
    impl candle_core::InplaceOp2 for AddScaled {
        fn name(&self) -> &'static str {
            "add-scaled-into"
        }
        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &candle_core::Layout,
            s2: &CpuStorage,
            l2: &candle_core::Layout,
        ) -> Result<()> {
            let (CpuStorage::F32(a), CpuStorage::F32(b)) = (s1, s2) else {
                candle_core::bail!("add-scaled-into: f32 only");
            };
            let (Some((a0, a1)), Some((b0, b1))) =
                (l1.contiguous_offsets(), l2.contiguous_offsets())
            else {
                candle_core::bail!("add-scaled-into: contiguous tensors only");
            };
            for (a, &b) in a[a0..a1].iter_mut().zip(&b[b0..b1]) {
                *a = (*a + b) * self.0;
            }
            Ok(())
        }
    }
    let fits = acc.device().is_cpu()
        && acc.dtype() == DType::F32
        && y.dtype() == DType::F32
        && acc.shape() == y.shape()
        && acc.is_contiguous()
        && y.is_contiguous();
    if fits {
        acc.inplace_op2(y, &AddScaled(scale))?;
        Ok(acc)
    } else {
        (acc + y)? * f64::from(scale)
    }
}

/// `F.gelu(x)` in its exact form, `x · (1 + erf(x / √2)) / 2`, on a CPU f32 tensor in
/// one vectorised pass (candle's `gelu_erf` calls a scalar f64 `erf` per value, a
/// seventh of S3Gen's decoder time); candle's op elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    match map_cpu(x, gelu_erf_f32) {
        Some(y) => y,
        None => x.gelu_erf(),
    }
}

/// `F.gelu(x, approximate="tanh")` (transformers' `gelu_new`) on a CPU f32 tensor in
/// one vectorised pass: `0.5·x·(1 + tanh u)` is `x / (1 + e^(−2u))`, one [`exp_f32`]
/// (candle's op calls the library `tanhf` per value, ~6% of a GPT-2 decode step);
/// candle's op elsewhere.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    match map_cpu(x, gelu_tanh_f32) {
        Some(y) => y,
        None => x.gelu(),
    }
}

/// Elementwise `atan2(y, x)` (the angle of `x + iy`, as `torch.angle`). Candle has no
/// arctangent, so off the CPU the values make a round trip through host memory.
pub fn atan2(y: &Tensor, x: &Tensor) -> Result<Tensor> {
    if y.shape() != x.shape() {
        candle_core::bail!("atan2: shapes {:?} and {:?} differ", y.shape(), x.shape());
    }
    let dev = y.device();
    let (yc, xc) = (y.to_device(&Device::Cpu)?, x.to_device(&Device::Cpu)?);
    let (yv, xv) = (
        yc.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        xc.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
    );
    let out: Vec<f32> = yv.iter().zip(&xv).map(|(y, x)| y.atan2(*x)).collect();
    Tensor::from_vec(out, y.shape(), dev)?.to_dtype(y.dtype())
}

/// `F.interpolate(x, scale_factor=scale, mode="linear", align_corners=False)` for `x`
/// [B, C, T]: T·scale output samples (truncated), each read at source position
/// `max((1/scale)·(t + 0.5) − 0.5, 0)` in f32 and blended as PyTorch's CPU kernel does,
/// `λ0·x[i0] + λ1·x[i1]` with a fused multiply-add, so the result matches bit for bit.
/// Works for down- and upscaling. Off the CPU the values go through host memory.
pub fn interpolate_linear(x: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, c, t_in) = x.dims3()?;
    if scale.is_nan() || scale <= 0.0 || t_in == 0 {
        candle_core::bail!("interpolate_linear: scale {scale} on {t_in} samples");
    }
    let t_out = (t_in as f64 * scale) as usize;
    let src_scale = (1.0 / scale) as f32;
    // Source taps and weights depend only on the output position.
    let taps: Vec<(usize, usize, f32, f32)> = (0..t_out)
        .map(|t| {
            let src = (src_scale * (t as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(t_in - 1);
            let i1 = if i0 + 1 < t_in { i0 + 1 } else { i0 };
            let l1 = src - i0 as f32;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect();
    let dev = x.device().clone();
    let host = x.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let out = with_cpu_f32(&host, |data| {
        let mut out = vec![0f32; b * c * t_out];
        fill_chunks(&mut out, t_out, |row, o| {
            let xs = &data[row * t_in..(row + 1) * t_in];
            for (o, &(i0, i1, l0, l1)) in o.iter_mut().zip(&taps) {
                *o = l0.mul_add(xs[i0], l1 * xs[i1]);
            }
        });
        Tensor::from_vec(out, (b, c, t_out), &dev)
    });
    match out {
        Some(out) => out?.to_dtype(x.dtype()),
        None => candle_core::bail!("interpolate_linear: no host copy"),
    }
}

/// `F.interpolate(x, scale_factor=2, mode="nearest")` for `x` [B, C, T]: every sample twice.
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (b, c, t) = x.dims3()?;
    x.unsqueeze(3)?
        .broadcast_as((b, c, t, 2))?
        .reshape((b, c, 2 * t))
}

/// `nn.ReflectionPad1d((left, right))` on the last dimension: mirrors the samples next
/// to each edge, the edge itself not repeated.
pub fn reflection_pad1d(x: &Tensor, left: usize, right: usize) -> Result<Tensor> {
    let t = x.dim(candle_core::D::Minus1)?;
    if left >= t || right >= t {
        candle_core::bail!("reflection_pad1d: pad ({left}, {right}) on {t} samples");
    }
    let last = x.rank() - 1;
    let mut parts = Vec::with_capacity(left + right + 1);
    for i in (1..=left).rev() {
        parts.push(x.narrow(last, i, 1)?);
    }
    parts.push(x.clone());
    for i in 1..=right {
        parts.push(x.narrow(last, t - 1 - i, 1)?);
    }
    Tensor::cat(&parts, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn elu_keeps_small_negative_values_exact() -> Result<()> {
        let x = Tensor::new(&[2f32, 0.0, -1e-6, -1.0, -30.0], &Device::Cpu)?;
        let y = elu(&x, 1.0)?.to_vec1::<f32>()?;
        assert_eq!(y[0], 2.0);
        assert_eq!(y[1], 0.0);
        // eˣ − 1 in f32 would give −9.537e-7 here.
        assert_eq!(y[2], (-1e-6f32).exp_m1());
        assert!((y[3] - (-0.632_120_6)).abs() < 1e-7);
        assert_eq!(y[4], -1.0);
        Ok(())
    }

    #[test]
    fn vectorised_gelu_matches_the_exact_erf_form() -> Result<()> {
        let xs: Vec<f32> = (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .chain([-30.0, -8.0, 8.0, 30.0, 1e6, -1e-30, 0.0])
            .collect();
        let got = gelu_erf(&Tensor::new(xs.as_slice(), &Device::Cpu)?)?.to_vec1::<f32>()?;
        let mut worst = 0f64;
        for (&g, &v) in got.iter().zip(&xs) {
            let v = f64::from(v);
            let want = 0.5 * v * candle_core::cpu::erf::erfc_f64(-v / std::f64::consts::SQRT_2);
            let e = (f64::from(g) - want).abs() / want.abs().max(1.0);
            worst = worst.max(e);
        }
        assert!(worst < 2e-7, "largest difference {worst:e}");
        let nan = gelu_erf(&Tensor::new(&[f32::NAN], &Device::Cpu)?)?.to_vec1::<f32>()?;
        assert!(nan[0].is_nan());
        Ok(())
    }

    #[test]
    fn tanh_gelu_matches_its_definition() -> Result<()> {
        let xs: Vec<f32> = (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .chain([-1e6, -40.0, 40.0, 1e6, 0.0])
            .collect();
        let mut worst = 0f64;
        for &v in &xs {
            let x = f64::from(v);
            let want = 0.5
                * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
            worst = worst.max((f64::from(gelu_tanh_f32(v)) - want).abs() / want.abs().max(1.0));
        }
        assert!(worst < 5e-7, "largest difference {worst:e}");
        assert!(gelu_tanh_f32(f32::NAN).is_nan());
        // The tensor op against candle's.
        let t = Tensor::new(&xs[..50_000], &Device::Cpu)?;
        let diff = (gelu_tanh(&t)? - t.gelu()?)?
            .abs()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }

    #[test]
    fn adds_in_place_or_not() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::new(&[1f32, 2.0, 3.0], &dev)?;
        let b = Tensor::new(&[10f32, 20.0, 30.0], &dev)?;
        let got = super::add_scaled_into(a, &b, 0.5)?;
        assert_eq!(got.to_vec1::<f32>()?, [5.5, 11.0, 16.5]);
        // Not contiguous: a new tensor, same values.
        let a = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev)?.t()?;
        let b = Tensor::new(&[[1f32, 1.0], [1.0, 1.0]], &dev)?;
        let got = super::add_scaled_into(a, &b, 1.0)?;
        assert_eq!(got.to_vec2::<f32>()?, [[2.0, 4.0], [3.0, 5.0]]);
        Ok(())
    }

    use crate::engine::nn::max_diff;

    #[test]
    fn leaky_relu_scales_negatives_only() -> Result<()> {
        let x = Tensor::new(&[-2f32, -0.5, 0.0, 3.0], &Device::Cpu)?;
        assert_eq!(
            leaky_relu(&x, 0.1)?.to_vec1::<f32>()?,
            [-0.2, -0.05, 0.0, 3.0]
        );
        // The large-tensor (threaded) path agrees with candle's own composition.
        let big = Tensor::randn(0f32, 1.0, (3, 7, 10_000), &Device::Cpu)?;
        let want = candle_nn::ops::leaky_relu(&big, 0.2)?;
        assert!(max_diff(&leaky_relu(&big, 0.2)?, &want) < 1e-7);
        Ok(())
    }

    #[test]
    fn snake_matches_formula_per_channel() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (2, 3, 40_000), &dev)?;
        let alpha = Tensor::new(&[[[0.5f32], [1.0], [1.5]]], &dev)?;
        let got = snake(&x, &alpha)?;
        let s = x.broadcast_mul(&alpha)?.sin()?.sqr()?;
        let want = (&x + s.broadcast_div(&alpha)?)?;
        assert!(max_diff(&got, &want) < 1e-5);
        let v = snake(
            &Tensor::new(&[[[1f32]]], &dev)?,
            &Tensor::new(&[2f32], &dev)?,
        )?;
        let expect = 1.0 + (2f32).sin().powi(2) / 2.0;
        assert!((v.flatten_all()?.to_vec1::<f32>()?[0] - expect).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn atan2_gives_all_quadrants() -> Result<()> {
        let dev = Device::Cpu;
        let y = Tensor::new(&[0f32, 1.0, 0.0, -1.0, 0.0], &dev)?;
        let x = Tensor::new(&[1f32, 0.0, -1.0, 0.0, 0.0], &dev)?;
        let got = atan2(&y, &x)?.to_vec1::<f32>()?;
        let pi = std::f32::consts::PI;
        for (g, w) in got.iter().zip([0.0, pi / 2.0, pi, -pi / 2.0, 0.0]) {
            assert!((g - w).abs() < 1e-7, "{got:?}");
        }
        Ok(())
    }

    #[test]
    fn linear_interpolation_matches_pytorch() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[[1f32, 2.0, 4.0]]], &dev)?;
        // torch.nn.functional.interpolate(x, scale_factor=2, mode="linear")
        let up = interpolate_linear(&x, 2.0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(up, [1.0, 1.25, 1.75, 2.5, 3.5, 4.0]);
        // scale_factor=0.5 on [1, 2, 4, 8]: sources 0.5 and 2.5.
        let x = Tensor::new(&[[[1f32, 2.0, 4.0, 8.0]]], &dev)?;
        let down = interpolate_linear(&x, 0.5)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(down, [1.5, 6.0]);
        // Per row: rows do not mix.
        let x = Tensor::new(&[[[0f32, 0.0], [10.0, 20.0]]], &dev)?;
        let rows = interpolate_linear(&x, 3.0)?;
        assert_eq!(rows.dims(), [1, 2, 6]);
        assert_eq!(rows.i((0, 0))?.to_vec1::<f32>()?, [0.0; 6]);
        Ok(())
    }

    #[test]
    fn nearest_upsample_repeats_samples() -> Result<()> {
        let x = Tensor::new(&[[[1f32, 2.0], [3.0, 4.0]]], &Device::Cpu)?;
        let y = upsample_nearest2x(&x)?;
        assert_eq!(
            y.i(0)?.to_vec2::<f32>()?,
            [[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0]]
        );
        Ok(())
    }

    #[test]
    fn reflection_pad_mirrors_without_the_edge() -> Result<()> {
        let x = Tensor::new(&[[[1f32, 2.0, 3.0, 4.0]]], &Device::Cpu)?;
        let y = reflection_pad1d(&x, 1, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(y, [2.0, 1.0, 2.0, 3.0, 4.0]);
        let y = reflection_pad1d(&x, 2, 2)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(y, [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]);
        Ok(())
    }
}
