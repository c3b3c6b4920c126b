//! PyTorch's `nn.LSTM` for inference: one layer (a stacked LSTM is one [`Lstm`]
//! per layer, see [`Lstm::load_layer`]), batch first, optionally
//! bidirectional, zero initial state, every sequence of full length.
//!
//! The input projection of all time steps and both directions is one matmul on
//! the tensor's device. The recurrence is latency-bound (one `[4H, H]` matrix
//! times a vector per step, then the gates), so it runs on the host over plain
//! slices, the two directions on two threads when candle may use several: a
//! dozen tensor ops per step would cost more in dispatch than the arithmetic.
//! The step kernel is written so the compiler vectorises it (register-blocked
//! matrix-vector product, polynomial `exp`), and is compiled twice on x86-64:
//! for AVX2 + FMA, chosen at run time, and for the baseline.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

/// `torch.nn.LSTM(input_size, hidden_size, num_layers=1, batch_first=True,
/// bidirectional=...)`, torch 2.x `torch/nn/modules/rnn.py`, class `LSTM`.
/// Gate order i, f, g, o; the output is `[forward; backward]` per step.
#[derive(Debug, Clone)]
pub struct Lstm {
    /// `weight_ih_l0` stacked over `weight_ih_l0_reverse`: [D·4H, in], with
    /// `bias_ih + bias_hh` of each direction as its bias.
    weight_ih: Linear,
    /// `weight_hh_l0` (and `weight_hh_l0_reverse`) in [`pack_panels`] layout.
    weight_hh: Vec<Vec<f32>>,
    hidden_size: usize,
}

impl Lstm {
    /// A one-layer `nn.LSTM` (keys `*_l0`, `*_l0_reverse`).
    pub fn load(
        vb: VarBuilder,
        input_size: usize,
        hidden_size: usize,
        bidirectional: bool,
    ) -> Result<Self> {
        Self::load_layer(vb, input_size, hidden_size, 0, bidirectional)
    }

    /// Layer `layer` of a stacked `nn.LSTM(num_layers=...)` (keys
    /// `*_l{layer}`, `*_l{layer}_reverse`); `input_size` is the previous
    /// layer's output width above layer 0.
    pub fn load_layer(
        vb: VarBuilder,
        input_size: usize,
        hidden_size: usize,
        layer: usize,
        bidirectional: bool,
    ) -> Result<Self> {
        if hidden_size == 0 {
            candle_core::bail!("LSTM hidden size must be positive");
        }
        let gates = 4 * hidden_size;
        let forward = format!("l{layer}");
        let suffixes = if bidirectional {
            vec![forward.clone(), format!("{forward}_reverse")]
        } else {
            vec![forward]
        };
        let mut w_ih = Vec::with_capacity(suffixes.len());
        let mut bias = Vec::with_capacity(suffixes.len());
        let mut weight_hh = Vec::with_capacity(suffixes.len());
        for sfx in suffixes {
            w_ih.push(vb.get((gates, input_size), &format!("weight_ih_{sfx}"))?);
            let b_ih = vb.get(gates, &format!("bias_ih_{sfx}"))?;
            let b_hh = vb.get(gates, &format!("bias_hh_{sfx}"))?;
            bias.push((b_ih + b_hh)?);
            let w_hh = vb.get((gates, hidden_size), &format!("weight_hh_{sfx}"))?;
            let w_hh = w_hh.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            weight_hh.push(pack_panels(&w_hh, hidden_size));
        }
        let weight_ih = Linear::new(Tensor::cat(&w_ih, 0)?, Some(Tensor::cat(&bias, 0)?));
        Ok(Self {
            weight_ih,
            weight_hh,
            hidden_size,
        })
    }

    /// Width of one output step: `D·H`.
    pub fn output_size(&self) -> usize {
        self.weight_hh.len() * self.hidden_size
    }

