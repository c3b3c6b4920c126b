//! Products by GGML-quantised weights (`Q8_0`, `Q4_K`) for inputs of many rows where
//! candle has no fast kernel for them.
//!
//! Candle's `QMatMul` runs a product on repacked weights with integer dot products
//! (x86: AVX-512 VNNI or AVX-VNNI, and for `Q4_K` AVX2 as well) when its dispatch
//! allows, and otherwise the generic `k_quants::matmul`, which takes one dot product
//! per row and output: fine for a decode step's single row, but for T3's prompt of 417
//! positions on an AVX2 machine without VNNI (`Q8_0`) it was 5× slower than f32. There,
//! [`dequantized_times`] dequantises the weight panel by panel (64 output features at a
//! time, into a per-thread buffer) and runs the f32 panel kernel of
//! [`PackedMatrix::strided_times`](super::linear::PackedMatrix::strided_times) on it:
//! the product costs what f32 costs plus one dequantisation of the weight per call, and
//! no f32 copy of the weight is kept.

use std::cell::RefCell;

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8_0, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Result;

use super::fast_math::simd_dispatch;
use super::linear::{add_panel_product, AlignedF32, PANEL};
use super::threads::{on_workers, worker_count, SharedOut};

/// From this many rows a product that candle would run on its generic kernel
/// dequantises panels instead ([`dequantized_times`]). Measured at T3's shapes (1024 →
/// 3072 and 4096 → 1024) on a 2-core Xeon (AVX-512) at candle's AVX2 level: `Q8_0` by
/// the panels took 0.9× candle's time at 4 rows, 0.5× at 8, 0.2× at 41 and 0.12× at
/// 417 (there 1.5× and 1.1× f32's); 1.6–7× at 1 and 2 rows.
pub const DEQUANTIZE_MIN_ROWS: usize = 4;

/// From this many rows a `Q4_K` product dequantises panels where candle would run its
/// AVX2 kernel on a CPU that has AVX-512 (which the f32 kernel then uses): measured as
/// above, candle's kernel was faster up to 64 rows, the panels from 96 on (0.7–0.8× its
/// time at 192 rows, 0.6–0.75× at 417, where candle's took 1.5–1.75× f32's). On CPUs
/// without AVX-512 the f32 kernel is half as wide and candle's is kept (not measured
/// there).
pub const Q4K_OVER_AVX2_MIN_ROWS: usize = 96;

/// Below this many multiply-adds the product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// Values of one row dequantised at a time before they are spread over a panel: four
/// `Q8_0` blocks (a `Q4_K` super-block of 256 is the least it takes).
const CHUNK: usize = 128;

/// Whether candle's `QMatMul` takes its repacked fast path for a `dtype` weight
/// `[n, k]` on this CPU: on x86-64 a mirror of candle 0.11's `repack_x86::select`:
/// `Q4_K` on AVX2 with FMA or better, `Q8_0` at its VNNI levels only (AVX-512 VNNI or
/// AVX-VNNI, unless `MISTRALRS_FORCE_AVX2=1` holds it at AVX2; see [`x86_level`]), both
/// for `n` a multiple of 16 and `k` of 256. Elsewhere `Q4_K` counts as fast and `Q8_0`
/// as not (not measured there).
pub fn candle_repacks(dtype: GgmlDType, n: usize, k: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let Some(level) = x86_level() else {
            return false;
        };
        if k == 0 || !n.is_multiple_of(16) || !k.is_multiple_of(256) {
            return false;
        }
        match dtype {
            GgmlDType::Q4K => true,
            GgmlDType::Q8_0 => level == X86Level::Vnni,
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (n, k);
        dtype != GgmlDType::Q8_0
    }
}

