//! The iSTFTNet decoder: style-conditioned residual blocks turn the aligned text
//! features, F0 and energy into a magnitude/phase spectrogram, excited by a harmonic
//! sine source built from F0, and an inverse STFT turns that into 24 kHz audio.
//!
//! Port of `kokoro/istftnet.py` (kokoro 0.9.4, hexgrad/kokoro), itself adapted from
//! StyleTTS2's `Modules/istftnet.py`.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Conv1d, ConvTranspose1dConfig, Linear, VarBuilder};

use super::config::{IstftnetConfig, KokoroConfig};
use crate::engine::nn::depthwise::DepthwiseConvTranspose1d;
use crate::engine::nn::norm::{InstanceNorm1d, Modulation};
use crate::engine::nn::ops::{
    add_scaled_into, leaky_relu, reflection_pad1d, upsample_nearest2x, with_cpu_f32,
};
use crate::engine::nn::source::{PhaseIntegration, SineGenConfig, SourceModuleHnNSF, SourceNoise};
use crate::engine::nn::stft::Stft;
use crate::engine::nn::{
    conv1d, conv_cfg, conv_transpose1d, resblock_convs, GemmConv1d, GemmConvTranspose1d,
};

/// `(residual + shortcut) · torch.rsqrt(torch.tensor(2))`, rounded to f32 as there.
const RSQRT_2: f64 = std::f32::consts::FRAC_1_SQRT_2 as f64;

/// LeakyReLU slope of `AdainResBlk1d` (`nn.LeakyReLU(0.2)`).
const ADAIN_RESBLK_SLOPE: f64 = 0.2;

// kokoro/istftnet.py `AdaIN1d`
/// Adaptive instance norm: `(1 + γ) · norm(x) + β` with `[γ, β] = fc(s)`.
#[derive(Debug, Clone)]
pub struct AdaIN1d {
    norm: InstanceNorm1d,
    fc: Linear,
    num_features: usize,
}

impl AdaIN1d {
    pub fn load(vb: VarBuilder, style_dim: usize, num_features: usize) -> Result<Self> {
        Ok(Self {
            norm: InstanceNorm1d::load(vb.pp("norm"), num_features)?,
            fc: candle_nn::linear(style_dim, 2 * num_features, vb.pp("fc"))?,
            num_features,
        })
    }

    /// `x` [B, C, T], `s` [B, style_dim] → [B, C, T].
    pub fn forward(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let h = self.fc.forward(s)?;
        let gamma = h.narrow(1, 0, self.num_features)?;
        let beta = h.narrow(1, self.num_features, self.num_features)?;
        self.norm.forward_modulated(x, &(gamma + 1.0)?, &beta)
    }