    /// `x` [B, T, in] → [B, T, D·H], in `x`'s dtype and on its device.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let h = self.hidden_size;
        let dirs = self.weight_hh.len();
        if b * t == 0 {
            return Tensor::zeros((b, t, dirs * h), x.dtype(), x.device());
        }
        let xp = self
            .weight_ih
            .forward(x)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let stride = dirs * 4 * h;
        // Jobs: each direction over a group of sequences, stepped together (one
        // weight panel serves every sequence of the group while it is in cache).
        // The groups split the batch over candle's threads.
        let threads = candle_core::utils::get_num_threads().max(1);
        let groups = threads.div_ceil(dirs).clamp(1, b);
        let per_group = b.div_ceil(groups);
        let sequences: Vec<&[f32]> = xp.chunks_exact(t * stride).collect();
        // (direction, first sequence, the group)
        let jobs: Vec<(usize, usize, &[&[f32]])> = (0..dirs)
            .flat_map(|d| {
                sequences
                    .chunks(per_group)
                    .enumerate()
                    .map(move |(g, group)| (d, g * per_group, group))
            })
            .collect();
        let run = |&(d, _, group): &(usize, usize, &[&[f32]])| {
            Direction {
                xps: group,
                stride,
                offset: d * 4 * h,
                w_hh: &self.weight_hh[d],
                hidden: h,
                reverse: d == 1,
            }
            .run()
        };
        let results: Vec<Vec<f32>> = if threads > 1 && jobs.len() > 1 {
            std::thread::scope(|scope| {
                let others: Vec<_> = jobs[1..]
                    .iter()
                    .map(|job| scope.spawn(move || run(job)))
                    .collect();
                let mut all = vec![run(&jobs[0])];
                // A step kernel does not panic (slices are sized above); if a
                // thread did, carry its panic on rather than lose it.
                all.extend(
                    others
                        .into_iter()
                        .map(|o| o.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
                );
                all
            })
        } else {
            jobs.iter().map(run).collect()
        };
        let mut out = vec![0f32; b * t * dirs * h];
        for (&(d, first, _), hs) in jobs.iter().zip(&results) {
            for (i, seq) in hs.chunks_exact(t * h).enumerate() {
                let item = &mut out[(first + i) * t * dirs * h..(first + i + 1) * t * dirs * h];
                for (row, src) in item.chunks_exact_mut(dirs * h).zip(seq.chunks_exact(h)) {
                    row[d * h..(d + 1) * h].copy_from_slice(src);
                }
            }
        }
        Tensor::from_vec(out, (b, t, dirs * h), x.device())?.to_dtype(x.dtype())
    }
}

/// One direction over a group of sequences of equal length, stepped together.
struct Direction<'a> {
    /// Each sequence's projected inputs, `stride` floats per step; this
    /// direction's four gates start at `offset`.
    xps: &'a [&'a [f32]],
    stride: usize,
    offset: usize,
    /// [`pack_panels`] layout.
    w_hh: &'a [f32],
    hidden: usize,
    reverse: bool,
}

