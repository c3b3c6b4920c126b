//! Matrix products in 8-bit integers, for layers whose f32 products already run at
//! the cores' f32 peak (S3Gen's flow with `CHATTERBOX_S3GEN_QUANT=int8`).
//!
//! An AVX-512 VNNI instruction (`vpdpbusd`) adds sixteen sums of four products of an
//! unsigned and a signed byte to sixteen 32-bit integers: 64 multiply-adds where an
//! f32 fused multiply-add does 16, at the same rate of two per cycle per core here
//! (≈ 745 G multiply-adds per second on one Xeon core against 174 G for f32). With
//! AVX2 only, the bytes are widened to 16 bits and `vpmaddwd` adds pairs of their
//! products: 16 multiply-adds per instruction, with an add to follow, which made
//! the flow's products 1.3–1.5× faster than f32 on an AMD EPYC (AVX2). The integer
//! sums are exact either way, so both kernels give the same results. So:
//!
//! - the weight `W` [k, n] is quantised once, per column (output channel):
//!   `W[i, j] ≈ s_j · w_ij` with `w_ij` ∈ −127..=127 and `s_j = max_i |W[i, j]| / 127`;
//! - each row of the input is quantised when the product runs, with its own scale
//!   and zero point over its range (zero included): `x_i ≈ a · (q_i − z)`, `q_i` ∈
//!   0..=255, which keeps all 256 levels for the one-sided rows a GELU or Mish leaves;
//! - then `Σ_i x_i W[i, j] ≈ a · s_j · (Σ_i q_i w_ij − z · Σ_i w_ij)`: one integer
//!   product, the weight's column sums kept from the load, and the row's and
//!   column's scales applied once per output value.
//!
//! The error is that of rounding each input row to 1/255 of its range and each
//! weight column to 1/254 of its largest value: ~40 dB below the signal for one
//! product of random values (tested), far more than f32's. Where the CPU lacks AVX-512
//! VNNI or AVX2, [`int8_available`] says so and callers keep their f32 products (the
//! portable integer loop here is for testing the fast ones, not for speed).

use candle_core::Result;

use super::fast_math::{exp_f32, simd_dispatch};
#[cfg(target_arch = "x86_64")]
mod x86;
use super::product::check_strided;
use super::threads::{on_workers, worker_count, SharedOut};

/// Columns per panel: the kernel's four AVX-512 vectors of 16 sums.
const PANEL: usize = 64;

/// Rows that one pass of the kernel multiplies by a panel: 6 rows × 4 vectors = 24
/// accumulators, with the panel's 4 weight vectors and a broadcast input, of the 32
/// AVX-512 registers.
const MR: usize = 6;

/// Bytes of one panel's four rows (`k` values `4q..4q + 4`) for its 64 columns.
const QUAD: usize = 4 * PANEL;

/// Below this many multiply-adds the product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// Which integer kernel multiplies: AVX-512 VNNI (`vpdpbusd`, 64 multiply-adds per
/// instruction), AVX2 (`vpmaddwd` on the bytes widened to 16 bits, 16 per
/// instruction, the sums as exact), or the portable loop (for testing the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Vnni,
    Avx2,
    Portable,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                return Self::Vnni;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Self::Avx2;
            }
        }
        Self::Portable
    }
}

/// Whether this CPU multiplies [`Int8Matrix`] products fast: with AVX-512 VNNI or
/// AVX2 (x86-64). Elsewhere callers keep their f32 products.
pub fn int8_available() -> bool {
    Kernel::detect() != Kernel::Portable
}

/// 64 bytes on a 64-byte boundary: one cache line, one AVX-512 vector.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([i8; 64]);

/// A weight `W` [k, n] in signed bytes, one scale per column, laid out for the
/// kernel: panels of 64 columns; in a panel, for each group of four rows, each
/// column's four values side by side (`[⌈n/64⌉][⌈k/4⌉][64][4]`, zeros past `k` and
/// `n`).
#[derive(Clone)]
pub struct Int8Matrix {
    values: Vec<Line>,
    /// `k` rounded up to a multiple of 4.
    k4: usize,
    k: usize,
    n: usize,
    /// Per column (padded to whole panels with zeros): its scale, and the sum of its
    /// quantised values.
    scales: Vec<f32>,
    sums: Vec<f32>,
}

impl std::fmt::Debug for Int8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Int8Matrix([{}, {}])", self.k, self.n)
    }
}

impl Int8Matrix {
    /// Quantises `W` [k, n], given value by value as `w(row, column)`.
    pub fn from_fn(k: usize, n: usize, w: impl Fn(usize, usize) -> f32) -> Self {
        let largest: Vec<f32> = (0..n)
            .map(|j| (0..k).map(|i| w(i, j).abs()).fold(0f32, f32::max))
            .collect();
        let mut q = Quantiser::new(k, n, &largest);
        for j in 0..n {
            for i in 0..k {
                q.put(i, j, w(i, j));
            }
        }
        q.finish()
    }

