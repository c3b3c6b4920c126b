//! Small tensor ops the engines need that candle 0.11 lacks, or has only in a slow
//! form (many passes, or a loop over channel groups).
//!
//! On a contiguous f32 CPU tensor each op is one pass over the data, split across
//! threads when the tensor is large; on other devices it falls back to candle's own
//! ops (or, for the few ops candle cannot express, a trip through host memory).

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use candle_nn::{ConvTranspose1d, ConvTranspose1dConfig};

/// Defines `fn $name(args) -> ret` that runs `$body(args)` compiled for AVX-512 when
/// the CPU has it, else for AVX2 with FMA, else as built, so that the loops in it
/// vectorise for the widest vectors there are (the build targets baseline x86-64).
/// `$body` must be `#[inline(always)]`, to be compiled into each variant.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { wide($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                    return unsafe { narrow($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// Below this many values an op runs on the calling thread: starting threads costs
/// more than it saves.
const PARALLEL_MIN: usize = 1 << 16;

/// Runs `f` on the f32 values of `x` when it lives in CPU memory as f32; `None` on any
/// other device or dtype. A strided CPU tensor is made contiguous first.
pub(crate) fn with_cpu_f32<R>(
    x: &Tensor,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Option<Result<R>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return None;
    }
    let x = match x.contiguous() {
        Ok(x) => x,
        Err(e) => return Some(Err(e)),
    };
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    Some(f(&data[start..end]))
}

/// Fills `out` chunk by chunk (`chunk` values each, the last possibly shorter) with
/// `f(chunk_index, values)`, on candle's thread count when `out` is large.
pub(crate) fn fill_chunks(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let threads = if out.len() < PARALLEL_MIN {
        1
    } else {
        candle_core::utils::get_num_threads()
    };
    fill_chunks_on(out, chunk, threads, f);
}

/// [`fill_chunks`] on up to `threads` threads whatever the size of `out` (for chunks
/// that each cost far more than their length says).
pub(crate) fn fill_chunks_on(
    out: &mut [f32],
    chunk: usize,
    threads: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let chunk = chunk.max(1);
    let chunks = out.len().div_ceil(chunk);
    let threads = threads.min(chunks);
    if threads <= 1 {
        out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
        return;
    }
    let threads = threads.min(worker_count());
    let per_thread = chunks.div_ceil(threads);
    let parts: Vec<std::sync::Mutex<&mut [f32]>> = out
        .chunks_mut(per_thread * chunk)
        .map(std::sync::Mutex::new)
        .collect();
    on_workers(parts.len(), |t| {
        let mut part = parts[t].lock().unwrap_or_else(|e| e.into_inner());
        for (i, c) in part.chunks_mut(chunk).enumerate() {
            f(t * per_thread + i, c);
        }
    });
}

/// Runs `run(first, last)` on `threads` consecutive ranges covering `0..items` (see
/// [`on_workers`]).
pub(crate) fn split_over_threads(items: usize, threads: usize, run: impl Fn(usize, usize) + Sync) {
    let threads = threads.clamp(1, items.max(1));
    let per = items.div_ceil(threads);
    on_workers(threads, |th| {
        let (first, last) = (th * per, ((th + 1) * per).min(items));
        if first < last {
            run(first, last);
        }
    });
}

/// An output buffer shared by the shares of [`on_workers`] (or other threads), each
/// writing its own part.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);