impl Direction<'_> {
    /// The hidden states, [T, H] per sequence in time order, one after another.
    fn run(&self) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features `run_avx512` is compiled for.
            return unsafe { self.run_avx512() };
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features `run_avx2_fma` is compiled for.
            return unsafe { self.run_avx2_fma() };
        }
        self.run_with::<false, 1>()
    }

    /// Four sequences per pass over a weight panel: their 16 accumulators and the
    /// panel row fit AVX-512's 32 registers, so each weight load feeds four FMAs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn run_avx512(&self) -> Vec<f32> {
        self.run_with::<true, 4>()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2_fma(&self) -> Vec<f32> {
        self.run_with::<true, 1>()
    }

    /// `FMA`: use fused multiply-adds (only where the CPU has them; elsewhere
    /// `mul_add` is a slow library call); `R`: sequences per pass over a panel.
    #[inline(always)]
    fn run_with<const FMA: bool, const R: usize>(&self) -> Vec<f32> {
        let h = self.hidden;
        let m = self.xps.len();
        let steps = self.xps.first().map_or(0, |xp| xp.len() / self.stride);
        let mut out = vec![0f32; m * steps * h];
        let mut gates = vec![0f32; m * 4 * h];
        let mut hid = vec![0f32; m * h];
        let mut cell = vec![0f32; m * h];
        for n in 0..steps {
            let t = if self.reverse { steps - 1 - n } else { n };
            let start = t * self.stride + self.offset;
            for (g, xp) in gates.chunks_exact_mut(4 * h).zip(self.xps) {
                g.copy_from_slice(&xp[start..start + 4 * h]);
            }
            if n > 0 {
                add_matmat::<FMA, R>(&mut gates, self.w_hh, &hid, h);
            }
            for (s, ((gates, cell), hid)) in gates
                .chunks_exact_mut(4 * h)
                .zip(cell.chunks_exact_mut(h))
                .zip(hid.chunks_exact_mut(h))
                .enumerate()
            {
                let (ifg, o_g) = gates.split_at_mut(3 * h);
                let (i_f, g_g) = ifg.split_at_mut(2 * h);
                sigmoid_in_place::<FMA>(i_f);
                tanh_in_place::<FMA>(g_g);
                let (i_g, f_g) = i_f.split_at(h);
                for (((c, &i), &f), &g) in cell.iter_mut().zip(i_g).zip(f_g.iter()).zip(g_g.iter())
                {
                    *c = madd::<FMA>(f, *c, i * g);
                }
                sigmoid_in_place::<FMA>(o_g);
                hid.copy_from_slice(cell);
                tanh_in_place::<FMA>(hid);
                for (hk, &o) in hid.iter_mut().zip(o_g.iter()) {
                    *hk *= o;
                }
                let at = (s * steps + t) * h;
                out[at..at + h].copy_from_slice(hid);
            }
        }
        out
    }
}

/// Outputs per block of the matrix-vector product: 64 accumulators fill eight
/// AVX registers, enough independent chains to keep both FMA units busy.
const BLOCK: usize = 64;

/// `w` [R, K] row-major → Wᵀ cut into column panels: for each block of `BLOCK`
/// rows of `w`, a [K, BLOCK] panel; then the last `R mod BLOCK` rows as a
/// [K, R mod BLOCK] panel. A product reads each panel front to back.
fn pack_panels(w: &[f32], k: usize) -> Vec<f32> {
    let r = w.len() / k;
    let mut out = Vec::with_capacity(w.len());
    let mut start = 0;
    while start < r {
        let width = BLOCK.min(r - start);
        for kk in 0..k {
            out.extend((start..start + width).map(|row| w[row * k + kk]));
        }
        start += width;
    }
    out
}

/// `y_s += W x_s` for every sequence `s` (`ys` `[m, len(y)]`, `xs` `[m, k]`), W
/// given by [`pack_panels`] ([len(y), k] before packing): each panel serves every
/// sequence before the next is read, `R` sequences at a time.
#[inline(always)]
fn add_matmat<const FMA: bool, const R: usize>(ys: &mut [f32], w: &[f32], xs: &[f32], k: usize) {
    let m = xs.len() / k.max(1);
    let rows = ys.len() / m.max(1);
    let blocks = rows / BLOCK;
    for (b, panel) in w[..blocks * BLOCK * k].chunks_exact(BLOCK * k).enumerate() {
        let (panel, _) = panel.as_chunks::<BLOCK>();
        let mut s0 = 0;
        while s0 + R <= m {
            add_panel::<FMA, R>(ys, panel, xs, (s0, b * BLOCK, rows, k));
            s0 += R;
        }
        while s0 < m {
            add_panel::<FMA, 1>(ys, panel, xs, (s0, b * BLOCK, rows, k));
            s0 += 1;
        }
    }
    let tail = rows - blocks * BLOCK;
    if tail > 0 {
        let panel = &w[blocks * BLOCK * k..];
        for (y, x) in ys.chunks_exact_mut(rows).zip(xs.chunks_exact(k)) {
            let y = &mut y[blocks * BLOCK..];
            for (row, &xk) in panel.chunks_exact(tail).zip(x) {
                for (a, &wv) in y.iter_mut().zip(row) {
                    *a = madd::<FMA>(xk, wv, *a);
                }
            }
        }
    }
}