    /// Quantises `W` [k, n] given column by column: `column(j)` holds `W[.., j]`
    /// (`k` values; a head's keys, as `kᵀ`).
    pub fn from_columns<'a>(k: usize, n: usize, column: impl Fn(usize) -> &'a [f32]) -> Self {
        let largest: Vec<f32> = (0..n).map(|j| largest_magnitude(&column(j)[..k])).collect();
        let mut q = Quantiser::new(k, n, &largest);
        for j in 0..n {
            q.put_column(j, &column(j)[..k]);
        }
        q.finish()
    }

    /// Quantises `W` [k, n] given row by row: `row(i)` holds `W[i, ..]` (`n` values;
    /// a head's values).
    pub fn from_rows<'a>(k: usize, n: usize, row: impl Fn(usize) -> &'a [f32]) -> Self {
        let mut largest = vec![0u32; n];
        for i in 0..k {
            widen_magnitudes(&mut largest, &row(i)[..n]);
        }
        let largest: Vec<f32> = largest.into_iter().map(f32::from_bits).collect();
        let mut q = Quantiser::new(k, n, &largest);
        for i in 0..k {
            q.put_row(i, &row(i)[..n]);
        }
        q.finish()
    }

    /// The panel `p` as bytes.
    fn panel(&self, p: usize) -> &[i8] {
        let lines = self.k4 / 4 * QUAD / 64;
        let panel = &self.values[p * lines..(p + 1) * lines];
        // SAFETY: `Line` is 64 plain bytes with no padding; the slice covers
        // `lines · 64` of them.
        unsafe { std::slice::from_raw_parts(panel.as_ptr().cast::<i8>(), lines * 64) }
    }

    /// `x·W + b` for `rows` rows `stride` values apart in `x` (row `r` is
    /// `x[r·stride .. r·stride + k]`, rows may overlap, as in
    /// `PackedMatrix::strided_times`) → [rows, n] row-major. A bias that is not `n`
    /// values, or rows that run past `x`, are an error.
    pub fn strided_times(
        &self,
        x: &[f32],
        stride: usize,
        rows: usize,
        bias: &[f32],
    ) -> Result<Vec<f32>> {
        let (k, n) = (self.k, self.n);
        check_strided("int8 matrix", (k, n), x.len(), (stride, rows), bias.len())?;
        let mut y = vec![0f32; rows * n];
        if rows == 0 || n == 0 {
            return Ok(y);
        }
        let blocks = rows.div_ceil(MR);
        let shares = if rows * k * n < PARALLEL_MIN_MACS {
            1
        } else {
            worker_count().min(blocks)
        };
        let per = blocks.div_ceil(shares);
        let bias = self.padded(bias);
        let dst = SharedOut(y.as_mut_ptr());
        on_workers(shares, |s| {
            let blocks = s * per..((s + 1) * per).min(blocks);
            // SAFETY: the rows were checked against `x` above, `y` holds rows · n
            // values, and each share writes the rows of its own blocks.
            unsafe { self.multiply_blocks(x, stride, rows, &bias, blocks, dst, n) };
        });
        Ok(y)
    }

    /// `x·W` for `rows` rows `stride` values apart in `x`, on the calling thread,
    /// with no bias: row `r` goes to `dst`'s values `r·dst_stride ..` (`n` of them).
    ///
    /// # Safety
    /// Those output values lie inside `dst`'s buffer and nothing else reads or writes
    /// them during the call.
    ///
    /// # Panics
    /// When the rows run past `x`.
    pub(crate) unsafe fn times_to(
        &self,
        x: &[f32],
        stride: usize,
        rows: usize,
        dst: SharedOut,
        dst_stride: usize,
    ) {
        if rows == 0 || self.n == 0 {
            return;
        }
        assert!(
            (rows - 1) * stride + self.k <= x.len(),
            "int8 matrix: rows past the input"
        );
        let bias = self.padded(&[]);
        // SAFETY: the rows were checked above, the output by the caller's contract.
        unsafe {
            self.multiply_blocks(
                x,
                stride,
                rows,
                &bias,
                0..rows.div_ceil(MR),
                dst,
                dst_stride,
            );
        }
    }

    /// `bias` (or zeros, when empty) padded to whole panels.
    fn padded(&self, bias: &[f32]) -> Vec<f32> {
        let mut padded = vec![0f32; self.n.div_ceil(PANEL) * PANEL];
        padded[..bias.len()].copy_from_slice(bias);
        padded
    }

    /// Rows `MR·blocks.start .. min(MR·blocks.end, rows)` of `x·W + bias` into
    /// `dst`, row `r` at `r·dst_stride`: each block of rows quantised here (in L1 for
    /// the products that follow), then multiplied by every panel.
    ///
    /// # Safety
    /// The rows lie inside `x`, the output rows inside `dst`'s buffer, and nothing
    /// else writes those output rows meanwhile; `bias` is padded to whole panels.
    #[allow(clippy::too_many_arguments)]
    unsafe fn multiply_blocks(
        &self,
        x: &[f32],
        stride: usize,
        rows: usize,
        bias: &[f32],
        blocks: std::ops::Range<usize>,
        dst: SharedOut,
        dst_stride: usize,
    ) {
        let k = self.k;
        let kernel = Kernel::detect();
        let mut block = QuantisedRows::new(MR, k);
        for b in blocks {
            let first_row = b * MR;
            let live = MR.min(rows - first_row);
            for r in 0..MR {
                let row = (r < live).then(|| {
                    let start = (first_row + r) * stride;
                    &x[start..start + k]
                });
                block.set_row(r, row, kernel);
            }
            // SAFETY: by the caller's contract for these rows.
            unsafe {
                self.multiply_block_rows(
                    block.block(0),
                    live,
                    bias,
                    SharedOut(dst.at(first_row * dst_stride)),
                    dst_stride,
                    kernel,
                );
            }
        }
    }

    /// `x·W` for the first `rows` rows of `x`, already quantised (as
    /// [`QuantisedRows::set_softmax_row`] leaves them), on the calling thread, with no
    /// bias: row `r` goes to `dst`'s values `r·dst_stride ..` (`n` of them).
    ///
    /// # Safety
    /// Those output values lie inside `dst`'s buffer and nothing else reads or writes
    /// them during the call.
    ///
    /// # Panics
    /// When `x` holds rows of another length than `k`, or fewer than `rows` rows.
    pub(crate) unsafe fn times_quantised_to(
        &self,
        x: &QuantisedRows,
        rows: usize,
        dst: SharedOut,
        dst_stride: usize,
    ) {
        assert!(
            x.k4 == self.k4 && rows <= x.rows(),
            "int8 matrix: quantised rows of another size"
        );
        let bias = self.padded(&[]);
        let kernel = Kernel::detect();
        for b in 0..rows.div_ceil(MR) {
            let live = MR.min(rows - b * MR);
            // SAFETY: by the caller's contract for these rows.
            unsafe {
                self.multiply_block_rows(
                    x.block(b),
                    live,
                    &bias,
                    SharedOut(dst.at(b * MR * dst_stride)),
                    dst_stride,
                    kernel,
                );
            }
        }
    }

    /// One block of `MR` quantised rows times every panel, plus `bias`; the first
    /// `live` rows of the result go to `dst`, row `r` at `r·dst_stride`.
    ///
    /// # Safety
    /// Those output rows (`n` values each) lie inside `dst`'s buffer and nothing else
    /// touches them meanwhile; `bias` is padded to whole panels.
    unsafe fn multiply_block_rows(
        &self,
        block: Block,
        live: usize,
        bias: &[f32],
        dst: SharedOut,
        dst_stride: usize,
        kernel: Kernel,
    ) {
        let n = self.n;
        let mut tile = [[0f32; PANEL]; MR];
        // AVX2 reads the inputs as 16-bit values: widened once for every panel.
        let wide: Vec<i16> = match kernel {
            Kernel::Avx2 => block.values.iter().map(|&v| i16::from(v)).collect(),
            _ => Vec::new(),
        };
        for p in 0..n.div_ceil(PANEL) {
            let cols = p * PANEL..(p + 1) * PANEL;
            let columns = Columns {
                scales: &self.scales[cols.clone()],
                sums: &self.sums[cols.clone()],
                bias: &bias[cols],
            };
            multiply_block(&block, &wide, self.panel(p), &columns, &mut tile, kernel);
            let first = p * PANEL;
            let width = PANEL.min(n - first);
            for (r, values) in tile.iter().enumerate().take(live) {
                // SAFETY: by the caller's contract for row r, whose columns
                // first..first + width lie inside it.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        values.as_ptr(),
                        dst.at(r * dst_stride + first),
                        width,
                    );
                }
            }
        }
    }
}