// SAFETY: users write disjoint parts of the buffer, each by one thread.
unsafe impl Send for SharedOut {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The value `offset` places in.
    ///
    /// # Safety
    /// `offset` is inside the buffer.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: by the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

thread_local! {
    /// Set while this thread runs a share of [`on_workers`].
    static IN_WORKERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How many shares [`on_workers`] runs at once: candle's persistent CPU workers and
/// the calling thread.
pub(crate) fn worker_count() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// Runs `f(0)`, …, `f(shares − 1)` on candle's persistent CPU workers and the calling
/// thread, share `i` on thread `i mod` [`worker_count`], and returns when all are done.
/// Starting a thread costs ~60 µs, as much as a small op, and the `gemm` crate's own
/// rayon threads, spinning beside candle's, made 2-core products uneven (150–290
/// GFLOP/s for the same shape). The pool takes one call at a time: a call from inside
/// a share runs its shares in turn on that thread, and `f` must never run a candle
/// op (candle's ops use the same pool and would wait for it forever).
pub(crate) fn on_workers(shares: usize, f: impl Fn(usize) + Sync) {
    if shares <= 1 || IN_WORKERS.with(std::cell::Cell::get) {
        (0..shares).for_each(f);
        return;
    }
    let threads = worker_count();
    candle_core::utils::barrier_pool().execute(|t| {
        let was = IN_WORKERS.with(|w| w.replace(true));
        for share in (t..shares).step_by(threads) {
            f(share);
        }
        IN_WORKERS.with(|w| w.set(was));
    });
}

/// Applies `f` to every value of a CPU f32 tensor, in chunks over candle's threads
/// with [`map_slice`] (so a branch-free `f` runs on the widest vectors there are), or
/// returns `None` on any other device or dtype.
pub(crate) fn map_cpu(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Option<Result<Tensor>> {
    with_cpu_f32(x, |data| {
        let mut out = vec![0f32; data.len()];
        let chunk = 1 << 14;
        fill_chunks(&mut out, chunk, |i, o| {
            map_slice(&data[i * chunk..i * chunk + o.len()], o, &f);
        });
        Tensor::from_vec(out, x.shape(), x.device())
    })
}

/// `F.leaky_relu(x, slope)`: `x` where `x > 0`, else `slope · x`.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let s = slope as f32;
    if let Some(out) = map_cpu(x, |v| if v > 0.0 { v } else { v * s }) {
        return out;
    }
    let zeros = x.zeros_like()?;
    x.maximum(&zeros)? + (x.minimum(&zeros)? * slope)?
}

/// `F.elu(x, alpha)`: `x` where `x > 0`, else `alpha · (eˣ − 1)`, the difference taken
/// with `expm1` as PyTorch's CPU kernel does (a plain `exp − 1` loses the low bits of
/// small negative values). Off the CPU, candle's `elu`.
pub fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let a = alpha as f32;
    if let Some(out) = map_cpu(x, |v| if v > 0.0 { v } else { a * v.exp_m1() }) {
        return out;
    }
    x.elu(alpha)
}

/// Snake activation `x + sin²(α·x)/α` with one `α` per channel: `x` is [B, C, T] and
/// `alpha` has C values (the reference stores it as [1, C, 1]). Rounds like the
/// reference: `x + (1/α) · sin(α·x)²`.
pub fn snake(x: &Tensor, alpha: &Tensor) -> Result<Tensor> {
    let (_, c, t) = x.dims3()?;
    let alpha = alpha.flatten_all()?;
    if alpha.dim(0)? != c {
        candle_core::bail!("snake: {} alphas for {c} channels", alpha.dim(0)?);
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        let a = alpha.to_vec1::<f32>()?;
        if let Some(out) = with_cpu_f32(x, |data| {
            let mut out = data.to_vec();
            fill_chunks(&mut out, t, |row, o| snake_row_inplace(a[row % c], o));
            Tensor::from_vec(out, x.shape(), x.device())
        }) {
            return out;
        }
    }
    let a = alpha.reshape((1, c, 1))?;
    let s = x.broadcast_mul(&a)?.sin()?.sqr()?;
    x + s.broadcast_mul(&a.recip()?)?
}

/// `acc = (acc + y) · scale` in place when both are contiguous f32 CPU tensors of one
/// shape (no third activation alive); a new tensor otherwise. `acc` must not share its
/// storage with another tensor still in use (a layer's fresh output).
pub fn add_scaled_into(acc: Tensor, y: &Tensor, scale: f32) -> Result<Tensor> {
    struct AddScaled(f32);
    impl candle_core::InplaceOp2 for AddScaled {
        fn name(&self) -> &'static str {
            "add-scaled-into"
        }
        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &candle_core::Layout,
            s2: &CpuStorage,
            l2: &candle_core::Layout,
        ) -> Result<()> {
            let (CpuStorage::F32(a), CpuStorage::F32(b)) = (s1, s2) else {
                candle_core::bail!("add-scaled-into: f32 only");
            };
            let (Some((a0, a1)), Some((b0, b1))) =
                (l1.contiguous_offsets(), l2.contiguous_offsets())
            else {
                candle_core::bail!("add-scaled-into: contiguous tensors only");
            };
            for (a, &b) in a[a0..a1].iter_mut().zip(&b[b0..b1]) {
                *a = (*a + b) * self.0;
            }
            Ok(())
        }
    }
    let fits = acc.device().is_cpu()
        && acc.dtype() == DType::F32
        && y.dtype() == DType::F32
        && acc.shape() == y.shape()
        && acc.is_contiguous()
        && y.is_contiguous();
    if fits {
        acc.inplace_op2(y, &AddScaled(scale))?;
        Ok(acc)
    } else {
        (acc + y)? * f64::from(scale)
    }
}

/// Arguments of `sin` up to this size take the vectorised path; its three-part π/2
/// reduction is exact there (larger ones, and NaN, go to the library `sin`).
const FAST_SIN_LIMIT: f32 = 8192.0;

simd_dispatch! {
    /// One channel of [`snake`] in place: `row = row + (1/α) · sin(α·row)²`, with a
    /// `sin` that the compiler vectorises (the library `sinf` is a scalar call per value
    /// and was a tenth of the generator's time), within 2 ulp of `sinf` on the reduced
    /// range; a row with any |α·x| beyond that range (or NaN) takes the library `sin`.
    pub(crate) fn snake_row_inplace(a: f32, row: &mut [f32]) => snake_row_inplace_any
}

