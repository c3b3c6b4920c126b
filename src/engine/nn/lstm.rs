//! PyTorch's `nn.LSTM` for inference: one layer, batch first, optionally
//! bidirectional, zero initial state, every sequence of full length.
//!
//! The input projection of all time steps and both directions is one matmul on
//! the tensor's device. The recurrence is latency-bound (one `[4H, H]` matrix
//! times a vector per step), so it runs on the host over plain slices, with the
//! two directions on two threads: a handful of tensor ops per step would cost
//! more in dispatch than the arithmetic itself.

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
    /// `weight_hh_l0` (and `weight_hh_l0_reverse`), row-major [4H, H] each.
    weight_hh: Vec<Vec<f32>>,
    hidden_size: usize,
}

impl Lstm {
    pub fn load(
        vb: VarBuilder,
        input_size: usize,
        hidden_size: usize,
        bidirectional: bool,
    ) -> Result<Self> {
        let gates = 4 * hidden_size;
        let suffixes: &[&str] = if bidirectional {
            &["l0", "l0_reverse"]
        } else {
            &["l0"]
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
            weight_hh.push(w_hh.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
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
        let xp = self
            .weight_ih
            .forward(x)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let stride = dirs * 4 * h;
        let mut out = vec![0f32; b * t * dirs * h];
        for (xp, out) in xp
            .chunks_exact(t * stride)
            .zip(out.chunks_exact_mut(t * dirs * h))
        {
            let mut per_dir: Vec<Vec<f32>> = vec![Vec::new(); dirs];
            std::thread::scope(|scope| {
                let mut slots = per_dir.iter_mut().enumerate();
                // The first direction runs here, any other on its own thread.
                let first = slots.next();
                for (d, slot) in slots {
                    let w_hh = &self.weight_hh[d];
                    scope.spawn(move || *slot = recur(xp, stride, d * 4 * h, w_hh, h, d == 1));
                }
                if let Some((d, slot)) = first {
                    *slot = recur(xp, stride, d * 4 * h, &self.weight_hh[d], h, d == 1);
                }
            });
            for (d, hs) in per_dir.iter().enumerate() {
                for (row, src) in out.chunks_exact_mut(dirs * h).zip(hs.chunks_exact(h)) {
                    row[d * h..(d + 1) * h].copy_from_slice(src);
                }
            }
        }
        Tensor::from_vec(out, (b, t, dirs * h), x.device())?.to_dtype(x.dtype())
    }
}

/// One direction over one sequence. `xp` holds the projected inputs, `stride`
/// floats per step, this direction's four gates at `offset`. Returns the hidden
/// states [T, H] in time order.
fn recur(
    xp: &[f32],
    stride: usize,
    offset: usize,
    w_hh: &[f32],
    h: usize,
    reverse: bool,
) -> Vec<f32> {
    let steps = xp.len() / stride;
    let mut out = vec![0f32; steps * h];
    let mut gates = vec![0f32; 4 * h];
    let mut hid = vec![0f32; h];
    let mut cell = vec![0f32; h];
    for n in 0..steps {
        let t = if reverse { steps - 1 - n } else { n };
        gates.copy_from_slice(&xp[t * stride + offset..t * stride + offset + 4 * h]);
        if n > 0 {
            for (g, row) in gates.iter_mut().zip(w_hh.chunks_exact(h)) {
                *g += dot(row, &hid);
            }
        }
        let (i_g, rest) = gates.split_at(h);
        let (f_g, rest) = rest.split_at(h);
        let (g_g, o_g) = rest.split_at(h);
        for k in 0..h {
            let c = sigmoid(f_g[k]) * cell[k] + sigmoid(i_g[k]) * g_g[k].tanh();
            cell[k] = c;
            hid[k] = sigmoid(o_g[k]) * c.tanh();
        }
        out[t * h..(t + 1) * h].copy_from_slice(&hid);
    }
    out
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Dot product in eight independent lanes, so the compiler vectorises it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
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
        let (inp, h, t) = (5, 11, 7);
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
        Ok(())
    }
}