    /// This layer (then snake with `alpha`) for one item `x` [C, t] (f32 values) with
    /// its statistics taken, to apply a stretch at a time; `s` [1, style_dim].
    pub fn modulation(
        &self,
        x: &[f32],
        t: usize,
        s: &Tensor,
        alpha: Option<&Tensor>,
    ) -> Result<Modulation> {
        let c = self.num_features;
        let h = self.fc.forward(s)?.to_dtype(DType::F32)?;
        let gain = (h.narrow(1, 0, c)? + 1.0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let shift = h.narrow(1, c, c)?.flatten_all()?.to_vec1::<f32>()?;
        let alphas = match alpha {
            Some(a) => Some(a.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        self.norm.modulation(x, t, &gain, &shift, alphas)
    }

    /// `snake(self.forward(x, s), alpha)` in one pass.
    pub fn forward_snake(&self, x: &Tensor, s: &Tensor, alpha: &Tensor) -> Result<Tensor> {
        let h = self.fc.forward(s)?;
        let gamma = h.narrow(1, 0, self.num_features)?;
        let beta = h.narrow(1, self.num_features, self.num_features)?;
        self.norm
            .forward_modulated_snake(x, &(gamma + 1.0)?, &beta, alpha)
    }
}

// kokoro/istftnet.py `UpSample1d`
/// Nearest-neighbour ×2 along time, or nothing (`layer_type == "none"`).
#[derive(Debug, Clone, Copy)]
pub struct UpSample1d {
    nearest: bool,
}

impl UpSample1d {
    pub fn new(nearest: bool) -> Self {
        Self { nearest }
    }
}

impl Module for UpSample1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.nearest {
            upsample_nearest2x(x)
        } else {
            Ok(x.clone())
        }
    }
}

// kokoro/istftnet.py `AdainResBlk1d`
/// Style-conditioned residual block, optionally doubling the time axis (a depthwise
/// transposed convolution on the residual, nearest ×2 on the shortcut).
#[derive(Debug, Clone)]
pub struct AdainResBlk1d {
    upsample: UpSample1d,
    pool: Option<DepthwiseConvTranspose1d>,
    conv1: GemmConv1d,
    conv2: GemmConv1d,
    norm1: AdaIN1d,
    norm2: AdaIN1d,
    conv1x1: Option<GemmConv1d>,
}

impl AdainResBlk1d {
    pub fn load(
        vb: VarBuilder,
        dim_in: usize,
        dim_out: usize,
        style_dim: usize,
        upsample: bool,
    ) -> Result<Self> {
        let pool = if upsample {
            let cfg = ConvTranspose1dConfig {
                padding: 1,
                output_padding: 1,
                stride: 2,
                dilation: 1,
                groups: dim_in,
            };
            let conv = conv_transpose1d(vb.pp("pool"), dim_in, dim_in, 3, cfg, true)?;
            Some(DepthwiseConvTranspose1d::from_conv(&conv)?)
        } else {
            None
        };
        let conv1x1 = if dim_in != dim_out {
            Some(GemmConv1d::new(conv1d(
                vb.pp("conv1x1"),
                dim_in,
                dim_out,
                1,
                conv_cfg(0, 1, 1),
                false,
            )?)?)
        } else {
            None
        };
        Ok(Self {
            upsample: UpSample1d::new(upsample),
            pool,
            conv1: GemmConv1d::new(conv1d(
                vb.pp("conv1"),
                dim_in,
                dim_out,
                3,
                conv_cfg(1, 1, 1),
                true,
            )?)?,
            conv2: GemmConv1d::new(conv1d(
                vb.pp("conv2"),
                dim_out,
                dim_out,
                3,
                conv_cfg(1, 1, 1),
                true,
            )?)?,
            norm1: AdaIN1d::load(vb.pp("norm1"), style_dim, dim_in)?,
            norm2: AdaIN1d::load(vb.pp("norm2"), style_dim, dim_out)?,
            conv1x1,
        })
    }

    /// Whether this block doubles the time axis.
    pub fn upsamples(&self) -> bool {
        self.pool.is_some()
    }

    fn shortcut(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.upsample.forward(x)?;
        match &self.conv1x1 {
            Some(conv) => conv.forward(&x),
            None => Ok(x),
        }
    }

    fn residual(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let x = leaky_relu(&self.norm1.forward(x, s)?, ADAIN_RESBLK_SLOPE)?;
        let x = match &self.pool {
            Some(pool) => pool.forward(&x)?,
            None => x,
        };
        let x = self.conv1.forward(&x)?;
        let x = leaky_relu(&self.norm2.forward(&x, s)?, ADAIN_RESBLK_SLOPE)?;
        self.conv2.forward(&x)
    }

