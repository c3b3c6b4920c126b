//! A square-kernel `Conv2d` over `[C, F, T]` maps (frequency, time) with padding
//! `kernel / 2`, stride `(stride, 1)` and groups 1, computed as accumulating matrix
//! products read in place.
//!
//! Candle's CPU `conv2d` copies the input into an im2col matrix `[F·T, Cin·k²]`
//! (92 MB for a 32-channel 3×3 layer over 80 × 1000 cells) and runs one product on
//! it: the copy costs more than the arithmetic. Here output row `f` is
//! `bias + Σ_{i,j} W_ij · X[:, f·stride + i − p, · + j − p]`, each term one `gemm`
//! call over the whole row of `T` cells (`[Cout, Cin] × [Cin, T]`), reading the input
//! through its channel stride; the zero padding is left out by shortening the row
//! at either end. Threads take whole output rows, and a strided layer computes only
//! the rows it keeps.

use candle_core::{Device, Result, Tensor};

use super::conv::pack_taps;
use super::ops::with_cpu_f32;
use super::product::{product, rows, Strided};
use super::threads::{split_over_threads, SharedOut};

/// Below this many multiply-adds the layer runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// A `Conv2d(Cin, Cout, kernel, stride=(stride, 1), padding=kernel / 2)` with an
/// optional bias. f32 CPU weights take the matrix-product path; anything else runs
/// candle's `conv2d` and keeps every `stride`-th row.
#[derive(Debug, Clone)]
pub struct GemmConv2d {
    weights: Weights,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
}

#[derive(Debug, Clone)]
enum Weights {
    /// f32 in CPU memory: `k²` row-major `[Cout, Cin]` blocks, tap `i·k + j` for
    /// frequency offset `i` and time offset `j`, and the bias.
    Packed {
        taps: Vec<f32>,
        bias: Option<Vec<f32>>,
    },
    /// The layer as given, for other devices and dtypes.
    Candle {
        weight: Tensor,
        bias: Option<Tensor>,
    },
}