/// Whether a product of `rows` rows by a `dtype` weight `[n, k]` runs as
/// [`dequantized_times`]: `Q8_0` or `Q4_K`, and either no repacked kernel in candle
/// for it ([`candle_repacks`]) and at least [`DEQUANTIZE_MIN_ROWS`] rows, or `Q4_K`
/// on candle's AVX2 kernel with AVX-512 there and at least
/// [`Q4K_OVER_AVX2_MIN_ROWS`] rows.
pub fn dequantizes(dtype: GgmlDType, rows: usize, n: usize, k: usize) -> bool {
    if !matches!(dtype, GgmlDType::Q8_0 | GgmlDType::Q4K) || rows < DEQUANTIZE_MIN_ROWS {
        return false;
    }
    if !candle_repacks(dtype, n, k) {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    if dtype == GgmlDType::Q4K
        && rows >= Q4K_OVER_AVX2_MIN_ROWS
        && x86_level() == Some(X86Level::Avx2)
        && is_x86_feature_detected!("avx512f")
    {
        return true;
    }
    false
}

/// Candle's x86 kernel levels (`repack_x86::X86Level`), its two VNNI ones as one.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum X86Level {
    /// AVX-512 VNNI or AVX-VNNI: `Q8_0` repacked too.
    Vnni,
    /// AVX2 with FMA: `Q4_K` repacked, `Q8_0` not.
    Avx2,
}

/// The level candle 0.11's `repack_x86::level` picks: a VNNI one when candle repacks
/// `Q8_0` ([`candle_repacks_q8_0`]), else AVX2 where the CPU has AVX2 and FMA. Asked of
/// candle once rather than worked out again from the CPU's features and candle's
/// switches (`MISTRALRS_FORCE_AVX2`, `MISTRALRS_FORCE_AVXVNNI`), which are candle's
/// environment and not this program's configuration: what candle does is what counts.
#[cfg(target_arch = "x86_64")]
fn x86_level() -> Option<X86Level> {
    static LEVEL: std::sync::OnceLock<Option<X86Level>> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        if candle_repacks_q8_0() {
            Some(X86Level::Vnni)
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            Some(X86Level::Avx2)
        } else {
            None
        }
    })
}

/// Whether candle runs a `Q8_0` product on its repacked kernel, found by one small
/// product: the repacked kernel quantises the input to 8 bits with one scale per 256
/// values, the generic one with one per 32. An input of one large value and 255 ones,
/// by a weight of ones, then sums to ~1000 on the first (the ones round to 0 next to
/// the large value) and ~1224 on the second (the ones of the seven blocks without it
/// kept).
#[cfg(target_arch = "x86_64")]
fn candle_repacks_q8_0() -> bool {
    use candle_core::quantized::QMatMul;
    use candle_core::{DType, Device, Module, Tensor};
    let probe = || -> Result<f32> {
        let dev = Device::Cpu;
        let w = QTensor::quantize(&Tensor::ones((16, 256), DType::F32, &dev)?, GgmlDType::Q8_0)?;
        let mut x = vec![1f32; 256];
        x[0] = 1000.0;
        let y = QMatMul::from_qtensor(w)?.forward(&Tensor::from_vec(x, (1, 256), &dev)?)?;
        y.flatten_all()?.get(0)?.to_scalar::<f32>()
    };
    probe().is_ok_and(|sum| sum < 1112.0)
}

/// `x·Wᵀ + b` for the `rows` rows of `x` [rows, k] and a quantised `w` [n, k] (`Q8_0`
/// or `Q4_K`, on the CPU), `b` [n] → [rows, n] row-major. Each share of the output's
/// 64-column panels dequantises its panels one after the other into a buffer of its
/// thread (`k × 64` values) laid out as [`PackedMatrix`](super::linear::PackedMatrix)
/// lays out its own, and multiplies with one single-threaded `gemm` each.
pub fn dequantized_times(w: &QTensor, x: &[f32], rows: usize, bias: &[f32]) -> Result<Vec<f32>> {
    let (n, k) = w.shape().dims2()?;
    if x.len() != rows * k || bias.len() != n {
        candle_core::bail!(
            "quantized product: {} input values in {rows} rows and {} biases for a \
             [{n}, {k}] weight",
            x.len(),
            bias.len()
        );
    }
    let data = w.data()?;
    match w.dtype() {
        GgmlDType::Q8_0 => panel_times(blocks::<BlockQ8_0>(&data, n, k)?, n, k, x, rows, bias),
        GgmlDType::Q4K => panel_times(blocks::<BlockQ4K>(&data, n, k)?, n, k, x, rows, bias),
        other => candle_core::bail!("quantized product: {other:?} weights are not supported"),
    }
}

