//! A linear layer for inputs of a few rows (PL-BERT's dozen tokens): candle's
//! `Linear` multiplies `x [N, in]` by the transposed view of `W [out, in]`, and its
//! matrix-product kernel then copies `x` into panels on every call and runs at
//! ~47 GFLOP/s for 12 rows on 2 cores. Keeping `Wᵀ` as a row-major `[in, out]` block
//! and computing `yᵀ = W·xᵀ` instead hands the kernel a weight already laid out the
//! way it reads it, so nothing is repacked and the weight streams once: twice as
//! fast at 12 rows, and faster up to a few hundred. The bias is the product's starting
//! value.

use std::sync::Mutex;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::Linear;

use super::ops::{on_workers, simd_dispatch, with_cpu_f32, worker_count, SharedOut};

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
    /// A copy of `values`.
    pub fn from_slice(values: &[f32]) -> Self {
        const LANES: usize = 16;
        let mut buf = vec![0f32; values.len() + LANES - 1];
        let misalignment = (buf.as_ptr() as usize % 64) / std::mem::size_of::<f32>();
        let start = (LANES - misalignment) % LANES;
        buf[start..start + values.len()].copy_from_slice(values);
        Self {
            buf,
            start,
            len: values.len(),
        }
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
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

/// `y = x·Wᵀ + b` with `Wᵀ` stored row-major; other devices and dtypes run the
/// wrapped candle layer unchanged.
#[derive(Debug, Clone)]
pub struct TransposedLinear {
    /// The layer as loaded, kept only when the fast path does not apply.
    linear: Option<Linear>,
    /// `Wᵀ`, `[in, out]` row-major; empty when the fast path does not apply.
    weight_t: AlignedF32,
    /// `[out]`, zeros without a bias.
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl TransposedLinear {
    /// Transposes the weight of `linear` (`[out, in]`) once.
    pub fn new(linear: Linear) -> Result<Self> {
        let w = linear.weight();
        let (d_out, d_in) = w.dims2()?;
        if !w.device().is_cpu() || w.dtype() != DType::F32 {
            return Ok(Self {
                linear: Some(linear),
                weight_t: AlignedF32::from_slice(&[]),
                bias: Vec::new(),
                d_in,
                d_out,
            });
        }
        let weight_t =
            AlignedF32::from_slice(&w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?);
        let bias = match linear.bias() {
            Some(b) => b.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0f32; d_out],
        };
        Ok(Self {
            linear: None,
            weight_t,
            bias,
            d_in,
            d_out,
        })
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
        if let Some(linear) = &self.linear {
            return linear.forward(x);
        }
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
            let y = rows_times_matrix(xs, self.weight_t.as_slice(), &self.bias)?;
            Tensor::from_vec(y, out_dims.as_slice(), x.device())
        });
        match fast {
            Some(y) => y,
            None => candle_core::bail!("linear: expected an f32 input, got {:?}", x.dtype()),
        }
    }
}

/// `x·W + b` for the rows of `x` [rows, k] and a row-major `W` [k, n] (`b` [n]) →
/// [rows, n] row-major; the bias is the product's starting value. Above a few
/// million multiply-adds the output's columns are split in equal bands (whole
/// vectors of 16) between candle's CPU workers, each band one single-threaded
/// product: 280–310 GFLOP/s on 2 cores for S3Gen's and T3's shapes, where the
/// `gemm` crate's own threading gave 150–290 from one call to the next (see
/// [`on_workers`]).
/// A weight or input whose size does not fit `b` is an error.
pub fn rows_times_matrix(x: &[f32], w: &[f32], bias: &[f32]) -> Result<Vec<f32>> {
    let n = bias.len();
    let k = w.len().checked_div(n).unwrap_or(0);
    if w.len() != k * n || (k == 0 && !x.is_empty()) || (k > 0 && !x.len().is_multiple_of(k)) {
        candle_core::bail!(
            "rows_times_matrix: {} input values, {} weight values and {n} outputs do not fit",
            x.len(),
            w.len()
        );
    }
    let rows = x.len().checked_div(k).unwrap_or(0);
    strided_rows_times_matrix(x, k, rows, w, bias)
}

