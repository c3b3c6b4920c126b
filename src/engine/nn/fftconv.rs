//! A wide stride-1 `Conv1d` computed in the frequency domain, window by window
//! (overlap-save), with every step a matrix product.
//!
//! The vocoders' residual blocks run kernels of 7 and 11 taps, dilated up to 5, over
//! 64–512 channels: computed directly that is `k·Cin` multiply-adds per output value.
//! A dilation `d` splits the layer into `d` undilated ones, one per phase of the
//! signal (every d-th sample). Each phase is cut into windows of `N` samples that
//! overlap by `k − 1`; on a window the layer is a circular cross-correlation, exact on
//! its first `M = N − k + 1` outputs, and in the frequency domain it is one complex
//! `[Cout, Cin]` product per frequency bin. The windows' DFT, the per-bin products and
//! the inverse DFT are all `gemm` calls (at `N` = 32 or 64 a DFT written as a matrix
//! product outruns an FFT called per window), about `2N/M·Cin + N²/M + N` multiply-adds
//! per output value against `k·Cin`, plus the weights' spectra once per call.
//! Measured (`cargo run --release --example conv_timing`, 2 threads): ~2× faster at
//! `k = 11`, ~1.2–1.5× at `k = 7` on 128–256 channels; kernels of 3 stay direct. The
//! result equals the direct convolution up to f32 rounding (relative error ~1e-6).

use std::f64::consts::TAU;

use super::product::{product, rows, Strided};
use super::threads::Dst;

/// Windows taken per product: enough columns for `gemm` to run near its peak, while a
/// group's spectra stay in cache.
const MAX_GROUP: usize = 64;

/// The window length chosen for one call and its derived sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    /// Window length `N`, a power of two.
    n: usize,
    /// Exact outputs per window, `N − k + 1`.
    m: usize,
}

/// The layer as [`conv_item`] reads it.
pub(super) struct Layer<'a> {
    /// `k` row-major `[Cout, Cin]` blocks, tap by tap.
    pub taps: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub dilation: usize,
    pub padding: usize,
}

impl Layer<'_> {
    /// The cheapest window length for `l_out` outputs, when it beats the direct
    /// convolution's `k·Cin·Cout·l_out` multiply-adds by a clear margin; `None` when the
    /// direct form is as good (short kernels, a few channels, very short inputs).
    pub(super) fn plan(&self, l_out: usize) -> Option<Plan> {
        let (c_in, c_out, k) = (self.c_in as f64, self.c_out as f64, self.kernel as f64);
        let direct = k * c_in * c_out * l_out as f64;
        let mut best: Option<(f64, Plan)> = None;
        for shift in 5..=6 {
            let n = 1usize << shift;
            if n < 2 * self.kernel {
                continue;
            }
            let m = n - self.kernel + 1;
            let windows = (l_out.div_ceil(m) + self.dilation) as f64;
            let nf = n as f64;
            // The transforms and the weights' spectra move more memory per multiply-add
            // than the products do: weighted as measured (`cargo run --release --example
            // conv_timing` prints both forms' times).
            let cost = 2.0 * nf * c_in * c_out * windows // the complex products
                + 2.0 * nf * nf * c_in * windows // forward DFT
                + 2.0 * nf * m as f64 * c_out * windows // inverse DFT
                + 8.0 * nf * k * c_in * c_out; // the weights' spectra
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, Plan { n, m }));
            }
        }
        best.filter(|&(cost, _)| 1.3 * cost < direct)
            .map(|(_, plan)| plan)
    }
}

/// `sin`/`cos` of `2π·i/N` for `i < N`, so that every twiddle below is a lookup of
/// `(f·i) mod N` (exact index arithmetic, one rounding per value).
fn unit_circle(n: usize) -> (Vec<f32>, Vec<f32>) {
    (0..n)
        .map(|i| {
            let (s, c) = (TAU * i as f64 / n as f64).sin_cos();
            (c as f32, s as f32)
        })
        .unzip()
}

