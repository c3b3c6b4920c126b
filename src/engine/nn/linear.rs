//! Matrix products by rows for inputs of a few rows to a few hundred (PL-BERT's dozen
//! tokens, T3's prompt and decode steps, S3Gen's frames): candle's `Linear`
//! multiplies `x [N, in]` by the transposed view of `W [out, in]`, and its
//! matrix-product kernel then copies `x` into panels on every call and runs at
//! ~47 GFLOP/s for 12 rows on 2 cores. Keeping `Wᵀ` packed once at load
//! ([`PackedMatrix`], panels of 64 output columns) and computing `yᵀ = W·xᵀ` instead
//! hands the kernel a weight already laid out the way it reads it, so nothing is
//! repacked and the weight streams once. The bias is the product's starting value.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::Linear;

use super::fast_math::simd_dispatch;
use super::int8::{int8_available, Int8Matrix};
use super::ops::with_cpu_f32;
use super::product::{product, Strided};
use super::threads::{on_workers, worker_count, SharedOut};

/// Add one panel's share of `x · Wᵀ` to `y` on this thread: `rows` rows of `x`
/// (each `stride` apart, `k` = `panel.len() / PANEL` values) times the panel (Wᵀ's
/// columns `first..first + width`, laid out `[k, PANEL]`) into those columns of the
/// `[rows, n]` output at `dst`.
///
/// # Safety
/// `dst` holds `rows · n` values, `x` holds `(rows − 1) · stride + k`, and no other
/// thread writes columns `first..first + width` of `dst` meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn add_panel_product(
    dst: SharedOut,
    n: usize,
    first: usize,
    width: usize,
    panel: &[f32],
    x: &[f32],
    stride: usize,
    rows: usize,
) {
    let k = panel.len() / PANEL;
    debug_assert!(rows == 0 || x.len() >= (rows - 1) * stride + k);
    // SAFETY: as matrices with (column, row) strides: yᵀ's panel [width, rows] starts
    // at column `first` of `dst` with strides (n, 1), the panel Wᵀ [width, k] at its
    // start with strides (PANEL, 1), and xᵀ [k, rows] is `x` with strides (stride, 1);
    // the caller vouches for the buffers' sizes and for these columns being its own.
    unsafe {
        product(
            (width, rows, k),
            Strided(dst.at(first), 1, n),
            Strided(panel.as_ptr(), 1, PANEL),
            Strided(x.as_ptr(), 1, stride),
            true,
            1.0,
        );
    }
}

/// Below this many multiply-adds the product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// f32 values whose first lies on a 64-byte boundary (one cache line, one AVX-512
/// vector), as weights for the matrix products here: with the allocator's 16-byte
/// alignment most vector loads straddle two cache lines, which made T3's products of
/// a few dozen rows ~30% slower.
pub struct AlignedF32 {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl AlignedF32 {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        const LANES: usize = 16;
        let buf = vec![0f32; len + LANES - 1];
        let misalignment = (buf.as_ptr() as usize % 64) / std::mem::size_of::<f32>();
        let start = (LANES - misalignment) % LANES;
        Self { buf, start, len }
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[f32]) -> Self {
        let mut aligned = Self::zeros(values.len());
        aligned.as_mut_slice().copy_from_slice(values);
        aligned
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl Clone for AlignedF32 {
    /// A copy in its own, again aligned, buffer (a plain copy of the `Vec` would keep
    /// the offset but not the alignment).
    fn clone(&self) -> Self {
        Self::from_slice(self.as_slice())
    }
}

impl std::fmt::Debug for AlignedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedF32({} values)", self.len)
    }
}

/// `y = x·Wᵀ + b` with `Wᵀ` packed once for products by rows ([`PackedMatrix`]);
/// other devices and dtypes run the wrapped candle layer unchanged.
#[derive(Debug, Clone)]
pub struct TransposedLinear {
    weights: LinearWeights,
    d_in: usize,
    d_out: usize,
}

#[derive(Debug, Clone)]
enum LinearWeights {
    /// f32 in CPU memory: `Wᵀ` `[in, out]` packed, and the bias (zeros without one).
    Packed {
        weight_t: PackedMatrix,
        bias: Vec<f32>,
    },
    /// The packed weight quantised to bytes ([`TransposedLinear::quantise_int8`]).
    Int8 { weight: Int8Matrix, bias: Vec<f32> },
    /// The layer as loaded, for other devices and dtypes.
    Candle(Linear),
}

