//! chatterbox-tts 0.1.7 `models/s3gen/decoder.py`: the causal U-Net-style
//! `ConditionalDecoder` that estimates the flow's velocity field, with its
//! meanflow time mixer.
//!
//! Every sequence is one unpadded utterance: the reference's masks are all ones and
//! multiplying by them is left out.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{
    conv1d, layer_norm, linear, linear_no_bias, Conv1d, Conv1dConfig, LayerNorm, Linear, VarBuilder,
};

use super::config::S3GenConfig;
use super::matcha::decoder::{SinusoidalPosEmb, TimestepEmbedding};
use super::matcha::transformer::BasicTransformerBlock;
use crate::engine::nn::fast_math::mish_f32;
use crate::engine::nn::int8::{int8_available, Int8Matrix};
use crate::engine::nn::linear::{PackedMatrix, TransposedLinear};
use crate::engine::nn::ops::{map_cpu, with_cpu_f32};

/// `nn.Mish`: `x · tanh(softplus(x))` (see [`mish_f32`]).
pub fn mish(x: &Tensor) -> Result<Tensor> {
    match map_cpu(x, mish_f32) {
        Some(y) => y,
        None => x.mul(&(x.exp()? + 1.0)?.log()?.tanh()?),
    }
}

/// `CausalConv1d`: a stride-1 convolution with `kernel − 1` zeros on the left, so
/// each output frame sees only the present and the past.
///
/// The decoder runs time-major (`[B, T, C]`, frames as rows, the layout its
/// transformer blocks and layer norms take), so the convolution is one matrix
/// product: with the `kernel − 1` zero frames above the signal, frame `t`'s window is
/// the `kernel·C` consecutive values from frame `t`'s row on, and all windows are
/// rows of one strided view (nothing unfolded, no transposes around the norms).
#[derive(Debug, Clone)]
pub struct CausalConv1d {
    weights: CausalTaps,
    c_in: usize,
    c_out: usize,
    kernel: usize,
}

#[derive(Debug, Clone)]
enum CausalTaps {
    /// f32 in CPU memory: `taps` [kernel·C_in, C_out], row `j·C_in + c` holding tap
    /// `j` of input channel `c`, and the bias.
    Cpu { taps: PackedMatrix, bias: Vec<f32> },
    /// The same taps quantised to bytes ([`CausalConv1d::quantise_int8`]).
    Int8 { taps: Int8Matrix, bias: Vec<f32> },
    /// The layer as loaded, for other devices and dtypes.
    Conv(Conv1d),
}

impl CausalConv1d {
    pub fn load(vb: VarBuilder, c_in: usize, c_out: usize, kernel: usize) -> Result<Self> {
        let conv = conv1d(c_in, c_out, kernel, Conv1dConfig::default(), vb)?;
        let weights = if conv.weight().device().is_cpu() && conv.weight().dtype() == DType::F32 {
            // [C_out, C_in, K] → [K, C_in, C_out].
            let taps = conv
                .weight()
                .permute((2, 1, 0))?
                .reshape((kernel * c_in, c_out))?;
            let bias = match conv.bias() {
                Some(b) => b.to_dtype(DType::F32)?.to_vec1::<f32>()?,
                None => vec![0f32; c_out],
            };
            CausalTaps::Cpu {
                taps: PackedMatrix::from_tensor(&taps)?,
                bias,
            }
        } else {
            CausalTaps::Conv(conv)
        };
        Ok(Self {
            weights,
            c_in,
            c_out,
            kernel,
        })
    }

    /// Quantises f32 CPU taps to bytes (see [`crate::engine::nn::int8`]); CPUs
    /// without AVX2 or AVX-512 VNNI keep them.
    pub fn quantise_int8(&mut self) {
        if let CausalTaps::Cpu { taps, bias } = &self.weights {
            if int8_available() {
                self.weights = CausalTaps::Int8 {
                    taps: taps.to_int8(),
                    bias: bias.clone(),
                };
            }
        }
    }
}

impl Module for CausalConv1d {
    /// `x` [B, T, C_in] → [B, T, C_out].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c_in) = x.dims3()?;
        if c_in != self.c_in {
            candle_core::bail!("causal conv: {c_in} channels in, want {}", self.c_in);
        }
        let product: &dyn Fn(&[f32]) -> Result<Vec<f32>> = match &self.weights {
            CausalTaps::Cpu { taps, bias } => &|padded| taps.strided_times(padded, c_in, t, bias),
            CausalTaps::Int8 { taps, bias } => &|padded| taps.strided_times(padded, c_in, t, bias),
            CausalTaps::Conv(conv) => {
                return conv
                    .forward(
                        &x.transpose(1, 2)?
                            .pad_with_zeros(D::Minus1, self.kernel - 1, 0)?,
                    )?
                    .transpose(1, 2)?
                    .contiguous()
            }
        };
        let pad = (self.kernel - 1) * c_in;
        with_cpu_f32(x, |xs| {
            let mut out = Vec::with_capacity(b * t * self.c_out);
            let mut padded = vec![0f32; pad + t * c_in];
            for item in xs.chunks_exact(t * c_in) {
                padded[pad..].copy_from_slice(item);
                out.extend(product(&padded)?);
            }
            Tensor::from_vec(out, (b, t, self.c_out), x.device())
        })
        .unwrap_or_else(|| {
            candle_core::bail!("causal conv: f32 weights on the CPU take f32 CPU input")
        })
    }
}

