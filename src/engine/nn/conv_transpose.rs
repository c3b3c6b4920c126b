//! A `ConvTranspose1d` (groups 1, dilation 1) as accumulating matrix products written
//! straight into the output.
//!
//! Candle's CPU kernel multiplies the input into a `[T, Cout·k]` matrix and then folds
//! it into the output (col2im); for the vocoders' last upsampling of a 40 s sentence
//! that matrix is ~200 MB, next to a ~100 MB untrimmed output and the trimmed copy.
//! Here each output phase `r < stride` is an ordinary convolution of the input with
//! the taps `r, r + stride, …`: output column `q·stride + r − padding` is
//! `bias + Σ_m W_{r+m·stride}ᵀ · x[:, q − m]`, one `gemm` per phase and tap writing
//! every `stride`-th column of the output in place. Threads take stretches of `q`.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::ConvTranspose1d;

use super::conv::pack_taps;
use super::ops::with_cpu_f32;
use super::product::{product, rows, Strided};
use super::threads::{split_over_threads, SharedOut};

/// Input columns per stretch at most: the stretch's outputs (`Cout × stride·Q`) stay in L2
/// across the taps.
const STRETCH: usize = 256;

/// Below this many multiply-adds the layer runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// `nn.ConvTranspose1d` with groups 1 and dilation 1 run as matrix products on f32 CPU
/// tensors; other settings, devices and dtypes go through the candle layer.
#[derive(Debug, Clone)]
pub struct GemmConvTranspose1d {
    /// The layer as loaded, kept only when the fast path does not apply.
    conv: Option<ConvTranspose1d>,
    /// `k` row-major `[Cout, Cin]` blocks, tap by tap.
    taps: Vec<f32>,
    bias: Option<Vec<f32>>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
}

impl GemmConvTranspose1d {
    /// Packs the weight of `conv` (`[Cin, Cout, k]`) tap by tap.
    pub fn new(conv: ConvTranspose1d) -> Result<Self> {
        let (c_in, c_out, kernel) = conv.weight().dims3()?;
        let cfg = *conv.config();
        let packed = pack_taps(
            cfg.groups == 1 && cfg.dilation == 1 && cfg.stride > 0,
            conv.weight(),
            (2, 1, 0),
            conv.bias(),
        )?;
        let fast = packed.is_some();
        let (taps, bias) = packed.unwrap_or_default();
        Ok(Self {
            conv: (!fast).then_some(conv),
            taps,
            bias,
            c_in,
            c_out,
            kernel,
            stride: cfg.stride,
            padding: cfg.padding,
            output_padding: cfg.output_padding,
        })
    }

    /// Output columns for `t` input columns.
    fn out_len(&self, t: usize) -> Result<usize> {
        ((t.max(1) - 1) * self.stride + self.kernel + self.output_padding)
            .checked_sub(2 * self.padding)
            .ok_or_else(|| candle_core::Error::Msg("conv_transpose1d: output too short".into()))
    }

    /// One item `x` `[Cin, t]` → `[Cout, l_out]`.
    fn item(&self, x: &[f32], t: usize, l_out: usize) -> Vec<f32> {
        let (c_in, c_out, s) = (self.c_in, self.c_out, self.stride);
        let mut out = vec![0f32; c_out * l_out];
        for (co, row) in out.chunks_mut(l_out.max(1)).enumerate() {
            row.fill(self.bias.as_ref().map_or(0.0, |b| b[co]));
        }
        if t == 0 || l_out == 0 {
            return out;
        }
        // Output column τ = q·s + r − padding: q runs over 0..q_end.
        let q_end = (l_out + self.padding).div_ceil(s);
        let macs = c_out * c_in * self.kernel * t;
        let threads = if macs < PARALLEL_MIN_MACS {
            1
        } else {
            candle_core::utils::get_num_threads().max(1)
        };
        // A short input still gives every thread a stretch.
        let stretch = STRETCH.min(q_end.div_ceil(threads)).max(1);
        let stretches = q_end.div_ceil(stretch);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let run = |first: usize, last: usize| {
            for k in first..last {
                let (q0, q1) = (k * stretch, ((k + 1) * stretch).min(q_end));
                for r in 0..s {
                    for j in (r..self.kernel).step_by(s) {
                        let m = (j - r) / s;
                        // Columns q with τ = q·s + r − padding in 0..l_out and input
                        // column q − m in 0..t.
                        let lo = q0.max(m).max((self.padding + s - 1 - r) / s);
                        let hi = q1.min(t + m);
                        let hi = hi.min((l_out + self.padding).saturating_sub(r).div_ceil(s));
                        if lo >= hi {
                            continue;
                        }
                        let tau = lo * s + r - self.padding;
                        let w = &self.taps[j * c_out * c_in..(j + 1) * c_out * c_in];
                        let src = &x[lo - m..];
                        // SAFETY: `w` is [c_out, c_in] row-major; `src` is read as
                        // [c_in, hi − lo] with row stride t (columns lo − m .. hi − m
                        // < t of every row); the output is written at columns
                        // τ + s·i < l_out of every row, which belong to this stretch's
                        // q only, so no other thread writes them; `out` outlives the
                        // threads.
                        unsafe {
                            product(
                                (c_out, hi - lo, c_in),
                                Strided(out_ptr.at(tau), l_out, s),
                                rows(w.as_ptr(), c_in),
                                Strided(src.as_ptr(), t, 1),
                                true,
                                1.0,
                            );
                        }
                    }
                }
            }
        };
        split_over_threads(stretches, threads, run);
        out
    }
}

