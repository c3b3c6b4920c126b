//! Matrix products in 8-bit integers, for layers whose f32 products already run at
//! the cores' f32 peak (S3Gen's flow with `CHATTERBOX_S3GEN_QUANT=int8`).
//!
//! An AVX-512 VNNI instruction (`vpdpbusd`) adds sixteen sums of four products of an
//! unsigned and a signed byte to sixteen 32-bit integers: 64 multiply-adds where an
//! f32 fused multiply-add does 16, at the same rate of two per cycle per core here
//! (≈ 745 G multiply-adds per second on one Xeon core against 174 G for f32). So:
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
//! VNNI, [`vnni_available`] says so and callers keep their f32 products (the portable
//! integer loop here is for testing the fast one, not for speed).

use candle_core::Result;

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

/// Whether this CPU has AVX-512 VNNI, which makes [`Int8Matrix`] products fast.
pub fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
        let largest: Vec<f32> = (0..n)
            .map(|j| column(j)[..k].iter().fold(0f32, |m, v| m.max(v.abs())))
            .collect();
        let mut q = Quantiser::new(k, n, &largest);
        for j in 0..n {
            for (i, &v) in column(j)[..k].iter().enumerate() {
                q.put(i, j, v);
            }
        }
        q.finish()
    }

    /// Quantises `W` [k, n] given row by row: `row(i)` holds `W[i, ..]` (`n` values;
    /// a head's values).
    pub fn from_rows<'a>(k: usize, n: usize, row: impl Fn(usize) -> &'a [f32]) -> Self {
        let mut largest = vec![0f32; n];
        for i in 0..k {
            for (m, v) in largest.iter_mut().zip(&row(i)[..n]) {
                *m = m.max(v.abs());
            }
        }
        let mut q = Quantiser::new(k, n, &largest);
        for i in 0..k {
            for (j, &v) in row(i)[..n].iter().enumerate() {
                q.put(i, j, v);
            }
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
        let (k, n) = (self.k, self.n);
        let fast = vnni_available();
        let mut block = QuantisedBlock::new(self.k4);
        let mut tile = [[0f32; PANEL]; MR];
        for b in blocks {
            let first_row = b * MR;
            let live = MR.min(rows - first_row);
            for r in 0..MR {
                let row = (r < live).then(|| {
                    let start = (first_row + r) * stride;
                    &x[start..start + k]
                });
                block.set_row(r, row, fast);
            }
            for p in 0..n.div_ceil(PANEL) {
                let cols = p * PANEL..(p + 1) * PANEL;
                let columns = Columns {
                    scales: &self.scales[cols.clone()],
                    sums: &self.sums[cols.clone()],
                    bias: &bias[cols],
                };
                multiply_block(&block, self.panel(p), &columns, &mut tile, fast);
                let first = p * PANEL;
                let width = PANEL.min(n - first);
                for (r, values) in tile.iter().enumerate().take(live) {
                    // SAFETY: by the caller's contract for row first_row + r, whose
                    // columns first..first + width lie inside it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            values.as_ptr(),
                            dst.at((first_row + r) * dst_stride + first),
                            width,
                        );
                    }
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
        }
    }

    /// `W[i, j] = v`.
    #[inline(always)]
    fn put(&mut self, i: usize, j: usize, v: f32) {
        // Round to the nearest (ties to even) by the 1.5·2²³ trick, exact below 2²²
        // in magnitude, and without a library call.
        const MAGIC: f32 = 12_582_912.0;
        let q = ((v * self.inverse[j] + MAGIC) - MAGIC).clamp(-127.0, 127.0) as i8;
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

/// `MR` input rows in unsigned bytes, `[MR][k4]` (values past `k`, and rows past
/// the input, are zeros), each with its scale and zero point:
/// `x ≈ scale · (q − zero)`.
struct QuantisedBlock {
    values: Vec<u8>,
    k4: usize,
    scales: [f32; MR],
    zeros: [f32; MR],
}

impl QuantisedBlock {
    fn new(k4: usize) -> Self {
        Self {
            values: vec![0; MR * k4],
            k4,
            scales: [0.0; MR],
            zeros: [0.0; MR],
        }
    }

    /// Quantises `row` (`None`: a row of zeros) into row `r`, over its range with
    /// zero included.
    fn set_row(&mut self, r: usize, row: Option<&[f32]>, fast: bool) {
        let out = &mut self.values[r * self.k4..(r + 1) * self.k4];
        let (lo, hi) = row.map_or((0.0, 0.0), |row| row_range(row, fast));
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
        quantise_values(row, &mut out[..row.len()], 1.0 / scale, zero, fast);
        (self.scales[r], self.zeros[r]) = (scale, zero);
    }
}

/// One panel's per-column values for turning integer sums into outputs.
struct Columns<'a> {
    scales: &'a [f32],
    sums: &'a [f32],
    bias: &'a [f32],
}

/// The smallest and largest of `row` and zero.
fn row_range(row: &[f32], fast: bool) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` is `vnni_available()`, which includes AVX-512F.
        return unsafe { row_range_avx512(row) };
    }
    let _ = fast;
    row.iter()
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `out_i = clamp(round(row_i · inv_scale) + zero, 0, 255)`, rounding half to even.
fn quantise_values(row: &[f32], out: &mut [u8], inv_scale: f32, zero: f32, fast: bool) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: as in `row_range`.
        unsafe { quantise_values_avx512(row, out, inv_scale, zero) };
        return;
    }
    let _ = fast;
    for (o, &v) in out.iter_mut().zip(row) {
        *o = ((v * inv_scale).round_ties_even() + zero).clamp(0.0, 255.0) as u8;
    }
}

/// `tile[r][j]` = row `r` of the block times column `j` of the panel, as f32:
/// `(Σ_i q_ri · w_ij − zero_r · Σ_i w_ij) · scale_r · scale_j + bias_j`.
fn multiply_block(
    block: &QuantisedBlock,
    panel: &[i8],
    columns: &Columns,
    tile: &mut [[f32; PANEL]; MR],
    fast: bool,
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
    if fast {
        // SAFETY: `fast` is `vnni_available()`; the sizes are as asserted above.
        unsafe { multiply_block_vnni(block, panel, columns, tile) };
        return;
    }
    let _ = fast;
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

/// [`row_range`] in AVX-512.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_range_avx512(row: &[f32]) -> (f32, f32) {
    use std::arch::x86_64::*;
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut chunks = row.chunks_exact(16);
    for chunk in &mut chunks {
        // SAFETY: a chunk is 16 values.
        let v = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
    }
    let (mut lo, mut hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
    for &v in chunks.remainder() {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo, hi)
}

/// [`quantise_values`] in AVX-512.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantise_values_avx512(row: &[f32], out: &mut [u8], inv_scale: f32, zero: f32) {
    use std::arch::x86_64::*;
    let (inv, z) = (_mm512_set1_ps(inv_scale), _mm512_set1_ps(zero));
    let (floor, ceiling) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    let whole = row.len().min(out.len()) / 16 * 16;
    for i in (0..whole).step_by(16) {
        // SAFETY: i + 16 ≤ both lengths.
        unsafe {
            let v = _mm512_mul_ps(_mm512_loadu_ps(row.as_ptr().add(i)), inv);
            let v = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            let v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, z), floor), ceiling);
            let bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v));
            _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), bytes);
        }
    }
    for (o, &v) in out[whole..].iter_mut().zip(&row[whole..]) {
        *o = ((v * inv_scale).round_ties_even() + zero).clamp(0.0, 255.0) as u8;
    }
}

/// [`multiply_block`] with `vpdpbusd`: per group of four input values, the panel's
/// four weight vectors are loaded once and each row's four bytes, broadcast, add
/// into its four accumulators; the sums become f32 in registers.
///
/// # Safety
/// The CPU has AVX-512F, BW and VNNI; the sizes are as [`multiply_block`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn multiply_block_vnni(
    block: &QuantisedBlock,
    panel: &[i8],
    columns: &Columns,
    tile: &mut [[f32; PANEL]; MR],
) {
    use std::arch::x86_64::*;
    let k4 = block.k4;
    let mut sums = [[_mm512_setzero_si512(); 4]; MR];
    let (x, w) = (block.values.as_ptr(), panel.as_ptr());
    for quad in 0..k4 / 4 {
        // SAFETY: quad < k4 / 4, so the four vectors lie inside the panel's
        // k4 / 4 · QUAD bytes, and each row's four bytes inside its k4.
        unsafe {
            let wq = w.add(quad * QUAD);
            let wv = [
                _mm512_loadu_si512(wq.cast()),
                _mm512_loadu_si512(wq.add(64).cast()),
                _mm512_loadu_si512(wq.add(128).cast()),
                _mm512_loadu_si512(wq.add(192).cast()),
            ];
            for (r, row) in sums.iter_mut().enumerate() {
                let four = x.add(r * k4 + quad * 4).cast::<i32>().read_unaligned();
                let a = _mm512_set1_epi32(four);
                for (s, &wv) in row.iter_mut().zip(&wv) {
                    *s = _mm512_dpbusd_epi32(*s, a, wv);
                }
            }
        }
    }
    for (r, (row, out)) in sums.iter().zip(tile.iter_mut()).enumerate() {
        let zero = _mm512_set1_ps(block.zeros[r]);
        let scale = _mm512_set1_ps(block.scales[r]);
        for (v, s) in row.iter().enumerate() {
            let at = v * 16;
            // SAFETY: the column slices are PANEL long (asserted), and each vector
            // covers 16 of them.
            unsafe {
                let col_scale = _mm512_loadu_ps(columns.scales.as_ptr().add(at));
                let col_sum = _mm512_loadu_ps(columns.sums.as_ptr().add(at));
                let bias = _mm512_loadu_ps(columns.bias.as_ptr().add(at));
                let centred = _mm512_fnmadd_ps(zero, col_sum, _mm512_cvtepi32_ps(*s));
                let value = _mm512_fmadd_ps(centred, _mm512_mul_ps(scale, col_scale), bias);
                _mm512_storeu_ps(out.as_mut_ptr().add(at), value);
            }
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
    fn the_avx512_paths_equal_the_portable_ones() {
        if !vnni_available() {
            eprintln!("no AVX-512 VNNI on this CPU: the fast kernel is not run");
            return;
        }
        let k = 35usize;
        let k4 = k.div_ceil(4) * 4;
        let x = random(MR * k, 6);
        let (mut fast, mut slow) = (QuantisedBlock::new(k4), QuantisedBlock::new(k4));
        for r in 0..MR {
            let row = (r != 2).then(|| &x[r * k..(r + 1) * k]);
            fast.set_row(r, row, true);
            slow.set_row(r, row, false);
        }
        assert_eq!(fast.values, slow.values);
        assert_eq!((fast.scales, fast.zeros), (slow.scales, slow.zeros));
        let panel: Vec<i8> = (0..k4 / 4 * QUAD)
            .map(|i| ((i * 91 % 255) as i32 - 127) as i8)
            .collect();
        let (scales, sums, bias) = (random(PANEL, 7), random(PANEL, 8), random(PANEL, 9));
        let columns = Columns {
            scales: &scales,
            sums: &sums,
            bias: &bias,
        };
        let (mut a, mut b) = ([[0f32; PANEL]; MR], [[0f32; PANEL]; MR]);
        multiply_block(&fast, &panel, &columns, &mut a, true);
        multiply_block(&slow, &panel, &columns, &mut b, false);
        for (ra, rb) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!(
                (ra - rb).abs() <= 1e-4 * rb.abs().max(1.0),
                "{ra} against {rb}"
            );
        }
        assert!(b.iter().flatten().any(|&v| v != 0.0));
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
