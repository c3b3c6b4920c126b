//! chatterbox-tts 0.1.7 `models/s3gen/transformer/embedding.py`.

use candle_core::{Device, Result, Tensor};

/// `EspnetRelPositionalEncoding`: scales the input by √d and gives the sinusoidal
/// encodings of the relative positions `T−1, …, 1, 0, −1, …, −(T−1)`.
///
/// The reference precomputes 5000 positions each side and slices the middle; each
/// row depends only on its position, so computing the `2T − 1` rows needed is the
/// same thing.
#[derive(Debug, Clone)]
pub struct EspnetRelPositionalEncoding {
    d_model: usize,
    xscale: f64,
}

impl EspnetRelPositionalEncoding {
    pub fn new(d_model: usize) -> Self {
        Self {
            d_model,
            xscale: (d_model as f64).sqrt(),
        }
    }

    /// `x` [B, T, d] → (`x · √d`, positional encodings [1, 2T − 1, d]).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = x.dim(1)?;
        let pos_emb = self.position_encoding(t, x.device())?.to_dtype(x.dtype())?;
        Ok(((x * self.xscale)?, pos_emb))
    }

    /// Rows for relative positions `t−1` down to `−(t−1)`, [1, 2t − 1, d].
    pub fn position_encoding(&self, t: usize, device: &Device) -> Result<Tensor> {
        let d = self.d_model;
        // As the reference computes them in f32: exp(2i · −ln(10000)/d), pos · div.
        let step = -(10000f64.ln() / d as f64) as f32;
        let div: Vec<f32> = (0..d.div_ceil(2))
            .map(|i| ((2 * i) as f32 * step).exp())
            .collect();
        let rows = 2 * t.max(1) - 1;
        let mut pe = vec![0f32; rows * d];
        for (row, out) in pe.chunks_mut(d).enumerate() {
            let pos = t as f32 - 1.0 - row as f32;
            for (i, &dv) in div.iter().enumerate() {
                let arg = pos * dv;
                out[2 * i] = (arg as f64).sin() as f32;
                if 2 * i + 1 < d {
                    out[2 * i + 1] = (arg as f64).cos() as f32;
                }
            }
        }
        Tensor::from_vec(pe, (1, rows, d), device)
    }
}
