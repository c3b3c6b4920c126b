//! Multi-head self-attention without a mask, `softmax(q·kᵀ)·v` per head, fused on the
//! CPU: for a block of query rows of one head, the scores go into a small buffer that
//! stays in cache, the softmax runs over it in place, and the product with `v` is
//! written straight into the head's columns of the output. Nothing is transposed or
//! copied, and the [heads, T, T] score tensor never exists.

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};

use super::ops::{exp_f32, simd_dispatch};

/// Query rows per work item: 192 rows of scores against 700 keys (250 prompt + 100
/// speech tokens) are 525 KB, which stays in a 1 MB L2 cache; fewer rows repack the
/// keys and values more often (64 rows took a quarter longer at 700 frames).
const ROWS: usize = 192;

/// `softmax(q·kᵀ)·v` for each of `heads` heads: `q`, `k`, `v` are [B, T, heads·d]
/// with head `i` in columns `i·d..(i + 1)·d` (the layout a linear projection gives),
/// `q` already scaled by `1/√d`; returns [B, T, heads·d] in the same layout.
pub fn self_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, width) = q.dims3()?;
    if k.dims() != q.dims() || v.dims() != q.dims() || width % heads != 0 {
        candle_core::bail!(
            "self_attention: q {:?}, k {:?}, v {:?} for {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if let Some(out) = self_attention_cpu(q, k, v, heads) {
        return out;
    }
    let d = width / heads;
    let split = |x: &Tensor| x.reshape((b, t, heads, d))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let attn = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
    attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, width))
}

/// The fused path for contiguous f32 tensors in CPU memory; `None` elsewhere.
fn self_attention_cpu(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Option<Result<Tensor>> {
    if !q.device().is_cpu() || q.dtype() != DType::F32 {
        return None;
    }
    let (b, t, width) = q.dims3().ok()?;
    let d = width / heads;
    let (q, k, v) = match (q.contiguous(), k.contiguous(), v.contiguous()) {
        (Ok(q), Ok(k), Ok(v)) => (q, k, v),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Some(Err(e)),
    };
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (
        Storage::Cpu(CpuStorage::F32(qd)),
        Storage::Cpu(CpuStorage::F32(kd)),
        Storage::Cpu(CpuStorage::F32(vd)),
    ) = (&*qs, &*ks, &*vs)
    else {
        return None;
    };
    let qd = &qd[ql.contiguous_offsets()?.0..];
    let kd = &kd[kl.contiguous_offsets()?.0..];
    let vd = &vd[vl.contiguous_offsets()?.0..];

    let mut out = vec![0f32; b * t * width];
    let blocks = t.div_ceil(ROWS);
    let items = b * heads * blocks;
    let dst = SharedOut(out.as_mut_ptr());
    let run = |first: usize, last: usize| {
        let mut scores = vec![0f32; ROWS * t];
        for item in first..last {
            let (bh, blk) = (item / blocks, item % blocks);
            let (batch, head) = (bh / heads, bh % heads);
            let r0 = blk * ROWS;
            let rows = ROWS.min(t - r0);
            let base = batch * t * width + head * d;
            let s = &mut scores[..rows * t];
            // SAFETY: q rows r0..r0 + rows and all t rows of k and v, columns of this
            // head, lie inside the [B, T, width] buffers; the output block (these rows,
            // this head's columns) is written by this item only.
            unsafe {
                // scores [rows, t] = q_block [rows, d] · kᵀ [d, t]
                gemm::gemm(
                    rows,
                    t,
                    d,
                    s.as_mut_ptr(),
                    1,
                    t as isize,
                    false,
                    qd.as_ptr().add(base + r0 * width),
                    1,
                    width as isize,
                    kd.as_ptr().add(base),
                    width as isize,
                    1,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            softmax_rows(s, t);
            // SAFETY: as above.
            unsafe {
                // out_block [rows, d] = scores [rows, t] · v [t, d]
                gemm::gemm(
                    rows,
                    d,
                    t,
                    dst.at(base + r0 * width),
                    1,
                    width as isize,
                    false,
                    s.as_ptr(),
                    1,
                    t as isize,
                    vd.as_ptr().add(base),
                    1,
                    width as isize,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    };
    super::ops::split_over_threads(items, candle_core::utils::get_num_threads(), run);
    drop((qs, ks, vs));
    Some(Tensor::from_vec(out, (b, t, width), q.device()))
}

/// The output buffer shared by the work items, each writing its own block.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: items write disjoint blocks of the buffer (see `self_attention_cpu`).
unsafe impl Send for SharedOut {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The value `offset` places in.
    ///
    /// # Safety
    /// `offset` is inside the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: by the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

simd_dispatch! {
    /// Softmax over each row of `n` values, in place.
    fn softmax_rows(s: &mut [f32], n: usize) => softmax_rows_any
}

#[inline(always)]
fn softmax_rows_any(s: &mut [f32], n: usize) {
    for row in s.chunks_exact_mut(n) {
        // Eight lanes for the maximum and the sum, so that both loops vectorise; the
        // exponentials are a plain map, which vectorises on its own.
        let (body, tail) = row.split_at(n - n % 8);
        let mut lanes = [f32::NEG_INFINITY; 8];
        for c in body.chunks_exact(8) {
            for (m, &x) in lanes.iter_mut().zip(c) {
                *m = if x > *m { x } else { *m };
            }
        }
        let max = lanes
            .iter()
            .chain(tail.iter())
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for x in row.iter_mut() {
            *x = exp_f32(*x - max);
        }
        let (body, tail) = row.split_at(n - n % 8);
        let mut sums = [0f32; 8];
        for c in body.chunks_exact(8) {
            for (acc, &x) in sums.iter_mut().zip(c) {
                *acc += x;
            }
        }
        let sum = sums.iter().chain(tail.iter()).sum::<f32>();
        let inv = 1.0 / sum;
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_attention_matches_the_unfused_product() -> Result<()> {
        let dev = Device::Cpu;
        // 150 frames: two full blocks of query rows and a partial one.
        let (b, t, heads, d) = (2, 150, 3, 8);
        let q = (Tensor::randn(0f32, 1., (b, t, heads * d), &dev)? * 0.5)?;
        let k = Tensor::randn(0f32, 1., (b, t, heads * d), &dev)?;
        let v = Tensor::randn(0f32, 1., (b, t, heads * d), &dev)?;
        let got = self_attention(&q, &k, &v, heads)?;
        let split = |x: &Tensor| x.reshape((b, t, heads, d))?.transpose(1, 2)?.contiguous();
        let scores = split(&q)?.matmul(&split(&k)?.t()?)?;
        let want = candle_nn::ops::softmax_last_dim(&scores)?
            .matmul(&split(&v)?)?
            .transpose(1, 2)?
            .reshape((b, t, heads * d))?;
        let diff = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "largest difference {diff:e}");
        Ok(())
    }
}