/// Outputs `col..col + BLOCK` of sequences `s0..s0 + R` (rows of `rows` outputs in
/// `ys`, of `k` inputs in `xs`) plus one panel times their inputs.
#[inline(always)]
fn add_panel<const FMA: bool, const R: usize>(
    ys: &mut [f32],
    panel: &[[f32; BLOCK]],
    xs: &[f32],
    (s0, col, rows, k): (usize, usize, usize, usize),
) {
    let mut acc = [[0f32; BLOCK]; R];
    for (r, a) in acc.iter_mut().enumerate() {
        let at = (s0 + r) * rows + col;
        a.copy_from_slice(&ys[at..at + BLOCK]);
    }
    let x: [&[f32]; R] = std::array::from_fn(|r| &xs[(s0 + r) * k..(s0 + r + 1) * k]);
    for (kk, row) in panel.iter().enumerate() {
        for r in 0..R {
            let xk = x[r][kk];
            for i in 0..BLOCK {
                acc[r][i] = madd::<FMA>(xk, row[i], acc[r][i]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let at = (s0 + r) * rows + col;
        ys[at..at + BLOCK].copy_from_slice(a);
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn sigmoid_in_place<const FMA: bool>(x: &mut [f32]) {
    for v in x {
        *v = 1.0 / (1.0 + exp::<FMA>(-*v));
    }
}

/// `tanh(x) = 1 − 2 / (e^{2x} + 1)`: exact limits ±1, absolute error a few
/// 1e-8 (relative error larger only where |tanh x| is below ~1e-4).
#[inline(always)]
fn tanh_in_place<const FMA: bool>(x: &mut [f32]) {
    for v in x {
        *v = 1.0 - 2.0 / (exp::<FMA>(2.0 * *v) + 1.0);
    }
}

/// `e^x` in f32 without branches or calls, so loops over it vectorise
/// (Cephes `expf`: x = n·ln2 + r, a degree-6 polynomial for e^r, 2ⁿ from the
/// exponent bits). Relative error about 1 ulp; above 88.7 it gives +∞, below
/// −87.3 it stays at e^−87.3 ≈ 1e-38 (both fine for sigmoid and tanh).
#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to an integer, which the low mantissa bits then hold.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let t = madd::<FMA>(x, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = madd::<FMA>(n, -LN2_LO, madd::<FMA>(n, -LN2_HI, x));
    let mut p = 1.987_569_1e-4;
    p = madd::<FMA>(p, r, 1.398_199_9e-3);
    p = madd::<FMA>(p, r, 8.333_452e-3);
    p = madd::<FMA>(p, r, 4.166_579_6e-2);
    p = madd::<FMA>(p, r, 0.166_666_66);
    p = madd::<FMA>(p, r, 0.5);
    let e_r = madd::<FMA>(p * r, r, r) + 1.0;
    // 2ⁿ: n + 127 into the exponent field (wrapping arithmetic on the bits).
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    e_r * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp, D};
    use std::collections::HashMap;

    /// An LSTM with input and hidden size 1, from per-gate (i, f, g, o) values.
    fn scalar_lstm(
        w_ih: [f32; 4],
        w_hh: [f32; 4],
        bias: [f32; 4],
        bidirectional: bool,
    ) -> Result<Lstm> {
        let dev = Device::Cpu;
        let mut map = HashMap::new();
        let sfxs: &[&str] = if bidirectional {
            &["l0", "l0_reverse"]
        } else {
            &["l0"]
        };
        for sfx in sfxs {
            map.insert(
                format!("weight_ih_{sfx}"),
                Tensor::new(&w_ih, &dev)?.reshape((4, 1))?,
            );
            map.insert(
                format!("weight_hh_{sfx}"),
                Tensor::new(&w_hh, &dev)?.reshape((4, 1))?,
            );
            map.insert(format!("bias_ih_{sfx}"), Tensor::new(&bias, &dev)?);
            map.insert(
                format!("bias_hh_{sfx}"),
                Tensor::zeros(4, DType::F32, &dev)?,
            );
        }
        Lstm::load(
            VarBuilder::from_tensors(map, DType::F32, &dev),
            1,
            1,
            bidirectional,
        )
    }

    fn run(lstm: &Lstm, xs: &[f32]) -> Result<Vec<Vec<f32>>> {
        let x = Tensor::new(xs, &Device::Cpu)?.reshape((1, xs.len(), 1))?;
        lstm.forward(&x)?.i(0)?.to_vec2::<f32>()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn forget_gate_open_accumulates_the_cell_in_both_directions() -> Result<()> {
        // i = o = f = 1 (saturated), g = tanh(x); with x = atanh(v) the cell is a
        // running sum of v and h = tanh(cell).
        let lstm = scalar_lstm(
            [0.0, 0.0, 1.0, 0.0],
            [0.0; 4],
            [100.0, 100.0, 0.0, 100.0],
            true,
        )?;
        let out = run(&lstm, &[0.5f32.atanh(), 0.25f32.atanh()])?;
        // forward: cells 0.5, 0.75; backward (from the end): cells 0.75, 0.25.
        let want = [
            [0.5f32.tanh(), 0.75f32.tanh()],
            [0.75f32.tanh(), 0.25f32.tanh()],
        ];
        for (got, want) in out.iter().zip(want) {
            assert!(
                close(got[0], want[0]) && close(got[1], want[1]),
                "{got:?} vs {want:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn recurrent_weight_feeds_the_previous_hidden_state() -> Result<()> {
        // f = 0, i = o = 1: c_t = tanh(x_t + h_{t-1}), h_t = tanh(c_t).
        let lstm = scalar_lstm(
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [100.0, -100.0, 0.0, 100.0],
            false,
        )?;
        let out = run(&lstm, &[0.5, 0.0])?;
        let h1 = 0.5f32.tanh().tanh();
        let h2 = h1.tanh().tanh();
        assert_eq!(out[0].len(), 1);
        assert!(close(out[0][0], h1) && close(out[1][0], h2), "{out:?}");
        Ok(())
    }

    /// The textbook recurrence written with tensor ops, one direction.
    fn reference(
        x: &Tensor,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b: &Tensor,
        reverse: bool,
    ) -> Result<Tensor> {
        let (_, t, _) = x.dims3()?;
        let h = w_hh.dim(1)?;
        let mut hid = Tensor::zeros((1, h), DType::F32, x.device())?;
        let mut cell = hid.clone();
        let mut outs = vec![hid.clone(); t];
        for n in 0..t {
            let s = if reverse { t - 1 - n } else { n };
            let g =
                (x.i((.., s))?.matmul(&w_ih.t()?)? + hid.matmul(&w_hh.t()?)?)?.broadcast_add(b)?;
            let gate = |k: usize| g.narrow(D::Minus1, k * h, h);
            let sig = candle_nn::ops::sigmoid;
            cell = ((sig(&gate(1)?)? * &cell)? + (sig(&gate(0)?)? * gate(2)?.tanh()?)?)?;
            hid = (sig(&gate(3)?)? * cell.tanh()?)?;
            outs[s] = hid.clone();
        }
        Tensor::stack(&outs, 1)
    }

    /// Deterministic values in [-scale, scale]: `scale · sin(1.3·k + phase)`.
    fn wave(shape: &[usize], phase: f32, scale: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let k = Tensor::arange(0u32, n as u32, &Device::Cpu)?.to_dtype(DType::F32)?;
        (k.affine(1.3, f64::from(phase))?.sin()? * scale)?.reshape(shape)
    }

    #[test]
    fn matches_the_textbook_recurrence_with_wide_gates() -> Result<()> {
        let dev = Device::Cpu;
        // 4H = 80: one full block of the matrix-vector product and a tail.
        let (inp, h, t) = (5, 20, 7);
        let mut map = HashMap::new();
        for (d, sfx) in ["l0", "l0_reverse"].iter().enumerate() {
            let p = d as f32;
            map.insert(format!("weight_ih_{sfx}"), wave(&[4 * h, inp], p, 0.5)?);
            map.insert(format!("weight_hh_{sfx}"), wave(&[4 * h, h], p + 0.3, 0.5)?);
            map.insert(format!("bias_ih_{sfx}"), wave(&[4 * h], p + 0.6, 0.5)?);
            map.insert(format!("bias_hh_{sfx}"), wave(&[4 * h], p + 0.9, 0.5)?);
        }
        let lstm = Lstm::load(
            VarBuilder::from_tensors(map.clone(), DType::F32, &dev),
            inp,
            h,
            true,
        )?;
        let x = wave(&[1, t, inp], 2.0, 1.0)?;
        let got = lstm.forward(&x)?;
        assert_eq!(got.dims(), &[1, t, 2 * h]);
        for (d, sfx) in ["l0", "l0_reverse"].iter().enumerate() {
            let b = (&map[&format!("bias_ih_{sfx}")] + &map[&format!("bias_hh_{sfx}")])?;
            let want = reference(
                &x,
                &map[&format!("weight_ih_{sfx}")],
                &map[&format!("weight_hh_{sfx}")],
                &b,
                d == 1,
            )?;
            let diff = (got.narrow(2, d * h, h)? - want)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "direction {d}: max abs diff {diff}");
        }
        // A batch of sequences stepped together (four at a time where the CPU has
        // AVX-512) gives each one's own states.
        let batch = wave(&[9, t, inp], 0.7, 1.0)?;
        let together = lstm.forward(&batch)?;
        for i in 0..9 {
            let alone = lstm.forward(&batch.narrow(0, i, 1)?)?;
            let diff = (together.narrow(0, i, 1)? - alone)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-6, "sequence {i} of the batch: {diff}");
        }
        // The baseline kernel agrees with the one the CPU dispatch picked.
        let xp = lstm
            .weight_ih
            .forward(&x)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for d in 0..2 {
            let dir = Direction {
                xps: &[&xp],
                stride: 8 * h,
                offset: d * 4 * h,
                w_hh: &lstm.weight_hh[d],
                hidden: h,
                reverse: d == 1,
            };
            let (plain, fused) = (dir.run_with::<false, 1>(), dir.run());
            let diff = plain
                .iter()
                .zip(&fused)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-5, "direction {d}: kernels differ by {diff}");
        }
        Ok(())
    }

    #[test]
    fn polynomial_exp_sigmoid_and_tanh_match_the_library_functions() {
        let xs: Vec<f32> = (-2000..=2000).map(|k| k as f32 * 0.05).collect();
        for x in &xs {
            let want = x.exp();
            for got in [exp::<false>(*x), exp::<true>(*x)] {
                let rel = ((got - want) / want).abs();
                assert!(
                    x.abs() > 87.0 || rel < 4e-7,
                    "exp({x}) = {got}, want {want}"
                );
            }
        }
        assert_eq!(exp::<false>(100.0), f32::INFINITY);
        let mut sig = xs.clone();
        sigmoid_in_place::<false>(&mut sig);
        let mut th = xs.clone();
        tanh_in_place::<false>(&mut th);
        for ((x, s), t) in xs.iter().zip(&sig).zip(&th) {
            assert!(
                (s - 1.0 / (1.0 + (-x).exp())).abs() < 1e-7,
                "sigmoid({x}) = {s}"
            );
            assert!((t - x.tanh()).abs() < 2e-7, "tanh({x}) = {t}");
        }
    }
}