/// An [`Int8Matrix`] being filled: each column's scale from its largest magnitude,
/// then its values in any order.
struct Quantiser {
    values: Vec<Line>,
    k4: usize,
    k: usize,
    n: usize,
    scales: Vec<f32>,
    inverse: Vec<f32>,
    sums: Vec<i32>,
    /// One column's or row's values, rounded (zeros past `k`).
    scratch: Vec<i8>,
}

impl Quantiser {
    fn new(k: usize, n: usize, largest: &[f32]) -> Self {
        let k4 = k.div_ceil(4) * 4;
        let padded = n.div_ceil(PANEL) * PANEL;
        let (mut scales, mut inverse) = (vec![0f32; padded], vec![0f32; padded]);
        for (j, &m) in largest.iter().enumerate().take(n) {
            // A column of zeros (or not finite) reads back as zeros.
            if m.is_finite() && m > 0.0 {
                scales[j] = m / 127.0;
                inverse[j] = 127.0 / m;
            }
        }
        Self {
            values: vec![Line([0; 64]); padded / PANEL * (k4 / 4 * QUAD / 64)],
            k4,
            k,
            n,
            scales,
            inverse,
            sums: vec![0; padded],
            scratch: vec![0; k4.max(n)],
        }
    }

    /// `W[.., j] = column` (`k` values).
    fn put_column(&mut self, j: usize, column: &[f32]) {
        let k = self.k;
        round_scaled(column, self.inverse[j], &mut self.scratch[..k]);
        self.sums[j] += self.scratch[..k].iter().map(|&q| i32::from(q)).sum::<i32>();
        let base = (j / PANEL) * (self.k4 / 4 * QUAD) + (j % PANEL) * 4;
        for (quad, four) in self.scratch[..self.k4].chunks_exact(4).enumerate() {
            // Four bytes at a multiple of 4: inside one line.
            let at = base + quad * QUAD;
            self.values[at / 64].0[at % 64..at % 64 + 4].copy_from_slice(four);
        }
    }

