//! chatterbox-tts 0.1.7 `models/s3gen/transformer/upsample_encoder.py`.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{conv1d, layer_norm, Conv1dConfig, LayerNorm, VarBuilder};

use super::encoder_layer::ConformerEncoderLayer;
use super::subsampling::LinearNoSubsampling;
use crate::engine::chatterbox::s3gen::config::S3GenConfig;
use crate::engine::nn::ops::{leaky_relu, upsample_nearest2x};
use crate::engine::nn::GemmConv1d;

/// Slope of `F.leaky_relu`'s default.
const LEAKY_SLOPE: f64 = 0.01;

/// A stride-1 convolution without padding, as the fast layer.
fn plain_conv(vb: VarBuilder, c_in: usize, c_out: usize, kernel: usize) -> Result<GemmConv1d> {
    GemmConv1d::new(conv1d(c_in, c_out, kernel, Conv1dConfig::default(), vb)?)
}

/// `F.pad(x, (left, right))` with zeros on the time axis, then `conv`.
fn padded_conv(conv: &GemmConv1d, x: &Tensor, left: usize, right: usize) -> Result<Tensor> {
    conv.forward(&x.pad_with_zeros(D::Minus1, left, right)?)
}

/// `Upsample1D`: nearest-neighbour ×`stride` on time, then a causal convolution
/// (kernel `2·stride + 1`, zeros on the left).
#[derive(Debug, Clone)]
pub struct Upsample1D {
    conv: GemmConv1d,
    stride: usize,
}

impl Upsample1D {
    pub fn load(
        vb: VarBuilder,
        channels: usize,
        out_channels: usize,
        stride: usize,
    ) -> Result<Self> {
        if stride != 2 {
            candle_core::bail!("S3Gen encoder upsampling by {stride}: only 2 is supported");
        }
        Ok(Self {
            conv: plain_conv(vb.pp("conv"), channels, out_channels, 2 * stride + 1)?,
            stride,
        })
    }
}

impl Module for Upsample1D {
    /// `x` [B, C, T] → [B, C_out, stride·T].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        padded_conv(&self.conv, &upsample_nearest2x(x)?, 2 * self.stride, 0)
    }
}

/// `PreLookaheadLayer`: a convolution that reads `pre_lookahead_len` frames ahead,
/// LeakyReLU, a causal kernel-3 convolution, plus the input.
#[derive(Debug, Clone)]
pub struct PreLookaheadLayer {
    conv1: GemmConv1d,
    conv2: GemmConv1d,
    pre_lookahead_len: usize,
}

impl PreLookaheadLayer {
    pub fn load(vb: VarBuilder, channels: usize, pre_lookahead_len: usize) -> Result<Self> {
        Ok(Self {
            conv1: plain_conv(vb.pp("conv1"), channels, channels, pre_lookahead_len + 1)?,
            conv2: plain_conv(vb.pp("conv2"), channels, channels, 3)?,
            pre_lookahead_len,
        })
    }
}

impl Module for PreLookaheadLayer {
    /// `inputs` [B, T, C] → [B, T, C].
    fn forward(&self, inputs: &Tensor) -> Result<Tensor> {
        let x = inputs.transpose(1, 2)?.contiguous()?;
        let x = leaky_relu(
            &padded_conv(&self.conv1, &x, 0, self.pre_lookahead_len)?,
            LEAKY_SLOPE,
        )?;
        let x = padded_conv(&self.conv2, &x, 2, 0)?;
        x.transpose(1, 2)? + inputs
    }
}

/// `UpsampleConformerEncoder`: tokens' embeddings [B, T, D] → [B, 2T, D].
///
/// `embed` → `pre_lookahead_layer` → `encoders` → `up_layer` (×2 on time) →
/// `up_embed` → `up_encoders` → `after_norm`. The reference hard-codes 512
/// channels for `pre_lookahead_layer` and `up_layer` (Turbo's width); here they
/// follow the encoder width, which is the same for Turbo.
#[derive(Debug, Clone)]
pub struct UpsampleConformerEncoder {
    embed: LinearNoSubsampling,
    pre_lookahead_layer: PreLookaheadLayer,
    encoders: Vec<ConformerEncoderLayer>,
    up_layer: Upsample1D,
    up_embed: LinearNoSubsampling,
    up_encoders: Vec<ConformerEncoderLayer>,
    after_norm: LayerNorm,
}

impl UpsampleConformerEncoder {
    pub fn load(vb: VarBuilder, cfg: &S3GenConfig) -> Result<Self> {
        let e = &cfg.encoder;
        let d = e.output_size;
        let layers = |vb: VarBuilder, n: usize| -> Result<Vec<ConformerEncoderLayer>> {
            (0..n)
                .map(|i| ConformerEncoderLayer::load(vb.pp(i), e))
                .collect()
        };
        Ok(Self {
            embed: LinearNoSubsampling::load(vb.pp("embed"), cfg.input_size, d)?,
            pre_lookahead_layer: PreLookaheadLayer::load(
                vb.pp("pre_lookahead_layer"),
                d,
                cfg.pre_lookahead_len,
            )?,
            encoders: layers(vb.pp("encoders"), e.num_blocks)?,
            up_layer: Upsample1D::load(vb.pp("up_layer"), d, d, e.upsample_stride)?,
            up_embed: LinearNoSubsampling::load(vb.pp("up_embed"), cfg.input_size, d)?,
            up_encoders: layers(vb.pp("up_encoders"), e.num_up_blocks)?,
            after_norm: layer_norm(d, 1e-5, vb.pp("after_norm"))?,
        })
    }

    /// `xs` [B, T, D] → [B, 2T, D].
    /// The conformer layers' projections in 8-bit integers (see
    /// [`crate::engine::nn::int8`]); the embeddings and convolutions stay f32.
    pub fn quantise_int8(&mut self) {
        for layer in self.encoders.iter_mut().chain(&mut self.up_encoders) {
            layer.quantise_int8();
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_observed(xs, &mut |_, _| {})
    }

    /// [`Self::forward`], handing each stage's output to `observe` under the name of
    /// the reference module that produced it (`embed`, `pre_lookahead_layer`,
    /// `encoders.<i>`, `up_layer` [B, D, 2T], `up_embed`, `up_encoders.<i>`).
    pub fn forward_observed(
        &self,
        xs: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let _span = tracing::trace_span!("s3gen_encoder").entered();
        let (xs, pos_emb) = self.embed.forward(xs)?;
        observe("embed", &xs);
        let mut xs = self.pre_lookahead_layer.forward(&xs)?;
        observe("pre_lookahead_layer", &xs);
        for (i, layer) in self.encoders.iter().enumerate() {
            xs = layer.forward(&xs, &pos_emb)?;
            observe(&format!("encoders.{i}"), &xs);
        }
        let up = self.up_layer.forward(&xs.transpose(1, 2)?.contiguous()?)?;
        observe("up_layer", &up);
        let (mut xs, pos_emb) = self.up_embed.forward(&up.transpose(1, 2)?.contiguous()?)?;
        observe("up_embed", &xs);
        for (i, layer) in self.up_encoders.iter().enumerate() {
            xs = layer.forward(&xs, &pos_emb)?;
            observe(&format!("up_encoders.{i}"), &xs);
        }
        self.after_norm.forward(&xs)
    }
}