    /// `x` [B, dim_in, T], `s` [B, style_dim] → [B, dim_out, T] (2T when upsampling).
    pub fn forward(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let out = (self.residual(x, s)? + self.shortcut(x)?)?;
        out * RSQRT_2
    }
}

// kokoro/istftnet.py `AdaINResBlock1`
/// The generator's residual block: three dilated convolutions, each between AdaIN and
/// Snake, each followed by a plain convolution, each added back to the input.
#[derive(Debug, Clone)]
pub struct AdaINResBlock1 {
    convs1: Vec<GemmConv1d>,
    convs2: Vec<GemmConv1d>,
    adain1: Vec<AdaIN1d>,
    adain2: Vec<AdaIN1d>,
    /// Snake α per channel, [1, C, 1] each.
    alpha1: Vec<Tensor>,
    alpha2: Vec<Tensor>,
}

impl AdaINResBlock1 {
    pub fn load(
        vb: VarBuilder,
        channels: usize,
        kernel_size: usize,
        dilation: &[usize],
        style_dim: usize,
    ) -> Result<Self> {
        let n = dilation.len();
        let mut block = Self {
            convs1: Vec::with_capacity(n),
            convs2: Vec::with_capacity(n),
            adain1: Vec::with_capacity(n),
            adain2: Vec::with_capacity(n),
            alpha1: Vec::with_capacity(n),
            alpha2: Vec::with_capacity(n),
        };
        for (i, &d) in dilation.iter().enumerate() {
            let c = channels;
            let (conv1, conv2) = resblock_convs(&vb, i, c, kernel_size, d)?;
            block.convs1.push(conv1);
            block.convs2.push(conv2);
            block
                .adain1
                .push(AdaIN1d::load(vb.pp("adain1").pp(i), style_dim, c)?);
            block
                .adain2
                .push(AdaIN1d::load(vb.pp("adain2").pp(i), style_dim, c)?);
            block
                .alpha1
                .push(vb.pp("alpha1").get((1, c, 1), &i.to_string())?);
            block
                .alpha2
                .push(vb.pp("alpha2").get((1, c, 1), &i.to_string())?);
        }
        Ok(block)
    }

    /// `x` [B, C, T], `s` [B, style_dim] → [B, C, T].
    pub fn forward(&self, x: &Tensor, s: &Tensor) -> Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let mappable = self
            .convs1
            .iter()
            .chain(&self.convs2)
            .all(GemmConv1d::keeps_length);
        let streamed = (b == 1 && s.dim(0)? == 1 && mappable)
            .then(|| with_cpu_f32(x, |data| self.forward_streamed(data, c, t, s)))
            .flatten();
        if let Some(y) = streamed {
            return Tensor::from_vec(y?, (1, c, t), x.device());
        }
        // Each intermediate is dropped as soon as the next one exists: a shadowed
        // binding would keep it to the loop's end.
        let mut x = x.clone();
        for i in 0..self.convs1.len() {
            let h = self.adain1[i].forward_snake(&x, s, &self.alpha1[i])?;
            let h = {
                let conv = self.convs1[i].forward(&h)?;
                drop(h);
                self.adain2[i].forward_snake(&conv, s, &self.alpha2[i])?
            };
            x = self.convs2[i].forward_add(&h, &x)?;
        }
        Ok(x)
    }

    /// [`Self::forward`] for one item `x` [C, t] on the CPU, with two activations
    /// of its size alive besides `x` instead of four: each norm and snake is applied
    /// a stretch at a time as its convolution reads it
    /// ([`GemmConv1d::forward_mapped_into`]), and each residual sum lands in the
    /// buffer that holds the residual. At the generator's last stage (128 channels at
    /// 60× the frame rate) an activation is ~100 MB for a 40 s sentence.
    fn forward_streamed(&self, x: &[f32], c: usize, t: usize, s: &Tensor) -> Result<Vec<f32>> {
        let mut cur: Option<Vec<f32>> = None;
        for i in 0..self.convs1.len() {
            let mut h = vec![0f32; c * t];
            {
                let x = cur.as_deref().unwrap_or(x);
                let norm = self.adain1[i].modulation(x, t, s, Some(&self.alpha1[i]))?;
                self.convs1[i].forward_mapped_into(
                    x,
                    t,
                    |ch, xs, o| norm.apply(ch, xs, o),
                    &mut h,
                    false,
                )?;
            }
            let norm = self.adain2[i].modulation(&h, t, s, Some(&self.alpha2[i]))?;
            // The residual: this block's own buffer after the first step, a copy of the
            // input (shared with the other blocks) before it.
            let mut y = cur.take().unwrap_or_else(|| x.to_vec());
            self.convs2[i].forward_mapped_into(
                &h,
                t,
                |ch, xs, o| norm.apply(ch, xs, o),
                &mut y,
                true,
            )?;
            cur = Some(y);
        }
        Ok(cur.unwrap_or_else(|| x.to_vec()))
    }
}

