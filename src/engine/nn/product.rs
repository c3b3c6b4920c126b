//! One matrix product on the calling thread, as the layers' kernels ask for it:
//! `gemm` with its strides given per matrix, accumulating into the output or not;
//! and the size check the products by strided rows share.

use candle_core::Result;

/// Refuses `rows` input rows `stride` apart that run past `x_len` values, or a bias
/// that is not `n` values, for a `[k, n]` weight.
pub(crate) fn check_strided(
    what: &str,
    (k, n): (usize, usize),
    x_len: usize,
    (stride, rows): (usize, usize),
    bias_len: usize,
) -> Result<()> {
    if bias_len != n || (rows > 0 && (rows - 1) * stride + k > x_len) {
        candle_core::bail!(
            "{what}: {rows} rows {stride} apart in {x_len} values and {bias_len} biases \
             for a [{k}, {n}] weight"
        );
    }
    Ok(())
}

/// A matrix as `gemm` reads it: its first value, the stride between rows and the
/// stride between columns.
#[derive(Clone, Copy)]
pub(crate) struct Strided<P>(pub(crate) P, pub(crate) usize, pub(crate) usize);

/// A row-major matrix of `cols` columns.
pub(crate) fn rows<P>(p: P, cols: usize) -> Strided<P> {
    Strided(p, cols, 1)
}

/// `dst = keep·dst + sign·(a · b)` with `a` [m, k], `b` [k, n] and `dst` [m, n].
///
/// # Safety
/// The three matrices, with their strides, lie inside their buffers.
pub(crate) unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: Strided<*mut f32>,
    a: Strided<*const f32>,
    b: Strided<*const f32>,
    keep: bool,
    sign: f32,
) {
    // SAFETY: by the contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2 as isize,
            dst.1 as isize,
            keep,
            a.0,
            a.2 as isize,
            a.1 as isize,
            b.0,
            b.2 as isize,
            b.1 as isize,
            if keep { 1.0f32 } else { 0.0 },
            sign,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
