//! The HiFT vocoder of S3Gen (HiFTNet: a neural source filter plus iSTFTNet): an F0
//! curve predicted from the mel drives a harmonic sine source, transposed
//! convolutions upsample the mel, the STFT of the source is mixed in at every scale,
//! and `conv_post` predicts a log-magnitude and phase spectrogram that an inverse STFT
//! turns into 24 kHz audio.
//!
//! Port of `chatterbox/models/s3gen/hifigan.py` (chatterbox-tts 0.1.7), adapted there
//! from CosyVoice's `hifigan/generator.py`; `S3Token2Wav` in `s3gen.py` sets the
//! configuration ([`HiFTConfig::s3gen`]).

use candle_core::{Module, Result, Tensor};
use candle_nn::{ConvTranspose1dConfig, VarBuilder};
use rand::SeedableRng;
use serde::Deserialize;

use super::f0_predictor::{ConvRNNF0Predictor, F0PredictorConfig};
use crate::engine::nn::ops::{leaky_relu, reflection_pad1d, snake};
pub use crate::engine::nn::source::SourceNoise;
use crate::engine::nn::source::{PhaseIntegration, SineGenConfig, SourceModuleHnNSF};
use crate::engine::nn::stft::Stft;
use crate::engine::nn::{
    conv1d, conv_cfg, conv_transpose1d, resblock_convs, GemmConv1d, GemmConvTranspose1d,
};

/// `istft_params` of `HiFTGenerator`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IstftParams {
    pub n_fft: usize,
    pub hop_len: usize,
}

/// `HiFTGenerator`'s constructor arguments (names as in the reference), with the F0
/// predictor's under `f0_predictor`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HiFTConfig {
    /// Mel bins.
    pub in_channels: usize,
    pub base_channels: usize,
    pub nb_harmonics: usize,
    pub sampling_rate: u32,
    /// Sine amplitude of the source.
    pub nsf_alpha: f64,
    /// Noise level of the source on voiced samples.
    pub nsf_sigma: f64,
    /// F0 above this (Hz) counts as voiced.
    pub nsf_voiced_threshold: f64,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub istft_params: IstftParams,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub source_resblock_kernel_sizes: Vec<usize>,
    pub source_resblock_dilation_sizes: Vec<Vec<usize>>,
    pub lrelu_slope: f64,
    pub audio_limit: f64,
    pub f0_predictor: F0PredictorConfig,
}

impl HiFTConfig {
    /// The vocoder of `S3Token2Wav` (`S3Gen(meanflow=True)` for Turbo, and the other
    /// S3Gen releases): the arguments `s3gen.py` passes plus the class defaults.
    pub fn s3gen() -> Self {
        Self {
            in_channels: 80,
            base_channels: 512,
            nb_harmonics: 8,
            sampling_rate: 24_000,
            nsf_alpha: 0.1,
            nsf_sigma: 0.003,
            nsf_voiced_threshold: 10.0,
            upsample_rates: vec![8, 5, 3],
            upsample_kernel_sizes: vec![16, 11, 7],
            istft_params: IstftParams {
                n_fft: 16,
                hop_len: 4,
            },
            resblock_kernel_sizes: vec![3, 7, 11],
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            source_resblock_kernel_sizes: vec![7, 7, 11],
            source_resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            lrelu_slope: 0.1,
            audio_limit: 0.99,
            f0_predictor: F0PredictorConfig::s3gen(),
        }
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// `m_source`'s sine generator: the phase integrated at the audio rate, with a
    /// random start phase per overtone.
    pub fn source(&self) -> SineGenConfig {
        SineGenConfig {
            samp_rate: self.sampling_rate,
            upsample_scale: self.upsample_scale(),
            harmonic_num: self.nb_harmonics,
            sine_amp: self.nsf_alpha,
            noise_std: self.nsf_sigma,
            voiced_threshold: self.nsf_voiced_threshold,
            integration: PhaseIntegration::PerSample,
        }
    }

    /// Audio samples per mel frame: `prod(upsample_rates) · hop_len`.
    pub fn upsample_scale(&self) -> usize {
        self.upsample_rates.iter().product::<usize>() * self.istft_params.hop_len
    }
}

// chatterbox/models/s3gen/hifigan.py `Snake`
/// `x + sin²(α·x) / (α + 1e-9)`, one α per channel (`alpha_logscale=False`, as every
/// block of the vocoder builds it). The reference's 1e-9 is not added: in f32 it
/// changes α only when |α| < 0.017, and then by under 1e-7 relative.
#[derive(Debug, Clone)]
pub struct Snake {
    alpha: Tensor,
}

impl Snake {
    pub fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            alpha: vb.get(channels, "alpha")?,
        })
    }
}

