//! A stride-1 `Conv1d` computed as accumulating matrix products on the padded input.
//!
//! Candle's CPU `conv1d` first copies the input into an im2col matrix `[L, Cin·k]`
//! (hundreds of MB for the generator's kernel-11 layers at 72k samples), then runs one
//! matrix product on it: the copy, not the arithmetic, dominates. Here the output is
//! `bias + Σ_j W_j · Xpad[:, j·d .. j·d + L]`, `W_j` the `[Cout, Cin]` slice of tap `j`
//! (packed once at load), each term a `gemm` call that reads the input in place
//! through its row stride (the padding exists only in the end tiles' scratch). The time axis is cut into tiles small enough that a tile of
//! the output stays in cache across the `k` accumulations; threads take whole tiles.
//!
//! Wide kernels (7 and 11 taps over many channels) run in the frequency domain instead
//! when that is cheaper for the call's length (`fftconv`); both give the same values
//! up to f32 rounding.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig};

use super::fftconv::{self, Layer};
use super::ops::with_cpu_f32;
use super::product::{product, rows, Strided};
use super::threads::{Dst, SharedOut};

/// Output columns per tile: `Cout × TILE` f32 (128 KiB at 128 channels) stays in L2
/// across the `k` accumulating products, yet each product is large enough to run
/// `gemm` near its peak.
const TILE: usize = 256;

/// Input columns per stretch of [`GemmConv1d::forward_mapped_into`]: 8 MiB at 128
/// channels, against ~100 MB for the whole of a 40 s sentence.
const MAPPED_STRETCH: usize = 16384;

/// Below this many multiply-adds the layer runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// A `Conv1d` with stride 1 and groups 1 (any padding and dilation) run as `k`
/// accumulating matrix products; other settings, devices and dtypes go through the
/// wrapped candle layer unchanged.
#[derive(Debug, Clone)]
pub struct GemmConv1d {
    /// The layer as loaded, kept only when the fast path does not apply (its weight
    /// would otherwise be a second copy of `taps`).
    conv: Option<Conv1d>,
    cfg: Conv1dConfig,
    /// `k` row-major `[Cout, Cin]` blocks, tap by tap; empty when the fast path does not
    /// apply.
    taps: Vec<f32>,
    bias: Option<Vec<f32>>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
}

impl GemmConv1d {
    /// Packs the weight of `conv` (`[Cout, Cin, k]`) tap by tap.
    pub fn new(conv: Conv1d) -> Result<Self> {
        let (c_out, c_in, kernel) = conv.weight().dims3()?;
        let cfg = conv.config();
        let packed = pack_taps(
            cfg.stride == 1 && cfg.groups == 1,
            conv.weight(),
            (2, 0, 1),
            conv.bias(),
        )?;
        let fast = packed.is_some();
        let (taps, bias) = packed.unwrap_or_default();
        Ok(Self {
            cfg: *cfg,
            conv: if fast { None } else { Some(conv) },
            taps,
            bias,
            c_in,
            c_out,
            kernel,
        })
    }

    /// One item: `x` `[Cin, t]` contiguous → `[Cout, l_out]` values. At the
    /// generator's sizes a padded copy of the input would be another activation of
    /// ~100 MB alive, so the padding exists only at the ends (see
    /// [`Self::item_into`]). `add`, when given, is `[Cout, l_out]` values added to the
    /// output (a residual connection fused into the bias pass).
    fn forward_item(&self, x: &[f32], t: usize, add: Option<&[f32]>) -> Option<Vec<f32>> {
        self.item(x, t, add, true)
    }

    /// [`Self::forward_item`], in the frequency domain when `spectral` and that is
    /// cheaper (see `fftconv`), else directly.
    fn item(&self, x: &[f32], t: usize, add: Option<&[f32]>, spectral: bool) -> Option<Vec<f32>> {
        let l_out = self.out_len(t, self.cfg.padding)?;
        let len = self.c_out * l_out;
        if add.is_some_and(|a| a.len() != len) {
            return None;
        }
        // The residual is the output buffer's starting value.
        let mut out = match add {
            Some(a) => a.to_vec(),
            None => vec![0f32; len],
        };
        let dst = Dst {
            ptr: SharedOut(out.as_mut_ptr()),
            ld: l_out,
            accumulate: add.is_some(),
        };
        let mut transforms = None;
        let spectral = spectral.then_some(&mut transforms);
        // SAFETY: `out` holds `c_out` rows of `l_out` values and outlives the call.
        unsafe { self.item_into(x, t, self.cfg.padding, l_out, dst, spectral) };
        Some(out)
    }