/// LeakyReLU slope inside the generator's upsampling loop.
const GENERATOR_SLOPE: f64 = 0.1;
/// `F.leaky_relu`'s default slope, used before `conv_post`.
const POST_SLOPE: f64 = 0.01;
/// The generator's sample rate (hard-coded in the reference).
const SAMPLE_RATE: u32 = 24_000;

/// The sine source as `Generator` builds it: 24 kHz, 8 overtones, voiced above 10 Hz,
/// the phase integrated per frame as `kokoro/istftnet.py` effectively does.
fn source_config(upsample_scale: usize) -> SineGenConfig {
    SineGenConfig {
        samp_rate: SAMPLE_RATE,
        upsample_scale,
        harmonic_num: 8,
        sine_amp: 0.1,
        noise_std: 0.003,
        voiced_threshold: 10.0,
        integration: PhaseIntegration::PerFrame,
    }
}

// kokoro/istftnet.py `Generator`
/// iSTFTNet generator: transposed convolutions upsample the decoder's features, the
/// STFT of the harmonic source is mixed in at every scale, and `conv_post` predicts a
/// log-magnitude and phase spectrogram that an inverse STFT turns into audio.
#[derive(Debug, Clone)]
pub struct Generator {
    m_source: SourceModuleHnNSF,
    noise_convs: Vec<GemmConv1d>,
    noise_res: Vec<AdaINResBlock1>,
    ups: Vec<GemmConvTranspose1d>,
    resblocks: Vec<AdaINResBlock1>,
    conv_post: GemmConv1d,
    stft: Stft,
    num_kernels: usize,
    post_n_fft: usize,
}