impl Module for Snake {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        snake(x, &self.alpha)
    }
}

// chatterbox/models/s3gen/hifigan.py `ResBlock`
/// Residual block: per dilation, Snake → dilated conv → Snake → conv, added back.
#[derive(Debug, Clone)]
pub struct ResBlock {
    convs1: Vec<GemmConv1d>,
    convs2: Vec<GemmConv1d>,
    activations1: Vec<Snake>,
    activations2: Vec<Snake>,
}

impl ResBlock {
    pub fn load(
        vb: VarBuilder,
        channels: usize,
        kernel_size: usize,
        dilations: &[usize],
    ) -> Result<Self> {
        let n = dilations.len();
        let mut block = Self {
            convs1: Vec::with_capacity(n),
            convs2: Vec::with_capacity(n),
            activations1: Vec::with_capacity(n),
            activations2: Vec::with_capacity(n),
        };
        let c = channels;
        for (i, &d) in dilations.iter().enumerate() {
            let (conv1, conv2) = resblock_convs(&vb, i, c, kernel_size, d)?;
            block.convs1.push(conv1);
            block.convs2.push(conv2);
            block
                .activations1
                .push(Snake::load(vb.pp("activations1").pp(i), c)?);
            block
                .activations2
                .push(Snake::load(vb.pp("activations2").pp(i), c)?);
        }
        Ok(block)
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for i in 0..self.convs1.len() {
            let xt = self.activations1[i].forward(&x)?;
            let xt = self.convs1[i].forward(&xt)?;
            let xt = self.activations2[i].forward(&xt)?;
            let xt = self.convs2[i].forward(&xt)?;
            x = (xt + x)?;
        }
        Ok(x)
    }
}

/// `F.leaky_relu`'s default slope, used before `conv_post`.
const POST_SLOPE: f64 = 0.01;
/// `_istft` clips magnitudes here.
const MAX_MAGNITUDE: f64 = 1e2;

// chatterbox/models/s3gen/hifigan.py `HiFTGenerator`
/// Mel [B, 80, T] → audio [B, T · prod(upsample_rates) · hop] (480 samples per frame
/// at 24 kHz as S3Gen builds it).
#[derive(Debug, Clone)]
pub struct HiFTGenerator {
    m_source: SourceModuleHnNSF,
    conv_pre: GemmConv1d,
    ups: Vec<GemmConvTranspose1d>,
    source_downs: Vec<GemmConv1d>,
    source_resblocks: Vec<ResBlock>,
    resblocks: Vec<ResBlock>,
    conv_post: GemmConv1d,
    f0_predictor: ConvRNNF0Predictor,
    stft: Stft,
    /// `f0_upsamp`'s factor: audio samples per mel frame.
    upsample_scale: usize,
    num_kernels: usize,
    lrelu_slope: f64,
    audio_limit: f64,
    n_fft: usize,
}