    /// Output columns for `t` input columns zero-padded by `pad` on both sides.
    fn out_len(&self, t: usize, pad: usize) -> Option<usize> {
        let span = self.cfg.dilation * (self.kernel - 1) + 1;
        Some((t + 2 * pad).checked_sub(span)? + 1)
    }

    /// One item `x` `[Cin, t]`, zero-padded by `pad` on both sides, into `dst`
    /// (`l_out` columns, see [`Self::out_len`]). With `spectral`, the frequency
    /// domain is used when cheaper, its transforms kept there and reused when a
    /// later call finds the same plan.
    ///
    /// The zero padding is never materialised: a tile whose window lies inside `x`
    /// reads it in place, and only the tiles at either end copy their window (a few
    /// hundred columns) into a padded scratch buffer.
    ///
    /// # Safety
    /// `dst` holds `c_out` rows of at least `l_out` values that nothing else reads or
    /// writes during the call.
    unsafe fn item_into(
        &self,
        x: &[f32],
        t: usize,
        pad: usize,
        l_out: usize,
        dst: Dst,
        spectral: Option<&mut Option<fftconv::Transforms>>,
    ) {
        let (dil, k) = (self.cfg.dilation, self.kernel);
        let span = dil * (k - 1) + 1;
        let c_in = self.c_in;
        if l_out == 0 {
            return;
        }
        let tiles = l_out.div_ceil(TILE);
        let macs = self.c_out * c_in * k * l_out;
        let threads = if macs < PARALLEL_MIN_MACS {
            1
        } else {
            candle_core::utils::get_num_threads()
        };
        let layer = self.layer(pad);
        if let Some((plan, transforms)) = spectral.and_then(|s| Some((layer.plan(l_out)?, s))) {
            let tr = match transforms.take() {
                Some(tr) if tr.plan() == plan => tr,
                _ => fftconv::Transforms::new(&layer, plan, threads),
            };
            // SAFETY: passed on from this function's contract.
            unsafe { fftconv::conv_item(&layer, &tr, x, t, l_out, dst, threads) };
            *transforms = Some(tr);
            return;
        }
        let run = |first: usize, last: usize| {
            let mut scratch = Vec::new();
            for tile in first..last {
                let t0 = tile * TILE;
                let n = TILE.min(l_out - t0);
                // Output column `c` reads padded columns `c .. c + span`, that is
                // `x` columns `c − pad ..`.
                let width = n + span - 1;
                let inside = t0 >= pad && t0 - pad + width <= t;
                let (src, stride, from) = if inside {
                    (x, t, t0 - pad)
                } else {
                    scratch.clear();
                    scratch.resize(c_in * width, 0f32);
                    for (dst, row) in scratch.chunks_mut(width).zip(x.chunks(t.max(1))) {
                        for (c, v) in dst.iter_mut().enumerate() {
                            if let Some(xc) = (t0 + c).checked_sub(pad).filter(|&xc| xc < t) {
                                *v = row[xc];
                            }
                        }
                    }
                    (&scratch[..], width, 0)
                };
                // SAFETY: every tile writes only its own columns `t0..t0 + n` of `dst`,
                // and tiles are split between threads without overlap; `dst` is valid
                // for the whole call by the contract. `src` holds `c_in` rows of
                // `stride` columns and `from + width ≤ stride`.
                unsafe { self.tile((src, stride, from), dst.at(t0), n) };
            }
        };
        super::threads::split_over_threads(tiles, threads.clamp(1, tiles), run);
    }