    /// `W[i, ..] = row` (`n` values).
    fn put_row(&mut self, i: usize, row: &[f32]) {
        let n = self.n;
        round_each(row, &self.inverse[..n], &mut self.scratch[..n]);
        for (sum, &q) in self.sums.iter_mut().zip(&self.scratch[..n]) {
            *sum += i32::from(q);
        }
        let panel_bytes = self.k4 / 4 * QUAD;
        let offset = (i / 4) * QUAD + i % 4;
        for (p, chunk) in self.scratch[..n].chunks(PANEL).enumerate() {
            let base = p * panel_bytes + offset;
            for (c, &q) in chunk.iter().enumerate() {
                let at = base + c * 4;
                self.values[at / 64].0[at % 64] = q;
            }
        }
    }

    /// `W[i, j] = v`.
    #[inline(always)]
    fn put(&mut self, i: usize, j: usize, v: f32) {
        let q = round_to_i8(v * self.inverse[j]);
        self.sums[j] += i32::from(q);
        let byte = (j / PANEL) * (self.k4 / 4 * QUAD) + (i / 4) * QUAD + (j % PANEL) * 4 + i % 4;
        self.values[byte / 64].0[byte % 64] = q;
    }

    fn finish(self) -> Int8Matrix {
        Int8Matrix {
            values: self.values,
            k4: self.k4,
            k: self.k,
            n: self.n,
            scales: self.scales,
            sums: self.sums.iter().map(|&s| s as f32).collect(),
        }
    }
}

/// `x` rounded to the nearest integer (ties to even, by the 1.5·2²³ trick: exact
/// below 2²² in magnitude, and no library call, so that loops of it vectorise),
/// within ±127.
#[inline(always)]
fn round_to_i8(x: f32) -> i8 {
    let x = round_even(x);
    let x = if x > -127.0 { x } else { -127.0 };
    let x = if x < 127.0 { x } else { 127.0 };
    // The low byte of x + 1.5·2²³ is x's two's complement (NaN went to −127 above).
    (x + MAGIC).to_bits() as u8 as i8
}

simd_dispatch! {
    /// `out_i = round(src_i · inv)` within ±127.
    fn round_scaled(src: &[f32], inv: f32, out: &mut [i8]) => round_scaled_any
}

#[inline(always)]
fn round_scaled_any(src: &[f32], inv: f32, out: &mut [i8]) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = round_to_i8(v * inv);
    }
}

simd_dispatch! {
    /// `out_i = round(src_i · inv_i)` within ±127.
    fn round_each(src: &[f32], inv: &[f32], out: &mut [i8]) => round_each_any
}

#[inline(always)]
fn round_each_any(src: &[f32], inv: &[f32], out: &mut [i8]) {
    for ((o, &v), &inv) in out.iter_mut().zip(src).zip(inv) {
        *o = round_to_i8(v * inv);
    }
}

simd_dispatch! {
    /// The largest `|v|` of `src` (0 when empty; NaN, as the largest bits, when any
    /// value is NaN).
    fn largest_magnitude(src: &[f32]) -> f32 => largest_magnitude_any
}

#[inline(always)]
fn largest_magnitude_any(src: &[f32]) -> f32 {
    // On the magnitudes' bits, an integer maximum, which vectorises.
    let bits = src
        .iter()
        .fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
    f32::from_bits(bits)
}

simd_dispatch! {
    /// `largest_j = max(largest_j, |row_j|)` on the magnitudes' bits (as
    /// [`largest_magnitude`]).
    fn widen_magnitudes(largest: &mut [u32], row: &[f32]) => widen_magnitudes_any
}

#[inline(always)]
fn widen_magnitudes_any(largest: &mut [u32], row: &[f32]) {
    for (m, v) in largest.iter_mut().zip(row) {
        *m = (*m).max(v.to_bits() & 0x7fff_ffff);
    }
}

/// Input rows in unsigned bytes, as the kernel reads them: `[rows][k4]` (values
/// past `k` are zeros), each row with its scale and zero point,
/// `x ≈ scale · (q − zero)`. Rows come in blocks of `MR`.
pub(crate) struct QuantisedRows {
    values: Vec<u8>,
    k: usize,
    k4: usize,
    scales: Vec<f32>,
    zeros: Vec<f32>,
}