impl Generator {
    pub fn load(vb: VarBuilder, style_dim: usize, cfg: &IstftnetConfig) -> Result<Self> {
        let rates = &cfg.upsample_rates;
        let kernels = &cfg.upsample_kernel_sizes;
        if rates.is_empty()
            || rates.len() != kernels.len()
            || cfg.resblock_kernel_sizes.len() != cfg.resblock_dilation_sizes.len()
            || cfg.resblock_kernel_sizes.is_empty()
        {
            candle_core::bail!("istftnet: inconsistent upsample/resblock settings");
        }
        let n_fft = cfg.gen_istft_n_fft;
        let c0 = cfg.upsample_initial_channel;
        let upsample_scale = rates.iter().product::<usize>() * cfg.gen_istft_hop_size;
        let m_source = SourceModuleHnNSF::load(vb.pp("m_source"), source_config(upsample_scale))?;
        let mut ups = Vec::with_capacity(rates.len());
        let mut resblocks = Vec::new();
        let mut noise_convs = Vec::with_capacity(rates.len());
        let mut noise_res = Vec::with_capacity(rates.len());
        for (i, (&u, &k)) in rates.iter().zip(kernels).enumerate() {
            if k < u || (k - u) % 2 != 0 {
                candle_core::bail!("istftnet: upsample kernel {k} for rate {u}");
            }
            let cfg_up = ConvTranspose1dConfig {
                padding: (k - u) / 2,
                stride: u,
                ..Default::default()
            };
            let (c_in, c_out) = (c0 >> i, c0 >> (i + 1));
            ups.push(GemmConvTranspose1d::new(conv_transpose1d(
                vb.pp("ups").pp(i),
                c_in,
                c_out,
                k,
                cfg_up,
                true,
            )?)?);
            for (j, (&rk, rd)) in cfg
                .resblock_kernel_sizes
                .iter()
                .zip(&cfg.resblock_dilation_sizes)
                .enumerate()
            {
                let idx = i * cfg.resblock_kernel_sizes.len() + j;
                resblocks.push(AdaINResBlock1::load(
                    vb.pp("resblocks").pp(idx),
                    c_out,
                    rk,
                    rd,
                    style_dim,
                )?);
            }
            let (noise_conv, res_kernel) = if i + 1 < rates.len() {
                let stride_f0: usize = rates[i + 1..].iter().product();
                let cfg_n = conv_cfg(stride_f0.div_ceil(2), stride_f0, 1);
                (
                    conv1d(
                        vb.pp("noise_convs").pp(i),
                        n_fft + 2,
                        c_out,
                        2 * stride_f0,
                        cfg_n,
                        true,
                    )?,
                    7,
                )
            } else {
                (
                    conv1d(
                        vb.pp("noise_convs").pp(i),
                        n_fft + 2,
                        c_out,
                        1,
                        conv_cfg(0, 1, 1),
                        true,
                    )?,
                    11,
                )
            };
            noise_convs.push(GemmConv1d::new(noise_conv)?);
            noise_res.push(AdaINResBlock1::load(
                vb.pp("noise_res").pp(i),
                c_out,
                res_kernel,
                &[1, 3, 5],
                style_dim,
            )?);
        }
        let ch = c0 >> rates.len();
        Ok(Self {
            m_source,
            noise_convs,
            noise_res,
            ups,
            resblocks,
            conv_post: GemmConv1d::new(conv1d(
                vb.pp("conv_post"),
                ch,
                n_fft + 2,
                7,
                conv_cfg(3, 1, 1),
                true,
            )?)?,
            stft: Stft::new(n_fft, cfg.gen_istft_hop_size, vb.device())?,
            num_kernels: cfg.resblock_kernel_sizes.len(),
            post_n_fft: n_fft,
        })
    }

    /// The source module's output (`har_source`) for `f0` [B, n] and `sine_noise`
    /// [B, L, dim] standard normal: [B, L].
    pub fn har_source(&self, f0: &Tensor, sine_noise: &Tensor) -> Result<Tensor> {
        let noise = SourceNoise::without_phase(sine_noise.transpose(1, 2)?);
        self.m_source.forward(f0, &noise)?.squeeze(1)
    }

    /// The reference's `har`: STFT magnitude then phase of the harmonic source,
    /// [B, n_fft + 2, L/hop + 1].
    ///
    /// In the first frame the reflection padding makes the windowed samples
    /// symmetric, so every bin is real in exact arithmetic and the phase of a negative
    /// one is ±π by the sign of rounding noise (PyTorch's window is a few ulps
    /// asymmetric and its FFT rounds its own way). The two choices give audibly
    /// identical output but differ numerically everywhere, the instance norms spreading
    /// the difference over the whole utterance.
    pub fn source_spectrum(&self, f0: &Tensor, sine_noise: &Tensor) -> Result<Tensor> {
        let (spec, phase) = self.stft.transform(&self.har_source(f0, sine_noise)?)?;
        Tensor::cat(&[spec, phase], 1)
    }

