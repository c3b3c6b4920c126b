//! Multi-head self-attention without a mask or with a causal one, `softmax(q·kᵀ)·v`
//! per head, fused on the CPU: for a block of query rows of one head, the scores go into a small buffer that
//! stays in cache, the softmax runs over it in place, and the product with `v` is
//! written straight into the head's columns of the output. Nothing is transposed or
//! copied, and the [heads, T, T] score tensor never exists.

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};

use super::fast_math::{exp_f32, simd_dispatch};
use super::int8::{self, Int8Matrix, QuantisedRows};
use super::product::{product, rows, Strided};
use super::threads::SharedOut;

/// Query rows per work item: 192 rows of scores against 700 keys (250 prompt + 100
/// speech tokens) are 525 KB, which stays in a 1 MB L2 cache; fewer rows repack the
/// keys and values more often (64 rows took a quarter longer at 700 frames).
const ROWS: usize = 192;

/// `softmax(q·kᵀ)·v` for each of `heads` heads: `q`, `k`, `v` are [B, T, heads·d]
/// with head `i` in columns `i·d..(i + 1)·d` (the layout a linear projection gives),
/// `q` already scaled by `1/√d`; returns [B, T, heads·d] in the same layout.
pub fn self_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    attention(q, k, v, heads, false)
}

/// [`self_attention`] where position `i` sees only positions `0..=i` (a decoder's
/// prompt, nothing cached before it). On the CPU each block of query rows multiplies
/// only the keys up to its last row, so about half the products of the unmasked form
/// are made, and no mask tensor exists.
pub fn causal_self_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    attention(q, k, v, heads, true)
}

fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
    let (b, t, width) = q.dims3()?;
    if k.dims() != q.dims() || v.dims() != q.dims() || width % heads != 0 {
        candle_core::bail!(
            "self_attention: q {:?}, k {:?}, v {:?} for {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if let Some(out) = self_attention_cpu(q, k, v, heads, causal) {
        return out;
    }
    let d = width / heads;
    let split = |x: &Tensor| x.reshape((b, t, heads, d))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let scores = q.matmul(&k.t()?)?;
    let scores = if causal {
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), q.device())?.to_dtype(scores.dtype())?;
        scores.broadcast_add(&mask)?
    } else {
        scores
    };
    let attn = candle_nn::ops::softmax_last_dim(&scores)?;
    attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, width))
}

/// [`self_attention`] with both of its products in 8-bit integers (see
/// [`super::int8`]): per head, the keys are quantised per key and the values per
/// channel; each block of queries per row; the softmax's unnormalised weights,
/// `e^(s − max)` in `0..=1`, go straight to bytes in steps of 1/255
/// ([`QuantisedRows::set_softmax_row`]); the normalisation divides by their f32
/// sum. Without AVX2 or AVX-512 VNNI, or off the CPU, it is
/// [`self_attention`].
pub fn self_attention_int8(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, width) = q.dims3()?;
    let cpu = q.device().is_cpu() && [q, k, v].iter().all(|x| x.dtype() == DType::F32);
    if !cpu || !int8::int8_available() || k.dims() != q.dims() || v.dims() != q.dims() {
        return self_attention(q, k, v, heads);
    }
    if heads == 0 || width % heads != 0 {
        candle_core::bail!("self_attention: {width} wide for {heads} heads");
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let out = with_cpu_f32_buffers([&q, &k, &v], |buffers| {
        let [qd, kd, vd] = contiguous_values(buffers)?;
        Some(attention_int8_blocks(qd, kd, vd, (b, t, width), heads))
    });
    match out {
        Some(out) => Tensor::from_vec(out, (b, t, width), q.device()),
        None => self_attention(&q, &k, &v, heads),
    }
}