/// [`rows_times_matrix`] for `rows` rows `stride` values apart in `x`: row `r` is
/// `x[r·stride .. r·stride + k]`. Rows may overlap: with `stride` = channels, the rows
/// of a time-major `[T + K − 1, C]` signal read `K·C` values at a time are the
/// windows of a kernel-`K` convolution, whose taps `W` [K·C, n] then hold tap `j`,
/// channel `c` in row `j·C + c`.
/// A weight that does not fit `b`, or rows that run past `x`, are an error.
pub fn strided_rows_times_matrix(
    x: &[f32],
    stride: usize,
    rows: usize,
    w: &[f32],
    bias: &[f32],
) -> Result<Vec<f32>> {
    let n = bias.len();
    let k = w.len().checked_div(n).unwrap_or(0);
    if w.len() != k * n || (rows > 0 && (rows - 1) * stride + k > x.len()) {
        candle_core::bail!(
            "rows_times_matrix: {rows} rows {stride} apart in {} values, {} weight values \
             and {n} outputs do not fit",
            x.len(),
            w.len()
        );
    }
    let mut y = Vec::with_capacity(rows * n);
    for _ in 0..rows {
        y.extend_from_slice(bias);
    }
    if rows == 0 || k == 0 {
        return Ok(y);
    }
    let shares = if rows * k * n < PARALLEL_MIN_MACS << 2 {
        1
    } else {
        worker_count().min(n.div_ceil(16))
    };
    let band = n.div_ceil(shares).next_multiple_of(16);
    let dst = SharedOut(y.as_mut_ptr());
    on_workers(shares, |s| {
        let first = s * band;
        let width = band.min(n.saturating_sub(first));
        if width == 0 {
            return;
        }
        // SAFETY: as matrices with (column, row) strides: the band of yᵀ [width, rows]
        // starts at column `first` of `y` with strides (n, 1), the band of Wᵀ
        // [width, k] at column `first` of `w` with strides (n, 1), and xᵀ [k, rows] is
        // `x` with strides (stride, 1); every index stays inside the three buffers
        // (`y` holds rows·n values, `w` k·n, and the last row of `x` ends at
        // (rows − 1)·stride + k, checked above), and no other share writes these
        // columns of `y`.
        unsafe {
            gemm::gemm(
                width,
                rows,
                k,
                dst.at(first),
                n as isize,
                1,
                true,
                w.as_ptr().add(first),
                n as isize,
                1,
                x.as_ptr(),
                stride as isize,
                1,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    });
    Ok(y)
}

/// `x·W + b` for a single row `x` [k] and a row-major `W` [k, n] (`b` [n]): one
/// token's step through a linear layer whose weight is stored `[in, out]`, as GPT-2's
/// are. At one row the product is bound by reading `W` once; the `gemm` crate reads
/// it at about half the memory bandwidth there, while adding `x_i·W[i, ..]` four rows
/// at a time into an accumulator that stays in L1 streams it at the full bandwidth
/// (1.2 GB of layers: 55 ms → 28 ms on 2 cores). Each thread takes a consecutive run
/// of rows, one contiguous stretch of memory that the prefetchers follow across
/// pages (bands of columns, short runs in every row, were 5–10% slower), into its own
/// accumulator; the accumulators are added at the end.
/// A weight whose size is not `x.len() × bias.len()` is an error.
pub fn row_times_matrix(x: &[f32], w: &[f32], bias: &[f32]) -> Result<Vec<f32>> {
    let n = bias.len();
    if w.len() != x.len() * n {
        candle_core::bail!(
            "row_times_matrix: a [{}, {n}] weight holds {} values, got {}",
            x.len(),
            x.len() * n,
            w.len()
        );
    }
    let mut y = bias.to_vec();
    if w.is_empty() {
        return Ok(y);
    }
    if w.len() < PARALLEL_MIN_MACS {
        add_rows(x, w, &mut y);
        return Ok(y);
    }
    // On candle's persistent CPU workers and this thread: a decode step makes ~120
    // such calls, and starting a thread for each cost ~60 µs.
    let threads = worker_count().min(x.len().div_ceil(4));
    // Runs of whole blocks of four rows.
    let per = x.len().div_ceil(threads).next_multiple_of(4);
    let partial: Vec<Mutex<Vec<f32>>> = (0..threads)
        .map(|t| {
            Mutex::new(if t == 0 {
                std::mem::take(&mut y)
            } else {
                vec![0f32; n]
            })
        })
        .collect();
    on_workers(threads, |tid| {
        let first = tid * per;
        if first < x.len() {
            let last = (first + per).min(x.len());
            let mut acc = partial[tid].lock().unwrap_or_else(|e| e.into_inner());
            add_rows(&x[first..last], &w[first * n..last * n], &mut acc);
        }
    });
    let mut parts = partial
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()));
    let mut y = parts.next().unwrap_or_default();
    for acc in parts {
        for (o, a) in y.iter_mut().zip(acc) {
            *o += a;
        }
    }
    Ok(y)
}