    /// Output columns `t0..t0 + n`: bias (added to what `dst` holds when it
    /// accumulates), then one accumulating product per tap.
    ///
    /// # Safety
    /// `dst` points at column `t0` of the output, whose columns `t0..t0 + n` no other
    /// thread writes; `src` is `[Cin, stride]` and its columns
    /// `from .. from + n + dilation·(k − 1)` are the padded input of these outputs.
    unsafe fn tile(&self, (src, stride, from): (&[f32], usize, usize), dst: Dst, n: usize) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let dil = self.cfg.dilation;
        let ld = dst.ld;
        for co in 0..c_out {
            let b = self.bias.as_ref().map_or(0.0, |b| b[co]);
            // SAFETY: row `co`, columns `0..n` of this tile (see the contract above).
            let row = unsafe { std::slice::from_raw_parts_mut(dst.ptr.at(co * ld), n) };
            if dst.accumulate {
                for o in row.iter_mut() {
                    *o += b;
                }
            } else {
                row.fill(b);
            }
        }
        for j in 0..self.kernel {
            let w = &self.taps[j * c_out * c_in..(j + 1) * c_out * c_in];
            let rhs = &src[from + j * dil..];
            // SAFETY: `w` is [c_out, c_in] row-major, `rhs` is read as [c_in, n] with row
            // stride `stride`, inside `src` by the contract; `dst` as above.
            unsafe {
                product(
                    (c_out, n, c_in),
                    Strided(dst.ptr.0, ld, 1),
                    rows(w.as_ptr(), c_in),
                    Strided(rhs.as_ptr(), stride, 1),
                    true,
                    1.0,
                );
            }
        }
    }
}

/// A layer's taps and bias as plain f32 values (see [`pack_taps`]).
pub(super) type Packed = (Vec<f32>, Option<Vec<f32>>);

/// The weight permuted by `order` to `[k, Cout, Cin]`, as `k` row-major `[Cout, Cin]`
/// blocks, and the bias; `None` unless the layer is `eligible` and its weight an f32
/// CPU tensor (the fast paths' condition).
pub(super) fn pack_taps(
    eligible: bool,
    weight: &Tensor,
    order: (usize, usize, usize),
    bias: Option<&Tensor>,
) -> Result<Option<Packed>> {
    if !eligible || !weight.device().is_cpu() || weight.dtype() != DType::F32 {
        return Ok(None);
    }
    let bias = match bias {
        Some(b) => Some(b.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    let taps = weight.permute(order)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(Some((taps, bias)))
}

impl GemmConv1d {
    /// `conv(x) + residual`, the sum written as the output is made (no third tensor).
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (b, c_in, t) = x.dims3()?;
        if self.conv.is_none() && (b, c_in) == (1, self.c_in) && residual.dtype() == DType::F32 {
            // Any case the fused pass does not take (another residual shape, a device
            // or dtype it does not read) goes the unfused way below.
            let fused = with_cpu_f32(residual, |add| {
                Ok(with_cpu_f32(x, |data| {
                    Ok(self.forward_item(data, t, Some(add)))
                }))
            });
            if let Some(Ok(Some(Ok(Some(y))))) = fused {
                let l_out = y.len() / self.c_out;
                return Tensor::from_vec(y, (1, self.c_out, l_out), &Device::Cpu);
            }
        }
        self.forward(x)? + residual
    }
}

impl GemmConv1d {
    /// `dst = conv(f(x))`, or `dst += conv(f(x))` with `accumulate`, for one item `x`
    /// `[Cin, t]` of a layer whose output is as long as its input (odd span, padding
    /// half of it), `dst` `[Cout, t]`; `f(ci, src, out)` writes channel `ci`'s
    /// transformed values of `src` into `out`.
    ///
    /// The time axis is taken a stretch at a time: `f(x)` exists only for one
    /// stretch and its margins, never whole. A normalisation and activation in front
    /// of the layer thus costs no activation-sized buffer, and a residual sum lands in
    /// the buffer that holds the residual.
    pub fn forward_mapped_into(
        &self,
        x: &[f32],
        t: usize,
        f: impl Fn(usize, &[f32], &mut [f32]) + Sync,
        dst: &mut [f32],
        accumulate: bool,
    ) -> Result<()> {
        let pad = self.cfg.padding;
        if !self.keeps_length() {
            candle_core::bail!("conv1d: the mapped form needs a same-length f32 CPU layer");
        }
        if x.len() != self.c_in * t || dst.len() != self.c_out * t {
            candle_core::bail!(
                "conv1d: [{}, {t}] in and [{}, {t}] out expected, got {} and {} values",
                self.c_in,
                self.c_out,
                x.len(),
                dst.len()
            );
        }
        let mut slab = Vec::new();
        let mut transforms = None;
        for t0 in (0..t).step_by(MAPPED_STRETCH) {
            let n = MAPPED_STRETCH.min(t - t0);
            // Slab column j is input column t0 + j − pad; beyond the input it keeps
            // the layer's zero padding.
            let width = n + 2 * pad;
            let (lo, hi) = (t0.saturating_sub(pad), (t0 + n + pad).min(t));
            let lead = lo + pad - t0;
            slab.clear();
            slab.resize(self.c_in * width, 0f32);
            super::threads::fill_chunks(&mut slab, width, |ci, row| {
                f(
                    ci,
                    &x[ci * t + lo..ci * t + hi],
                    &mut row[lead..lead + hi - lo],
                );
            });
            let out = Dst {
                ptr: SharedOut(dst.as_mut_ptr()),
                ld: t,
                accumulate,
            };
            // SAFETY: `dst` holds `c_out` rows of `t` values, columns `t0..t0 + n`
            // exist in each, and `dst` is borrowed mutably for the call.
            unsafe { self.item_into(&slab, width, 0, n, out.at(t0), Some(&mut transforms)) };
        }
        Ok(())
    }

    /// Whether [`Self::forward_mapped_into`] takes this layer: an f32 CPU layer whose
    /// output is as long as its input.
    pub fn keeps_length(&self) -> bool {
        let span = self.cfg.dilation * (self.kernel - 1) + 1;
        self.conv.is_none() && span == 2 * self.cfg.padding + 1
    }

    /// The layer on one item `x` [1, Cin, T] with the direct (time-domain) products
    /// only, for comparing the two forms (`cargo run --release --example conv_timing`).
    #[doc(hidden)]
    pub fn forward_direct(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, t) = x.dims3()?;
        match with_cpu_f32(x, |data| Ok(self.item(data, t, None, false))) {
            Some(Ok(Some(y))) if self.conv.is_none() => {
                let l_out = y.len() / self.c_out;
                Tensor::from_vec(y, (1, self.c_out, l_out), &Device::Cpu)
            }
            _ => self.forward(x),
        }
    }

    /// Whether `t` input samples would run in the frequency domain.
    #[doc(hidden)]
    pub fn is_spectral(&self, t: usize) -> bool {
        let pad = self.cfg.padding;
        self.conv.is_none()
            && self
                .out_len(t, pad)
                .is_some_and(|l_out| self.layer(pad).plan(l_out).is_some())
    }

    /// The layer as the frequency-domain path reads it, its input padded by `padding`.
    fn layer(&self, padding: usize) -> Layer<'_> {
        Layer {
            taps: &self.taps,
            bias: self.bias.as_deref(),
            c_in: self.c_in,
            c_out: self.c_out,
            kernel: self.kernel,
            dilation: self.cfg.dilation,
            padding,
        }
    }
}