/// [`attention_blocks`] for [`self_attention_int8`]: items of (batch, head, block of
/// query rows) split over the threads; a thread quantises a head's keys and values
/// once for its consecutive blocks.
fn attention_int8_blocks<'a>(
    qd: &[f32],
    kd: &'a [f32],
    vd: &'a [f32],
    (b, t, width): (usize, usize, usize),
    heads: usize,
) -> Vec<f32> {
    let d = width / heads;
    let mut out = vec![0f32; b * t * width];
    let blocks = t.div_ceil(ROWS);
    let items = b * heads * blocks;
    let dst = SharedOut(out.as_mut_ptr());
    let run = |first: usize, last: usize| {
        let mut scores = vec![0f32; ROWS * t];
        let mut weights = QuantisedRows::new(ROWS, t);
        let mut inv_sums = [0f32; ROWS];
        let mut held: Option<(usize, Int8Matrix, Int8Matrix)> = None;
        for item in first..last {
            let (bh, blk) = (item / blocks, item % blocks);
            let base = (bh / heads) * t * width + (bh % heads) * d;
            let (keys, values) = match &held {
                Some((h, keys, values)) if *h == bh => (keys, values),
                _ => {
                    // scores = q · kᵀ: kᵀ [d, t], a column per key; out = p · v: v
                    // [t, d], a column per channel.
                    let at = |x: &'a [f32], j: usize| &x[base + j * width..base + j * width + d];
                    let keys = Int8Matrix::from_columns(d, t, |j| at(kd, j));
                    let values = Int8Matrix::from_rows(t, d, |j| at(vd, j));
                    let (_, keys, values) = held.insert((bh, keys, values));
                    (&*keys, &*values)
                }
            };
            let r0 = blk * ROWS;
            let rows = ROWS.min(t - r0);
            let s = &mut scores[..rows * t];
            // SAFETY: `s` holds rows · t values and is this thread's own.
            unsafe {
                keys.times_to(
                    &qd[base + r0 * width..],
                    width,
                    rows,
                    SharedOut(s.as_mut_ptr()),
                    t,
                )
            };
            for (r, (row, inv)) in s.chunks_exact(t).zip(&mut inv_sums).enumerate() {
                *inv = 1.0 / weights.set_softmax_row(r, row);
            }
            // SAFETY: rows r0..r0 + rows of this head's d columns lie inside the
            // [B, T, width] output, written by this item only.
            unsafe {
                values.times_quantised_to(
                    &weights,
                    rows,
                    SharedOut(dst.at(base + r0 * width)),
                    width,
                )
            };
            // SAFETY: as above.
            unsafe { normalise(dst, base + r0 * width, (width, d), &inv_sums[..rows]) };
        }
    };
    super::threads::split_over_threads(items, candle_core::utils::get_num_threads(), run);
    out
}

/// The fused path for contiguous f32 tensors in CPU memory; `None` elsewhere.
fn self_attention_cpu(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    causal: bool,
) -> Option<Result<Tensor>> {
    if !q.device().is_cpu() || q.dtype() != DType::F32 {
        return None;
    }
    let (b, t, width) = q.dims3().ok()?;
    let (q, k, v) = match (q.contiguous(), k.contiguous(), v.contiguous()) {
        (Ok(q), Ok(k), Ok(v)) => (q, k, v),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Some(Err(e)),
    };
    let kind = if causal {
        Scores::Causal
    } else {
        Scores::Plain
    };
    let out = with_cpu_f32_buffers([&q, &k, &v], |buffers| {
        let [qd, kd, vd] = contiguous_values(buffers)?;
        Some(attention_blocks(qd, kd, vd, (b, t, width), heads, kind))
    })?;
    Some(Tensor::from_vec(out, (b, t, width), q.device()))
}

/// Relative-position self-attention (espnet's `RelPositionMultiHeadedAttention`, as
/// in Transformer-XL): for each head, `softmax(q_u·kᵀ + rel_shift(q_v·pᵀ))·v`, where
/// `q_u`, `q_v` are the queries plus the two learnt position biases (already scaled
/// by `1/√d`), `p` [1 or B, 2T − 1, heads·d] the projected embeddings of relative
/// positions `T − 1 … −(T − 1)`, and `rel_shift` (see [`rel_shift`]) makes query `i`'s
/// score for key `j` the product with position `i − j`, that is with row
/// `T − 1 − i + j` of `p`. `q_u`, `q_v`, `k`, `v` are [B, T, heads·d] (head `i` in
/// columns `i·d..(i + 1)·d`); returns [B, T, heads·d] in the same layout.
///
/// On the CPU it is fused as [`self_attention`] is: a block of query rows needs only
/// the `T + rows − 1` positions its rows reach, multiplied into a buffer in cache and
/// added to the scores at each row's offset, rather than all `2T − 1` positions for
/// every row, shifted through two copies of a `[B, heads, T, 2T − 1]` tensor.
pub fn rel_pos_self_attention(
    q_u: &Tensor,
    q_v: &Tensor,
    k: &Tensor,
    v: &Tensor,
    p: &Tensor,
    heads: usize,
) -> Result<Tensor> {
    let (b, t, width) = q_u.dims3()?;
    let (pb, n_pos, p_width) = p.dims3()?;
    let same = [q_v, k, v].iter().all(|x| x.dims() == q_u.dims());
    if !same || width % heads != 0 || (pb != 1 && pb != b) || p_width != width || n_pos + 1 != 2 * t
    {
        candle_core::bail!(
            "rel_pos_self_attention: q_u {:?}, q_v {:?}, k {:?}, v {:?}, p {:?} for {heads} heads",
            q_u.dims(),
            q_v.dims(),
            k.dims(),
            v.dims(),
            p.dims()
        );
    }
    if q_u.device().is_cpu() && q_u.dtype() == DType::F32 {
        let (q_u, q_v) = (q_u.contiguous()?, q_v.contiguous()?);
        let (k, v, p) = (k.contiguous()?, v.contiguous()?, p.contiguous()?);
        let out = with_cpu_f32_buffers([&q_u, &q_v, &k, &v, &p], |buffers| {
            let [qu, qv, kd, vd, pd] = contiguous_values(buffers)?;
            let p_batch = if pb == 1 { 0 } else { n_pos * width };
            let kind = Scores::RelPos { qv, p: pd, p_batch };
            Some(attention_blocks(qu, kd, vd, (b, t, width), heads, kind))
        });
        if let Some(out) = out {
            return Tensor::from_vec(out, (b, t, width), q_u.device());
        }
    }
    let d = width / heads;
    let split = |x: &Tensor| {
        let rows = x.dim(0)?;
        x.reshape((rows, x.dim(1)?, heads, d))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q_u, q_v, k, v, p) = (split(q_u)?, split(q_v)?, split(k)?, split(v)?, split(p)?);
    let matrix_ac = q_u.matmul(&k.t()?)?;
    let matrix_bd = rel_shift(&q_v.broadcast_matmul(&p.t()?)?)?;
    let attn = candle_nn::ops::softmax_last_dim(&(matrix_ac + matrix_bd)?)?;
    attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, width))
}