impl HiFTGenerator {
    /// `vb` at the vocoder's weights (`mel2wav` in `s3gen_meanflow.safetensors`).
    pub fn load(vb: VarBuilder, cfg: &HiFTConfig) -> Result<Self> {
        crate::engine::nn::reuse_freed_heap();
        let rates = &cfg.upsample_rates;
        let n_ups = rates.len();
        if rates.is_empty()
            || cfg.upsample_kernel_sizes.len() != n_ups
            || cfg.resblock_kernel_sizes.is_empty()
            || cfg.resblock_kernel_sizes.len() != cfg.resblock_dilation_sizes.len()
            || cfg.source_resblock_kernel_sizes.len() != n_ups
            || cfg.source_resblock_dilation_sizes.len() != n_ups
        {
            candle_core::bail!("HiFTGenerator: inconsistent upsample/resblock settings");
        }
        if cfg.f0_predictor.in_channels != cfg.in_channels {
            candle_core::bail!(
                "HiFTGenerator: F0 predictor reads {} mel bins, the generator {}",
                cfg.f0_predictor.in_channels,
                cfg.in_channels
            );
        }
        let base = cfg.base_channels;
        if !base.is_multiple_of(1 << n_ups) {
            candle_core::bail!("HiFTGenerator: base_channels {base} not divisible by 2^{n_ups}");
        }
        let n_fft = cfg.istft_params.n_fft;
        let mut ups = Vec::with_capacity(n_ups);
        for (i, (&u, &k)) in rates.iter().zip(&cfg.upsample_kernel_sizes).enumerate() {
            if k < u {
                candle_core::bail!("HiFTGenerator: upsample kernel {k} below rate {u}");
            }
            let up_cfg = ConvTranspose1dConfig {
                padding: (k - u) / 2,
                stride: u,
                ..Default::default()
            };
            ups.push(GemmConvTranspose1d::new(conv_transpose1d(
                vb.pp("ups").pp(i),
                base >> i,
                base >> (i + 1),
                k,
                up_cfg,
                true,
            )?)?);
        }
        // Source i joins after upsampling stage i: it is downsampled by the rates of
        // the stages still to come (`downsample_cum_rates[::-1]` in the reference).
        let mut source_downs = Vec::with_capacity(n_ups);
        let mut source_resblocks = Vec::with_capacity(n_ups);
        for i in 0..n_ups {
            let u: usize = rates[i + 1..].iter().product();
            let c = base >> (i + 1);
            let (kernel, cfg_d) = if u == 1 {
                (1, conv_cfg(0, 1, 1))
            } else {
                (2 * u, conv_cfg(u / 2, u, 1))
            };
            source_downs.push(GemmConv1d::new(conv1d(
                vb.pp("source_downs").pp(i),
                n_fft + 2,
                c,
                kernel,
                cfg_d,
                true,
            )?)?);
            source_resblocks.push(ResBlock::load(
                vb.pp("source_resblocks").pp(i),
                c,
                cfg.source_resblock_kernel_sizes[i],
                &cfg.source_resblock_dilation_sizes[i],
            )?);
        }
        let mut resblocks = Vec::with_capacity(n_ups * cfg.resblock_kernel_sizes.len());
        for i in 0..n_ups {
            for (&k, d) in cfg
                .resblock_kernel_sizes
                .iter()
                .zip(&cfg.resblock_dilation_sizes)
            {
                let idx = resblocks.len();
                resblocks.push(ResBlock::load(
                    vb.pp("resblocks").pp(idx),
                    base >> (i + 1),
                    k,
                    d,
                )?);
            }
        }
        let ch = base >> n_ups;
        Ok(Self {
            m_source: SourceModuleHnNSF::load(vb.pp("m_source"), cfg.source())?,
            conv_pre: GemmConv1d::new(conv1d(
                vb.pp("conv_pre"),
                cfg.in_channels,
                base,
                7,
                conv_cfg(3, 1, 1),
                true,
            )?)?,
            ups,
            source_downs,
            source_resblocks,
            resblocks,
            conv_post: GemmConv1d::new(conv1d(
                vb.pp("conv_post"),
                ch,
                n_fft + 2,
                7,
                conv_cfg(3, 1, 1),
                true,
            )?)?,
            f0_predictor: ConvRNNF0Predictor::load(vb.pp("f0_predictor"), &cfg.f0_predictor)?,
            stft: Stft::new(n_fft, cfg.istft_params.hop_len, vb.device())?,
            upsample_scale: cfg.upsample_scale(),
            num_kernels: cfg.resblock_kernel_sizes.len(),
            lrelu_slope: cfg.lrelu_slope,
            audio_limit: cfg.audio_limit,
            n_fft,
        })
    }