/// A 1×1 convolution of a time-major signal: a linear layer over channels.
fn pointwise(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<TransposedLinear> {
    let weight = vb.get((c_out, c_in, 1), "weight")?.squeeze(2)?;
    let bias = vb.get(c_out, "bias")?;
    TransposedLinear::new(Linear::new(weight, Some(bias)))
}

/// `CausalBlock1D`: causal kernel-3 convolution, LayerNorm over channels, Mish (keys
/// `block.0`, `block.2`); time-major.
#[derive(Debug, Clone)]
pub struct CausalBlock1D {
    conv: CausalConv1d,
    norm: LayerNorm,
}

impl CausalBlock1D {
    pub fn load(vb: VarBuilder, dim: usize, dim_out: usize) -> Result<Self> {
        Ok(Self {
            conv: CausalConv1d::load(vb.pp("block.0"), dim, dim_out, 3)?,
            norm: layer_norm(dim_out, 1e-5, vb.pp("block.2"))?,
        })
    }

    pub fn quantise_int8(&mut self) {
        self.conv.quantise_int8();
    }
}

impl Module for CausalBlock1D {
    /// `x` [B, T, dim] → [B, T, dim_out].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        mish(&self.norm.forward(&self.conv.forward(x)?)?)
    }
}

/// `CausalResnetBlock1D`: two causal blocks with the time embedding added between
/// them (`mlp` = Mish then linear), plus a 1×1 convolution of the input; time-major.
#[derive(Debug, Clone)]
pub struct CausalResnetBlock1D {
    mlp: Linear,
    block1: CausalBlock1D,
    block2: CausalBlock1D,
    res_conv: TransposedLinear,
}

impl CausalResnetBlock1D {
    pub fn load(vb: VarBuilder, dim: usize, dim_out: usize, time_emb_dim: usize) -> Result<Self> {
        Ok(Self {
            mlp: linear(time_emb_dim, dim_out, vb.pp("mlp.1"))?,
            block1: CausalBlock1D::load(vb.pp("block1"), dim, dim_out)?,
            block2: CausalBlock1D::load(vb.pp("block2"), dim_out, dim_out)?,
            res_conv: pointwise(vb.pp("res_conv"), dim, dim_out)?,
        })
    }

    /// Quantises the convolutions to bytes (the time embedding's one-row `mlp`
    /// stays f32).
    pub fn quantise_int8(&mut self) {
        self.block1.quantise_int8();
        self.block2.quantise_int8();
        self.res_conv.quantise_int8();
    }

    /// `x` [B, T, dim], `time_emb` [B or 1, time_emb_dim] → [B, T, dim_out].
    pub fn forward(&self, x: &Tensor, time_emb: &Tensor) -> Result<Tensor> {
        let h = self.block1.forward(x)?;
        let h = h.broadcast_add(&self.mlp.forward(&mish(time_emb)?)?.unsqueeze(1)?)?;
        let h = self.block2.forward(&h)?;
        h + self.res_conv.forward(x)?
    }
}

/// One level of the U-Net: a resnet block then transformer blocks over time.
#[derive(Debug, Clone)]
struct Level {
    resnet: CausalResnetBlock1D,
    transformer_blocks: Vec<BasicTransformerBlock>,
}

impl Level {
    fn load(vb: &VarBuilder, dim: usize, dim_out: usize, cfg: &S3GenConfig) -> Result<Self> {
        let d = &cfg.decoder;
        let time_embed_dim = d.channels[0] * 4;
        let resnet = CausalResnetBlock1D::load(vb.pp(0), dim, dim_out, time_embed_dim)?;
        let transformer_blocks = (0..d.n_blocks)
            .map(|j| {
                BasicTransformerBlock::load(
                    vb.pp(1).pp(j),
                    dim_out,
                    d.num_heads,
                    d.attention_head_dim,
                )
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            resnet,
            transformer_blocks,
        })
    }

    fn quantise_int8(&mut self) {
        self.resnet.quantise_int8();
        for block in &mut self.transformer_blocks {
            block.quantise_int8();
        }
    }

    /// [B, T, dim] → [B, T, dim_out].
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let mut x = self.resnet.forward(x, t)?;
        for block in &self.transformer_blocks {
            x = block.forward(&x)?;
        }
        Ok(x)
    }
}