impl TransposedLinear {
    /// Transposes and packs the weight of `linear` (`[out, in]`) once.
    pub fn new(linear: Linear) -> Result<Self> {
        let w = linear.weight();
        let (d_out, d_in) = w.dims2()?;
        let weights = if w.device().is_cpu() && w.dtype() == DType::F32 {
            LinearWeights::Packed {
                weight_t: with_cpu_f32(w, |v| PackedMatrix::from_transposed_rows(v, d_in, d_out))
                    .unwrap_or_else(|| {
                    candle_core::bail!("linear: an f32 CPU weight expected")
                })?,
                bias: match linear.bias() {
                    Some(b) => b.flatten_all()?.to_vec1::<f32>()?,
                    None => vec![0f32; d_out],
                },
            }
        } else {
            LinearWeights::Candle(linear)
        };
        Ok(Self {
            weights,
            d_in,
            d_out,
        })
    }
}

impl TransposedLinear {
    /// Quantises a packed f32 weight to bytes for [`Int8Matrix`] products (see
    /// [`super::int8`]); other layers, and CPUs without AVX2 or AVX-512 VNNI, keep theirs.
    pub fn quantise_int8(&mut self) {
        if let LinearWeights::Packed { weight_t, bias } = &self.weights {
            if int8_available() {
                self.weights = LinearWeights::Int8 {
                    weight: weight_t.to_int8(),
                    bias: bias.clone(),
                };
            }
        }
    }
}

/// `candle_nn::linear_b` (a `[d_out, d_in]` weight under `vb`, a bias when `bias`) as
/// a [`TransposedLinear`].
pub fn transposed_linear_b(
    d_in: usize,
    d_out: usize,
    bias: bool,
    vb: candle_nn::VarBuilder,
) -> Result<TransposedLinear> {
    TransposedLinear::new(candle_nn::linear_b(d_in, d_out, bias, vb)?)
}

impl Module for TransposedLinear {
    /// `x` [..., in] → [..., out].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let product: &dyn Fn(&[f32]) -> Result<Vec<f32>> = match &self.weights {
            LinearWeights::Packed { weight_t, bias } => &|xs| weight_t.times(xs, bias),
            LinearWeights::Int8 { weight, bias } => &|xs| {
                let rows = xs.len().checked_div(self.d_in).unwrap_or(0);
                weight.strided_times(xs, self.d_in, rows, bias)
            },
            LinearWeights::Candle(linear) => return linear.forward(x),
        };
        let dims = x.dims();
        if dims.last() != Some(&self.d_in) {
            candle_core::bail!(
                "linear: input {:?} for a [{}, {}] weight",
                x.shape(),
                self.d_out,
                self.d_in
            );
        }
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = self.d_out;
        }
        let fast = with_cpu_f32(x, |xs| {
            let y = product(xs)?;
            Tensor::from_vec(y, out_dims.as_slice(), x.device())
        });
        match fast {
            Some(y) => y,
            None => candle_core::bail!("linear: expected an f32 input, got {:?}", x.dtype()),
        }
    }
}

/// A matrix `W` [k, n] laid out for products by rows: panels of [`PANEL`] columns,
/// each holding its columns of every row, row after row (`[⌈n/64⌉][k][64]`, the last
/// panel padded with zeros), 64-byte aligned. A product then reads every panel as one
/// contiguous stretch of memory: in the row-major layout a band of columns is a short
/// run in every row, one 4 KiB page after another, which the prefetchers do not
/// follow (T3's 41-row products ran at 68–93 GFLOP/s on 2 cores, in panels at
/// 153–200).
#[derive(Clone)]
pub struct PackedMatrix {
    values: AlignedF32,
    k: usize,
    n: usize,
}

/// Columns per panel of a [`PackedMatrix`]: four AVX-512 vectors, the width of the
/// `gemm` crate's widest f32 micro-kernel.
pub const PANEL: usize = 64;

impl PackedMatrix {
    /// Packs the row-major `w` [k, n]; a size that is not `k·n` is an error.
    pub fn from_rows(w: &[f32], k: usize, n: usize) -> Result<Self> {
        if w.len() != k * n {
            candle_core::bail!("packed matrix: {} values for [{k}, {n}]", w.len());
        }
        Ok(Self::pack(k, n, |panel, first, width| {
            for (row, out) in panel.chunks_exact_mut(PANEL).enumerate() {
                out[..width].copy_from_slice(&w[row * n + first..row * n + first + width]);
            }
        }))
    }