/// The blocks of a `[n, k]` weight stored as `T`, row after row.
fn blocks<T: GgmlType>(data: &[u8], n: usize, k: usize) -> Result<&[T]> {
    let size = std::mem::size_of::<T>();
    if !k.is_multiple_of(T::BLCK_SIZE)
        || data.len() != n * (k / T::BLCK_SIZE) * size
        || !(data.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        candle_core::bail!(
            "quantized product: {} bytes do not hold a [{n}, {k}] {:?} weight",
            data.len(),
            T::DTYPE
        );
    }
    // SAFETY: the bytes are candle's own `Vec<T>` storage (a `#[repr(C)]` block type
    // of plain numbers, every bit pattern valid), checked above to be aligned for `T`
    // and to hold exactly n·k/BLCK_SIZE blocks.
    Ok(unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<T>(), data.len() / size) })
}

thread_local! {
    /// A share's dequantised panel ([k][64]) and the stretch of its rows dequantised
    /// before they are spread over it ([64][CHUNK]), kept between products.
    static BUFFERS: RefCell<(AlignedF32, Vec<f32>)> =
        RefCell::new((AlignedF32::zeros(0), Vec::new()));
}

fn panel_times<T: PanelBlock>(
    blocks: &[T],
    n: usize,
    k: usize,
    x: &[f32],
    rows: usize,
    bias: &[f32],
) -> Result<Vec<f32>> {
    let mut y = Vec::with_capacity(rows * n);
    for _ in 0..rows {
        y.extend_from_slice(bias);
    }
    if rows == 0 || k == 0 || n == 0 {
        return Ok(y);
    }
    let panels = n.div_ceil(PANEL);
    let shares = if rows * k * n < PARALLEL_MIN_MACS {
        1
    } else {
        worker_count().min(panels)
    };
    let per = panels.div_ceil(shares);
    let dst = SharedOut(y.as_mut_ptr());
    on_workers(shares, |s| {
        BUFFERS.with(|buffers| {
            let mut buffers = buffers.borrow_mut();
            let (panel, chunk) = &mut *buffers;
            if panel.as_slice().len() < k * PANEL {
                *panel = AlignedF32::zeros(k * PANEL);
            }
            chunk.resize(PANEL * CHUNK.max(T::BLCK_SIZE), 0.0);
            let panel = &mut panel.as_mut_slice()[..k * PANEL];
            for p in s * per..((s + 1) * per).min(panels) {
                let first = p * PANEL;
                let width = PANEL.min(n - first);
                dequantize_panel(blocks, k, first, width, chunk, panel);
                // SAFETY: `y` holds rows·n values, `x` rows·k (checked by the
                // caller), and no other share writes this panel's columns of `y`.
                unsafe { add_panel_product(dst, n, first, width, panel, x, k, rows) };
            }
        });
    });
    Ok(y)
}

/// A GGML block type the panels are made of, with its dequantisation.
trait PanelBlock: GgmlType {
    /// The values of `blocks` into `out` (`BLCK_SIZE` values a block).
    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        Self::to_float(blocks, out);
    }
}

impl PanelBlock for BlockQ4K {
    /// As for `Q8_0`, a loop that vectorises, the same arithmetic as candle's.
    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        // SAFETY: the bytes of `blocks`: `#[repr(C)]` blocks of two f16 scales, 12
        // bytes of 6-bit scales and 128 bytes of 4-bit values (144 bytes, no padding),
        // read as bytes only.
        let bytes = unsafe {
            std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
        };
        q4k_to_f32(bytes, out);
    }
}

/// Bytes of a GGML `Q4_K` super-block: the scale and the minimum's scale (f16), 12
/// bytes of eight 6-bit scales and minimums, then 256 4-bit values.
const Q4K_BYTES: usize = 144;
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == Q4K_BYTES);