    /// `conv_post`'s output [B, n_fft + 2, frames] (log-magnitude, then phase before
    /// `sin`) from the decoder's features `x` [B, C0, n], `s` [B, style_dim] and the
    /// source spectrum `har` of [`Self::source_spectrum`].
    pub fn spectrogram(&self, x: &Tensor, s: &Tensor, har: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        let last = self.ups.len() - 1;
        for (i, up) in self.ups.iter().enumerate() {
            x = leaky_relu(&x, GENERATOR_SLOPE)?;
            let x_source = self.noise_res[i].forward(&self.noise_convs[i].forward(har)?, s)?;
            x = up.forward(&x)?;
            if i == last {
                x = reflection_pad1d(&x, 1, 0)?;
            }
            x = (x + x_source)?;
            let blocks = &self.resblocks[i * self.num_kernels..(i + 1) * self.num_kernels];
            // The mean of the blocks' outputs, summed into the first one's buffer.
            let mut xs: Option<Tensor> = None;
            let last_block = blocks.len().saturating_sub(1);
            for (b, block) in blocks.iter().enumerate() {
                let y = block.forward(&x, s)?;
                let scale = if b == last_block {
                    1.0 / self.num_kernels as f32
                } else {
                    1.0
                };
                xs = Some(match xs {
                    None if b == last_block => (y * f64::from(scale))?,
                    None => y,
                    Some(acc) => add_scaled_into(acc, &y, scale)?,
                });
            }
            if let Some(xs) = xs {
                x = xs;
            }
        }
        self.conv_post.forward(&leaky_relu(&x, POST_SLOPE)?)
    }

    /// Audio [B, hop·(frames − 1)] from a [`Self::spectrogram`]:
    /// `istft(exp(x[:, :bins]) · e^{i·sin(x[:, bins:])})`.
    pub fn istft(&self, x: &Tensor) -> Result<Tensor> {
        let bins = self.post_n_fft / 2 + 1;
        let spec = x.narrow(1, 0, bins)?.exp()?;
        let phase = x.narrow(1, bins, x.dim(1)? - bins)?.sin()?;
        self.stft.inverse(&spec, &phase)
    }

    /// `x` [B, C0, n] (the decoder's features), `s` [B, style_dim], `f0` [B, n] (the
    /// predicted F0 curve), `sine_noise` [B, L, 9] standard normal → audio [B, L],
    /// L = n · prod(upsample_rates) · hop.
    pub fn forward(
        &self,
        x: &Tensor,
        s: &Tensor,
        f0: &Tensor,
        sine_noise: &Tensor,
    ) -> Result<Tensor> {
        let har = self.source_spectrum(f0, sine_noise)?;
        self.istft(&self.spectrogram(x, s, &har)?)
    }
}

// kokoro/istftnet.py `Decoder`
/// From aligned text features, F0 and energy curves and the style to audio.
#[allow(non_snake_case)]
#[derive(Debug, Clone)]
pub struct Decoder {
    pub encode: AdainResBlk1d,
    pub decode: Vec<AdainResBlk1d>,
    pub F0_conv: Conv1d,
    pub N_conv: Conv1d,
    /// `asr_res.0` (an `nn.Sequential` of one convolution in the reference).
    pub asr_res: Conv1d,
    pub generator: Generator,
}