/// One block of `MR` rows of [`QuantisedRows`].
#[derive(Clone, Copy)]
struct Block<'a> {
    values: &'a [u8],
    k4: usize,
    scales: &'a [f32],
    zeros: &'a [f32],
}

impl QuantisedRows {
    /// Room for `rows` (rounded up to whole blocks) rows of `k` values, all zeros.
    pub(crate) fn new(rows: usize, k: usize) -> Self {
        let (rows, k4) = (rows.div_ceil(MR) * MR, k.div_ceil(4) * 4);
        Self {
            values: vec![0; rows * k4],
            k,
            k4,
            scales: vec![0.0; rows],
            zeros: vec![0.0; rows],
        }
    }

    fn rows(&self) -> usize {
        self.scales.len()
    }

    fn block(&self, b: usize) -> Block<'_> {
        let rows = b * MR..(b + 1) * MR;
        Block {
            values: &self.values[rows.start * self.k4..rows.end * self.k4],
            k4: self.k4,
            scales: &self.scales[rows.clone()],
            zeros: &self.zeros[rows],
        }
    }

    /// Quantises `row` (`None`: a row of zeros) into row `r`, over its range with
    /// zero included.
    fn set_row(&mut self, r: usize, row: Option<&[f32]>, kernel: Kernel) {
        let out = &mut self.values[r * self.k4..(r + 1) * self.k4];
        let (lo, hi) = row.map_or((0.0, 0.0), |row| row_range(row, kernel));
        let scale = (hi - lo) / 255.0;
        let row = match row {
            Some(row) if scale > 0.0 && scale.is_finite() => row,
            // All zeros (or not finite): every value reads back as zero.
            _ => {
                out.fill(0);
                (self.scales[r], self.zeros[r]) = (0.0, 0.0);
                return;
            }
        };
        let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
        quantise_values(row, &mut out[..row.len()], 1.0 / scale, zero, kernel);
        (self.scales[r], self.zeros[r]) = (scale, zero);
    }

    /// Row `r` becomes a softmax's unnormalised weights of the `k` scores in
    /// `scores`, `e^(s − max)` in `0..=1`, in steps of 1/255 (scale 1/255, zero
    /// point 0): one pass for the exponentials and the rounding, none for a range.
    /// Returns the sum of the weights before rounding, which normalises them (one
    /// over the sum of the rounded ones moves the mass of the many weights that round
    /// to nothing onto the others: 26 against 30 dB on a flat softmax of 700).
    ///
    /// # Panics
    /// When `scores` is not `k` values long or `r` is past the rows.
    pub(crate) fn set_softmax_row(&mut self, r: usize, scores: &[f32]) -> f32 {
        assert!(scores.len() == self.k && r < self.rows());
        let out = &mut self.values[r * self.k4..r * self.k4 + self.k];
        (self.scales[r], self.zeros[r]) = (1.0 / 255.0, 0.0);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above; `out` is as long as
            // `scores`.
            return unsafe { x86::softmax_bytes_avx512(scores, out) };
        }
        softmax_bytes(scores, out)
    }
}

/// [`QuantisedRows::set_softmax_row`]'s weights, with the library's rounding and
/// [`exp_f32`].
fn softmax_bytes(scores: &[f32], out: &mut [u8]) -> f32 {
    softmax_bytes_lanes(scores, out)
}

simd_dispatch! {
    /// [`softmax_bytes`] in sixteen lanes, so that it vectorises.
    fn softmax_bytes_lanes(scores: &[f32], out: &mut [u8]) -> f32 => softmax_bytes_any
}

#[inline(always)]
fn softmax_bytes_any(scores: &[f32], out: &mut [u8]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = scores.chunks_exact(16);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = lanes
        .iter()
        .chain(chunks.remainder())
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sums = [0f32; 16];
    let weigh = |o: &mut u8, s: f32| {
        let w = exp_f32(s - max);
        *o = to_byte(round_even(255.0 * w));
        w
    };
    let (body, tail) = scores.split_at(scores.len() / 16 * 16);
    let (out_body, out_tail) = out.split_at_mut(body.len());
    for (chunk, out) in body.chunks_exact(16).zip(out_body.chunks_exact_mut(16)) {
        for ((acc, o), &s) in sums.iter_mut().zip(out).zip(chunk) {
            *acc += weigh(o, s);
        }
    }
    let mut sum = sums.iter().sum::<f32>();
    for (o, &s) in out_tail.iter_mut().zip(tail) {
        sum += weigh(o, s);
    }
    sum
}

/// One panel's per-column values for turning integer sums into outputs.
struct Columns<'a> {
    scales: &'a [f32],
    sums: &'a [f32],
    bias: &'a [f32],
}

