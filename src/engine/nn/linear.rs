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

use super::ops::{simd_dispatch, with_cpu_f32};

/// Below this many multiply-adds the product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// `y = x·Wᵀ + b` with `Wᵀ` stored row-major; other devices and dtypes run the
/// wrapped candle layer unchanged.
#[derive(Debug, Clone)]
pub struct TransposedLinear {
    /// The layer as loaded, kept only when the fast path does not apply.
    linear: Option<Linear>,
    /// `Wᵀ`, `[in, out]` row-major; empty when the fast path does not apply.
    weight_t: Vec<f32>,
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
                weight_t: Vec::new(),
                bias: Vec::new(),
                d_in,
                d_out,
            });
        }
        let weight_t = w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
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
            let rows = xs.len() / self.d_in;
            let mut y: Vec<f32> = Vec::with_capacity(rows * self.d_out);
            for _ in 0..rows {
                y.extend_from_slice(&self.bias);
            }
            let macs = rows * self.d_in * self.d_out;
            let parallelism = if macs < PARALLEL_MIN_MACS {
                gemm::Parallelism::None
            } else {
                gemm::Parallelism::Rayon(candle_core::utils::get_num_threads().max(1))
            };
            if rows > 0 {
                // SAFETY: as matrices with (column, row) strides: yᵀ [out, rows] is `y`
                // with strides (out, 1), W [out, in] is `weight_t` with strides (out, 1)
                // and xᵀ [in, rows] is `xs` with strides (in, 1); every index stays inside
                // the three buffers (`y` and `xs` hold `rows` rows, `weight_t` `in`).
                unsafe {
                    gemm::gemm(
                        self.d_out,
                        rows,
                        self.d_in,
                        y.as_mut_ptr(),
                        self.d_out as isize,
                        1,
                        true,
                        self.weight_t.as_ptr(),
                        self.d_out as isize,
                        1,
                        xs.as_ptr(),
                        self.d_in as isize,
                        1,
                        1.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        parallelism,
                    );
                }
            }
            Tensor::from_vec(y, out_dims.as_slice(), x.device())
        });
        match fast {
            Some(y) => y,
            None => candle_core::bail!("linear: expected an f32 input, got {:?}", x.dtype()),
        }
    }
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
    let pool = candle_core::utils::barrier_pool();
    let threads = (pool.n_workers() + 1).min(x.len().div_ceil(4));
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
    pool.execute(|tid| {
        let first = tid * per;
        if let Some(acc) = partial.get(tid).filter(|_| first < x.len()) {
            let last = (first + per).min(x.len());
            let mut acc = acc.lock().unwrap_or_else(|e| e.into_inner());
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
