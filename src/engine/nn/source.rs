//! The neural source filter's excitation, shared by Kokoro's iSTFTNet generator and
//! Chatterbox's HiFT vocoder: [`SineGen`] turns an F0 curve into harmonic sine waves
//! plus noise, [`SourceModuleHnNSF`] merges them into one source signal.
//!
//! Both references carry the same two classes (`kokoro/istftnet.py` and
//! `chatterbox/models/s3gen/hifigan.py`, both from the NSF of Wang et al.), but they
//! integrate the phase differently and so give different waves from the same F0 and
//! noise; [`PhaseIntegration`] picks which one a model reproduces.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use rand::Rng;

use super::ops::interpolate_linear;

/// How [`SineGen`] accumulates the phase, each as its reference does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseIntegration {
    /// Kokoro (`kokoro/istftnet.py`): the reference runs on F0 already repeated
    /// `upsample_scale` times per frame. Its phase increment is then constant within
    /// a frame, and its linear downsampling by `upsample_scale` reads two samples in
    /// the middle of each frame, so the per-frame increment is
    /// `(F0·h / sampling_rate) mod 1` exactly. This computes it per frame (a few
    /// hundred values, accumulated in f64 on the host as PyTorch's CPU `cumsum`
    /// does) and upsamples only the accumulated phase. For the same reason the
    /// reference's random start phase, added to the very first sample only, never
    /// reaches the output (for any `upsample_scale` ≥ 3), so it is not taken.
    PerFrame,
    /// Chatterbox HiFT (`chatterbox/models/s3gen/hifigan.py`): integrates the
    /// frequency sample by sample at the audio rate, `θ = 2π · (cumsum(f0·h/sr) mod 1)`,
    /// and adds a random start phase to every sample of each overtone. The reference
    /// runs on F0 repeated `upsample_scale` times per frame; this takes the frame-rate
    /// curve and repeats it while integrating. The sum runs in f64 and each partial
    /// sum is rounded to f32, as PyTorch's CPU `cumsum` does, so the phases round as
    /// the reference's do (given the reference's F0 the source matches to 6e-8).
    PerSample,
}

/// `SineGen`'s constructor arguments (names as in the references).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SineGenConfig {
    pub samp_rate: u32,
    /// Audio samples per F0 frame.
    pub upsample_scale: usize,
    /// Overtones above the fundamental.
    pub harmonic_num: usize,
    /// Sine amplitude.
    pub sine_amp: f64,
    /// Noise level on voiced samples.
    pub noise_std: f64,
    /// F0 above this (Hz) counts as voiced.
    pub voiced_threshold: f64,
    pub integration: PhaseIntegration,
}

/// The random numbers the source draws per call, injected so that tests can replay
/// the reference's and production can seed its own.
#[derive(Debug, Clone)]
pub struct SourceNoise {
    /// [B, harmonics + 1] start phases in radians; the fundamental's (column 0) is
    /// ignored, as the reference zeroes it. Only [`PhaseIntegration::PerSample`]
    /// reads them; `None` stands for zeros.
    pub phase: Option<Tensor>,
    /// [B, harmonics + 1, L] standard normal, the reference's `randn_like(sine_waves)`.
    pub sine: Tensor,
}

impl SourceNoise {
    /// Noise without start phases, for [`PhaseIntegration::PerFrame`], which never
    /// reads them: `sine` [B, harmonics + 1, L] standard normal.
    pub fn without_phase(sine: Tensor) -> Self {
        Self { phase: None, sine }
    }

    /// From the reference's raw draws: `rand` [B, dim] or [B, dim, 1] uniform in
    /// [0, 1) (the `torch.rand` inside `Uniform(-π, π).sample`, which computes
    /// `low + rand · (high − low)` in f32) and `randn` [B, dim, L].
    pub fn from_draws(rand: &Tensor, randn: &Tensor) -> Result<Self> {
        let (b, dim) = (rand.dim(0)?, rand.dim(1)?);
        let low = -std::f32::consts::PI;
        let span = std::f32::consts::PI - low;
        let u = rand
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let phase: Vec<f32> = u.iter().map(|&u| low + u * span).collect();
        Ok(Self {
            phase: Some(Tensor::from_vec(phase, (b, dim), randn.device())?),
            sine: randn.clone(),
        })
    }