/// The `N` real values that hold the spectrum of `N` real samples, one per row of the
/// transforms: row 0 is `Re X[0]`, row 1 `Re X[N/2]` (both imaginary parts are 0), and
/// rows `2f`, `2f + 1` are `Re X[f]`, `Im X[f]` for `0 < f < N/2`. Calls `row(r, f,
/// sin_sign)`: the row's bin and whether it is a sine row (`Im`).
fn spectrum_rows(n: usize) -> impl Iterator<Item = (usize, usize, bool)> {
    (0..n).map(move |r| match r {
        0 => (0, 0, false),
        1 => (1, n / 2, false),
        _ => (r, r / 2, r % 2 == 1),
    })
}

/// A plan's transform matrices and the layer's weight spectra for it: the same for
/// every call with that plan, so a caller running one layer over several stretches
/// makes them once.
pub(super) struct Transforms {
    plan: Plan,
    /// Forward DFT [N, N].
    dft: Vec<f32>,
    /// Inverse DFT of the first `m` samples [m, N].
    idft: Vec<f32>,
    /// [N, Cout·Cin].
    spectra: Vec<f32>,
}

impl Transforms {
    pub(super) fn new(layer: &Layer, plan: Plan, threads: usize) -> Self {
        let Plan { n, m } = plan;
        let (c_in, c_out, k) = (layer.c_in, layer.c_out, layer.kernel);
        let (cos, sin) = unit_circle(n);
        let sign = |is_sin: bool| if is_sin { -1.0 } else { 1.0 };

        // Forward DFT [N, N]: X[f] = Σ x[i]·e^{−2πi·fi/N}, so sine rows carry −sin.
        let mut dft = vec![0f32; n * n];
        // The weights' spectra come conjugated (a cross-correlation), per undilated
        // phase: `Σ_j w_j·e^{+2πi·f·j/N}`.
        let mut twiddle = vec![0f32; n * k];
        // Inverse DFT of the first `m` samples [m, N]: y[τ] = (1/N)·Σ_f c_f·(Re Y[f]·cos
        // − Im Y[f]·sin), c_f = 1 at DC and Nyquist, else 2.
        let mut idft = vec![0f32; m * n];
        for (r, f, is_sin) in spectrum_rows(n) {
            let table = if is_sin { &sin } else { &cos };
            for i in 0..n {
                dft[r * n + i] = sign(is_sin) * table[(f * i) % n];
            }
            for j in 0..k {
                twiddle[r * k + j] = table[(f * j) % n];
            }
            let c = if r < 2 { 1.0 } else { 2.0 } / n as f32;
            for tau in 0..m {
                idft[tau * n + r] = sign(is_sin) * c * table[(f * tau) % n];
            }
        }
        let block = c_out * c_in;
        let mut spectra = vec![0f32; n * block];
        let spectra_ptr = super::threads::SharedOut(spectra.as_mut_ptr());
        let columns = |first: usize, last: usize| {
            // SAFETY: `spectra` is [N, block], `twiddle` [N, k], `taps` [k, block], all
            // row-major; this call writes columns `first..last` only.
            unsafe {
                product(
                    (n, last - first, k),
                    rows(spectra_ptr.at(first), block),
                    rows(twiddle.as_ptr(), k),
                    rows(layer.taps.as_ptr().add(first), block),
                    false,
                    1.0,
                );
            }
        };
        super::threads::split_over_threads(block, threads, columns);
        Self {
            plan,
            dft,
            idft,
            spectra,
        }
    }

    pub(super) fn plan(&self) -> Plan {
        self.plan
    }
}