/// The smallest and largest of `row` and zero.
fn row_range(row: &[f32], kernel: Kernel) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni {
        // SAFETY: the VNNI kernel's CPU has AVX-512F.
        return unsafe { x86::row_range_avx512(row) };
    }
    let _ = kernel;
    row_range_lanes(row)
}

simd_dispatch! {
    /// [`row_range`] in sixteen lanes, so that it vectorises.
    fn row_range_lanes(row: &[f32]) -> (f32, f32) => row_range_any
}

#[inline(always)]
fn row_range_any(row: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([0f32; 16], [0f32; 16]);
    let mut chunks = row.chunks_exact(16);
    for chunk in &mut chunks {
        for ((lo, hi), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(chunk) {
            *lo = if v < *lo { v } else { *lo };
            *hi = if v > *hi { v } else { *hi };
        }
    }
    let lanes = lo.iter().zip(&hi).map(|(&lo, &hi)| (lo, hi));
    lanes
        .chain(chunks.remainder().iter().map(|&v| (v, v)))
        .fold((0f32, 0f32), |(lo, hi), (l, h)| (lo.min(l), hi.max(h)))
}

/// `out_i = clamp(round(row_i · inv_scale) + zero, 0, 255)`, rounding half to even.
fn quantise_values(row: &[f32], out: &mut [u8], inv_scale: f32, zero: f32, kernel: Kernel) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Vnni {
        // SAFETY: as in `row_range`.
        unsafe { x86::quantise_values_avx512(row, out, inv_scale, zero) };
        return;
    }
    let _ = kernel;
    quantise_values_lanes(row, out, inv_scale, zero);
}

simd_dispatch! {
    /// [`quantise_values`] as a loop that vectorises.
    fn quantise_values_lanes(row: &[f32], out: &mut [u8], inv_scale: f32, zero: f32) => quantise_values_any
}

#[inline(always)]
fn quantise_values_any(row: &[f32], out: &mut [u8], inv_scale: f32, zero: f32) {
    for (o, &v) in out.iter_mut().zip(row) {
        *o = to_byte(round_even(v * inv_scale) + zero);
    }
}

/// The 1.5·2²³ trick: `x` rounded to the nearest integer, ties to even, for
/// |x| < 2²² (no library call, so that loops of it vectorise).
#[inline(always)]
fn round_even(x: f32) -> f32 {
    (x + MAGIC) - MAGIC
}

/// 1.5·2²³: a float in `2²³..2²⁴` has a step of exactly 1.
const MAGIC: f32 = 12_582_912.0;

/// A whole number `x` clamped to `0..=255` as a byte (NaN: 0), read off the low
/// bits of `x + 1.5·2²³` rather than converted, so that loops of it vectorise
/// (Rust's saturating `as u8` from f32 does not).
#[inline(always)]
fn to_byte(x: f32) -> u8 {
    let x = if x > 0.0 { x } else { 0.0 };
    let x = if x < 255.0 { x } else { 255.0 };
    (x + MAGIC).to_bits() as u8
}