    /// Packs `W = Vᵀ` from the row-major `v` [n, k] (a layer's `[out, in]` weight):
    /// each panel's rows are gathered from the columns of its `PANEL` rows of `v`,
    /// with no transposed copy in between.
    pub fn from_transposed_rows(v: &[f32], k: usize, n: usize) -> Result<Self> {
        if v.len() != k * n {
            candle_core::bail!("packed matrix: {} values for [{n}, {k}]ᵀ", v.len());
        }
        Ok(Self::pack(k, n, |panel, first, width| {
            // In square tiles, so the panel rows being written stay in L1.
            for r0 in (0..k).step_by(PANEL) {
                let rows = PANEL.min(k - r0);
                for j in 0..width {
                    let src = &v[(first + j) * k + r0..(first + j) * k + r0 + rows];
                    for (row, &value) in src.iter().enumerate() {
                        panel[(r0 + row) * PANEL + j] = value;
                    }
                }
            }
        }))
    }

    /// A zeroed `[k, n]` matrix in panels, each filled by `fill(panel, first column,
    /// width)`.
    fn pack(k: usize, n: usize, fill: impl Fn(&mut [f32], usize, usize)) -> Self {
        let panels = n.div_ceil(PANEL);
        let mut packed = AlignedF32::zeros(panels * k * PANEL);
        for (p, panel) in packed
            .as_mut_slice()
            .chunks_exact_mut((k * PANEL).max(1))
            .enumerate()
        {
            let first = p * PANEL;
            fill(panel, first, PANEL.min(n - first));
        }
        Self {
            values: packed,
            k,
            n,
        }
    }

    /// Packs `W` from a 2-D f32 tensor `[k, n]` (any layout).
    pub fn from_tensor(w: &Tensor) -> Result<Self> {
        let (k, n) = w.dims2()?;
        Self::from_rows(
            &w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            k,
            n,
        )
    }

    /// `W[row, col]`.
    pub fn value(&self, row: usize, col: usize) -> f32 {
        self.panel(col / PANEL)[row * PANEL + col % PANEL]
    }

    /// `W` quantised to bytes for [`Int8Matrix`] products.
    pub fn to_int8(&self) -> Int8Matrix {
        Int8Matrix::from_fn(self.k, self.n, |i, j| self.value(i, j))
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.values.as_slice()[p * self.k * PANEL..(p + 1) * self.k * PANEL]
    }

    /// `x·W + b` for the rows of `x` [rows, k] (`b` [n]) → [rows, n] row-major.
    pub fn times(&self, x: &[f32], bias: &[f32]) -> Result<Vec<f32>> {
        if (self.k == 0 && !x.is_empty()) || (self.k > 0 && !x.len().is_multiple_of(self.k)) {
            candle_core::bail!(
                "packed matrix: {} input values are not rows of {}",
                x.len(),
                self.k
            );
        }
        let rows = x.len().checked_div(self.k).unwrap_or(0);
        self.strided_times(x, self.k, rows, bias)
    }

