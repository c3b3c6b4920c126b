//! chatterbox-tts 0.1.7 `models/s3gen/flow_matching.py`: the meanflow sampler
//! (`CausalConditionalCFM.forward` with `meanflow=True`, i.e. `basic_euler`).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::S3GenConfig;
use super::decoder::ConditionalDecoder;

/// `torch.linspace(0, 1, steps)` in f32, computed as PyTorch does (from the start
/// for the first half, from the end for the rest).
pub fn linspace01(steps: usize) -> Vec<f32> {
    if steps <= 1 {
        return vec![0.0; steps];
    }
    let step = 1f32 / (steps - 1) as f32;
    (0..steps)
        .map(|i| {
            if i < steps / 2 {
                step * i as f32
            } else {
                1f32 - step * (steps - 1 - i) as f32
            }
        })
        .collect()
}

/// `CausalConditionalCFM` on the meanflow path: a few plain Euler steps over
/// uniform times `0 = t_0 < … < t_n = 1`, each step asking the estimator for the
/// average velocity from `t_k` to `t_{k+1}` (no classifier-free guidance: the
/// meanflow model is distilled with it).
#[derive(Debug, Clone)]
pub struct CausalConditionalCFM {
    estimator: ConditionalDecoder,
    n_timesteps: usize,
}

impl CausalConditionalCFM {
    pub fn load(vb: VarBuilder, cfg: &S3GenConfig) -> Result<Self> {
        Ok(Self {
            estimator: ConditionalDecoder::load(vb.pp("estimator"), cfg)?,
            n_timesteps: cfg.cfm.n_timesteps,
        })
    }

    /// See [`ConditionalDecoder::quantise_int8`].
    pub fn quantise_int8(&mut self) {
        self.estimator.quantise_int8();
    }

    /// The velocity-field network.
    pub fn estimator(&self) -> &ConditionalDecoder {
        &self.estimator
    }

    /// `t_span`: the step boundaries.
    pub fn t_span(&self) -> Vec<f32> {
        linspace01(self.n_timesteps + 1)
    }

    /// From `noise` (the start point, [B, 80, T]) to the mel [B, 80, T], conditioned
    /// on `mu` [B, 80, T], the speaker `spks` [B, 80] and the prompt mel `cond`
    /// [B, 80, T]; hands `step<k>.dxdt` and `step<k>.x` to `observe`.
    pub fn forward_observed(
        &self,
        noise: &Tensor,
        mu: &Tensor,
        spks: &Tensor,
        cond: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let _span = tracing::trace_span!("s3gen_cfm").entered();
        let t_span = self.t_span();
        let mut x = noise.clone();
        for (k, w) in t_span.windows(2).enumerate() {
            let (t, r) = (w[0], w[1]);
            let dxdt = self.estimator.forward(&x, mu, t, r, spks, cond)?;
            observe(&format!("step{k}.dxdt"), &dxdt);
            x = (x + (dxdt * f64::from(r - t))?)?;
            observe(&format!("step{k}.x"), &x);
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_torch() {
        assert_eq!(linspace01(3), vec![0.0, 0.5, 1.0]);
        assert_eq!(linspace01(2), vec![0.0, 1.0]);
        let l = linspace01(11);
        assert_eq!((l[0], l[10]), (0.0, 1.0));
        assert!((l[3] - 0.3).abs() < 1e-7);
    }
}