/// espnet's `rel_shift`: `[B, h, T, 2T − 1]` scores against relative positions
/// `T − 1 … −(T − 1)` → `[B, h, T, T]`, entry `(i, j)` taken from column
/// `T − 1 − i + j` (position `i − j`), by the reference's pad-and-reshape.
pub fn rel_shift(x: &Tensor) -> Result<Tensor> {
    let (b, h, t1, n) = x.dims4()?;
    let zero_pad = Tensor::zeros((b, h, t1, 1), x.dtype(), x.device())?;
    let padded =
        Tensor::cat(&[&zero_pad, x], candle_core::D::Minus1)?.reshape((b, h, n + 1, t1))?;
    padded
        .narrow(2, 1, n)?
        .contiguous()?
        .reshape((b, h, t1, n))?
        .narrow(3, 0, n / 2 + 1)
}

/// What the fused attention adds to `q·kᵀ` before the softmax.
#[derive(Clone, Copy)]
enum Scores<'a> {
    Plain,
    /// Position `i` sees only keys `0..=i`.
    Causal,
    /// `rel_shift(q_v·pᵀ)` (see [`rel_pos_self_attention`]); `p_batch` values between
    /// the batches of `p`, 0 when they share one.
    RelPos {
        qv: &'a [f32],
        p: &'a [f32],
        p_batch: usize,
    },
}