    /// Fresh draws from `rng` for `b` items of `len` samples and `dim` sine channels.
    pub fn draw(
        rng: &mut impl Rng,
        b: usize,
        dim: usize,
        len: usize,
        device: &Device,
    ) -> Result<Self> {
        let rand: Vec<f32> = (0..b * dim).map(|_| rng.random::<f32>()).collect();
        let randn: Vec<f32> = (0..b * dim * len)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        Self::from_draws(
            &Tensor::from_vec(rand, (b, dim), device)?,
            &Tensor::from_vec(randn, (b, dim, len), device)?,
        )
    }
}

/// A tensor's values as f32 on the host, flattened.
fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}

// kokoro/istftnet.py `SineGen`, chatterbox/models/s3gen/hifigan.py `SineGen`
/// Harmonic sine waves from an F0 curve: the fundamental and `harmonic_num`
/// overtones, zeroed where unvoiced, plus Gaussian noise.
#[derive(Debug, Clone)]
pub struct SineGen {
    cfg: SineGenConfig,
}

impl SineGen {
    pub fn new(cfg: SineGenConfig) -> Result<Self> {
        if cfg.integration == PhaseIntegration::PerFrame && cfg.upsample_scale < 3 {
            candle_core::bail!(
                "SineGen: upsample scale {} below 3 is not supported",
                cfg.upsample_scale
            );
        }
        Ok(Self { cfg })
    }

    /// Sine channels: fundamental and overtones.
    pub fn dim(&self) -> usize {
        self.cfg.harmonic_num + 1
    }

    /// `f0` [B, n] at frame rate (before the ×`upsample_scale` repeat) → sine waves
    /// [B, dim, n·upsample_scale].
    pub fn forward(&self, f0: &Tensor, noise: &SourceNoise) -> Result<Tensor> {
        let (b, n) = f0.dims2()?;
        let dim = self.dim();
        let len = n * self.cfg.upsample_scale;
        let phase_ok = match &noise.phase {
            Some(p) => p.dims() == [b, dim],
            None => self.cfg.integration == PhaseIntegration::PerFrame,
        };
        if noise.sine.dims() != [b, dim, len] || !phase_ok {
            candle_core::bail!(
                "SineGen: noise {:?} and phase {:?}, want [{b}, {dim}, {len}] and [{b}, {dim}]",
                noise.sine.shape(),
                noise.phase.as_ref().map(Tensor::shape)
            );
        }
        match self.cfg.integration {
            PhaseIntegration::PerFrame => self.forward_per_frame(f0, &noise.sine),
            PhaseIntegration::PerSample => {
                let phase = noise.phase.as_ref().map(host_f32).transpose()?;
                self.forward_per_sample(f0, phase.as_deref().unwrap_or(&[]), &noise.sine)
            }
        }
    }