#[inline(always)]
fn snake_row_inplace_any(a: f32, row: &mut [f32]) {
    let inv = 1.0 / a;
    // The vectorised `sin` only where every |α·x| is in its range (NaN sorts above).
    let widest = row
        .iter()
        .fold(0u32, |m, &v| m.max((a * v).to_bits() & 0x7fff_ffff));
    if widest < FAST_SIN_LIMIT.to_bits() {
        for v in row.iter_mut() {
            let s = sin_reduced(a * *v);
            *v += inv * (s * s);
        }
    } else {
        for v in row.iter_mut() {
            let s = (a * *v).sin();
            *v += inv * (s * s);
        }
    }
}

/// `sin(x)` for |x| < [`FAST_SIN_LIMIT`], branch-free: x = q·π/2 + r (Cody–Waite, π/2
/// in three parts), then Cephes' single-precision polynomials for `sin r` / `cos r`.
#[inline(always)]
fn sin_reduced(x: f32) -> f32 {
    // Round to nearest by adding 1.5·2²³; the low bits of the sum hold q.
    const SHIFT: f32 = 12_582_912.0;
    let qf = x * std::f32::consts::FRAC_2_PI + SHIFT;
    let quadrant = qf.to_bits();
    let q = qf - SHIFT;
    let r = x - q * 1.570_312_5;
    let r = r - q * 4.837_513e-4;
    let r = r - q * 7.549_79e-8;
    let r2 = r * r;
    let sin_r = r + r * r2 * (-1.666_665_5e-1 + r2 * (8.332_161e-3 + r2 * -1.951_529_6e-4));
    let cos_r =
        1.0 - 0.5 * r2 + r2 * r2 * (4.166_664_6e-2 + r2 * (-1.388_731_6e-3 + r2 * 2.443_315_7e-5));
    let v = if quadrant & 1 == 0 { sin_r } else { cos_r };
    // Quadrants 2 and 3 flip the sign.
    f32::from_bits(v.to_bits() ^ ((quadrant & 2) << 30))
}

/// `F.gelu(x)` in its exact form, `x · (1 + erf(x / √2)) / 2`, on a CPU f32 tensor in
/// one vectorised pass (candle's `gelu_erf` calls a scalar f64 `erf` per value, a
/// seventh of S3Gen's decoder time); candle's op elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    match map_cpu(x, gelu_erf_f32) {
        Some(y) => y,
        None => x.gelu_erf(),
    }
}

/// `F.gelu(x, approximate="tanh")` (transformers' `gelu_new`) on a CPU f32 tensor in
/// one vectorised pass: `0.5·x·(1 + tanh u)` is `x / (1 + e^(−2u))`, one [`exp_f32`]
/// (candle's op calls the library `tanhf` per value, ~6% of a GPT-2 decode step);
/// candle's op elsewhere.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    match map_cpu(x, gelu_tanh_f32) {
        Some(y) => y,
        None => x.gelu(),
    }
}

/// `x / (1 + e^(−2u))` with `u = √(2/π)·(x + 0.044715·x³)`.
#[inline(always)]
fn gelu_tanh_f32(x: f32) -> f32 {
    const TWO_SQRT_2_OVER_PI: f32 = 1.595_769;
    let u2 = TWO_SQRT_2_OVER_PI * x * (0.044_715 * x).mul_add(x, 1.0);
    x / (1.0 + exp_f32(-u2))
}

/// `out[i] = f(xs[i])`, compiled for the widest vectors the CPU has (as
/// [`simd_dispatch`]), so that a branch-free `f` (such as [`exp_f32`]) runs on them.
pub(crate) fn map_slice<F: Fn(f32) -> f32>(xs: &[f32], out: &mut [f32], f: F) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn wide<F: Fn(f32) -> f32>(xs: &[f32], out: &mut [f32], f: F) {
            map_slice_any(xs, out, f);
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn narrow<F: Fn(f32) -> f32>(xs: &[f32], out: &mut [f32], f: F) {
            map_slice_any(xs, out, f);
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { wide(xs, out, f) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { narrow(xs, out, f) };
        }
    }
    map_slice_any(xs, out, f);
}

#[inline(always)]
fn map_slice_any<F: Fn(f32) -> f32>(xs: &[f32], out: &mut [f32], f: F) {
    for (o, &v) in out.iter_mut().zip(xs) {
        *o = f(v);
    }
}

/// `nn.Mish`, `x · tanh(softplus(x))`, in closed form: with `e = eˣ`,
/// `tanh(ln(1 + e)) = n / (n + 2)` for `n = e·(e + 2)`. One [`exp_f32`] and no
/// library calls, so it vectorises; above x = 20 the ratio is 1 in f32, and clamping
/// there keeps `n` finite. NaN stays NaN.
#[inline(always)]
pub(crate) fn mish_f32(x: f32) -> f32 {
    let e = exp_f32(if x > 20.0 { 20.0 } else { x });
    let n = e * (e + 2.0);
    x * (n / (n + 2.0))
}

