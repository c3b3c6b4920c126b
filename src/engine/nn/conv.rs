//! A stride-1 `Conv1d` computed as accumulating matrix products on the padded input.
//!
//! Candle's CPU `conv1d` first copies the input into an im2col matrix `[L, Cin·k]`
//! (hundreds of MB for the generator's kernel-11 layers at 72k samples), then runs one
//! matrix product on it: the copy, not the arithmetic, dominates. Here the output is
//! `bias + Σ_j W_j · Xpad[:, j·d .. j·d + L]`, `W_j` the `[Cout, Cin]` slice of tap `j`
//! (packed once at load), each term a `gemm` call that reads the padded input in place
//! through its row stride. The time axis is cut into tiles small enough that a tile of
//! the output stays in cache across the `k` accumulations; threads take whole tiles.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::Conv1d;

use super::ops::with_cpu_f32;

/// Output columns per tile: `Cout × TILE` f32 (128 KiB at 128 channels) stays in L2
/// across the `k` accumulating products, yet each product is large enough to run
/// `gemm` near its peak.
const TILE: usize = 256;

/// Below this many multiply-adds the layer runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// A `Conv1d` with stride 1 and groups 1 (any padding and dilation) run as `k`
/// accumulating matrix products; other settings, devices and dtypes go through the
/// wrapped candle layer unchanged.
#[derive(Debug, Clone)]
pub struct GemmConv1d {
    /// The layer as loaded, for the fallback path.
    conv: Conv1d,
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
        let fast = cfg.stride == 1 && cfg.groups == 1 && conv.weight().device().is_cpu();
        let (taps, bias) = if fast {
            let taps = conv
                .weight()
                .to_dtype(DType::F32)?
                .permute((2, 0, 1))?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let bias = match conv.bias() {
                Some(b) => Some(b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
                None => None,
            };
            (taps, bias)
        } else {
            (Vec::new(), None)
        };
        Ok(Self {
            conv,
            taps,
            bias,
            c_in,
            c_out,
            kernel,
        })
    }

    /// The wrapped candle layer.
    pub fn conv(&self) -> &Conv1d {
        &self.conv
    }

    /// One item: `x` `[Cin, t]` contiguous → `[Cout, l_out]` values.
    fn forward_item(&self, x: &[f32], t: usize) -> Option<Vec<f32>> {
        let cfg = self.conv.config();
        let (pad, dil, k) = (cfg.padding, cfg.dilation, self.kernel);
        let t_pad = t + 2 * pad;
        let span = dil * (k - 1) + 1;
        let l_out = t_pad.checked_sub(span)? + 1;
        let (c_in, c_out) = (self.c_in, self.c_out);
        // Zero padding on both sides of every channel, so each tap reads a plain window.
        let xpad: std::borrow::Cow<[f32]> = if pad == 0 {
            std::borrow::Cow::Borrowed(x)
        } else {
            let mut xp = vec![0f32; c_in * t_pad];
            for (dst, src) in xp.chunks_mut(t_pad).zip(x.chunks(t.max(1))) {
                dst[pad..pad + t].copy_from_slice(&src[..t]);
            }
            std::borrow::Cow::Owned(xp)
        };
        let mut out = vec![0f32; c_out * l_out];
        if l_out == 0 {
            return Some(out);
        }
        let tiles = l_out.div_ceil(TILE);
        let macs = c_out * c_in * k * l_out;
        let threads = if macs < PARALLEL_MIN_MACS {
            1
        } else {
            candle_core::utils::get_num_threads().clamp(1, tiles)
        };
        let out_ptr = SharedOut(out.as_mut_ptr());
        let xpad = &xpad[..];
        let run = |first: usize, last: usize| {
            for tile in first..last {
                let t0 = tile * TILE;
                let n = TILE.min(l_out - t0);
                // SAFETY: every tile writes only its own columns `t0..t0 + n` of `out`
                // (row stride `l_out`), and tiles are split between threads without
                // overlap; `out` outlives the scope that runs this closure.
                unsafe { self.tile(xpad, t_pad, out_ptr.at(t0), l_out, t0, n) };
            }
        };
        if threads == 1 {
            run(0, tiles);
        } else {
            let per = tiles.div_ceil(threads);
            std::thread::scope(|scope| {
                for th in 0..threads {
                    let (first, last) = (th * per, ((th + 1) * per).min(tiles));
                    if first < last {
                        scope.spawn(move || run(first, last));
                    }
                }
            });
        }
        Some(out)
    }