    /// [`PhaseIntegration::PerFrame`]: `noise` [B, dim, L].
    fn forward_per_frame(&self, f0: &Tensor, noise: &Tensor) -> Result<Tensor> {
        let (b, n) = f0.dims2()?;
        let (dim, scale) = (self.dim(), self.cfg.upsample_scale);
        let len = n * scale;
        let dev = f0.device();
        let f0v = host_f32(f0)?;
        let sampling_rate = self.cfg.samp_rate as f32;
        let voiced_threshold = self.cfg.voiced_threshold as f32;
        // Per frame: accumulated phase (× 2π × scale, rounded as the reference does
        // it in f32), whether voiced, and the noise amplitude.
        let mut phase = vec![0f32; b * dim * n];
        for bi in 0..b {
            let f0b = &f0v[bi * n..(bi + 1) * n];
            for h in 0..dim {
                let mut acc = 0f64;
                let out = &mut phase[(bi * dim + h) * n..(bi * dim + h + 1) * n];
                for (o, &f) in out.iter_mut().zip(f0b) {
                    let rad = (f * (h + 1) as f32 / sampling_rate).rem_euclid(1.0);
                    acc += f64::from(rad);
                    *o = (acc as f32 * 2.0) * std::f32::consts::PI * scale as f32;
                }
            }
        }
        let voiced: Vec<bool> = f0v.iter().map(|&f| f > voiced_threshold).collect();
        let (sine_amp, noise_std) = (self.cfg.sine_amp as f32, self.cfg.noise_std as f32);
        // Python's `sine_amp / 3` in f64, then rounded into the f32 tensor.
        let unvoiced_amp = (self.cfg.sine_amp / 3.0) as f32;
        let sine_gain: Vec<f32> = voiced.iter().map(|&v| if v { 1.0 } else { 0.0 }).collect();
        let noise_gain: Vec<f32> = voiced
            .iter()
            .map(|&v| if v { noise_std } else { unvoiced_amp })
            .collect();
        let phase = Tensor::from_vec(phase, (b, dim, n), dev)?;
        let phase = interpolate_linear(&phase, scale as f64)?;
        let sines = (phase.sin()? * f64::from(sine_amp))?.reshape((b, dim, n, scale))?;
        let sine_gain = Tensor::from_vec(sine_gain, (b, 1, n, 1), dev)?;
        let noise_gain = Tensor::from_vec(noise_gain, (b, 1, n, 1), dev)?;
        let noise = noise.to_dtype(DType::F32)?.reshape((b, dim, n, scale))?;
        (sines.broadcast_mul(&sine_gain)? + noise.broadcast_mul(&noise_gain)?)?
            .reshape((b, dim, len))
    }

    /// One item's sine channels [dim, len] for [`PhaseIntegration::PerSample`], the
    /// phase carried on from `acc` (per channel, the cycles accumulated before the
    /// first sample; zeros at the start of an utterance, as [`SineGen::forward`]
    /// starts) and left at the last sample's, so consecutive spans give the samples
    /// one call over the whole `f0` gives. `phase` holds the start phases ([dim];
    /// the fundamental's is ignored) and `randn` the noise sample-major ([len, dim]),
    /// so a span of an utterance reads the same noise however it was cut.
    pub fn continue_per_sample(
        &self,
        f0: &[f32],
        phase: &[f32],
        randn: &[f32],
        acc: &mut [f64],
    ) -> Result<Vec<f32>> {
        let (dim, scale) = (self.dim(), self.cfg.upsample_scale);
        let len = f0.len() * scale;
        if phase.len() != dim || acc.len() != dim || randn.len() != len * dim {
            candle_core::bail!(
                "SineGen: {} phases, {} accumulators and {} noise values for {dim} channels \
                 of {len} samples",
                phase.len(),
                acc.len(),
                randn.len()
            );
        }
        let sampling_rate = self.cfg.samp_rate as f32;
        let voiced_threshold = self.cfg.voiced_threshold as f32;
        let (sine_amp, noise_std) = (self.cfg.sine_amp as f32, self.cfg.noise_std as f32);
        let two_pi = 2.0 * std::f32::consts::PI;
        let unvoiced_amp = sine_amp / 3.0;
        let mut out = vec![0f32; dim * len];
        for (h, (out, acc)) in out.chunks_exact_mut(len).zip(acc.iter_mut()).enumerate() {
            let start = if h == 0 { 0.0 } else { phase[h] };
            for (j, &f) in f0.iter().enumerate() {
                let step = f64::from(f * (h + 1) as f32 / sampling_rate);
                let voiced = f > voiced_threshold;
                for i in j * scale..(j + 1) * scale {
                    let r = randn[i * dim + h];
                    *acc += step;
                    let cum = *acc as f32;
                    let theta = two_pi * cum.rem_euclid(1.0);
                    out[i] = if voiced {
                        sine_amp * (theta + start).sin() + noise_std * r
                    } else {
                        unvoiced_amp * r
                    };
                }
            }
        }
        Ok(out)
    }