    /// [`PackedMatrix::times`] for `rows` rows `stride` values apart in `x`: row `r`
    /// is `x[r·stride .. r·stride + k]`. Rows may overlap: with `stride` = channels,
    /// the rows of a time-major `[T + K − 1, C]` signal read `K·C` values at a time
    /// are the windows of a kernel-`K` convolution, whose taps `W` [K·C, n] then hold
    /// tap `j`, channel `c` in row `j·C + c`.
    ///
    /// The bias is the product's starting value. Above a few million multiply-adds
    /// the panels are split in runs between candle's CPU workers (see
    /// [`on_workers`]): one row adds `x_i·W[i, ..]` into four vector registers per
    /// panel, streaming `W` once at the memory bandwidth (a decode step of T3); more
    /// rows run one single-threaded `gemm` product per panel (280–310 GFLOP/s for
    /// S3Gen's shapes, where the `gemm` crate's own threading gave 150–290 from one
    /// call to the next). A bias that is not `n` values, or rows that run past `x`,
    /// are an error.
    pub fn strided_times(
        &self,
        x: &[f32],
        stride: usize,
        rows: usize,
        bias: &[f32],
    ) -> Result<Vec<f32>> {
        let (k, n) = (self.k, self.n);
        super::product::check_strided(
            "packed matrix",
            (k, n),
            x.len(),
            (stride, rows),
            bias.len(),
        )?;
        let mut y = Vec::with_capacity(rows * n);
        for _ in 0..rows {
            y.extend_from_slice(bias);
        }
        if rows == 0 || k == 0 || n == 0 {
            return Ok(y);
        }
        let panels = n.div_ceil(PANEL);
        let threshold = if rows == 1 {
            PARALLEL_MIN_MACS
        } else {
            PARALLEL_MIN_MACS << 2
        };
        let shares = if rows * k * n < threshold {
            1
        } else {
            worker_count().min(panels)
        };
        let per = panels.div_ceil(shares);
        let dst = SharedOut(y.as_mut_ptr());
        on_workers(shares, |s| {
            for p in s * per..((s + 1) * per).min(panels) {
                let first = p * PANEL;
                let width = PANEL.min(n - first);
                let panel = self.panel(p);
                if rows == 1 {
                    let mut acc = [0f32; PANEL];
                    acc[..width].copy_from_slice(&bias[first..first + width]);
                    add_panel_rows(&x[..k], panel, &mut acc);
                    // SAFETY: `y` holds n values (one row) and this panel's `width`
                    // columns from `first` are written by this share only.
                    unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), dst.at(first), width) };
                    continue;
                }
                // SAFETY: `y` holds rows·n values, the last row of `x` ends at
                // (rows − 1)·stride + k (checked above), and no other share writes
                // this panel's columns of `y`.
                unsafe { add_panel_product(dst, n, first, width, panel, x, stride, rows) };
            }
        });
        Ok(y)
    }
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix([{}, {}])", self.k, self.n)
    }
}

simd_dispatch! {
    /// `acc += Σ_i x_i · panel[i, ..]` for a panel [x.len(), PANEL].
    fn add_panel_rows(x: &[f32], panel: &[f32], acc: &mut [f32; PANEL]) => add_panel_rows_any
}