/// The fused attention over contiguous `[B, T, width]` buffers (see
/// [`self_attention_cpu`]).
fn attention_blocks(
    qd: &[f32],
    kd: &[f32],
    vd: &[f32],
    (b, t, width): (usize, usize, usize),
    heads: usize,
    kind: Scores,
) -> Vec<f32> {
    let d = width / heads;
    let causal = matches!(kind, Scores::Causal);
    let mut out = vec![0f32; b * t * width];
    let blocks = t.div_ceil(ROWS);
    let items = b * heads * blocks;
    let dst = SharedOut(out.as_mut_ptr());
    let run = |first: usize, last: usize| {
        let mut scores = vec![0f32; ROWS * t];
        let mut positions = match kind {
            Scores::RelPos { .. } => vec![0f32; ROWS * (t + ROWS - 1)],
            _ => Vec::new(),
        };
        let mut inv_sums = [0f32; ROWS];
        for item in first..last {
            let (bh, blk) = (item / blocks, item % blocks);
            let (batch, head) = (bh / heads, bh % heads);
            let r0 = blk * ROWS;
            let rows = ROWS.min(t - r0);
            let base = batch * t * width + head * d;
            // The keys these rows see: all, or (causal) those up to the last row.
            let n = if causal { r0 + rows } else { t };
            let s = &mut scores[..rows * n];
            // SAFETY: q rows r0..r0 + rows and the first n ≤ t rows of k and v, columns
            // of this head, lie inside the [B, T, width] buffers; the output block
            // (these rows, this head's columns) is written by this item only.
            unsafe {
                // scores [rows, n] = q_block [rows, d] · kᵀ [d, n]
                times_transposed(
                    s.as_mut_ptr(),
                    qd.as_ptr().add(base + r0 * width),
                    kd.as_ptr().add(base),
                    (rows, n, d, width),
                );
            }
            if let Scores::RelPos { qv, p, p_batch } = kind {
                // Row r (position r0 + r) adds positions T − 1 − (r0 + r) + j of p for
                // keys j = 0..T: the block reaches positions m0.. of p, m0 = T − r0 −
                // rows, T + rows − 1 of them, row r from offset rows − 1 − r.
                let reach = t + rows - 1;
                let m0 = t - r0 - rows;
                let bd = &mut positions[..rows * reach];
                // SAFETY: q_v rows r0..r0 + rows and p rows m0..m0 + reach ≤ 2T − 1,
                // columns of this head, lie inside their buffers; `bd` is this
                // thread's own.
                unsafe {
                    // bd [rows, reach] = q_v block [rows, d] · p_blockᵀ [d, reach]
                    times_transposed(
                        bd.as_mut_ptr(),
                        qv.as_ptr().add(base + r0 * width),
                        p.as_ptr().add(batch * p_batch + m0 * width + head * d),
                        (rows, reach, d, width),
                    );
                }
                for (r, row) in s.chunks_exact_mut(n).enumerate() {
                    let from = r * reach + rows - 1 - r;
                    add_scaled(row, 1.0, &bd[from..from + t]);
                }
            }
            if causal {
                // Row r (position r0 + r) sees keys 0..=r0 + r; the rest weigh 0.
                for (r, row) in s.chunks_exact_mut(n).enumerate() {
                    let seen = r0 + r + 1;
                    exp_rows(&mut row[..seen], seen, &mut inv_sums[r..r + 1]);
                    row[seen..].fill(0.0);
                }
            } else {
                exp_rows(s, n, &mut inv_sums[..rows]);
            }
            // SAFETY: as above.
            unsafe {
                // out_block [rows, d] = scores [rows, n] · v [n, d]
                product(
                    (rows, d, n),
                    Strided(dst.at(base + r0 * width), width, 1),
                    self::rows(s.as_ptr(), n),
                    self::rows(vd.as_ptr().add(base), width),
                    false,
                    1.0,
                );
            }
            // SAFETY: rows r0.. of this head's columns, inside the buffer and written
            // by this item only (as above).
            unsafe { normalise(dst, base + r0 * width, (width, d), &inv_sums[..rows]) };
        }
    };
    super::threads::split_over_threads(items, candle_core::utils::get_num_threads(), run);
    out
}

/// The softmax's normalisation, on the `d` values of each output row rather than the
/// scores it came from: row `r` (from `first + r·width`) times `inv_sums[r]`.
///
/// # Safety
/// Those rows lie inside `dst`'s buffer and nothing else touches them meanwhile.
unsafe fn normalise(dst: SharedOut, first: usize, (width, d): (usize, usize), inv_sums: &[f32]) {
    for (r, &inv) in inv_sums.iter().enumerate() {
        // SAFETY: by the caller's contract.
        let row = unsafe { std::slice::from_raw_parts_mut(dst.at(first + r * width), d) };
        scale(row, inv);
    }
}

/// `out [rows, cols] = a [rows, d] · bᵀ` for `b` [cols, d], single-threaded: `a`'s and
/// `b`'s rows `width` values apart (one head's columns of a `[T, width]` buffer),
/// `out` row-major.
///
/// # Safety
/// `a` and `b` hold `rows` and `cols` rows of `d` values `width` apart, `out`
/// `rows·cols` values that nothing else touches during the call.
unsafe fn times_transposed(
    out: *mut f32,
    a: *const f32,
    b: *const f32,
    (rows, cols, d, width): (usize, usize, usize, usize),
) {
    // SAFETY: by the caller's contract, as matrices with (column, row) strides: out
    // (1, cols), a (1, width), bᵀ (width, 1).
    unsafe {
        product(
            (rows, cols, d),
            self::rows(out, cols),
            self::rows(a, width),
            Strided(b, 1, width),
            false,
            1.0,
        );
    }
}