/// GELU through `erfc` so that the negative tail keeps its relative precision
/// (`1 + erf` cancels there): `x · erfc(|x|/√2)/2` below zero, `x · (1 − erfc(x/√2)/2)`
/// above, with the `erfcc` approximation of Numerical Recipes (relative error below
/// 1.2e-7 for every argument) and [`exp_f32`]. NaN stays NaN.
#[inline(always)]
fn gelu_erf_f32(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = t.mul_add(0.170_872_77, -0.822_152_23);
    let p = t.mul_add(p, 1.488_515_9);
    let p = t.mul_add(p, -1.135_204);
    let p = t.mul_add(p, 0.278_868_07);
    let p = t.mul_add(p, -0.186_288_06);
    let p = t.mul_add(p, 0.096_784_18);
    let p = t.mul_add(p, 0.374_091_96);
    let p = t.mul_add(p, 1.000_023_7);
    let p = t.mul_add(p, -1.265_512_2);
    let half_erfc = 0.5 * t * exp_f32(p - z * z);
    x * if x < 0.0 { half_erfc } else { 1.0 - half_erfc }
}

/// `exp(x)` in f32 without branches or library calls, so that loops over it
/// vectorise: x = n·ln 2 + r (Cody–Waite, ln 2 in two parts), Cephes' `expf`
/// polynomial for `eʳ`, then 2ⁿ put into the exponent bits. Within 2 ulp of `expf`;
/// arguments are clamped to [−87.3, 88.37], where 2ⁿ stays a normal float (so −∞
/// gives 1.2e-38, not 0), NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    // Round to nearest by adding 1.5·2²³; the low bits of the sum hold n.
    const SHIFT: f32 = 12_582_912.0;
    let x = if x > 88.37 { 88.37 } else { x };
    let x = if x < -87.3 { -87.3 } else { x };
    let nf = x * std::f32::consts::LOG2_E + SHIFT;
    let n = nf.to_bits() as i32 - SHIFT.to_bits() as i32;
    let nf = nf - SHIFT;
    // 0.693_359_4 rounds to 0.693359375 exactly: few bits, so n·C1 is exact.
    let r = nf.mul_add(-0.693_359_4, x);
    let r = nf.mul_add(2.121_944_4e-4, r);
    let p = r.mul_add(1.987_569_1e-4, 1.398_2e-3);
    let p = r.mul_add(p, 8.333_452e-3);
    let p = r.mul_add(p, 4.166_579_6e-2);
    let p = r.mul_add(p, 0.166_666_65);
    let p = r.mul_add(p, 0.5);
    let e = (r * r).mul_add(p, r) + 1.0;
    e * f32::from_bits(((n + 127) as u32) << 23)
}

/// Elementwise `atan2(y, x)` (the angle of `x + iy`, as `torch.angle`). Candle has no
/// arctangent, so off the CPU the values make a round trip through host memory.
pub fn atan2(y: &Tensor, x: &Tensor) -> Result<Tensor> {
    if y.shape() != x.shape() {
        candle_core::bail!("atan2: shapes {:?} and {:?} differ", y.shape(), x.shape());
    }
    let dev = y.device();
    let (yc, xc) = (y.to_device(&Device::Cpu)?, x.to_device(&Device::Cpu)?);
    let (yv, xv) = (
        yc.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        xc.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
    );
    let out: Vec<f32> = yv.iter().zip(&xv).map(|(y, x)| y.atan2(*x)).collect();
    Tensor::from_vec(out, y.shape(), dev)?.to_dtype(y.dtype())
}