    /// Output columns `t0..t0 + n`: bias, then one accumulating product per tap.
    ///
    /// # Safety
    /// `dst` points at column `t0` of a `[Cout, l_out]` row-major buffer that no other
    /// thread writes in these columns; `xpad` is `[Cin, t_pad]` with
    /// `t_pad ≥ t0 + n + dilation·(k − 1)`.
    unsafe fn tile(
        &self,
        xpad: &[f32],
        t_pad: usize,
        dst: *mut f32,
        l_out: usize,
        t0: usize,
        n: usize,
    ) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let dil = self.conv.config().dilation;
        for co in 0..c_out {
            let b = self.bias.as_ref().map_or(0.0, |b| b[co]);
            // SAFETY: row `co`, columns `0..n` of this tile (see the contract above).
            let row = unsafe { std::slice::from_raw_parts_mut(dst.add(co * l_out), n) };
            row.fill(b);
        }
        for j in 0..self.kernel {
            let w = &self.taps[j * c_out * c_in..(j + 1) * c_out * c_in];
            let rhs = &xpad[t0 + j * dil..];
            // SAFETY: `w` is [c_out, c_in] row-major, `rhs` is read as [c_in, n] with row
            // stride `t_pad`, inside `xpad` by the contract; `dst` as above.
            unsafe {
                gemm::gemm(
                    c_out,
                    n,
                    c_in,
                    dst,
                    1,
                    l_out as isize,
                    true,
                    w.as_ptr(),
                    1,
                    c_in as isize,
                    rhs.as_ptr(),
                    1,
                    t_pad as isize,
                    1.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }
}

/// The output buffer shared by the tile threads, each writing its own columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: threads write disjoint columns (see `GemmConv1d::forward_item`).
unsafe impl Send for SharedOut {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Column `t0` of row 0.
    ///
    /// # Safety
    /// `t0` is inside the buffer.
    unsafe fn at(self, t0: usize) -> *mut f32 {
        // SAFETY: by the contract.
        unsafe { self.0.add(t0) }
    }
}

impl Module for GemmConv1d {
    /// `x` [B, Cin, T] → [B, Cout, T'], the same values as the candle layer up to the
    /// order of the float sums.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.taps.is_empty() {
            return self.conv.forward(x);
        }
        let (b, c_in, t) = x.dims3()?;
        if c_in != self.c_in {
            candle_core::bail!("conv1d: {c_in} input channels, want {}", self.c_in);
        }
        let done = with_cpu_f32(x, |data| {
            let mut out = Vec::new();
            let mut l_out = 0;
            for item in data.chunks(c_in * t.max(1)).take(b) {
                let Some(y) = self.forward_item(item, t) else {
                    return Ok(None);
                };
                l_out = y.len() / self.c_out;
                out.extend_from_slice(&y);
            }
            Tensor::from_vec(out, (b, self.c_out, l_out), &Device::Cpu).map(Some)
        });
        match done {
            Some(Ok(Some(y))) => Ok(y),
            Some(Err(e)) => Err(e),
            _ => self.conv.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::Conv1dConfig;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

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
            let diff = max_diff(&got, &want)?;
            assert!(diff < 1e-4, "k {k} d {d} p {p}: {diff}");
        }
        Ok(())
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
        assert_eq!(max_diff(&got, &want)?, 0.0);
        Ok(())
    }
}