    /// [`PhaseIntegration::PerSample`]: `phase` [B, dim] start phases (empty for
    /// zeros), `randn` [B, dim, L].
    fn forward_per_sample(&self, f0: &Tensor, phase: &[f32], randn: &Tensor) -> Result<Tensor> {
        let (b, n) = f0.dims2()?;
        let (dim, scale) = (self.dim(), self.cfg.upsample_scale);
        let len = n * scale;
        let (f0v, randn) = (host_f32(f0)?, host_f32(randn)?);
        let sampling_rate = self.cfg.samp_rate as f32;
        let voiced_threshold = self.cfg.voiced_threshold as f32;
        let (sine_amp, noise_std) = (self.cfg.sine_amp as f32, self.cfg.noise_std as f32);
        // `2 * np.pi * x` multiplies by 2π rounded to f32; `sine_amp / 3` divides in f32.
        let two_pi = 2.0 * std::f32::consts::PI;
        let unvoiced_amp = sine_amp / 3.0;
        let mut out = vec![0f32; b * dim * len];
        for bi in 0..b {
            let f0b = &f0v[bi * n..(bi + 1) * n];
            for h in 0..dim {
                let row = (bi * dim + h) * len;
                let out = &mut out[row..row + len];
                let randn = &randn[row..row + len];
                let start = if h == 0 {
                    0.0
                } else {
                    phase.get(bi * dim + h).copied().unwrap_or(0.0)
                };
                let mut acc = 0f64;
                for (j, &f) in f0b.iter().enumerate() {
                    let step = f64::from(f * (h + 1) as f32 / sampling_rate);
                    let voiced = f > voiced_threshold;
                    let range = j * scale..(j + 1) * scale;
                    for (o, &r) in out[range.clone()].iter_mut().zip(&randn[range]) {
                        acc += step;
                        let cum = acc as f32;
                        let theta = two_pi * cum.rem_euclid(1.0);
                        let sine = sine_amp * (theta + start).sin();
                        *o = if voiced {
                            sine + noise_std * r
                        } else {
                            unvoiced_amp * r
                        };
                    }
                }
            }
        }
        Tensor::from_vec(out, (b, dim, len), f0.device())
    }
}

// kokoro/istftnet.py `SourceModuleHnNSF`, chatterbox/models/s3gen/hifigan.py
// `SourceModuleHnNSF`
/// The harmonic excitation: the sine channels merged by a linear layer and `tanh`.
/// The references also draw a noise source, which their generators never read.
#[derive(Debug, Clone)]
pub struct SourceModuleHnNSF {
    l_sin_gen: SineGen,
    l_linear: Linear,
}

impl SourceModuleHnNSF {
    pub fn load(vb: VarBuilder, cfg: SineGenConfig) -> Result<Self> {
        let l_sin_gen = SineGen::new(cfg)?;
        Ok(Self {
            l_linear: candle_nn::linear(l_sin_gen.dim(), 1, vb.pp("l_linear"))?,
            l_sin_gen,
        })
    }

    /// Sine channels of the sine generator.
    pub fn dim(&self) -> usize {
        self.l_sin_gen.dim()
    }

    /// The sine generator.
    pub fn sine_gen(&self) -> &SineGen {
        &self.l_sin_gen
    }

    /// `f0` [B, n] at frame rate → source [B, 1, n·upsample_scale].
    pub fn forward(&self, f0: &Tensor, noise: &SourceNoise) -> Result<Tensor> {
        self.merge(&self.l_sin_gen.forward(f0, noise)?)
    }