impl Module for GemmConvTranspose1d {
    /// `x` [B, Cin, T] → [B, Cout, (T−1)·stride − 2·padding + k + output_padding], the
    /// same values as the candle layer up to the order of the float sums.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(conv) = &self.conv {
            return conv_transpose1d_trimmed(x, conv);
        }
        let (b, c_in, t) = x.dims3()?;
        if c_in != self.c_in {
            candle_core::bail!(
                "conv_transpose1d: {c_in} input channels, want {}",
                self.c_in
            );
        }
        let l_out = self.out_len(t)?;
        let done = with_cpu_f32(x, |data| {
            let mut items: Vec<Vec<f32>> = data
                .chunks(c_in * t.max(1))
                .take(b)
                .map(|item| self.item(item, t, l_out))
                .collect();
            let out = if items.len() == 1 {
                items.pop().unwrap_or_default()
            } else {
                items.concat()
            };
            Tensor::from_vec(out, (b, self.c_out, l_out), &Device::Cpu)
        });
        match done {
            Some(y) => y,
            None => candle_core::bail!("conv_transpose1d: expected an f32 CPU input"),
        }
    }
}

/// Runs a `ConvTranspose1d` layer (groups 1, dilation 1) through candle's matrix-product
/// kernel, which candle takes only without padding: the padding is trimmed afterwards.
/// Same result as the layer's own `forward`, whose padded CPU kernel is a direct loop.
pub fn conv_transpose1d_trimmed(x: &Tensor, conv: &ConvTranspose1d) -> Result<Tensor> {
    let cfg = conv.config();
    if cfg.groups != 1 || cfg.dilation != 1 {
        return candle_core::Module::forward(conv, x);
    }
    let (b, _, t) = x.dims3()?;
    let (_, c_out, k) = conv.weight().dims3()?;
    // candle 0.11's matrix-product path mixes up batch items when B > 1: one at a time.
    let full = if b == 1 {
        x.conv_transpose1d(conv.weight(), 0, 0, cfg.stride, 1, 1)?
    } else {
        let items = (0..b)
            .map(|i| {
                x.narrow(0, i, 1)?
                    .conv_transpose1d(conv.weight(), 0, 0, cfg.stride, 1, 1)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&items, 0)?
    };
    let l_out = ((t.max(1) - 1) * cfg.stride + k + cfg.output_padding)
        .checked_sub(2 * cfg.padding)
        .ok_or_else(|| candle_core::Error::Msg("conv_transpose1d: output too short".into()))?;
    let have = full.dim(2)?;
    let full = if cfg.padding + l_out > have {
        full.pad_with_zeros(2, 0, cfg.padding + l_out - have)?
    } else {
        full
    };
    let out = full.narrow(2, cfg.padding, l_out)?;
    match conv.bias() {
        Some(b) => out.broadcast_add(&b.reshape((1, c_out, 1))?),
        None => out.contiguous(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::ConvTranspose1dConfig;

    use crate::engine::nn::max_diff;

    #[test]
    fn matches_the_candle_layer() -> Result<()> {
        let dev = Device::Cpu;
        // The vocoders' shapes (kernel a multiple of the stride or not, padding,
        // output padding), a batch of two, and inputs shorter than the kernel.
        for (c_in, c_out, k, stride, padding, output_padding, t, b) in [
            (
                16usize, 8usize, 20usize, 10usize, 5usize, 0usize, 300usize, 1usize,
            ),
            (8, 4, 12, 6, 3, 0, 700, 1),
            (8, 4, 11, 5, 3, 0, 50, 2),
            (6, 5, 7, 3, 2, 1, 3, 1),
            (4, 3, 16, 8, 4, 0, 2, 1),
            (5, 7, 3, 2, 0, 1, 9, 1),
        ] {
            let w = Tensor::randn(0f32, 1., (c_in, c_out, k), &dev)?;
            let bias = Tensor::randn(0f32, 1., c_out, &dev)?;
            let cfg = ConvTranspose1dConfig {
                padding,
                output_padding,
                stride,
                dilation: 1,
                groups: 1,
            };
            let conv = ConvTranspose1d::new(w, Some(bias), cfg);
            let x = Tensor::randn(0f32, 1., (b, c_in, t), &dev)?;
            let want = conv.forward(&x)?;
            let got = GemmConvTranspose1d::new(conv)?.forward(&x)?;
            assert_eq!(got.dims(), want.dims(), "k {k} stride {stride} t {t}");
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "k {k} stride {stride} t {t}: {diff:e}");
        }
        Ok(())
    }

    #[test]
    fn trimmed_transposed_conv_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 6, 11), &dev)?;
        for (k, stride, padding, output_padding) in [(20, 10, 5, 0), (12, 6, 3, 0), (3, 2, 1, 1)] {
            let w = Tensor::randn(0f32, 1.0, (6, 4, k), &dev)?;
            let b = Tensor::randn(0f32, 1.0, 4, &dev)?;
            let cfg = ConvTranspose1dConfig {
                padding,
                output_padding,
                stride,
                dilation: 1,
                groups: 1,
            };
            let conv = ConvTranspose1d::new(w, Some(b), cfg);
            let want = candle_core::Module::forward(&conv, &x)?;
            let got = conv_transpose1d_trimmed(&x, &conv)?;
            assert_eq!(got.dims(), want.dims());
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "k {k} stride {stride}: {d}");
        }
        Ok(())
    }
}