#[inline(always)]
fn add_panel_rows_any(x: &[f32], panel: &[f32], acc: &mut [f32; PANEL]) {
    let mut sum = *acc;
    for (&xi, row) in x.iter().zip(panel.chunks_exact(PANEL)) {
        for (s, &w) in sum.iter_mut().zip(row) {
            *s += xi * w;
        }
    }
    *acc = sum;
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `x·W + b` by candle, and by a [`PackedMatrix`] of `W`.
    fn both_products(rows: usize, k: usize, n: usize) -> Result<(Tensor, Tensor)> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (rows, k), &dev)?;
        let w = Tensor::randn(0f32, 1., (k, n), &dev)?;
        let b = Tensor::randn(0f32, 1., n, &dev)?;
        let want = x.matmul(&w)?.broadcast_add(&b)?;
        let got = PackedMatrix::from_tensor(&w)?
            .times(&x.flatten_all()?.to_vec1::<f32>()?, &b.to_vec1::<f32>()?)?;
        Ok((Tensor::from_vec(got, (rows, n), &dev)?, want))
    }

    #[test]
    fn one_row_times_a_packed_matrix_matches_matmul() -> Result<()> {
        // Above and below the threading threshold, widths of whole and partial
        // panels, and fewer columns than one panel.
        for (k, n) in [
            (1024usize, 3072usize),
            (1025, 1100),
            (1023, 1000),
            (7, 5),
            (4, 33),
        ] {
            let (got, want) = both_products(1, k, n)?;
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-3, "{k}x{n}: largest difference {diff:e}");
        }
        Ok(())
    }

    #[test]
    fn rows_times_a_packed_matrix_match_matmul_split_or_not() -> Result<()> {
        // Below the threading threshold, above it with widths that split into whole
        // and partial panels, and fewer columns than one panel.
        for (rows, k, n) in [
            (5usize, 7usize, 9usize),
            (700, 256, 1024),
            (417, 1024, 1000),
            (41, 1024, 6563),
            (300, 600, 8),
        ] {
            let (got, want) = both_products(rows, k, n)?;
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-3, "{rows}x{k}x{n}: largest difference {diff:e}");
        }
        // Sizes that do not fit are refused, not half-read.
        let w = PackedMatrix::from_rows(&[0.0; 6], 2, 3)?;
        assert!(w.times(&[1.0; 5], &[0.0; 3]).is_err());
        assert!(w.times(&[1.0; 4], &[0.0; 2]).is_err());
        assert!(w.strided_times(&[1.0; 4], 2, 3, &[0.0; 3]).is_err());
        assert!(PackedMatrix::from_rows(&[0.0; 7], 2, 3).is_err());
        Ok(())
    }

    #[test]
    fn packing_from_transposed_rows_equals_packing_the_transpose() -> Result<()> {
        let dev = Device::Cpu;
        for (n, k) in [(1usize, 1usize), (5, 7), (64, 3), (130, 65)] {
            let v = Tensor::randn(0f32, 1., (n, k), &dev)?;
            let direct =
                PackedMatrix::from_transposed_rows(&v.flatten_all()?.to_vec1::<f32>()?, k, n)?;
            let via = PackedMatrix::from_tensor(&v.t()?)?;
            assert_eq!(
                direct.values.as_slice(),
                via.values.as_slice(),
                "[{n}, {k}]"
            );
            assert_eq!((direct.k, direct.n), (via.k, via.n));
        }
        assert!(PackedMatrix::from_transposed_rows(&[0.0; 5], 2, 3).is_err());
        Ok(())
    }

    #[test]
    fn aligned_values_start_on_a_cache_line() {
        for n in [0usize, 1, 17, 1000] {
            let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let aligned = AlignedF32::from_slice(&values);
            assert_eq!(aligned.as_slice(), values.as_slice());
            assert_eq!(aligned.as_slice().as_ptr() as usize % 64, 0, "{n} values");
            assert_eq!(
                aligned.clone().as_slice().as_ptr() as usize % 64,
                0,
                "clone"
            );
        }
    }

    #[test]
    fn overlapping_rows_are_a_causal_convolution() -> Result<()> {
        let dev = Device::Cpu;
        let (t, c, c_out, kernel) = (300usize, 64usize, 96usize, 3usize);
        let x = Tensor::randn(0f32, 1., (1, c, t), &dev)?;
        let w = Tensor::randn(0f32, 1., (c_out, c, kernel), &dev)?;
        let b = Tensor::randn(0f32, 1., c_out, &dev)?;
        let want = x
            .pad_with_zeros(2, kernel - 1, 0)?
            .conv1d(&w, 0, 1, 1, 1)?
            .broadcast_add(&b.reshape((1, c_out, 1))?)?
            .squeeze(0)?
            .t()?;
        // Time-major with kernel − 1 zero frames on top; taps as [kernel·C, C_out].
        let padded = x
            .squeeze(0)?
            .t()?
            .pad_with_zeros(0, kernel - 1, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let taps = PackedMatrix::from_tensor(&w.permute((2, 1, 0))?.reshape((kernel * c, c_out))?)?;
        let got = taps.strided_times(&padded, c, t, &b.to_vec1::<f32>()?)?;
        let got = Tensor::from_vec(got, (t, c_out), &dev)?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-3, "largest difference {diff:e}");
        Ok(())
    }

    #[test]
    fn matches_candle_linear_for_few_and_many_rows() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (96, 80), &dev)?;
        let b = Tensor::randn(0f32, 1., 96, &dev)?;
        for bias in [Some(b), None] {
            let linear = Linear::new(w.clone(), bias);
            let fast = TransposedLinear::new(linear.clone())?;
            for rows in [1usize, 12, 300] {
                let x = Tensor::randn(0f32, 1., (1, rows, 80), &dev)?;
                let want = linear.forward(&x)?;
                let got = fast.forward(&x)?;
                assert_eq!(got.dims(), want.dims());
                let diff = (got - want)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                assert!(diff < 1e-4, "{rows} rows: largest difference {diff:e}");
            }
        }
        // A strided input is read as its values in order.
        let linear = Linear::new(w.clone(), None);
        let fast = TransposedLinear::new(linear.clone())?;
        let x = Tensor::randn(0f32, 1., (80, 5), &dev)?.t()?;
        let diff = (fast.forward(&x)? - linear.forward(&x)?)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "strided input: largest difference {diff:e}");
        assert!(fast
            .forward(&Tensor::zeros((2, 7), DType::F32, &dev)?)
            .is_err());
        Ok(())
    }
}