simd_dispatch! {
    /// `Q4_K` super-blocks (as bytes) → their values, 256 a block (ggml's
    /// `dequantize_row_q4_K`).
    fn q4k_to_f32(bytes: &[u8], out: &mut [f32]) => q4k_to_f32_any
}

#[inline(always)]
fn q4k_to_f32_any(bytes: &[u8], out: &mut [f32]) {
    for (block, out) in bytes.chunks_exact(Q4K_BYTES).zip(out.chunks_exact_mut(256)) {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        let dmin = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
        let scales: &[u8; 12] = block[4..16].try_into().expect("12 bytes");
        for (c, (q, out)) in block[16..]
            .chunks_exact(32)
            .zip(out.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc, m) = scale_min_k4(2 * c, scales);
            let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
            let (sc, m) = scale_min_k4(2 * c + 1, scales);
            let (d2, m2) = (d * f32::from(sc), dmin * f32::from(m));
            let (low, high) = out.split_at_mut(32);
            for (o, &q) in low.iter_mut().zip(q) {
                *o = d1 * f32::from(q & 0xF) - m1;
            }
            for (o, &q) in high.iter_mut().zip(q) {
                *o = d2 * f32::from(q >> 4) - m2;
            }
        }
    }
}

/// Sub-block `j`'s 6-bit scale and minimum in a `Q4_K` block's 12 bytes.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

impl PanelBlock for BlockQ8_0 {
    /// A loop over the blocks' bytes that vectorises (candle's `to_float`, built for
    /// baseline x86-64, took ~3× as long).
    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        // SAFETY: the bytes of `blocks`: `#[repr(C)]` blocks of an f16 scale and 32
        // signed bytes (34 bytes, no padding), read as bytes only.
        let bytes = unsafe {
            std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
        };
        q8_0_to_f32(bytes, out);
    }
}

/// Bytes of a GGML `Q8_0` block: the scale (f16, little-endian), then 32 `i8`s.
const Q8_0_BYTES: usize = 34;
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == Q8_0_BYTES);

simd_dispatch! {
    /// `Q8_0` blocks (as bytes) → their values, 32 a block.
    fn q8_0_to_f32(bytes: &[u8], out: &mut [f32]) => q8_0_to_f32_any
}

#[inline(always)]
fn q8_0_to_f32_any(bytes: &[u8], out: &mut [f32]) {
    for (block, out) in bytes.chunks_exact(Q8_0_BYTES).zip(out.chunks_exact_mut(32)) {
        let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        for (o, &q) in out.iter_mut().zip(&block[2..]) {
            *o = f32::from(q as i8) * scale;
        }
    }
}

