//! Fast f32 math that vectorises: branch-free `exp`, `sin`, GELU and Mish kernels and
//! the dispatch that compiles a loop for the widest vectors the CPU has.

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

/// Arguments of `sin` up to this size take the vectorised path; its three-part π/2
/// reduction is exact there (larger ones, and NaN, go to the library `sin`).
const FAST_SIN_LIMIT: f32 = 8192.0;

simd_dispatch! {
    /// One channel of the snake activation (`ops::snake`) in place: `row = row + (1/α) · sin(α·row)²`, with a
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

/// `x / (1 + e^(−2u))` with `u = √(2/π)·(x + 0.044715·x³)`.
#[inline(always)]
pub(crate) fn gelu_tanh_f32(x: f32) -> f32 {
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
pub(crate) fn gelu_erf_f32(x: f32) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