    /// The sine channels [B, dim, L] merged into the source [B, 1, L].
    pub fn merge(&self, sines: &Tensor) -> Result<Tensor> {
        let b = sines.dim(0)?;
        let merged = self.l_linear.weight().broadcast_left(b)?.matmul(sines)?; // [B, 1, L]
        let merged = match self.l_linear.bias() {
            Some(bias) => merged.broadcast_add(&bias.reshape((1, 1, 1))?)?,
            None => merged,
        };
        merged.tanh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine_gen(integration: PhaseIntegration) -> SineGen {
        SineGen::new(SineGenConfig {
            samp_rate: 24_000,
            upsample_scale: 4,
            harmonic_num: 2,
            sine_amp: 0.1,
            noise_std: 0.003,
            voiced_threshold: 10.0,
            integration,
        })
        .expect("a valid configuration")
    }

    #[test]
    fn per_frame_ignores_start_phases_and_per_sample_needs_them() -> Result<()> {
        let dev = Device::Cpu;
        let f0 = Tensor::new(&[[0f32, 120.0, 240.0]], &dev)?;
        let randn = Tensor::randn(0f32, 1.0, (1, 3, 12), &dev)?;
        let rand = Tensor::new(&[[0.1f32, 0.7, 0.3]], &dev)?;
        let drawn = SourceNoise::from_draws(&rand, &randn)?;
        let bare = SourceNoise::without_phase(randn);

        let frame = sine_gen(PhaseIntegration::PerFrame);
        let a = frame
            .forward(&f0, &drawn)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = frame.forward(&f0, &bare)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(a, b);

        let sample = sine_gen(PhaseIntegration::PerSample);
        assert_eq!(sample.forward(&f0, &drawn)?.dims(), [1, 3, 12]);
        assert!(sample.forward(&f0, &bare).is_err());
        Ok(())
    }

    #[test]
    fn noise_of_the_wrong_length_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let f0 = Tensor::new(&[[100f32, 120.0]], &dev)?;
        let short = SourceNoise::without_phase(Tensor::zeros((1, 3, 7), DType::F32, &dev)?);
        assert!(sine_gen(PhaseIntegration::PerFrame)
            .forward(&f0, &short)
            .is_err());
        Ok(())
    }

    #[test]
    fn a_continued_source_is_the_whole_source() -> Result<()> {
        let dev = Device::Cpu;
        let gen = sine_gen(PhaseIntegration::PerSample);
        let f0: Vec<f32> = (0..9).map(|i| [0.0, 95.0, 130.5, 220.0][i % 4]).collect();
        let (dim, len) = (3usize, 36usize);
        let randn = Tensor::randn(0f32, 1.0, (1, dim, len), &dev)?;
        let rand = Tensor::new(&[[0.1f32, 0.7, 0.3]], &dev)?;
        let whole = gen
            .forward(
                &Tensor::new(f0.as_slice(), &dev)?.unsqueeze(0)?,
                &SourceNoise::from_draws(&rand, &randn)?,
            )?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let phase = SourceNoise::from_draws(&rand, &randn)?
            .phase
            .expect("drawn phases")
            .flatten_all()?
            .to_vec1::<f32>()?;
        // Sample-major noise, the spans cut at frames 2 and 7.
        let noise = randn.squeeze(0)?.t()?.flatten_all()?.to_vec1::<f32>()?;
        let mut acc = vec![0f64; dim];
        let mut spans = vec![Vec::new(); dim];
        for (a, b) in [(0usize, 2usize), (2, 7), (7, 9)] {
            let part = gen.continue_per_sample(
                &f0[a..b],
                &phase,
                &noise[a * 4 * dim..b * 4 * dim],
                &mut acc,
            )?;
            for (h, span) in spans.iter_mut().enumerate() {
                span.extend_from_slice(&part[h * (b - a) * 4..(h + 1) * (b - a) * 4]);
            }
        }
        assert_eq!(spans.concat(), whole);
        Ok(())
    }

    #[test]
    fn per_frame_needs_an_upsample_scale_of_three() {
        let mut cfg = sine_gen(PhaseIntegration::PerFrame).cfg;
        cfg.upsample_scale = 2;
        assert!(SineGen::new(cfg).is_err());
    }
}