/// `F.interpolate(x, scale_factor=scale, mode="linear", align_corners=False)` for `x`
/// [B, C, T]: T·scale output samples (truncated), each read at source position
/// `max((1/scale)·(t + 0.5) − 0.5, 0)` in f32 and blended as PyTorch's CPU kernel does,
/// `λ0·x[i0] + λ1·x[i1]` with a fused multiply-add, so the result matches bit for bit.
/// Works for down- and upscaling. Off the CPU the values go through host memory.
pub fn interpolate_linear(x: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, c, t_in) = x.dims3()?;
    if scale.is_nan() || scale <= 0.0 || t_in == 0 {
        candle_core::bail!("interpolate_linear: scale {scale} on {t_in} samples");
    }
    let t_out = (t_in as f64 * scale) as usize;
    let src_scale = (1.0 / scale) as f32;
    // Source taps and weights depend only on the output position.
    let taps: Vec<(usize, usize, f32, f32)> = (0..t_out)
        .map(|t| {
            let src = (src_scale * (t as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(t_in - 1);
            let i1 = if i0 + 1 < t_in { i0 + 1 } else { i0 };
            let l1 = src - i0 as f32;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect();
    let dev = x.device().clone();
    let host = x.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let out = with_cpu_f32(&host, |data| {
        let mut out = vec![0f32; b * c * t_out];
        fill_chunks(&mut out, t_out, |row, o| {
            let xs = &data[row * t_in..(row + 1) * t_in];
            for (o, &(i0, i1, l0, l1)) in o.iter_mut().zip(&taps) {
                *o = l0.mul_add(xs[i0], l1 * xs[i1]);
            }
        });
        Tensor::from_vec(out, (b, c, t_out), &dev)
    });
    match out {
        Some(out) => out?.to_dtype(x.dtype()),
        None => candle_core::bail!("interpolate_linear: no host copy"),
    }
}

/// `F.interpolate(x, scale_factor=2, mode="nearest")` for `x` [B, C, T]: every sample twice.
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (b, c, t) = x.dims3()?;
    x.unsqueeze(3)?
        .broadcast_as((b, c, t, 2))?
        .reshape((b, c, 2 * t))
}

/// `nn.ReflectionPad1d((left, right))` on the last dimension: mirrors the samples next
/// to each edge, the edge itself not repeated.
pub fn reflection_pad1d(x: &Tensor, left: usize, right: usize) -> Result<Tensor> {
    let t = x.dim(candle_core::D::Minus1)?;
    if left >= t || right >= t {
        candle_core::bail!("reflection_pad1d: pad ({left}, {right}) on {t} samples");
    }
    let last = x.rank() - 1;
    let mut parts = Vec::with_capacity(left + right + 1);
    for i in (1..=left).rev() {
        parts.push(x.narrow(last, i, 1)?);
    }
    parts.push(x.clone());
    for i in 1..=right {
        parts.push(x.narrow(last, t - 1 - i, 1)?);
    }
    Tensor::cat(&parts, last)
}

/// Runs a `ConvTranspose1d` layer (groups 1, dilation 1) through candle's matrix-product
/// kernel, which candle takes only without padding: the padding is trimmed afterwards.
/// Same result as the layer's own `forward`, whose padded CPU kernel is a direct loop.
pub fn conv_transpose1d_trimmed(x: &Tensor, conv: &ConvTranspose1d) -> Result<Tensor> {
    let cfg = conv.config();
    if cfg.groups != 1 || cfg.dilation != 1 {
        return candle_core::Module::forward(conv, x);
    }
    let (b, _, t) = x.dims3()?;
    let (_, c_out, k) = conv.weight().dims3()?;
    // candle 0.11's matrix-product path mixes up batch items when B > 1: one at a time.
    let full = if b == 1 {
        x.conv_transpose1d(conv.weight(), 0, 0, cfg.stride, 1, 1)?
    } else {
        let items = (0..b)
            .map(|i| {
                x.narrow(0, i, 1)?
                    .conv_transpose1d(conv.weight(), 0, 0, cfg.stride, 1, 1)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&items, 0)?
    };
    let l_out = ((t.max(1) - 1) * cfg.stride + k + cfg.output_padding)
        .checked_sub(2 * cfg.padding)
        .ok_or_else(|| candle_core::Error::Msg("conv_transpose1d: output too short".into()))?;
    let have = full.dim(2)?;
    let full = if cfg.padding + l_out > have {
        full.pad_with_zeros(2, 0, cfg.padding + l_out - have)?
    } else {
        full
    };
    let out = full.narrow(2, cfg.padding, l_out)?;
    match conv.bias() {
        Some(b) => out.broadcast_add(&b.reshape((1, c_out, 1))?),
        None => out.contiguous(),
    }
}

/// A depthwise `nn.ConvTranspose1d` (groups = in = out channels, dilation 1). Candle
/// runs a grouped transposed convolution as one small convolution per group; this
/// splits the output into `stride` phases instead, each a sum of `⌈k/stride⌉` shifted,
/// per-channel scaled copies of the input, then interleaves them.
#[derive(Debug, Clone)]
pub struct DepthwiseConvTranspose1d {
    /// [C, K]
    weight: Tensor,
    /// [1, C, 1]
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    output_padding: usize,
}

impl DepthwiseConvTranspose1d {
    /// From a loaded (weight-norm folded) depthwise `ConvTranspose1d`; fails unless it is
    /// depthwise with dilation 1.
    pub fn from_conv(conv: &ConvTranspose1d) -> Result<Self> {
        let cfg: &ConvTranspose1dConfig = conv.config();
        let (c, per_group, k) = conv.weight().dims3()?;
        if cfg.groups != c || per_group != 1 || cfg.dilation != 1 {
            candle_core::bail!(
                "depthwise conv_transpose1d: weight {:?}, groups {}, dilation {}",
                conv.weight().shape(),
                cfg.groups,
                cfg.dilation
            );
        }
        if cfg.stride == 0 || cfg.output_padding >= cfg.stride.max(cfg.dilation) {
            candle_core::bail!("depthwise conv_transpose1d: bad stride/output padding");
        }
        let bias = conv.bias().map(|b| b.reshape((1, c, 1))).transpose()?;
        Ok(Self {
            weight: conv.weight().reshape((c, k))?,
            bias,
            stride: cfg.stride,
            padding: cfg.padding,
            output_padding: cfg.output_padding,
        })
    }

    /// `x` [B, C, T] → [B, C, (T−1)·stride − 2·padding + K + output_padding].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let (_, k) = self.weight.dims2()?;
        let s = self.stride;
        let taps = k.div_ceil(s);
        let q = t + taps - 1;
        let l_out = ((t - 1) * s + k + self.output_padding)
            .checked_sub(2 * self.padding)
            .ok_or_else(|| candle_core::Error::Msg("conv_transpose1d: output too short".into()))?;
        // Full output u[q·s + r] = Σ_m w[r + m·s] · x[q − m]: phase r of every block.
        let xp = x.pad_with_zeros(2, taps - 1, taps - 1)?;
        let mut phases = Vec::with_capacity(s);
        for r in 0..s {
            let mut acc: Option<Tensor> = None;
            for m in 0..taps {
                let tap = r + m * s;
                if tap >= k {
                    break;
                }
                let w = self.weight.narrow(1, tap, 1)?.reshape((1, c, 1))?;
                let term = xp.narrow(2, taps - 1 - m, q)?.broadcast_mul(&w)?;
                acc = Some(match acc {
                    None => term,
                    Some(a) => (a + term)?,
                });
            }
            phases.push(match acc {
                Some(a) => a,
                None => Tensor::zeros((b, c, q), x.dtype(), x.device())?,
            });
        }
        let full = Tensor::stack(&phases, 3)?.reshape((b, c, q * s))?;
        let need = self.padding + l_out;
        let full = if need > q * s {
            full.pad_with_zeros(2, 0, need - q * s)?
        } else {
            full
        };
        let out = full.narrow(2, self.padding, l_out)?;
        match &self.bias {
            Some(bias) => out.broadcast_add(bias),
            None => out.contiguous(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn work_shared_on_the_workers_runs_every_share_once_even_nested() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let counts: Vec<AtomicUsize> = (0..7).map(|_| AtomicUsize::new(0)).collect();
        let inner = AtomicUsize::new(0);
        // More shares than threads, each starting a nested call (which must run on its
        // own thread rather than wait for the pool it is part of).
        on_workers(counts.len(), |s| {
            counts[s].fetch_add(1, Ordering::Relaxed);
            on_workers(3, |_| {
                inner.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        assert_eq!(inner.load(Ordering::Relaxed), 7 * 3);
        let mut out = vec![0f32; 1 << 18];
        fill_chunks(&mut out, 1000, |i, c| c.fill(i as f32));
        assert!(out.iter().enumerate().all(|(j, &v)| v == (j / 1000) as f32));
    }

    #[test]
    fn elu_keeps_small_negative_values_exact() -> Result<()> {
        let x = Tensor::new(&[2f32, 0.0, -1e-6, -1.0, -30.0], &Device::Cpu)?;
        let y = elu(&x, 1.0)?.to_vec1::<f32>()?;
        assert_eq!(y[0], 2.0);
        assert_eq!(y[1], 0.0);
        // eˣ − 1 in f32 would give −9.537e-7 here.
        assert_eq!(y[2], (-1e-6f32).exp_m1());
        assert!((y[3] - (-0.632_120_6)).abs() < 1e-7);
        assert_eq!(y[4], -1.0);
        Ok(())
    }

    #[test]
    fn vectorised_gelu_matches_the_exact_erf_form() -> Result<()> {
        let xs: Vec<f32> = (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .chain([-30.0, -8.0, 8.0, 30.0, 1e6, -1e-30, 0.0])
            .collect();
        let got = gelu_erf(&Tensor::new(xs.as_slice(), &Device::Cpu)?)?.to_vec1::<f32>()?;
        let mut worst = 0f64;
        for (&g, &v) in got.iter().zip(&xs) {
            let v = f64::from(v);
            let want = 0.5 * v * candle_core::cpu::erf::erfc_f64(-v / std::f64::consts::SQRT_2);
            let e = (f64::from(g) - want).abs() / want.abs().max(1.0);
            worst = worst.max(e);
        }
        assert!(worst < 2e-7, "largest difference {worst:e}");
        let nan = gelu_erf(&Tensor::new(&[f32::NAN], &Device::Cpu)?)?.to_vec1::<f32>()?;
        assert!(nan[0].is_nan());
        Ok(())
    }

    #[test]
    fn closed_form_mish_matches_tanh_of_softplus() {
        let xs: Vec<f32> = (-300_000..=300_000)
            .map(|i| i as f32 * 1e-4)
            .chain([-100.0, -87.0, 19.9, 20.0, 20.1, 88.0, 1e6, -1e-30, 0.0])
            .collect();
        let mut got = vec![0f32; xs.len()];
        map_slice(&xs, &mut got, mish_f32);
        let mut worst = 0f64;
        for (&g, &v) in got.iter().zip(&xs) {
            let v = f64::from(v);
            let want = v * v.exp().ln_1p().tanh();
            worst = worst.max((f64::from(g) - want).abs() / want.abs().max(1.0));
        }
        assert!(worst < 5e-7, "largest difference {worst:e}");
        assert!(mish_f32(f32::NAN).is_nan());
        assert_eq!(mish_f32(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn tanh_gelu_matches_its_definition() -> Result<()> {
        let xs: Vec<f32> = (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .chain([-1e6, -40.0, 40.0, 1e6, 0.0])
            .collect();
        let mut worst = 0f64;
        for &v in &xs {
            let x = f64::from(v);
            let want = 0.5
                * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
            worst = worst.max((f64::from(gelu_tanh_f32(v)) - want).abs() / want.abs().max(1.0));
        }
        assert!(worst < 5e-7, "largest difference {worst:e}");
        assert!(gelu_tanh_f32(f32::NAN).is_nan());
        // The tensor op against candle's.
        let t = Tensor::new(&xs[..50_000], &Device::Cpu)?;
        let diff = (gelu_tanh(&t)? - t.gelu()?)?
            .abs()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }

    #[test]
    fn vectorised_exp_is_within_float_rounding_of_expf() {
        let mut worst = 0f32;
        for i in -873_000..=883_700 {
            let x = i as f32 * 1e-4;
            let want = x.exp();
            worst = worst.max((exp_f32(x) - want).abs() / want);
        }
        assert!(worst < 3e-7, "largest relative difference {worst:e}");
        assert!(exp_f32(f32::NAN).is_nan());
        assert!((0.0..1.3e-38).contains(&exp_f32(f32::NEG_INFINITY)));
    }

    #[test]
    fn vectorised_sin_is_within_float_rounding_of_sinf() {
        let mut worst = 0f32;
        let n = 2_000_000;
        for i in 0..=n {
            let x = -FAST_SIN_LIMIT + 2.0 * FAST_SIN_LIMIT * (i as f32 / n as f32);
            for x in [x, x * 1e-3, x * 1e-6] {
                worst = worst.max((sin_reduced(x) - x.sin()).abs());
            }
        }
        assert!(worst < 3e-7, "{worst}");
    }

    #[test]
    fn adds_in_place_or_not() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::new(&[1f32, 2.0, 3.0], &dev)?;
        let b = Tensor::new(&[10f32, 20.0, 30.0], &dev)?;
        let got = super::add_scaled_into(a, &b, 0.5)?;
        assert_eq!(got.to_vec1::<f32>()?, [5.5, 11.0, 16.5]);
        // Not contiguous: a new tensor, same values.
        let a = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev)?.t()?;
        let b = Tensor::new(&[[1f32, 1.0], [1.0, 1.0]], &dev)?;
        let got = super::add_scaled_into(a, &b, 1.0)?;
        assert_eq!(got.to_vec2::<f32>()?, [[2.0, 4.0], [3.0, 5.0]]);
        Ok(())
    }

    #[test]
    fn snake_rows_match_the_reference_formula_including_large_and_nan_inputs() {
        let xs: Vec<f32> = (0..5000)
            .map(|i| ((i as f32) * 0.37).sin() * 20.0)
            .chain([1e5, -3e4, f32::NAN, f32::INFINITY, 0.0])
            .collect();
        for a in [0.3f32, 1.0, 7.5] {
            let mut got = xs.clone();
            snake_row_inplace(a, &mut got);
            for (&g, &v) in got.iter().zip(&xs) {
                let s = (a * v).sin();
                let want = v + (1.0 / a) * (s * s);
                assert!(
                    (g - want).abs() <= 1e-6 * want.abs().max(1.0) || (g.is_nan() && want.is_nan()),
                    "α {a} x {v}: {g} vs {want}"
                );
            }
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn leaky_relu_scales_negatives_only() -> Result<()> {
        let x = Tensor::new(&[-2f32, -0.5, 0.0, 3.0], &Device::Cpu)?;
        assert_eq!(
            leaky_relu(&x, 0.1)?.to_vec1::<f32>()?,
            [-0.2, -0.05, 0.0, 3.0]
        );
        // The large-tensor (threaded) path agrees with candle's own composition.
        let big = Tensor::randn(0f32, 1.0, (3, 7, 10_000), &Device::Cpu)?;
        let want = candle_nn::ops::leaky_relu(&big, 0.2)?;
        assert!(max_diff(&leaky_relu(&big, 0.2)?, &want) < 1e-7);
        Ok(())
    }

    #[test]
    fn snake_matches_formula_per_channel() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (2, 3, 40_000), &dev)?;
        let alpha = Tensor::new(&[[[0.5f32], [1.0], [1.5]]], &dev)?;
        let got = snake(&x, &alpha)?;
        let s = x.broadcast_mul(&alpha)?.sin()?.sqr()?;
        let want = (&x + s.broadcast_div(&alpha)?)?;
        assert!(max_diff(&got, &want) < 1e-5);
        let v = snake(
            &Tensor::new(&[[[1f32]]], &dev)?,
            &Tensor::new(&[2f32], &dev)?,
        )?;
        let expect = 1.0 + (2f32).sin().powi(2) / 2.0;
        assert!((v.flatten_all()?.to_vec1::<f32>()?[0] - expect).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn atan2_gives_all_quadrants() -> Result<()> {
        let dev = Device::Cpu;
        let y = Tensor::new(&[0f32, 1.0, 0.0, -1.0, 0.0], &dev)?;
        let x = Tensor::new(&[1f32, 0.0, -1.0, 0.0, 0.0], &dev)?;
        let got = atan2(&y, &x)?.to_vec1::<f32>()?;
        let pi = std::f32::consts::PI;
        for (g, w) in got.iter().zip([0.0, pi / 2.0, pi, -pi / 2.0, 0.0]) {
            assert!((g - w).abs() < 1e-7, "{got:?}");
        }
        Ok(())
    }

    #[test]
    fn linear_interpolation_matches_pytorch() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[[1f32, 2.0, 4.0]]], &dev)?;
        // torch.nn.functional.interpolate(x, scale_factor=2, mode="linear")
        let up = interpolate_linear(&x, 2.0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(up, [1.0, 1.25, 1.75, 2.5, 3.5, 4.0]);
        // scale_factor=0.5 on [1, 2, 4, 8]: sources 0.5 and 2.5.
        let x = Tensor::new(&[[[1f32, 2.0, 4.0, 8.0]]], &dev)?;
        let down = interpolate_linear(&x, 0.5)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(down, [1.5, 6.0]);
        // Per row: rows do not mix.
        let x = Tensor::new(&[[[0f32, 0.0], [10.0, 20.0]]], &dev)?;
        let rows = interpolate_linear(&x, 3.0)?;
        assert_eq!(rows.dims(), [1, 2, 6]);
        assert_eq!(rows.i((0, 0))?.to_vec1::<f32>()?, [0.0; 6]);
        Ok(())
    }

    #[test]
    fn nearest_upsample_repeats_samples() -> Result<()> {
        let x = Tensor::new(&[[[1f32, 2.0], [3.0, 4.0]]], &Device::Cpu)?;
        let y = upsample_nearest2x(&x)?;
        assert_eq!(
            y.i(0)?.to_vec2::<f32>()?,
            [[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0]]
        );
        Ok(())
    }

    #[test]
    fn reflection_pad_mirrors_without_the_edge() -> Result<()> {
        let x = Tensor::new(&[[[1f32, 2.0, 3.0, 4.0]]], &Device::Cpu)?;
        let y = reflection_pad1d(&x, 1, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(y, [2.0, 1.0, 2.0, 3.0, 4.0]);
        let y = reflection_pad1d(&x, 2, 2)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(y, [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]);
        Ok(())
    }

    #[test]
    fn trimmed_transposed_conv_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 6, 11), &dev)?;
        for (k, stride, padding, output_padding) in [(20, 10, 5, 0), (12, 6, 3, 0), (3, 2, 1, 1)] {
            let w = Tensor::randn(0f32, 1.0, (6, 4, k), &dev)?;
            let b = Tensor::randn(0f32, 1.0, 4, &dev)?;
            let cfg = ConvTranspose1dConfig {
                padding,
                output_padding,
                stride,
                dilation: 1,
                groups: 1,
            };
            let conv = ConvTranspose1d::new(w, Some(b), cfg);
            let want = candle_core::Module::forward(&conv, &x)?;
            let got = conv_transpose1d_trimmed(&x, &conv)?;
            assert_eq!(got.dims(), want.dims());
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "k {k} stride {stride}: {d}");
        }
        Ok(())
    }

    #[test]
    fn depthwise_transposed_conv_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let c = 5;
        let x = Tensor::randn(0f32, 1.0, (2, c, 9), &dev)?;
        for (k, stride, padding, output_padding) in [(3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 0, 2)] {
            let w = Tensor::randn(0f32, 1.0, (c, 1, k), &dev)?;
            let b = Tensor::randn(0f32, 1.0, c, &dev)?;
            let cfg = ConvTranspose1dConfig {
                padding,
                output_padding,
                stride,
                dilation: 1,
                groups: c,
            };
            let conv = ConvTranspose1d::new(w, Some(b), cfg);
            let want = candle_core::Module::forward(&conv, &x)?;
            let got = DepthwiseConvTranspose1d::from_conv(&conv)?.forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            assert!(max_diff(&got, &want) < 1e-5, "k {k} stride {stride}");
        }
        Ok(())
    }
}