/// `tile[r][j]` = row `r` of the block times column `j` of the panel, as f32:
/// `(Σ_i q_ri · w_ij − zero_r · Σ_i w_ij) · scale_r · scale_j + bias_j`.
fn multiply_block(
    block: &Block,
    wide: &[i16],
    panel: &[i8],
    columns: &Columns,
    tile: &mut [[f32; PANEL]; MR],
    kernel: Kernel,
) {
    let k4 = block.k4;
    assert!(
        block.values.len() == MR * k4
            && panel.len() == k4 / 4 * QUAD
            && [columns.scales, columns.sums, columns.bias]
                .iter()
                .all(|c| c.len() == PANEL)
    );
    #[cfg(target_arch = "x86_64")]
    match kernel {
        Kernel::Vnni => {
            // SAFETY: the CPU has AVX-512 VNNI (`Kernel::detect`); the sizes are as
            // asserted above.
            unsafe { x86::multiply_block_vnni(block, panel, columns, tile) };
            return;
        }
        Kernel::Avx2 => {
            assert_eq!(wide.len(), MR * k4);
            // SAFETY: the CPU has AVX2 (`Kernel::detect`); the sizes are as asserted.
            unsafe { x86::multiply_block_avx2(block, wide, panel, columns, tile) };
            return;
        }
        Kernel::Portable => {}
    }
    let _ = (kernel, wide);
    for (r, out) in tile.iter_mut().enumerate() {
        let x = &block.values[r * k4..(r + 1) * k4];
        let mut acc = [0i32; PANEL];
        for (quad, w) in x.chunks_exact(4).zip(panel.chunks_exact(QUAD)) {
            for (j, a) in acc.iter_mut().enumerate() {
                for i in 0..4 {
                    *a += i32::from(quad[i]) * i32::from(w[j * 4 + i]);
                }
            }
        }
        for j in 0..PANEL {
            out[j] = (acc[j] as f32 - block.zeros[r] * columns.sums[j])
                * (block.scales[r] * columns.scales[j])
                + columns.bias[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        // A small xorshift, so the test needs no tensor library.
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn reference(
        x: &[f32],
        stride: usize,
        rows: usize,
        w: &[f32],
        k: usize,
        n: usize,
        b: &[f32],
    ) -> Vec<f32> {
        let mut y = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let mut s = f64::from(b[j]);
                for i in 0..k {
                    s += f64::from(x[r * stride + i]) * f64::from(w[i * n + j]);
                }
                y[r * n + j] = s as f32;
            }
        }
        y
    }

    fn snr_db(got: &[f32], want: &[f32]) -> f64 {
        let signal: f64 = want.iter().map(|&v| f64::from(v).powi(2)).sum();
        let noise: f64 = got
            .iter()
            .zip(want)
            .map(|(&g, &w)| (f64::from(g) - f64::from(w)).powi(2))
            .sum();
        10.0 * (signal / noise).log10()
    }

    #[test]
    fn products_stay_40_db_above_their_rounding() -> Result<()> {
        // Rows below and above a block and a thread's share, `k` not a multiple of
        // 4, whole and partial panels, fewer columns than a panel, one-sided rows.
        for (rows, k, n, shift) in [
            (1usize, 3usize, 5usize, 0f32),
            (7, 33, 70, 0.0),
            (700, 256, 512, 0.0),
            (701, 1024, 256, 0.0),
            (13, 768, 80, 1.0),
        ] {
            let x: Vec<f32> = random(rows * k, 1).iter().map(|v| v + shift).collect();
            let w = random(k * n, 2);
            let b = random(n, 3);
            let want = reference(&x, k, rows, &w, k, n, &b);
            let m = Int8Matrix::from_fn(k, n, |i, j| w[i * n + j]);
            let got = m.strided_times(&x, k, rows, &b)?;
            let snr = snr_db(&got, &want);
            assert!(snr > 40.0, "{rows}x{k}x{n}: {snr:.1} dB");
        }
        Ok(())
    }

    #[test]
    fn overlapping_rows_read_as_windows() -> Result<()> {
        let (rows, c, n) = (50usize, 24usize, 40usize);
        let k = 3 * c;
        let x = random((rows + 2) * c, 4);
        let w = random(k * n, 5);
        let b = vec![0f32; n];
        let want = reference(&x, c, rows, &w, k, n, &b);
        let got = Int8Matrix::from_fn(k, n, |i, j| w[i * n + j]).strided_times(&x, c, rows, &b)?;
        assert!(snr_db(&got, &want) > 40.0);
        Ok(())
    }

    #[test]
    fn the_fast_kernels_equal_the_portable_one() {
        let kernels = match Kernel::detect() {
            Kernel::Vnni => vec![Kernel::Vnni, Kernel::Avx2],
            Kernel::Avx2 => vec![Kernel::Avx2],
            Kernel::Portable => {
                eprintln!("neither AVX-512 VNNI nor AVX2 on this CPU: no fast kernel to run");
                return;
            }
        };
        // Sums of large products (rows near 255, weights near ±127) as well.
        let k = 35usize;
        let k4 = k.div_ceil(4) * 4;
        let x = random(MR * k, 6);
        let mut slow = QuantisedRows::new(MR, k);
        for r in 0..MR {
            slow.set_row(
                r,
                (r != 2).then(|| &x[r * k..(r + 1) * k]),
                Kernel::Portable,
            );
        }
        let panel: Vec<i8> = (0..k4 / 4 * QUAD)
            .map(|i| ((i * 91 % 255) as i32 - 127) as i8)
            .collect();
        let (scales, sums, bias) = (random(PANEL, 7), random(PANEL, 8), random(PANEL, 9));
        let columns = Columns {
            scales: &scales,
            sums: &sums,
            bias: &bias,
        };
        let mut want = [[0f32; PANEL]; MR];
        multiply_block(
            &slow.block(0),
            &[],
            &panel,
            &columns,
            &mut want,
            Kernel::Portable,
        );
        assert!(want.iter().flatten().any(|&v| v != 0.0));
        for kernel in kernels {
            let mut fast = QuantisedRows::new(MR, k);
            for r in 0..MR {
                fast.set_row(r, (r != 2).then(|| &x[r * k..(r + 1) * k]), kernel);
            }
            assert_eq!(fast.values, slow.values, "{kernel:?}");
            assert_eq!((&fast.scales, &fast.zeros), (&slow.scales, &slow.zeros));
            let wide: Vec<i16> = fast.values.iter().map(|&v| i16::from(v)).collect();
            let mut got = [[0f32; PANEL]; MR];
            multiply_block(&fast.block(0), &wide, &panel, &columns, &mut got, kernel);
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "{kernel:?}: {g} against {w}"
                );
            }
        }
    }

    #[test]
    fn columns_and_rows_quantise_as_value_by_value() {
        // Whole and partial panels, `k` not a multiple of 4, a column of zeros.
        let (k, n) = (70usize, 130usize);
        let w: Vec<f32> = random(k * n, 10)
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % n == 5 { 0.0 } else { v })
            .collect();
        let by_value = Int8Matrix::from_fn(k, n, |i, j| w[i * n + j]);
        let columns: Vec<Vec<f32>> = (0..n)
            .map(|j| (0..k).map(|i| w[i * n + j]).collect())
            .collect();
        let by_column = Int8Matrix::from_columns(k, n, |j| &columns[j]);
        let by_row = Int8Matrix::from_rows(k, n, |i| &w[i * n..(i + 1) * n]);
        for m in [&by_column, &by_row] {
            assert_eq!(m.scales, by_value.scales);
            assert_eq!(m.sums, by_value.sums);
            let (a, b) = (m.panel(0), by_value.panel(0));
            assert_eq!((a, m.panel(2)), (b, by_value.panel(2)));
        }
    }

    #[test]
    fn softmax_rows_round_their_weights() {
        // A row longer than a vector with a partial one at its end, and a row with a
        // wide spread; the AVX-512 path within one step of the portable one.
        for (len, spread) in [(37usize, 4f32), (700, 12.0), (3, 0.0)] {
            let scores: Vec<f32> = random(len, 11).iter().map(|v| v * spread).collect();
            let mut portable = vec![0u8; len];
            let sum = softmax_bytes(&scores, &mut portable);
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for (&q, &s) in portable.iter().zip(&scores) {
                let want = 255.0 * f64::from(s - max).exp();
                assert!(
                    (f64::from(q) - want).abs() <= 0.5 + 1e-3,
                    "{q} against {want}"
                );
            }
            let exact: f64 = scores.iter().map(|&s| f64::from(s - max).exp()).sum();
            assert!(
                (f64::from(sum) - exact).abs() < 1e-5 * exact,
                "{sum} against {exact}"
            );
            let mut rows = QuantisedRows::new(2, len);
            let fast_sum = rows.set_softmax_row(1, &scores);
            let fast = &rows.block(0).values[rows.k4..rows.k4 + len];
            assert!(
                (fast_sum - sum).abs() < 1e-5 * sum,
                "{fast_sum} against {sum}"
            );
            assert!(
                fast.iter()
                    .zip(&portable)
                    .all(|(&a, &b)| a.abs_diff(b) <= 1),
                "{fast:?} against {portable:?}"
            );
            assert!(fast.contains(&255));
        }
    }

    #[test]
    fn quantised_rows_multiply_as_the_rows_they_hold() {
        // Softmax weights of 8 rows (a whole block and part of one) times `V`:
        // against the same weights in f32, through `times_to`.
        let (rows, k, n) = (8usize, 45usize, 70usize);
        let scores = random(rows * k, 12);
        let w = random(k * n, 13);
        let m = Int8Matrix::from_fn(k, n, |i, j| w[i * n + j]);
        let mut quantised = QuantisedRows::new(rows, k);
        let mut weights = vec![0f32; rows * k];
        for r in 0..rows {
            quantised.set_softmax_row(r, &scores[r * k..(r + 1) * k]);
            for (x, &q) in weights[r * k..(r + 1) * k]
                .iter_mut()
                .zip(&quantised.block(r / MR).values[(r % MR) * quantised.k4..])
            {
                *x = f32::from(q) / 255.0;
            }
        }
        let (mut got, mut want) = (vec![0f32; rows * n], vec![0f32; rows * n]);
        // SAFETY: both outputs hold rows · n values, owned here.
        unsafe {
            m.times_quantised_to(&quantised, rows, SharedOut(got.as_mut_ptr()), n);
            m.times_to(&weights, k, rows, SharedOut(want.as_mut_ptr()), n);
        }
        assert!(snr_db(&got, &want) > 60.0, "{:.1} dB", snr_db(&got, &want));
        let reference = reference(&weights, k, rows, &w, k, n, &vec![0.0; n]);
        assert!(snr_db(&got, &reference) > 40.0);
    }

    #[test]
    fn zeros_constant_rows_and_bad_sizes() -> Result<()> {
        let m = Int8Matrix::from_fn(4, 2, |i, j| (i + j) as f32);
        // A row of zeros gives the bias; a constant row is read back exactly enough.
        let y = m.strided_times(&[0.0; 4], 4, 1, &[1.0, 2.0])?;
        assert_eq!(y, vec![1.0, 2.0]);
        let y = m.strided_times(&[2.0; 4], 4, 1, &[0.0, 0.0])?;
        assert!(
            (y[0] - 12.0).abs() < 0.1 && (y[1] - 20.0).abs() < 0.1,
            "{y:?}"
        );
        assert!(m.strided_times(&[0.0; 3], 4, 1, &[0.0; 2]).is_err());
        assert!(m.strided_times(&[0.0; 4], 4, 1, &[0.0; 3]).is_err());
        assert!(m.strided_times(&[], 4, 0, &[0.0; 2])?.is_empty());
        Ok(())
    }
}