/// An IEEE half-precision value's bits → f32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        // Zero or subnormal: man · 2⁻²⁴.
        0 => {
            let v = man as f32 * (1.0 / 16_777_216.0);
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

/// Rows `first..first + width` of the weight (`k / BLCK_SIZE` blocks each) into
/// `panel` [k][64]: value `j` of row `first + r` at `j·64 + r`. A stretch of each row
/// is dequantised into `chunk` ([width][len], contiguous, which vectorises) and then
/// transposed into the panel's rows.
fn dequantize_panel<T: PanelBlock>(
    blocks: &[T],
    k: usize,
    first: usize,
    width: usize,
    chunk: &mut [f32],
    panel: &mut [f32],
) {
    let per_row = k / T::BLCK_SIZE;
    let step = (CHUNK / T::BLCK_SIZE).max(1);
    let mut b0 = 0;
    while b0 < per_row {
        let nb = step.min(per_row - b0);
        let len = nb * T::BLCK_SIZE;
        for r in 0..width {
            let row = (first + r) * per_row + b0;
            T::dequantize(&blocks[row..row + nb], &mut chunk[r * len..(r + 1) * len]);
        }
        let start = b0 * T::BLCK_SIZE * PANEL;
        transpose_into_panel(
            &chunk[..width * len],
            len,
            width,
            &mut panel[start..start + len * PANEL],
        );
        b0 += nb;
    }
}

/// `out[j·64 + r] = chunk[r·len + j]` for the `width` (≤ 64) rows of `len` values in
/// `chunk`: 8×8 tiles transposed in AVX registers where the CPU has AVX, the rest one
/// value at a time.
fn transpose_into_panel(chunk: &[f32], len: usize, width: usize, out: &mut [f32]) {
    assert!(width <= PANEL && chunk.len() >= width * len && out.len() >= len * PANEL);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx") {
        done = width / 8 * 8;
        for r0 in (0..done).step_by(8) {
            for j0 in (0..len / 8 * 8).step_by(8) {
                // SAFETY: AVX is there (checked above); the tile's rows r0..r0 + 8 (≤
                // width) of values j0..j0 + 8 (≤ len) lie in `chunk`, and its output
                // rows j0..j0 + 8 of columns r0..r0 + 8 (≤ 64) in `out`, both checked by
                // the assertion above.
                unsafe {
                    transpose_8x8(
                        chunk.as_ptr().add(r0 * len + j0),
                        len,
                        out.as_mut_ptr().add(j0 * PANEL + r0),
                        PANEL,
                    );
                }
            }
            for j in len / 8 * 8..len {
                for r in r0..r0 + 8 {
                    out[j * PANEL + r] = chunk[r * len + j];
                }
            }
        }
    }
    for r in done..width {
        for (j, &v) in chunk[r * len..(r + 1) * len].iter().enumerate() {
            out[j * PANEL + r] = v;
        }
    }
}