impl GemmConv2d {
    /// `weight` `[Cout, Cin, k, k]` (`k` odd), `bias` `[Cout]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>, stride: usize) -> Result<Self> {
        let (c_out, c_in, kernel, kw) = weight.dims4()?;
        if kernel != kw || kernel % 2 == 0 || stride == 0 {
            candle_core::bail!("conv2d: a square odd kernel and a stride ≥ 1 expected, got {kernel}×{kw} stride {stride}");
        }
        // [Cout, Cin, k, k] → [k, k, Cout, Cin] → k² blocks.
        let packed = pack_taps(
            true,
            &weight.reshape((c_out, c_in, kernel * kernel))?,
            (2, 0, 1),
            bias.as_ref(),
        )?;
        let weights = match packed {
            Some((taps, bias)) => Weights::Packed { taps, bias },
            None => Weights::Candle { weight, bias },
        };
        Ok(Self {
            weights,
            c_in,
            c_out,
            kernel,
            stride,
        })
    }

    /// Output rows for `f` input rows.
    fn rows_out(&self, f: usize) -> usize {
        f.div_ceil(self.stride)
    }

    /// `x` `[B, Cin, F, T]` → `[B, Cout, ⌈F / stride⌉, T]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c_in, f, t) = x.dims4()?;
        if c_in != self.c_in {
            candle_core::bail!("conv2d: {c_in} channels in, want {}", self.c_in);
        }
        let (taps, bias) = match &self.weights {
            Weights::Packed { taps, bias } => (taps, bias.as_deref()),
            Weights::Candle { weight, bias } => {
                return candle_conv2d(x, weight, bias.as_ref(), self.stride)
            }
        };
        let fo = self.rows_out(f);
        let fast = with_cpu_f32(x, |xs| {
            let item = c_in * f * t;
            let mut out = vec![0f32; b * self.c_out * fo * t];
            for (src, dst) in xs
                .chunks(item.max(1))
                .zip(out.chunks_mut((self.c_out * fo * t).max(1)))
            {
                self.item((taps, bias), src, (f, t), dst);
            }
            Tensor::from_vec(out, (b, self.c_out, fo, t), &Device::Cpu)
        });
        match fast {
            Some(y) => y,
            None => candle_core::bail!("conv2d: expected an f32 CPU input, got {:?}", x.dtype()),
        }
    }

    /// One item: `x` `[Cin, F, T]` → `out` `[Cout, Fo, T]`.
    fn item(
        &self,
        weights: (&[f32], Option<&[f32]>),
        x: &[f32],
        (f, t): (usize, usize),
        out: &mut [f32],
    ) {
        let fo = self.rows_out(f);
        let (c_in, c_out, k) = (self.c_in, self.c_out, self.kernel);
        let macs = c_out * c_in * k * k * fo * t;
        let threads = if macs < PARALLEL_MIN_MACS {
            1
        } else {
            candle_core::utils::get_num_threads()
        };
        let dst = SharedOut(out.as_mut_ptr());
        let run = |first: usize, last: usize| {
            for row in first..last {
                // SAFETY: each output row is written by one thread only (the ranges
                // do not overlap), and `out` holds `Cout · Fo · T` values.
                unsafe { self.row(weights, x, (f, t), row, dst) };
            }
        };
        split_over_threads(fo, threads, run);
    }

    /// Output row `row` of every channel: the bias, then one product per tap.
    ///
    /// # Safety
    /// `dst` holds `Cout · Fo · T` values and no other thread writes row `row`.
    unsafe fn row(
        &self,
        (taps, bias): (&[f32], Option<&[f32]>),
        x: &[f32],
        (f, t): (usize, usize),
        row: usize,
        dst: SharedOut,
    ) {
        let (c_in, c_out, k) = (self.c_in, self.c_out, self.kernel);
        let fo = self.rows_out(f);
        let ld = fo * t;
        let p = k / 2;
        for co in 0..c_out {
            // SAFETY: row `row` of channel `co`, inside `dst` by the contract.
            let cells = unsafe { std::slice::from_raw_parts_mut(dst.at(co * ld + row * t), t) };
            cells.fill(bias.map_or(0.0, |b| b[co]));
        }
        for i in 0..k {
            let Some(fi) = (row * self.stride + i).checked_sub(p).filter(|&fi| fi < f) else {
                continue;
            };
            for j in 0..k {
                // Output cell `c` reads input cell `c + j − p`.
                let (from_out, from_in) = if j < p { (p - j, 0) } else { (0, j - p) };
                let Some(n) = t.checked_sub(from_out + from_in).filter(|&n| n > 0) else {
                    continue;
                };
                let tap = i * k + j;
                let w = &taps[tap * c_out * c_in..(tap + 1) * c_out * c_in];
                let rhs = &x[fi * t + from_in..];
                // SAFETY: `w` is [Cout, Cin] row-major; `rhs` is read as [Cin, n] with
                // row stride `F·T`, its last value at `(Cin − 1)·F·T + fi·T + from_in +
                // n − 1 < Cin·F·T`; the destination is row `row` of each channel
                // (columns `from_out .. from_out + n ≤ T`), this thread's by the
                // contract.
                unsafe {
                    product(
                        (c_out, n, c_in),
                        Strided(dst.at(row * t + from_out), ld, 1),
                        rows(w.as_ptr(), c_in),
                        Strided(rhs.as_ptr(), f * t, 1),
                        true,
                        1.0,
                    );
                }
            }
        }
    }
}

/// Candle's `conv2d` at stride 1 with padding `k / 2`, every `stride`-th row kept,
/// plus the bias `[Cout]`.
fn candle_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
) -> Result<Tensor> {
    let y = x.conv2d(weight, weight.dim(2)? / 2, 1, 1, 1)?;
    let (_, c_out, f, _) = y.dims4()?;
    let rows: Vec<u32> = (0..f as u32).step_by(stride).collect();
    let y = y.index_select(&Tensor::new(rows.as_slice(), x.device())?, 2)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, c_out, 1, 1))?.to_dtype(y.dtype())?),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        (f, t): (usize, usize),
    ) -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (c_out, c_in, k, k), &dev)?;
        let b = Tensor::randn(0f32, 1.0, c_out, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (2, c_in, f, t), &dev)?;
        let fast = GemmConv2d::new(w.clone(), Some(b.clone()), stride)?;
        assert!(matches!(fast.weights, Weights::Packed { .. }));
        let got = fast.forward(&x)?;
        let want = candle_conv2d(&x, &w, Some(&b), stride)?;
        assert_eq!(got.dims(), want.dims());
        assert_eq!(got.dims(), &[2, c_out, f.div_ceil(stride), t]);
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{c_in}→{c_out} k{k} s{stride} {f}×{t}: {diff}");
        Ok(())
    }

    #[test]
    fn matches_candle_conv2d_then_every_nth_row() -> Result<()> {
        case(1, 4, 3, 1, (9, 17))?;
        case(3, 5, 3, 2, (9, 17))?;
        case(3, 5, 3, 2, (8, 1))?;
        case(4, 6, 1, 2, (7, 5))?;
        case(2, 3, 5, 1, (6, 4))?;
        case(8, 8, 3, 2, (40, 300))
    }
}
