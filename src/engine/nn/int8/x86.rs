//! The x86-64 forms of [`super`]'s loops: AVX-512 (with VNNI for the products) and
//! AVX2. Each is called only where [`super::Kernel::detect`] found its instructions.

use super::{Block, Columns, MR, PANEL, QUAD};

/// [`super::row_range`] in AVX-512.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn row_range_avx512(row: &[f32]) -> (f32, f32) {
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

/// [`super::quantise_values`] in AVX-512.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn quantise_values_avx512(
    row: &[f32],
    out: &mut [u8],
    inv_scale: f32,
    zero: f32,
) {
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

/// [`super::softmax_bytes`] in AVX-512: `2^y` with `y = (s − max)·log₂e` (clamped at −100,
/// where it adds nothing to the sum and 255·2^y rounds to 0) as `2^n · p(f)`, `n` the nearest integer, `p` the
/// degree-4 Taylor polynomial of `2^f` on |f| ≤ ½ (relative error ≤ 5·10⁻⁵, a
/// hundredth of a step here); the last partial vector masked.
///
/// # Safety
/// The CPU has AVX-512F; `out` is at least as long as `scores`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax_bytes_avx512(scores: &[f32], out: &mut [u8]) -> f32 {
    use std::arch::x86_64::*;
    let len = scores.len();
    let (s, o) = (scores.as_ptr(), out.as_mut_ptr());
    let tail_mask = |i: usize| -> __mmask16 {
        if len - i >= 16 {
            0xffff
        } else {
            (1u16 << (len - i)) - 1
        }
    };
    let low = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut max = low;
    for i in (0..len).step_by(16) {
        // SAFETY: the mask covers values i..min(i + 16, len) of `scores` only.
        max = _mm512_max_ps(max, unsafe {
            _mm512_mask_loadu_ps(low, tail_mask(i), s.add(i))
        });
    }
    let log2e = _mm512_set1_ps(std::f32::consts::LOG2_E);
    let shift = _mm512_set1_ps(_mm512_reduce_max_ps(max) * std::f32::consts::LOG2_E);
    let floor = _mm512_set1_ps(-100.0);
    let top = _mm512_set1_ps(255.0);
    let c = [
        std::f32::consts::LN_2,
        0.240_226_5,
        0.055_504_11,
        0.009_618_129,
    ]
    .map(|v| _mm512_set1_ps(v));
    let one = _mm512_set1_ps(1.0);
    let mut sums = _mm512_setzero_ps();
    for i in (0..len).step_by(16) {
        let mask = tail_mask(i);
        // SAFETY: as above, for `scores` and `out`.
        unsafe {
            let x = _mm512_mask_loadu_ps(low, mask, s.add(i));
            let y = _mm512_max_ps(_mm512_fmsub_ps(x, log2e, shift), floor);
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
            let f = _mm512_sub_ps(y, n);
            let p = _mm512_fmadd_ps(f, c[3], c[2]);
            let p = _mm512_fmadd_ps(f, p, c[1]);
            let p = _mm512_fmadd_ps(f, p, c[0]);
            let p = _mm512_fmadd_ps(f, p, one);
            let e = _mm512_maskz_scalef_ps(mask, p, n);
            sums = _mm512_add_ps(sums, e);
            let q = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(e, top), top));
            _mm512_mask_cvtepi32_storeu_epi8(o.add(i).cast(), mask, q);
        }
    }
    _mm512_reduce_add_ps(sums)
}

/// [`super::multiply_block`] with `vpdpbusd`: per group of four input values, the panel's
/// four weight vectors are loaded once and each row's four bytes, broadcast, add
/// into its four accumulators; the sums become f32 in registers.
///
/// # Safety
/// The CPU has AVX-512F, BW and VNNI; the sizes are as [`super::multiply_block`] asserts.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn multiply_block_vnni(
    block: &Block,
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

/// [`super::multiply_block`] with AVX2: per group of four input values and eight columns,
/// the panel's 32 weight bytes widened to 16 bits (each column's four side by side),
/// and each row's four values (widened once, in `wide`) broadcast; `vpmaddwd` adds
/// them in pairs, so each column's sum is split over two lanes until the end, where
/// the pairs are added and the scales applied in registers. 16-bit products of a
/// byte and a signed byte, in pairs, never saturate: the sums are those of
/// [`multiply_block_vnni`], exactly.
///
/// # Safety
/// The CPU has AVX2 and FMA; `wide` is the block's values as 16-bit integers; the
/// sizes are as [`super::multiply_block`] asserts.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn multiply_block_avx2(
    block: &Block,
    wide: &[i16],
    panel: &[i8],
    columns: &Columns,
    tile: &mut [[f32; PANEL]; MR],
) {
    use std::arch::x86_64::*;
    let k4 = block.k4;
    let (x, w) = (wide.as_ptr(), panel.as_ptr());
    for group in 0..PANEL / 8 {
        let mut sums = [[_mm256_setzero_si256(); 2]; MR];
        for quad in 0..k4 / 4 {
            // SAFETY: quad < k4 / 4 and group < 8, so the 32 bytes lie inside the
            // panel's quad of QUAD bytes, and each row's four values inside its k4.
            unsafe {
                let wq = w.add(quad * QUAD + group * 32);
                let lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.cast()));
                let hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.add(16).cast()));
                for (r, row) in sums.iter_mut().enumerate() {
                    let four = x.add(r * k4 + quad * 4).cast::<i64>().read_unaligned();
                    let a = _mm256_set1_epi64x(four);
                    row[0] = _mm256_add_epi32(row[0], _mm256_madd_epi16(a, lo));
                    row[1] = _mm256_add_epi32(row[1], _mm256_madd_epi16(a, hi));
                }
            }
        }
        let at = group * 8;
        // SAFETY: the column slices are PANEL long (asserted), and at + 8 ≤ PANEL.
        let (col_scale, col_sum, bias) = unsafe {
            (
                _mm256_loadu_ps(columns.scales.as_ptr().add(at)),
                _mm256_loadu_ps(columns.sums.as_ptr().add(at)),
                _mm256_loadu_ps(columns.bias.as_ptr().add(at)),
            )
        };
        for (r, (row, out)) in sums.iter().zip(tile.iter_mut()).enumerate() {
            // Pairs of lanes added: [c0 c1 c4 c5 | c2 c3 c6 c7], then in order.
            let pairs = _mm256_hadd_epi32(row[0], row[1]);
            let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(pairs);
            let zero = _mm256_set1_ps(block.zeros[r]);
            let scale = _mm256_set1_ps(block.scales[r]);
            let centred = _mm256_fnmadd_ps(zero, col_sum, _mm256_cvtepi32_ps(ordered));
            let value = _mm256_fmadd_ps(centred, _mm256_mul_ps(scale, col_scale), bias);
            // SAFETY: out is PANEL values long and at + 8 ≤ PANEL.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(at), value) };
        }
    }
}