    /// Audio samples per mel frame.
    pub fn upsample_scale(&self) -> usize {
        self.upsample_scale
    }

    /// Sine channels of the source (harmonics + 1).
    pub fn source_dim(&self) -> usize {
        self.m_source.dim()
    }

    /// F0 per frame [B, T] from the mel [B, 80, T].
    pub fn f0(&self, mel: &Tensor) -> Result<Tensor> {
        self.f0_predictor.forward(mel)
    }

    /// The harmonic source `s` [B, 1, T·scale] for the F0 curve [B, T].
    pub fn source(&self, f0: &Tensor, noise: &SourceNoise) -> Result<Tensor> {
        self.m_source.forward(f0, noise)
    }

    /// The source [1, 1, n·scale] for one item's F0 `f0` [n], its phase carried on
    /// from `acc` (see [`crate::engine::nn::source::SineGen::continue_per_sample`]:
    /// `phase` [dim] start phases, `randn` [n·scale, dim] sample-major noise).
    pub fn source_continued(
        &self,
        f0: &[f32],
        phase: &[f32],
        randn: &[f32],
        acc: &mut [f64],
        device: &candle_core::Device,
    ) -> Result<Tensor> {
        let sines = self
            .m_source
            .sine_gen()
            .continue_per_sample(f0, phase, randn, acc)?;
        let len = f0.len() * self.upsample_scale;
        self.m_source.merge(&Tensor::from_vec(
            sines,
            (1, self.source_dim(), len),
            device,
        )?)
    }

    /// `_stft(s)` as the generator reads it: real parts, then imaginary parts,
    /// [B, n_fft + 2, L/hop + 1].
    pub fn source_stft(&self, source: &Tensor) -> Result<Tensor> {
        let (re, im) = self.stft.transform_complex(&source.squeeze(1)?)?;
        Tensor::cat(&[re, im], 1)
    }

    /// `conv_pre(mel)`, the input of the first upsampling stage.
    pub fn pre(&self, mel: &Tensor) -> Result<Tensor> {
        self.conv_pre.forward(mel)
    }

    /// Upsampling stage `i` of `decode`: upsample `x`, add the source spectrum brought
    /// to the same rate, average the residual blocks.
    pub fn stage(&self, i: usize, x: &Tensor, s_stft: &Tensor) -> Result<Tensor> {
        let x = leaky_relu(x, self.lrelu_slope)?;
        let mut x = self.ups[i].forward(&x)?;
        if i + 1 == self.ups.len() {
            x = reflection_pad1d(&x, 1, 0)?;
        }
        let si = self.source_resblocks[i].forward(&self.source_downs[i].forward(s_stft)?)?;
        let x = (x + si)?;
        let blocks = &self.resblocks[i * self.num_kernels..(i + 1) * self.num_kernels];
        let mut xs: Option<Tensor> = None;
        for block in blocks {
            let y = block.forward(&x)?;
            xs = Some(match xs {
                None => y,
                Some(acc) => (acc + y)?,
            });
        }
        match xs {
            Some(xs) => xs / self.num_kernels as f64,
            None => Ok(x),
        }
    }