/// One item: `x` `[Cin, t]` → `[Cout, l_out]` written to (or added to) `dst`, with the
/// layer's [`Transforms`] for the plan; threads take whole groups of windows.
///
/// # Safety
/// `dst` holds `c_out` rows of at least `l_out` values that nothing else reads or
/// writes during the call.
pub(super) unsafe fn conv_item(
    layer: &Layer,
    transforms: &Transforms,
    x: &[f32],
    t: usize,
    l_out: usize,
    dst: Dst,
    threads: usize,
) {
    let Plan { m, .. } = transforms.plan;
    // A dilation d splits the layer into d independent undilated ones, one per phase
    // φ < d: outputs φ + d·u read inputs φ + d·(u + j). Each phase is cut into windows
    // of m outputs, the windows into groups of at most MAX_GROUP, spread over the
    // threads.
    let d = layer.dilation;
    // Windows side by side in time, the phases of one stretch together, so that a
    // group reads and writes one stretch of the signal.
    let outputs = |phase: usize| l_out.saturating_sub(phase).div_ceil(d);
    let windows: Vec<Window> = (0..outputs(0).div_ceil(m))
        .flat_map(|w| {
            (0..d).filter_map(move |phase| {
                let width = m.min(outputs(phase).checked_sub(w * m)?);
                (width > 0).then_some(Window {
                    phase,
                    u0: w * m,
                    width,
                })
            })
        })
        .collect();
    let group = windows.len().div_ceil(threads.max(1)).clamp(1, MAX_GROUP);
    let jobs: Vec<&[Window]> = windows.chunks(group).collect();
    let groups = jobs.len();
    let ctx = Context {
        layer,
        plan: transforms.plan,
        dft: &transforms.dft,
        spectra: &transforms.spectra,
        idft: &transforms.idft,
        x,
        t,
    };
    let run = |first: usize, last: usize| {
        let mut scratch = Scratch::default();
        for &job in &jobs[first..last] {
            // SAFETY: jobs are split between threads without overlap and each writes
            // only its own outputs; `dst` outlives the threads (the contract).
            unsafe { ctx.group(job, &mut scratch, dst) };
        }
    };
    super::threads::split_over_threads(groups, threads, run);
}

/// One window: outputs `phase + d·u` for `u` in `u0..u0 + width`.
#[derive(Debug, Clone, Copy)]
struct Window {
    phase: usize,
    u0: usize,
    width: usize,
}

/// What every group of windows reads.
struct Context<'a> {
    layer: &'a Layer<'a>,
    plan: Plan,
    dft: &'a [f32],
    spectra: &'a [f32],
    idft: &'a [f32],
    x: &'a [f32],
    t: usize,
}

/// A thread's buffers, reused from group to group.
#[derive(Default)]
struct Scratch {
    /// The windows, [Cin·count][N] (zeros where they reach into the padding).
    windows: Vec<f32>,
    /// The windows' spectra, [N rows][Cin][count].
    x: Vec<f32>,
    /// The outputs' spectra, [N rows][Cout][count].
    y: Vec<f32>,
    /// The outputs, [Cout][count·m].
    time: Vec<f32>,
}