/// Runs `f` on the f32 buffers (whole, from offset 0) and layouts of `N` tensors in
/// CPU memory; `None` when any of them lives elsewhere or holds another dtype.
fn with_cpu_f32_buffers<const N: usize, R>(
    tensors: [&Tensor; N],
    f: impl FnOnce([(&[f32], &candle_core::Layout); N]) -> Option<R>,
) -> Option<R> {
    let guards = tensors.map(|t| t.storage_and_layout());
    let buffers: Vec<(&[f32], &candle_core::Layout)> = guards
        .iter()
        .map(|(storage, layout)| match &**storage {
            Storage::Cpu(CpuStorage::F32(data)) => Some((data.as_slice(), *layout)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    f(buffers.try_into().ok()?)
}

/// The values of contiguous tensors, from their first element.
fn contiguous_values<'a, const N: usize>(
    buffers: [(&'a [f32], &candle_core::Layout); N],
) -> Option<[&'a [f32]; N]> {
    let values: Vec<&[f32]> = buffers
        .iter()
        .map(|(data, layout)| Some(&data[layout.contiguous_offsets()?.0..]))
        .collect::<Option<_>>()?;
    values.try_into().ok()
}

/// One new query per head against the keys and values cached so far, a decode step's
/// attention: `q` [B, H, 1, D] (already scaled by `1/√D`), `k`, `v` [B, H, T ≥ 1, D] → the
/// heads side by side, [B, 1, H·D]. `k` and `v` may be views whose rows of `D` values
/// are contiguous, such as a preallocated key/value cache's: on the CPU they are read
/// once, in place, each head's scores kept in a buffer of `T` values; a matrix product
/// would pack (copy) the whole cache first.
pub fn attend_one_query(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, h, one, d) = q.dims4()?;
    let (kb, kh, _, kd) = k.dims4()?;
    if one != 1 || (kb, kh, kd) != (b, h, d) || v.dims() != k.dims() || k.dim(2)? == 0 {
        candle_core::bail!(
            "attend_one_query: q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if let Some(out) = attend_one_query_cpu(q, k, v) {
        return out;
    }
    let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
    probs.matmul(v)?.transpose(1, 2)?.reshape((b, 1, h * d))
}

/// The in-place path for f32 tensors in CPU memory whose key and value rows are
/// contiguous; `None` elsewhere.
fn attend_one_query_cpu(q: &Tensor, k: &Tensor, v: &Tensor) -> Option<Result<Tensor>> {
    if !q.device().is_cpu() || q.dtype() != DType::F32 {
        return None;
    }
    let (b, h, _, d) = q.dims4().ok()?;
    let t = k.dim(2).ok()?;
    let q = match q.contiguous() {
        Ok(q) => q,
        Err(e) => return Some(Err(e)),
    };
    let out = with_cpu_f32_buffers([&q, k, v], |[(qd, ql), (kd, kl), (vd, vl)]: [_; 3]| {
        if kl.stride()[3] != 1 || vl.stride()[3] != 1 {
            return None;
        }
        let qd = &qd[ql.contiguous_offsets()?.0..];
        Some(attend_rows(qd, (kd, kl), (vd, vl), (b, h, t, d)))
    })?;
    Some(Tensor::from_vec(out, (b, 1, h * d), q.device()))
}

/// [`attend_one_query_cpu`] over the buffers: `qd` [B·H, D] contiguous, keys and
/// values [B, H, T, D] as their layouts place them.
fn attend_rows(
    qd: &[f32],
    (kd, kl): (&[f32], &candle_core::Layout),
    (vd, vl): (&[f32], &candle_core::Layout),
    (b, h, t, d): (usize, usize, usize, usize),
) -> Vec<f32> {
    // Where row `j` of head `item` starts in a [B, H, T, D] view.
    let row = |l: &candle_core::Layout, item: usize, j: usize| {
        let s = l.stride();
        l.start_offset() + (item / h) * s[0] + (item % h) * s[1] + j * s[2]
    };
    let mut out = vec![0f32; b * h * d];
    let threads = if t * d < 4096 {
        1
    } else {
        candle_core::utils::get_num_threads()
    };
    super::threads::fill_chunks_on(&mut out, d, threads, |item, o| {
        let query = &qd[item * d..(item + 1) * d];
        let (k0, v0) = (row(kl, item, 0), row(vl, item, 0));
        let span = |stride: usize| (t - 1) * stride + d;
        let (ks, vs) = (kl.stride()[2], vl.stride()[2]);
        let (keys, values) = (&kd[k0..k0 + span(ks)], &vd[v0..v0 + span(vs)]);
        let mut scores = vec![0f32; t];
        // Heads of 64 and 128 values (T3's 64) in one pass each held in registers.
        match d {
            64 => return attend_head4(query, (keys, ks), (values, vs), &mut scores, o),
            128 => return attend_head8(query, (keys, ks), (values, vs), &mut scores, o),
            _ => {}
        }
        for (j, score) in scores.iter_mut().enumerate() {
            *score = dot(query, &keys[j * ks..][..d]);
        }
        let mut inv_sum = [0f32];
        exp_rows(&mut scores, t, &mut inv_sum);
        for (j, &p) in scores.iter().enumerate() {
            add_scaled(o, p, &values[j * vs..][..d]);
        }
        scale(o, inv_sum[0]);
    });
    out
}

simd_dispatch! {
    /// `Σ a_i · b_i`.
    fn dot(a: &[f32], b: &[f32]) -> f32 => dot_any
}

simd_dispatch! {
    /// [`attend_head_any`] for heads of 64 values.
    fn attend_head4(
        q: &[f32],
        keys: (&[f32], usize),
        values: (&[f32], usize),
        scores: &mut [f32],
        out: &mut [f32]
    ) => attend_head_any::<4>
}

simd_dispatch! {
    /// [`attend_head_any`] for heads of 128 values.
    fn attend_head8(
        q: &[f32],
        keys: (&[f32], usize),
        values: (&[f32], usize),
        scores: &mut [f32],
        out: &mut [f32]
    ) => attend_head_any::<8>
}

/// One head, one query of `16·C` values: `out = softmax(q·Kᵀ)·V` over the
/// `scores.len()` rows of `keys` and `values` (each `(values, row stride)`). The
/// query and the output stay in `C` sixteen-lane registers for the whole pass and each
/// key and value row is read once, so a decode step's attention runs at the speed the
/// cache can be read (one call per row, the output went through memory every row).
#[inline(always)]
fn attend_head_any<const C: usize>(
    q: &[f32],
    (k, ks): (&[f32], usize),
    (v, vs): (&[f32], usize),
    scores: &mut [f32],
    out: &mut [f32],
) {
    let d = C * 16;
    key_scores::<C>(q, (k, ks), scores);
    let t = scores.len();
    let mut inv_sum = [0f32];
    exp_rows_any(scores, t, &mut inv_sum);
    let mut acc = [[0f32; 16]; C];
    for (j, &p) in scores.iter().enumerate() {
        let row = &v[j * vs..][..d];
        for (lanes, chunk) in acc.iter_mut().zip(row.chunks_exact(16)) {
            for (a, &x) in lanes.iter_mut().zip(chunk) {
                *a += p * x;
            }
        }
    }
    for (lanes, chunk) in acc.iter().zip(out.chunks_exact_mut(16)) {
        for (y, &a) in chunk.iter_mut().zip(lanes) {
            *y = a * inv_sum[0];
        }
    }
}

/// `scores[j] = q · keys[j]` for [`attend_head_any`]: with AVX-512 where the CPU has
/// it (the compiler vectorises the generic loop across the wrong axis here: four-lane
/// products and a long chain of adds per key), else [`dot_any`] per key.
#[inline(always)]
fn key_scores<const C: usize>(q: &[f32], (k, ks): (&[f32], usize), scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F, checked just above.
        return unsafe { key_scores_avx512::<C>(q, (k, ks), scores) };
    }
    for (j, score) in scores.iter_mut().enumerate() {
        *score = dot_any(q, &k[j * ks..][..C * 16]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn key_scores_avx512<const C: usize>(
    q: &[f32],
    (k, ks): (&[f32], usize),
    scores: &mut [f32],
) {
    use std::arch::x86_64::*;
    let q = &q[..C * 16];
    let q: [__m512; C] = std::array::from_fn(|c| _mm512_loadu_ps(q[c * 16..].as_ptr()));
    for (j, score) in scores.iter_mut().enumerate() {
        let row = &k[j * ks..][..C * 16];
        let mut acc = _mm512_mul_ps(q[0], _mm512_loadu_ps(row.as_ptr()));
        for (c, lanes) in q.iter().enumerate().skip(1) {
            acc = _mm512_fmadd_ps(*lanes, _mm512_loadu_ps(row[c * 16..].as_ptr()), acc);
        }
        *score = _mm512_reduce_add_ps(acc);
    }
}

#[inline(always)]
fn dot_any(a: &[f32], b: &[f32]) -> f32 {
    // Sixteen lanes so that the loop vectorises.
    let mut lanes = [0f32; 16];
    let (body, tail) = a.split_at(a.len() - a.len() % 16);
    for (x, y) in body.chunks_exact(16).zip(b.chunks_exact(16)) {
        for ((acc, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *acc += x * y;
        }
    }
    let done = body.len();
    lanes.iter().sum::<f32>() + tail.iter().zip(&b[done..]).map(|(x, y)| x * y).sum::<f32>()
}

simd_dispatch! {
    /// `y += a · x`.
    fn add_scaled(y: &mut [f32], a: f32, x: &[f32]) => add_scaled_any
}

#[inline(always)]
fn add_scaled_any(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

simd_dispatch! {
    /// For each row of `n` values: `e^(x − max)` in place, and one over the row's sum
    /// of them into `inv_sums` (the softmax is those values times that: applied by the
    /// caller to the product with `v`, fewer values than the row).
    fn exp_rows(s: &mut [f32], n: usize, inv_sums: &mut [f32]) => exp_rows_any
}

#[inline(always)]
fn exp_rows_any(s: &mut [f32], n: usize, inv_sums: &mut [f32]) {
    for (row, inv) in s.chunks_exact_mut(n).zip(inv_sums.iter_mut()) {
        // Sixteen lanes for the maximum and the sum, so that both loops vectorise.
        let (body, tail) = row.split_at_mut(n - n % 16);
        let mut lanes = [f32::NEG_INFINITY; 16];
        for c in body.chunks_exact(16) {
            for (m, &x) in lanes.iter_mut().zip(c) {
                *m = if x > *m { x } else { *m };
            }
        }
        let max = lanes
            .iter()
            .chain(tail.iter())
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut sums = [0f32; 16];
        for c in body.chunks_exact_mut(16) {
            for (acc, x) in sums.iter_mut().zip(c) {
                *x = exp_f32(*x - max);
                *acc += *x;
            }
        }
        let mut sum = sums.iter().sum::<f32>();
        for x in tail {
            *x = exp_f32(*x - max);
            sum += *x;
        }
        *inv = 1.0 / sum;
    }
}

simd_dispatch! {
    /// `y *= a`.
    fn scale(y: &mut [f32], a: f32) => scale_any
}

#[inline(always)]
fn scale_any(y: &mut [f32], a: f32) {
    for y in y {
        *y *= a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::nn::max_diff;
    use candle_core::Device;

    #[test]
    fn int8_attention_stays_near_f32() -> Result<()> {
        let dev = Device::Cpu;
        // Blocks of query rows whole and cut, two items of a batch, several heads.
        for (b, t, heads, d) in [(1usize, 700usize, 8usize, 64usize), (2, 37, 3, 16)] {
            let x =
                |scale: f64| Tensor::randn(0f32, 1., (b, t, heads * d), &dev)?.affine(scale, 0.0);
            let (q, k, v) = (x(0.3)?, x(1.0)?, x(1.0)?);
            let want = self_attention(&q, &k, &v, heads)?;
            let got = self_attention_int8(&q, &k, &v, heads)?;
            let noise = (&got - &want)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
            let signal = want.sqr()?.sum_all()?.to_scalar::<f32>()?;
            let snr = 10.0 * (signal / noise).log10();
            if int8::int8_available() {
                assert!(
                    (30.0..80.0).contains(&snr),
                    "[{b}, {t}, {heads}×{d}]: {snr:.1} dB"
                );
            } else {
                assert_eq!(
                    noise, 0.0,
                    "without fast int8 products it is the f32 attention"
                );
            }
        }
        Ok(())
    }

    /// `softmax(q·kᵀ + mask)·v` per head with candle's matrix products, [B, T, h·d].
    fn unfused(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t, width) = q.dims3()?;
        let split = |x: &Tensor| {
            x.reshape((b, t, heads, width / heads))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scores = split(q)?.matmul(&split(k)?.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        candle_nn::ops::softmax_last_dim(&scores)?
            .matmul(&split(v)?)?
            .transpose(1, 2)?
            .reshape((b, t, width))
    }

    #[test]
    fn rel_shift_picks_relative_positions() -> Result<()> {
        // Row i, column k of the input holds the score for position (T − 1 − k);
        // encode (i, position) in the value and check out[i, j] has position i − j.
        let t = 5;
        let n = 2 * t - 1;
        let vals: Vec<f32> = (0..t)
            .flat_map(|i| (0..n).map(move |k| (i * 100) as f32 + (t as f32 - 1.0 - k as f32)))
            .collect();
        let x = Tensor::from_vec(vals, (1, 1, t, n), &Device::Cpu)?;
        let y = rel_shift(&x)?.squeeze(0)?.squeeze(0)?.to_vec2::<f32>()?;
        for (i, row) in y.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(v, (i * 100) as f32 + i as f32 - j as f32, "({i}, {j})");
            }
        }
        Ok(())
    }

    #[test]
    fn fused_relative_position_attention_matches_the_shifted_product() -> Result<()> {
        let dev = Device::Cpu;
        // 400 frames: two full blocks of query rows and a partial one; positions shared
        // by the batch or one set per item.
        let (b, t, heads, d) = (2, 400, 3, 8);
        let width = heads * d;
        let x = |scale: f64| (Tensor::randn(0f32, 1., (b, t, width), &dev).map(|x| x * scale))?;
        let (q_u, q_v, k, v) = (x(0.5)?, x(0.5)?, x(1.0)?, x(1.0)?);
        for pb in [1, b] {
            let p = Tensor::randn(0f32, 1., (pb, 2 * t - 1, width), &dev)?;
            let split = |x: &Tensor| {
                x.reshape((x.dim(0)?, x.dim(1)?, heads, d))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let bd = rel_shift(&split(&q_v)?.broadcast_matmul(&split(&p)?.t()?)?)?;
            let want = unfused(&q_u, &k, &v, heads, Some(&bd))?;
            let got = rel_pos_self_attention(&q_u, &q_v, &k, &v, &p, heads)?;
            let diff = max_diff(&got, &want);
            assert!(diff < 1e-5, "p batch {pb}: largest difference {diff:e}");
        }
        // Positions that are not 2T − 1 are refused.
        let p = Tensor::zeros((1, t, width), DType::F32, &dev)?;
        assert!(rel_pos_self_attention(&q_u, &q_v, &k, &v, &p, heads).is_err());
        Ok(())
    }

    #[test]
    fn fused_attention_matches_the_unfused_product() -> Result<()> {
        let dev = Device::Cpu;
        // 150 frames: two full blocks of query rows and a partial one.
        let (b, t, heads, d) = (2, 150, 3, 8);
        let q = (Tensor::randn(0f32, 1., (b, t, heads * d), &dev)? * 0.5)?;
        let k = Tensor::randn(0f32, 1., (b, t, heads * d), &dev)?;
        let v = Tensor::randn(0f32, 1., (b, t, heads * d), &dev)?;
        let got = self_attention(&q, &k, &v, heads)?;
        let diff = max_diff(&got, &unfused(&q, &k, &v, heads, None)?);
        assert!(diff < 1e-5, "largest difference {diff:e}");
        Ok(())
    }

    #[test]
    fn causal_attention_matches_the_masked_product() -> Result<()> {
        let dev = Device::Cpu;
        // Blocks of query rows that see a growing number of keys, one partial.
        for (b, t, heads, d) in [(1, 417, 4, 16), (2, 5, 2, 8)] {
            let q = (Tensor::randn(0f32, 1., (b, t, heads * d), &dev)? * 0.5)?;
            let k = Tensor::randn(0f32, 1., (b, t, heads * d), &dev)?;
            let v = Tensor::randn(0f32, 1., (b, t, heads * d), &dev)?;
            let got = causal_self_attention(&q, &k, &v, heads)?;
            let mask: Vec<f32> = (0..t)
                .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (t, t), &dev)?;
            let diff = max_diff(&got, &unfused(&q, &k, &v, heads, Some(&mask))?);
            assert!(
                diff < 1e-5,
                "({b}, {t}, {heads}, {d}): largest difference {diff:e}"
            );
        }
        Ok(())
    }

    #[test]
    fn one_query_against_a_cache_view_matches_the_matrix_products() -> Result<()> {
        let dev = Device::Cpu;
        // Keys and values in a cache of 300 positions of which `t` are filled (rows of
        // D values contiguous, heads 300·D apart), as `KvCache` hands them out; 5 and 7
        // heads · 20 values go below and above the size that is split over threads;
        // heads of 64 and 128 values take the single-pass kernel (one row, many rows).
        for (b, h, t, d) in [
            (1, 5, 37, 20),
            (2, 7, 290, 20),
            (1, 3, 1, 64),
            (1, 16, 290, 64),
            (2, 2, 45, 128),
        ] {
            let cache = |seed: f32| -> Result<Tensor> {
                (Tensor::randn(0f32, 1., (b, h, 300, d), &dev)? + f64::from(seed))?.narrow(2, 0, t)
            };
            let (k, v) = (cache(0.0)?, cache(0.5)?);
            assert!(!k.is_contiguous());
            let q = (Tensor::randn(0f32, 1., (b, h, 1, d), &dev)? * 0.5)?;
            let got = attend_one_query(&q, &k, &v)?;
            let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
            let want = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, 1, h * d))?;
            let diff = max_diff(&got, &want);
            assert!(
                diff < 1e-5,
                "({b}, {h}, {t}, {d}): largest difference {diff:e}"
            );
        }
        let q = Tensor::zeros((1, 2, 2, 4), DType::F32, &dev)?;
        let k = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev)?;
        assert!(attend_one_query(&q, &k, &k).is_err(), "two queries");
        let q = Tensor::zeros((1, 2, 1, 64), DType::F32, &dev)?;
        let k = Tensor::zeros((1, 2, 0, 64), DType::F32, &dev)?;
        assert!(attend_one_query(&q, &k, &k).is_err(), "no keys");
        Ok(())
    }
}