    /// `conv_post`'s output [B, n_fft + 2, L/hop + 1] (log-magnitude, then phase
    /// before `sin`) from the mel and the source spectrum.
    pub fn spectrogram(&self, mel: &Tensor, s_stft: &Tensor) -> Result<Tensor> {
        let mut x = self.pre(mel)?;
        for i in 0..self.ups.len() {
            x = self.stage(i, &x, s_stft)?;
        }
        self.conv_post.forward(&leaky_relu(&x, POST_SLOPE)?)
    }

    /// Audio [B, hop·(frames − 1)] from a [`Self::spectrogram`]: the inverse STFT of
    /// `min(exp(x[:, :bins]), 100) · e^{i·sin(x[:, bins:])}`, clamped to ±`audio_limit`.
    pub fn istft(&self, x: &Tensor) -> Result<Tensor> {
        let bins = self.n_fft / 2 + 1;
        let magnitude = x.narrow(1, 0, bins)?.exp()?.minimum(MAX_MAGNITUDE)?;
        let phase = x.narrow(1, bins, x.dim(1)? - bins)?.sin()?;
        self.stft
            .inverse(&magnitude, &phase)?
            .clamp(-self.audio_limit, self.audio_limit)
    }

    /// `decode`: the mel [B, 80, T] and the source [B, 1, L] → audio [B, L].
    pub fn decode(&self, mel: &Tensor, source: &Tensor) -> Result<Tensor> {
        let s_stft = self.source_stft(source)?;
        self.istft(&self.spectrogram(mel, &s_stft)?)
    }

    /// `inference` with an empty `cache_source` (as S3Gen calls it): the mel
    /// [B, 80, T] → audio [B, T·scale], with the source's random draws given.
    pub fn inference(&self, mel: &Tensor, noise: &SourceNoise) -> Result<Tensor> {
        let f0 = self.f0(mel)?;
        let source = self.source(&f0, noise)?;
        self.decode(mel, &source)
    }

    /// [`Self::inference`] with the source's random draws made from `seed`.
    pub fn inference_seeded(&self, mel: &Tensor, seed: u64) -> Result<Tensor> {
        let (b, _, t) = mel.dims3()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let noise = SourceNoise::draw(
            &mut rng,
            b,
            self.source_dim(),
            t * self.upsample_scale,
            mel.device(),
        )?;
        self.inference(mel, &noise)
    }
}

// chatterbox/models/s3gen/s3gen.py `S3Token2Wav.trim_fade`
/// S3Gen's fade-in against spill-over from the reference clip: the first 20 ms of
/// `audio` [B, L] silenced, the next 20 ms raised by half a cosine (`torch.linspace`
/// and `cos` in f32, as the reference builds the buffer).
pub fn trim_fade(audio: &Tensor, sampling_rate: u32) -> Result<Tensor> {
    let (_, len) = audio.dims2()?;
    let mut fade = fade_in_gains(sampling_rate);
    let n = fade.len().min(len);
    fade.truncate(n);
    let head = audio
        .narrow(1, 0, n)?
        .broadcast_mul(&Tensor::from_vec(fade, (1, n), audio.device())?.to_dtype(audio.dtype())?)?;
    if n == len {
        return Ok(head);
    }
    Tensor::cat(&[&head, &audio.narrow(1, n, len - n)?], 1)
}

/// The gains [`trim_fade`] multiplies the first 40 ms by (the samples after them
/// are kept as they are).
pub fn fade_in_gains(sampling_rate: u32) -> Vec<f32> {
    let n_trim = (sampling_rate / 50) as usize;
    let mut fade = vec![0f32; 2 * n_trim];
    // torch.linspace(π, 0, n): the first half counts up from the start, the second
    // half down from the end, both with the f32 step.
    let (start, end) = (std::f32::consts::PI, 0f32);
    let step = (end - start) / (n_trim - 1) as f32;
    for i in 0..n_trim {
        let x = if i < n_trim / 2 {
            start + step * i as f32
        } else {
            end - step * (n_trim - 1 - i) as f32
        };
        fade[n_trim + i] = (x.cos() + 1.0) / 2.0;
    }
    fade
}