/// `ConditionalDecoder(causal=True, meanflow=True)` with one channel level (Turbo's
/// `channels=[256]`): one down level, the mid levels and one up level, all at the
/// input's frame rate (the single level neither down- nor upsamples), then
/// `final_block` and the 1×1 `final_proj` to mel bands.
#[derive(Debug, Clone)]
pub struct ConditionalDecoder {
    time_embeddings: SinusoidalPosEmb,
    time_mlp: TimestepEmbedding,
    time_embed_mixer: Linear,
    down: Level,
    downsample: CausalConv1d,
    mid: Vec<Level>,
    up: Level,
    upsample: CausalConv1d,
    final_block: CausalBlock1D,
    final_proj: TransposedLinear,
}

impl ConditionalDecoder {
    pub fn load(vb: VarBuilder, cfg: &S3GenConfig) -> Result<Self> {
        cfg.check_supported().map_err(candle_core::Error::Msg)?;
        let d = &cfg.decoder;
        let ch = d.channels[0];
        let time_embed_dim = ch * 4;
        let down_vb = vb.pp("down_blocks").pp(0);
        let up_vb = vb.pp("up_blocks").pp(0);
        Ok(Self {
            time_embeddings: SinusoidalPosEmb::new(d.in_channels)?,
            time_mlp: TimestepEmbedding::load(vb.pp("time_mlp"), d.in_channels, time_embed_dim)?,
            time_embed_mixer: linear_no_bias(
                2 * time_embed_dim,
                time_embed_dim,
                vb.pp("time_embed_mixer"),
            )?,
            down: Level::load(&down_vb, d.in_channels, ch, cfg)?,
            downsample: CausalConv1d::load(down_vb.pp(2), ch, ch, 3)?,
            mid: (0..d.num_mid_blocks)
                .map(|i| Level::load(&vb.pp("mid_blocks").pp(i), ch, ch, cfg))
                .collect::<Result<_>>()?,
            up: Level::load(&up_vb, 2 * ch, ch, cfg)?,
            upsample: CausalConv1d::load(up_vb.pp(2), ch, ch, 3)?,
            final_block: CausalBlock1D::load(vb.pp("final_block"), ch, ch)?,
            final_proj: pointwise(vb.pp("final_proj"), ch, d.out_channels)?,
        })
    }

    /// Runs the matrix products over frames in 8-bit integers (see
    /// [`crate::engine::nn::int8`]): every causal convolution, 1×1 convolution,
    /// transformer projection and attention. The time embedding's one-row layers stay
    /// f32. CPUs without AVX2 or AVX-512 VNNI keep f32 throughout.
    pub fn quantise_int8(&mut self) {
        self.down.quantise_int8();
        self.downsample.quantise_int8();
        for level in &mut self.mid {
            level.quantise_int8();
        }
        self.up.quantise_int8();
        self.upsample.quantise_int8();
        self.final_block.quantise_int8();
        self.final_proj.quantise_int8();
    }

    /// The meanflow time embedding for the step from `t` to `r`: both embedded, then
    /// mixed, [1, time_embed_dim].
    pub fn time_embedding(&self, t: f32, r: f32, device: &candle_core::Device) -> Result<Tensor> {
        let embed = |v: f32| -> Result<Tensor> {
            self.time_mlp
                .forward(&self.time_embeddings.forward(&[v], device)?)
        };
        let tr = Tensor::cat(&[embed(t)?, embed(r)?], 1)?;
        self.time_embed_mixer.forward(&tr)
    }

    /// The velocity at `x` for the step from time `t` to `r`: `x`, `mu`, `cond`
    /// [B, 80, T], `spks` [B, 80] → [B, 80, T].
    pub fn forward(
        &self,
        x: &Tensor,
        mu: &Tensor,
        t: f32,
        r: f32,
        spks: &Tensor,
        cond: &Tensor,
    ) -> Result<Tensor> {
        let _span = tracing::trace_span!("s3gen_estimator").entered();
        let temb = self.time_embedding(t, r, x.device())?.to_dtype(x.dtype())?;
        let (b, _, frames) = x.dims3()?;
        let spks = spks
            .unsqueeze(D::Minus1)?
            .broadcast_as((b, spks.dim(1)?, frames))?;
        // Time-major from here on ([B, T, C]).
        let x = Tensor::cat(&[x, mu, &spks, cond], 1)?
            .transpose(1, 2)?
            .contiguous()?;

        let x = self.down.forward(&x, &temb)?;
        let skip = x.clone();
        let mut x = self.downsample.forward(&x)?;
        for level in &self.mid {
            x = level.forward(&x, &temb)?;
        }
        let x = Tensor::cat(&[&x.narrow(1, 0, skip.dim(1)?)?, &skip], 2)?;
        let x = self.up.forward(&x, &temb)?;
        let x = self.upsample.forward(&x)?;
        let x = self.final_block.forward(&x)?;
        self.final_proj.forward(&x)?.transpose(1, 2)?.contiguous()
    }
}