impl Decoder {
    /// `vb` at the checkpoint's `decoder` group.
    pub fn load(vb: VarBuilder, cfg: &KokoroConfig) -> Result<Self> {
        let (h, s) = (cfg.hidden_dim, cfg.style_dim);
        let (d, a) = (cfg.decoder_hidden_dim, cfg.asr_res_dim);
        let c0 = cfg.istftnet.upsample_initial_channel;
        let decode = (0..4)
            .map(|i| {
                let last = i == 3;
                AdainResBlk1d::load(
                    vb.pp("decode").pp(i),
                    d + 2 + a,
                    if last { c0 } else { d },
                    s,
                    last,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let f0n = conv_cfg(1, 2, 1);
        Ok(Self {
            encode: AdainResBlk1d::load(vb.pp("encode"), h + 2, d, s, false)?,
            decode,
            F0_conv: conv1d(vb.pp("F0_conv"), 1, 1, 3, f0n, true)?,
            N_conv: conv1d(vb.pp("N_conv"), 1, 1, 3, f0n, true)?,
            asr_res: conv1d(vb.pp("asr_res").pp(0), h, a, 1, conv_cfg(0, 1, 1), true)?,
            generator: Generator::load(vb.pp("generator"), s, &cfg.istftnet)?,
        })
    }

    /// The generator's input [B, C0, 2F] from `asr` [B, H, F], `f0_curve` and `n`
    /// [B, 2F], `s` [B, style_dim].
    pub fn features(
        &self,
        asr: &Tensor,
        f0_curve: &Tensor,
        n: &Tensor,
        s: &Tensor,
    ) -> Result<Tensor> {
        let f0 = self.F0_conv.forward(&f0_curve.unsqueeze(1)?)?;
        let n = self.N_conv.forward(&n.unsqueeze(1)?)?;
        let mut x = self.encode.forward(&Tensor::cat(&[asr, &f0, &n], 1)?, s)?;
        let asr_res = self.asr_res.forward(asr)?;
        let mut res = true;
        for block in &self.decode {
            if res {
                x = Tensor::cat(&[&x, &asr_res, &f0, &n], 1)?;
            }
            x = block.forward(&x, s)?;
            if block.upsamples() {
                res = false;
            }
        }
        Ok(x)
    }

    /// `asr` [B, H, F], `f0_curve` and `n` [B, 2F], `s` [B, style_dim] (the first half
    /// of the voice's `ref_s`), `sine_noise` [B, 600·F, 9] standard normal (the sine
    /// source's noise; tests pass the reference's draw) → audio [B, 600·F] at 24 kHz.
    pub fn forward(
        &self,
        asr: &Tensor,
        f0_curve: &Tensor,
        n: &Tensor,
        s: &Tensor,
        sine_noise: &Tensor,
    ) -> Result<Tensor> {
        let x = self.features(asr, f0_curve, n, s)?;
        self.generator.forward(&x, s, f0_curve, sine_noise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;

    #[test]
    fn residual_block_streamed_per_item_matches_the_batched_form() -> Result<()> {
        let dev = Device::Cpu;
        let (c, k, style, t) = (16usize, 7usize, 4usize, 3000usize);
        let dilation = [1usize, 3, 5];
        let mut map = HashMap::new();
        let mut put = |name: String, shape: &[usize], std: f32| -> Result<()> {
            map.insert(name, Tensor::randn(0f32, std, shape, &dev)?);
            Ok(())
        };
        for i in 0..dilation.len() {
            for conv in ["convs1", "convs2"] {
                put(format!("{conv}.{i}.weight"), &[c, c, k], 0.1)?;
                put(format!("{conv}.{i}.bias"), &[c], 0.1)?;
            }
            for adain in ["adain1", "adain2"] {
                put(format!("{adain}.{i}.fc.weight"), &[2 * c, style], 0.3)?;
                put(format!("{adain}.{i}.fc.bias"), &[2 * c], 0.3)?;
            }
            for alpha in ["alpha1", "alpha2"] {
                put(format!("{alpha}.{i}"), &[1, c, 1], 1.0)?;
            }
        }
        let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
        let block = AdaINResBlock1::load(vb, c, k, &dilation, style)?;
        let x = Tensor::randn(0f32, 1.0, (2, c, t), &dev)?;
        let s = Tensor::randn(0f32, 1.0, (2, style), &dev)?;
        // Two items go the tensor way; one item alone is streamed.
        let batched = block.forward(&x, &s)?;
        for item in 0..2 {
            let alone = block.forward(&x.narrow(0, item, 1)?, &s.narrow(0, item, 1)?)?;
            let want = batched.narrow(0, item, 1)?;
            let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
            let diff = (alone - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff <= 1e-5 * scale, "item {item}: {diff:e} of {scale}");
        }
        Ok(())
    }
}