/// The 8×8 block at `src` (rows `src_stride` values apart) transposed to `dst` (rows
/// `dst_stride` apart).
///
/// # Safety
/// The CPU has AVX; `src` and `dst` hold 8 rows of 8 values at those strides.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: by the function's contract.
    unsafe {
        let row = |i: usize| _mm256_loadu_ps(src.add(i * src_stride));
        let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
        let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
        let t0 = _mm256_unpacklo_ps(r0, r1);
        let t1 = _mm256_unpackhi_ps(r0, r1);
        let t2 = _mm256_unpacklo_ps(r2, r3);
        let t3 = _mm256_unpackhi_ps(r2, r3);
        let t4 = _mm256_unpacklo_ps(r4, r5);
        let t5 = _mm256_unpackhi_ps(r4, r5);
        let t6 = _mm256_unpacklo_ps(r6, r7);
        let t7 = _mm256_unpackhi_ps(r6, r7);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        for (i, v) in out.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(i * dst_stride), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module, Tensor};

    /// The panels' product against candle's `QMatMul` on the same quantised weight.
    fn compare(dtype: GgmlDType, rows: usize, k: usize, n: usize) -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
        let x = Tensor::randn(0f32, 1., (rows, k), &dev)?;
        let b = Tensor::randn(0f32, 1., n, &dev)?;
        let q = QTensor::quantize(&w, dtype)?;
        let want = QMatMul::from_qtensor(QTensor::quantize(&w, dtype)?)?
            .forward(&x)?
            .broadcast_add(&b)?;
        let got = dequantized_times(
            &q,
            &x.flatten_all()?.to_vec1::<f32>()?,
            rows,
            &b.to_vec1::<f32>()?,
        )?;
        let got = Tensor::from_vec(got, (rows, n), &dev)?;
        // Candle quantises the input to 8 bits as well (4–9e-3 of the largest output
        // off the exact product by the dequantised weight for these random inputs); the
        // panels keep it f32 and give the exact product (within 1e-6). So the panels
        // are checked against the exact product, and against candle's result within
        // that result's own error (plus 1e-3).
        let exact = x.matmul(&q.dequantize(&dev)?.t()?)?.broadcast_add(&b)?;
        let scale = exact.abs()?.max_all()?.to_scalar::<f32>()?;
        let ours = (&got - &exact)?.abs()?.max_all()?.to_scalar::<f32>()? / scale;
        let theirs = (&want - &exact)?.abs()?.max_all()?.to_scalar::<f32>()? / scale;
        let between = (&got - &want)?.abs()?.max_all()?.to_scalar::<f32>()? / scale;
        assert!(
            ours < 1e-5,
            "{dtype:?} {rows}×{k}→{n}: {ours:e} from the exact product"
        );
        assert!(
            between < 1e-3 + theirs && between < 2e-2,
            "{dtype:?} {rows}×{k}→{n}: {between:e} from candle's ({theirs:e} from exact)"
        );
        Ok(())
    }

    #[test]
    fn dequantized_panels_match_candle() -> Result<()> {
        for rows in [1usize, 17, 41, 417] {
            // Whole panels, a partial last panel, fewer outputs than one panel; q8_0
            // also with inputs that are not whole super-blocks.
            for (k, n) in [(256usize, 128usize), (512, 100), (256, 40)] {
                compare(GgmlDType::Q4K, rows, k, n)?;
            }
            for (k, n) in [(256usize, 192usize), (96, 100), (160, 7)] {
                compare(GgmlDType::Q8_0, rows, k, n)?;
            }
        }
        // Large enough to be split between the workers.
        compare(GgmlDType::Q8_0, 41, 1024, 1000)?;
        compare(GgmlDType::Q4K, 41, 1024, 1000)?;
        Ok(())
    }

    #[test]
    fn panels_are_transposed_rows() {
        for (width, len) in [(64usize, 128usize), (41, 256), (7, 32), (16, 12), (1, 8)] {
            let chunk: Vec<f32> = (0..width * len).map(|i| i as f32).collect();
            let mut out = vec![-1f32; len * PANEL];
            transpose_into_panel(&chunk, len, width, &mut out);
            for j in 0..len {
                for r in 0..PANEL {
                    let want = if r < width { chunk[r * len + j] } else { -1.0 };
                    assert_eq!(
                        out[j * PANEL + r],
                        want,
                        "{width}×{len}: value {j} of row {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn blocks_dequantize_as_candle_does() -> Result<()> {
        for (bits, value) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x0001, 1.0 / 16_777_216.0),
            (0x7bff, 65504.0),
            (0x0000, 0.0),
        ] {
            assert_eq!(f16_to_f32(bits), value, "{bits:#x}");
        }
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        let w = (Tensor::randn(0f32, 1., (4, 96), &Device::Cpu)? * 1e-3)?;
        let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
        let data = q.data()?;
        let q8 = blocks::<BlockQ8_0>(&data, 4, 96)?;
        let (mut ours, mut theirs) = (vec![0f32; 4 * 96], vec![0f32; 4 * 96]);
        <BlockQ8_0 as PanelBlock>::dequantize(q8, &mut ours);
        BlockQ8_0::to_float(q8, &mut theirs);
        assert_eq!(ours, theirs);
        // q4k likewise (scales of every sub-block, positive and negative minimums).
        let w = (Tensor::randn(0.5f32, 1., (3, 512), &Device::Cpu)? * 1e-2)?;
        let q = QTensor::quantize(&w, GgmlDType::Q4K)?;
        let data = q.data()?;
        let q4 = blocks::<BlockQ4K>(&data, 3, 512)?;
        let (mut ours, mut theirs) = (vec![0f32; 3 * 512], vec![0f32; 3 * 512]);
        <BlockQ4K as PanelBlock>::dequantize(q4, &mut ours);
        BlockQ4K::to_float(q4, &mut theirs);
        assert_eq!(ours, theirs);
        Ok(())
    }

    #[test]
    fn wrong_sizes_are_refused() -> Result<()> {
        let w = Tensor::randn(0f32, 1., (8, 64), &Device::Cpu)?;
        let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
        assert!(dequantized_times(&q, &[0.0; 64 * 3 - 1], 3, &[0.0; 8]).is_err());
        assert!(dequantized_times(&q, &[0.0; 64 * 3], 3, &[0.0; 7]).is_err());
        assert!(dequantized_times(&q, &[0.0; 64 * 3], 3, &[0.0; 8]).is_ok());
        let f = QTensor::quantize(&w, GgmlDType::F32)?;
        assert!(dequantized_times(&f, &[0.0; 64], 1, &[0.0; 8]).is_err());
        Ok(())
    }

    #[test]
    fn dispatch_follows_candle() {
        // Never for fewer rows than the threshold, nor for other types.
        assert!(!dequantizes(GgmlDType::Q8_0, 3, 1000, 1024));
        assert!(!dequantizes(GgmlDType::Q4_0, 417, 1000, 1024));
        // Widths that candle's repacked kernels do not take.
        assert!(dequantizes(GgmlDType::Q8_0, 4, 1000, 1024));
        assert!(dequantizes(GgmlDType::Q8_0, 417, 1024, 96));
        #[cfg(target_arch = "x86_64")]
        {
            assert!(dequantizes(GgmlDType::Q4K, 417, 1000, 1024));
            let level = x86_level();
            // Candle's VNNI kernels run only where the CPU has VNNI (forced on another,
            // its first product would stop the process).
            let vnni =
                is_x86_feature_detected!("avx512vnni") || is_x86_feature_detected!("avxvnni");
            assert!(level != Some(X86Level::Vnni) || vnni, "{level:?}");
            let q8_fast = level == Some(X86Level::Vnni);
            assert_eq!(dequantizes(GgmlDType::Q8_0, 417, 1024, 1024), !q8_fast);
            let q4k_avx2 = level == Some(X86Level::Avx2) && is_x86_feature_detected!("avx512f");
            assert_eq!(
                dequantizes(GgmlDType::Q4K, 417, 1024, 1024),
                level.is_none() || q4k_avx2
            );
            assert_eq!(dequantizes(GgmlDType::Q4K, 41, 1024, 1024), level.is_none());
        }
    }

    /// Times of one product at T3's shapes, candle's `QMatMul` against the panels,
    /// for the threshold; run with `cargo test --release --lib quantized_speeds --
    /// --ignored --nocapture` (and `MISTRALRS_FORCE_AVX2=1` for candle's AVX2 level).
    #[test]
    #[ignore = "timings, printed"]
    fn quantized_speeds() -> Result<()> {
        let dev = Device::Cpu;
        for (k, n) in [(1024usize, 3072usize), (4096, 1024)] {
            let w = Tensor::randn(0f32, 1., (n, k), &dev)?;
            let b = vec![0f32; n];
            for dtype in [GgmlDType::Q8_0, GgmlDType::Q4K] {
                let q = QTensor::quantize(&w, dtype)?;
                let qm = QMatMul::from_qtensor(QTensor::quantize(&w, dtype)?)?;
                let f32w = super::super::linear::PackedMatrix::from_tensor(&w.t()?)?;
                for rows in [1usize, 2, 4, 8, 16, 41, 64, 96, 128, 192, 417] {
                    let x = Tensor::randn(0f32, 1., (rows, k), &dev)?;
                    let xs = x.flatten_all()?.to_vec1::<f32>()?;
                    // The least of 5 batches of each, interleaved (other work on the
                    // machine slows some batches down).
                    let reps = (400 / rows).clamp(3, 50);
                    let mut best = [f64::INFINITY; 3];
                    for _ in 0..5 {
                        let runs: [&dyn Fn() -> Result<()>; 3] = [
                            &|| qm.forward(&x).map(drop),
                            &|| dequantized_times(&q, &xs, rows, &b).map(drop),
                            &|| f32w.times(&xs, &b).map(drop),
                        ];
                        for (best, run) in best.iter_mut().zip(runs) {
                            run()?;
                            let t0 = std::time::Instant::now();
                            for _ in 0..reps {
                                run()?;
                            }
                            *best = best.min(t0.elapsed().as_secs_f64() * 1e3 / reps as f64);
                        }
                    }
                    let [candle, panels, f32] = best;
                    println!(
                        "{dtype:?} {k}→{n} {rows:>3} rows: candle {candle:8.3} ms, panels \
                         {panels:8.3} ms, f32 {f32:8.3} ms (candle repacks: {})",
                        candle_repacks(dtype, n, k)
                    );
                }
            }
        }
        Ok(())
    }
}