simd_dispatch! {
    /// `y += Σ_i x_i · W[i, ..]`, `W` row-major with `y.len()` columns.
    fn add_rows(x: &[f32], w: &[f32], y: &mut [f32]) => add_rows_any
}

#[inline(always)]
fn add_rows_any(x: &[f32], w: &[f32], y: &mut [f32]) {
    let n = y.len();
    let row = |i: usize| &w[i * n..(i + 1) * n];
    let mut blocks = x.chunks_exact(4);
    for (b, xs) in blocks.by_ref().enumerate() {
        let i = 4 * b;
        let (r0, r1, r2, r3) = (row(i), row(i + 1), row(i + 2), row(i + 3));
        for ((((o, &a), &b), &c), &d) in y.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            *o += xs[0] * a + xs[1] * b + xs[2] * c + xs[3] * d;
        }
    }
    let done = x.len() - blocks.remainder().len();
    for (j, &xi) in blocks.remainder().iter().enumerate() {
        for (o, &v) in y.iter_mut().zip(row(done + j)) {
            *o += xi * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn one_row_times_a_matrix_matches_matmul() -> Result<()> {
        let dev = Device::Cpu;
        // Above and below the threading threshold, depths that do not split evenly
        // between threads, and depths with a remainder after the blocks of four.
        for (k, n) in [
            (1024usize, 3072usize),
            (1025, 1100),
            (1023, 1000),
            (7, 5),
            (4, 33),
            (0, 3),
        ] {
            let w = Tensor::randn(0f32, 1., (k, n), &dev)?;
            let x = Tensor::randn(0f32, 1., (1, k), &dev)?;
            let b = Tensor::randn(0f32, 1., n, &dev)?;
            let want = x
                .matmul(&w)?
                .broadcast_add(&b)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let got = row_times_matrix(
                &x.flatten_all()?.to_vec1::<f32>()?,
                &w.flatten_all()?.to_vec1::<f32>()?,
                &b.to_vec1::<f32>()?,
            )?;
            assert_eq!(got.len(), n);
            let diff = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff < 1e-3, "{k}x{n}: largest difference {diff:e}");
        }
        // A weight of the wrong size is refused, not half-read.
        assert!(row_times_matrix(&[1.0; 4], &[0.0; 11], &[0.0; 3]).is_err());
        Ok(())
    }

    #[test]
    fn rows_times_a_matrix_match_matmul_split_or_not() -> Result<()> {
        let dev = Device::Cpu;
        // Below the threading threshold, above it with widths that split into whole
        // and partial bands of 16 columns, and fewer columns than one band.
        for (rows, k, n) in [
            (5usize, 7usize, 9usize),
            (700, 256, 1024),
            (417, 1024, 1000),
            (300, 600, 8),
        ] {
            let x = Tensor::randn(0f32, 1., (rows, k), &dev)?;
            let w = Tensor::randn(0f32, 1., (k, n), &dev)?;
            let b = Tensor::randn(0f32, 1., n, &dev)?;
            let want = x.matmul(&w)?.broadcast_add(&b)?;
            let got = rows_times_matrix(
                &x.flatten_all()?.to_vec1::<f32>()?,
                &w.flatten_all()?.to_vec1::<f32>()?,
                &b.to_vec1::<f32>()?,
            )?;
            let got = Tensor::from_vec(got, (rows, n), &dev)?;
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-3, "{rows}x{k}x{n}: largest difference {diff:e}");
        }
        // Sizes that do not fit are refused.
        assert!(rows_times_matrix(&[1.0; 5], &[0.0; 6], &[0.0; 3]).is_err());
        assert!(rows_times_matrix(&[1.0; 4], &[0.0; 7], &[0.0; 3]).is_err());
        assert!(strided_rows_times_matrix(&[1.0; 10], 4, 3, &[0.0; 12], &[0.0; 3]).is_err());
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
        let taps = w.permute((2, 1, 0))?.flatten_all()?.to_vec1::<f32>()?;
        let got = strided_rows_times_matrix(&padded, c, t, &taps, &b.to_vec1::<f32>()?)?;
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