impl Module for GemmConv1d {
    /// `x` [B, Cin, T] → [B, Cout, T'], the same values as the candle layer up to the
    /// order of the float sums.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(conv) = &self.conv {
            return conv.forward(x);
        }
        let (b, c_in, t) = x.dims3()?;
        if c_in != self.c_in {
            candle_core::bail!("conv1d: {c_in} input channels, want {}", self.c_in);
        }
        let done = with_cpu_f32(x, |data| {
            let mut items = Vec::with_capacity(b);
            for item in data.chunks(c_in * t.max(1)).take(b) {
                let Some(y) = self.forward_item(item, t, None) else {
                    return Ok(None);
                };
                items.push(y);
            }
            let l_out = items.first().map_or(0, |y| y.len() / self.c_out);
            // One item (the usual case) becomes the tensor without a copy.
            let out = if items.len() == 1 {
                items.pop().unwrap_or_default()
            } else {
                items.concat()
            };
            Tensor::from_vec(out, (b, self.c_out, l_out), &Device::Cpu).map(Some)
        });
        match done {
            Some(Ok(Some(y))) => Ok(y),
            Some(Err(e)) => Err(e),
            Some(Ok(None)) => candle_core::bail!(
                "conv1d: {t} input samples, fewer than the kernel's span of {}",
                self.cfg.dilation * (self.kernel - 1) + 1 - 2 * self.cfg.padding
            ),
            None => candle_core::bail!(
                "conv1d: weights packed for f32 on the CPU, input is {:?} on {:?}",
                x.dtype(),
                x.device().location()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::nn::max_diff;
    use candle_nn::Conv1dConfig;

    #[test]
    fn matches_candle_conv1d() -> Result<()> {
        let dev = Device::Cpu;
        // (batch, c_in, c_out, t, kernel, dilation, padding, bias)
        let cases = [
            (1, 16, 24, 3000, 3, 1, 1, true),
            (1, 32, 32, 1500, 7, 3, 9, true),
            (2, 8, 12, 700, 11, 5, 25, true),
            (1, 20, 22, 1100, 1, 1, 0, false),
            (1, 12, 6, 900, 5, 2, 0, true),
            (1, 4, 4, 10, 7, 1, 3, true),
            // Padding wider than the input: every tile at an edge.
            (1, 6, 5, 3, 11, 5, 25, true),
            // Interior tiles read the input in place, the two ends are copied.
            (1, 8, 8, 2000, 11, 5, 25, true),
            (3, 5, 7, 600, 3, 1, 1, true),
        ];
        for (b, ci, co, t, k, d, p, with_bias) in cases {
            let w = Tensor::randn(0f32, 0.3, (co, ci, k), &dev)?;
            let bias = if with_bias {
                Some(Tensor::randn(0f32, 1.0, co, &dev)?)
            } else {
                None
            };
            let cfg = Conv1dConfig {
                padding: p,
                dilation: d,
                ..Default::default()
            };
            let conv = Conv1d::new(w, bias, cfg);
            let x = Tensor::randn(0f32, 1.0, (b, ci, t), &dev)?;
            let want = conv.forward(&x)?;
            let got = GemmConv1d::new(conv)?.forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            let diff = max_diff(&got, &want);
            assert!(diff < 1e-4, "k {k} d {d} p {p}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn residual_is_added_as_the_output_is_made() -> Result<()> {
        let dev = Device::Cpu;
        for (t, k, d, p) in [(3000, 7, 3, 9), (5, 11, 5, 25)] {
            let w = Tensor::randn(0f32, 0.3, (6, 4, k), &dev)?;
            let cfg = Conv1dConfig {
                padding: p,
                dilation: d,
                ..Default::default()
            };
            let conv = Conv1d::new(w, Some(Tensor::randn(0f32, 1.0, 6, &dev)?), cfg);
            let x = Tensor::randn(0f32, 1.0, (1, 4, t), &dev)?;
            let want = conv.forward(&x)?;
            let residual = Tensor::randn(0f32, 1.0, want.shape(), &dev)?;
            let want = (want + &residual)?;
            let got = GemmConv1d::new(conv)?.forward_add(&x, &residual)?;
            assert!(max_diff(&got, &want) < 1e-4);
        }
        // A residual of another shape is refused, not read out of bounds.
        let conv = Conv1d::new(
            Tensor::randn(0f32, 0.3, (6, 4, 3), &dev)?,
            None,
            Default::default(),
        );
        let x = Tensor::randn(0f32, 1.0, (1, 4, 50), &dev)?;
        let wrong = Tensor::zeros((1, 6, 40), DType::F32, &dev)?;
        assert!(GemmConv1d::new(conv)?.forward_add(&x, &wrong).is_err());
        Ok(())
    }

    /// The frequency-domain path against the direct one on the same packed layer, at
    /// the vocoders' kernel sizes and dilations, lengths from under one window to many
    /// groups, with and without a residual.
    #[test]
    fn spectral_path_matches_the_direct_one() -> Result<()> {
        let dev = Device::Cpu;
        // (c_in, c_out, t, kernel, dilation)
        let cases = [
            (128, 128, 3000, 11, 1),
            (128, 128, 3000, 11, 3),
            (128, 128, 3000, 11, 5),
            (128, 128, 2500, 7, 1),
            (128, 128, 4000, 7, 5),
            (128, 112, 300, 11, 5),
            (96, 80, 40, 11, 5),
            (128, 128, 9000, 7, 3),
            (128, 128, 60, 11, 1),
        ];
        let mut spectral = 0;
        for (ci, co, t, k, d) in cases {
            let w = Tensor::randn(0f32, 0.1, (co, ci, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, co, &dev)?;
            let p = d * (k - 1) / 2;
            let conv = GemmConv1d::new(Conv1d::new(w, Some(bias), conv_cfg(p, d)))?;
            let x = Tensor::randn(0f32, 1.0, (ci, t), &dev)?
                .to_vec2::<f32>()?
                .concat();
            let residual = Tensor::randn(0f32, 1.0, (co, t), &dev)?
                .to_vec2::<f32>()?
                .concat();
            spectral += usize::from(conv.layer(conv.cfg.padding).plan(t).is_some());
            for add in [None, Some(&residual[..])] {
                let want = conv.item(&x, t, add, false).unwrap();
                let got = conv.item(&x, t, add, true).unwrap();
                assert_eq!(got.len(), want.len());
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = got
                    .iter()
                    .zip(&want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    err <= 2e-6 * scale.max(1.0),
                    "{ci}->{co} t {t} k {k} d {d}: {err} (scale {scale})"
                );
            }
        }
        // The cases exercise the frequency-domain path, not only the fallback.
        assert!(spectral >= 6, "{spectral} cases took the spectral path");
        Ok(())
    }

    fn conv_cfg(padding: usize, dilation: usize) -> Conv1dConfig {
        Conv1dConfig {
            padding,
            dilation,
            ..Default::default()
        }
    }

    #[test]
    fn strided_layer_falls_back_to_candle() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = Conv1dConfig {
            padding: 3,
            stride: 6,
            ..Default::default()
        };
        let conv = Conv1d::new(Tensor::randn(0f32, 0.3, (5, 4, 12), &dev)?, None, cfg);
        let x = Tensor::randn(0f32, 1.0, (1, 4, 600), &dev)?;
        let want = conv.forward(&x)?;
        let got = GemmConv1d::new(conv)?.forward(&x)?;
        assert_eq!(max_diff(&got, &want), 0.0);
        Ok(())
    }

    #[test]
    fn mapped_form_matches_mapping_then_convolving() -> Result<()> {
        let dev = Device::Cpu;
        // Several stretches and a short tail, in the frequency domain (128 channels,
        // 11 and 7 taps) and directly (3 taps), and an input shorter than the padding.
        let t_long = 2 * MAPPED_STRETCH + 777;
        for (c, t, k, d) in [
            (128usize, t_long, 11usize, 5usize),
            (128, t_long, 7, 1),
            (16, t_long, 3, 3),
            (8, 20, 11, 5),
        ] {
            let cfg = Conv1dConfig {
                padding: d * (k - 1) / 2,
                dilation: d,
                ..Default::default()
            };
            let w = Tensor::randn(0f32, 0.1, (c, c, k), &dev)?;
            let conv = GemmConv1d::new(Conv1d::new(
                w,
                Some(Tensor::randn(0f32, 1.0, c, &dev)?),
                cfg,
            ))?;
            assert!(conv.keeps_length());
            let x = Tensor::randn(0f32, 1.0, (1, c, t), &dev)?;
            let residual = Tensor::randn(0f32, 1.0, (1, c, t), &dev)?;
            // A map that depends on the channel and is not zero at zero, so that
            // mapping the padding too would show.
            let f = |ch: usize, xs: &[f32], o: &mut [f32]| {
                for (o, &v) in o.iter_mut().zip(xs) {
                    *o = (v * (1.0 + ch as f32 / 64.0)).sin() + 0.25;
                }
            };
            let xs = x.flatten_all()?.to_vec1::<f32>()?;
            let mut m = vec![0f32; c * t];
            for ch in 0..c {
                f(ch, &xs[ch * t..(ch + 1) * t], &mut m[ch * t..(ch + 1) * t]);
            }
            let m = Tensor::from_vec(m, (1, c, t), &dev)?;
            let want = conv.forward(&m)?;
            let want_added = (&want + &residual)?;
            let mut got = vec![0f32; c * t];
            conv.forward_mapped_into(&xs, t, f, &mut got, false)?;
            let got = Tensor::from_vec(got, (1, c, t), &dev)?;
            let mut added = residual.flatten_all()?.to_vec1::<f32>()?;
            conv.forward_mapped_into(&xs, t, f, &mut added, true)?;
            let added = Tensor::from_vec(added, (1, c, t), &dev)?;
            let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
            for (what, got, want) in [("overwritten", &got, &want), ("added", &added, &want_added)]
            {
                let diff = max_diff(got, want);
                assert!(
                    diff <= 2e-6 * scale,
                    "c {c} t {t} k {k} d {d} {what}: {diff:e} of {scale}"
                );
            }
        }
        // A layer whose output is shorter than its input is refused, not half-run.
        let conv = GemmConv1d::new(Conv1d::new(
            Tensor::randn(0f32, 0.1, (4, 4, 3), &dev)?,
            None,
            Conv1dConfig::default(),
        ))?;
        assert!(!conv.keeps_length());
        let mut out = vec![0f32; 4 * 10];
        assert!(conv
            .forward_mapped_into(
                &[0.0; 40],
                10,
                |_, xs, o| o.copy_from_slice(xs),
                &mut out,
                false
            )
            .is_err());
        Ok(())
    }
}