impl Context<'_> {
    /// The outputs of a group of windows.
    ///
    /// # Safety
    /// `out` is the output (see [`conv_item`]), and no other thread writes these
    /// outputs.
    unsafe fn group(&self, job: &[Window], s: &mut Scratch, out: Dst) {
        let Plan { n, m } = self.plan;
        let count = job.len();
        let d = self.layer.dilation;
        let (c_in, c_out, t) = (self.layer.c_in, self.layer.c_out, self.t);
        let (xs, ys) = (c_in * count, c_out * count);
        s.windows.resize(xs * n, 0.0);
        s.x.resize(n * xs, 0.0);
        s.y.resize(n * ys, 0.0);
        s.time.resize(ys * m, 0.0);
        // A window of a channel is its padded columns phase + d·(u0 + i) for i < N,
        // input columns `padding` lower; what lies outside the input is zero.
        for (i, win) in s.windows.chunks_mut(n).enumerate() {
            let (ci, w) = (i / count, job[i % count]);
            let row = &self.x[ci * t..(ci + 1) * t];
            let start = (w.phase + d * w.u0) as isize - self.layer.padding as isize;
            if start >= 0 && start as usize + d * (n - 1) < t {
                let start = start as usize;
                for (v, &x) in win.iter_mut().zip(row[start..].iter().step_by(d)) {
                    *v = x;
                }
            } else {
                for (i, v) in win.iter_mut().enumerate() {
                    let at = start + (d * i) as isize;
                    *v = if (0..t as isize).contains(&at) {
                        row[at as usize]
                    } else {
                        0.0
                    };
                }
            }
        }
        // SAFETY: `dft` is [N, N]; the windows are read as [N, Cin·count] (row stride
        // 1, column stride N); `x` is [N, Cin·count].
        unsafe {
            product(
                (n, xs, n),
                rows(s.x.as_mut_ptr(), xs),
                rows(self.dft.as_ptr(), n),
                Strided(s.windows.as_ptr(), 1, n),
                false,
                1.0,
            );
        }
        let block = c_out * c_in;
        let dims = (c_out, count, c_in);
        let (w, x, y) = (self.spectra.as_ptr(), s.x.as_ptr(), s.y.as_mut_ptr());
        // SAFETY (the products below): row r of the weights' spectra is a [Cout, Cin]
        // block at r·block, of the inputs' a [Cin, count] block at r·xs and of the
        // outputs' a [Cout, count] block at r·ys, all inside their buffers (r < N).
        for r in 0..2 {
            // DC and Nyquist: real.
            unsafe {
                product(
                    dims,
                    rows(y.add(r * ys), count),
                    rows(w.add(r * block), c_in),
                    rows(x.add(r * xs), count),
                    false,
                    1.0,
                )
            };
        }
        for f in 1..n / 2 {
            let (re, im) = (2 * f, 2 * f + 1);
            // Re Y = Wr·Xr − Wi·Xi, Im Y = Wr·Xi + Wi·Xr.
            unsafe {
                let (wr, wi) = (rows(w.add(re * block), c_in), rows(w.add(im * block), c_in));
                let (xr, xi) = (rows(x.add(re * xs), count), rows(x.add(im * xs), count));
                let (yr, yi) = (rows(y.add(re * ys), count), rows(y.add(im * ys), count));
                product(dims, yr, wr, xr, false, 1.0);
                product(dims, yr, wi, xi, true, -1.0);
                product(dims, yi, wr, xi, false, 1.0);
                product(dims, yi, wi, xr, true, 1.0);
            }
        }
        // Sample τ of window w of channel co lands at (co·count + w)·m + τ: each
        // channel's windows end to end.
        // SAFETY: `idft` is [m, N], `y` [N, Cout·count], `time` [Cout·count, m]
        // written transposed (row stride 1, column stride m).
        unsafe {
            product(
                (m, ys, n),
                Strided(s.time.as_mut_ptr(), 1, m),
                rows(self.idft.as_ptr(), n),
                rows(s.y.as_ptr(), ys),
                false,
                1.0,
            );
        }
        for co in 0..c_out {
            let b = self.layer.bias.map_or(0.0, |b| b[co]);
            for (w, src) in job.iter().zip(s.time[co * count * m..].chunks(m)) {
                let first = co * out.ld + w.phase + d * w.u0;
                let src = &src[..w.width];
                if d == 1 {
                    // SAFETY: outputs u0..u0 + width < l_out of row `co`, this group's
                    // own.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr.at(first), w.width) };
                    if out.accumulate {
                        for (o, &v) in dst.iter_mut().zip(src) {
                            *o += v + b;
                        }
                    } else {
                        for (o, &v) in dst.iter_mut().zip(src) {
                            *o = v + b;
                        }
                    }
                    continue;
                }
                // A dilated layer's phases interleave: other groups own the values in
                // between, so each output is written on its own.
                for (i, &v) in src.iter().enumerate() {
                    // SAFETY: output phase + d·(u0 + i) < l_out of row `co`, this
                    // group's own.
                    unsafe {
                        let o = out.ptr.at(first + d * i);
                        *o = if out.accumulate { v + b + *o } else { v + b };
                    }
                }
            }
        }
    }
}
