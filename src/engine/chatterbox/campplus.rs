//! CAM++ (`CAMPPlus`), the x-vector speaker encoder S3Gen uses for a voice's
//! `embedding`: fbank features of a 16 kHz clip → one 192-d vector per clip.
//!
//! Port of `chatterbox/models/s3gen/xvector.py` (chatterbox-tts 0.1.7, from FunASR /
//! 3D-Speaker) from the features onward; `S3Token2Mel.embed_ref` calls it as
//! `speaker_encoder.inference(ref_wav_16)`.
//!
//! ```text
//! feats [B, T, 80] → FCM head (2-D res blocks, frequency /8) [B, 32·10, T]
//!   → TDNN (k5, stride 2) [B, 128, T'] → 3 × (CAM dense block → transit, halving)
//!   → BN-ReLU → mean ‖ std over time [B, 1024] → dense + BN → [B, 192]
//! ```
//!
//! The caller computes the features as `extract_feature` does: kaldi fbank (80 bins,
//! otherwise `torchaudio.compliance.kaldi.fbank`'s defaults: 25 ms / 10 ms frames,
//! no dither) of the 16 kHz clip as floats in [-1, 1] (not rescaled to 16-bit
//! range), minus each bin's mean over time. Every BatchNorm runs in eval mode; those right after
//! a convolution are folded into it at load, the others become a per-channel affine
//! map. Weight keys are the checkpoint's (`speaker_encoder.*` in S3Gen's safetensors).

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Conv1d, Linear, VarBuilder};
use serde::Deserialize;

use crate::engine::nn::{conv_cfg, GemmConv1d, GemmConv2d};

/// `torch.nn.BatchNorm*d`'s default epsilon.
const BN_EPS: f64 = 1e-5;
/// `CAMLayer.seg_pooling`'s default segment length, in frames after the TDNN.
const SEG_LEN: usize = 100;
/// `CAMLayer`'s `reduction`: the mask's hidden layer is `bn_channels / 2` wide.
const CAM_REDUCTION: usize = 2;
/// The FCM head's frequency stride (its `stride=(2, 1)` convolutions).
const FCM_STRIDE: usize = 2;
/// `TDNNLayer(channels, init_channels, 5, stride=2, padding=-1)` in `CAMPPlus`.
const TDNN_KERNEL: usize = 5;
const TDNN_STRIDE: usize = 2;
/// Feature frames the network needs: fewer leave one frame after the TDNN, whose
/// unbiased standard deviation is NaN in the reference.
const MIN_FRAMES: usize = 3;

/// `CAMPPlus`'s constructor arguments, plus the values the reference hard-codes
/// (the FCM's width and blocks, the dense blocks' layout), so a test model can
/// shrink them too.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CAMPPlusConfig {
    /// Fbank bins; a multiple of 8 (the head divides it by 8).
    pub feat_dim: usize,
    pub embedding_size: usize,
    pub growth_rate: usize,
    /// The dense layers' bottleneck is `bn_size · growth_rate` wide.
    pub bn_size: usize,
    pub init_channels: usize,
    /// Only `"batchnorm-relu"` is supported.
    pub config_str: String,
    /// Only `"segment"` (one embedding per clip) is supported.
    pub output_level: String,
    /// `FCM(m_channels=32)`.
    pub m_channels: usize,
    /// Residual blocks in each of the FCM's two layers (`num_blocks[0]`).
    pub fcm_num_blocks: usize,
    /// Layers, kernel size and dilation of each CAM dense block.
    pub block_layers: Vec<usize>,
    pub block_kernel_sizes: Vec<usize>,
    pub block_dilations: Vec<usize>,
}

impl CAMPPlusConfig {
    /// As `S3Token2Mel` builds it: `CAMPPlus(memory_efficient=False)`, which only
    /// matters in training.
    pub fn s3gen() -> Self {
        Self {
            feat_dim: 80,
            embedding_size: 192,
            growth_rate: 32,
            bn_size: 4,
            init_channels: 128,
            config_str: "batchnorm-relu".into(),
            output_level: "segment".into(),
            m_channels: 32,
            fcm_num_blocks: 2,
            block_layers: vec![12, 24, 16],
            block_kernel_sizes: vec![3, 3, 3],
            block_dilations: vec![1, 2, 2],
        }
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    fn validate(&self) -> Result<()> {
        if self.config_str != "batchnorm-relu" {
            candle_core::bail!(
                "CAMPPlus: config_str {:?} (only \"batchnorm-relu\")",
                self.config_str
            );
        }
        if self.output_level != "segment" {
            candle_core::bail!(
                "CAMPPlus: output_level {:?} (only \"segment\")",
                self.output_level
            );
        }
        if self.feat_dim == 0 || !self.feat_dim.is_multiple_of(8) {
            candle_core::bail!(
                "CAMPPlus: feat_dim {} is not a multiple of 8",
                self.feat_dim
            );
        }
        let n = self.block_layers.len();
        if self.block_kernel_sizes.len() != n || self.block_dilations.len() != n {
            candle_core::bail!(
                "CAMPPlus: block_layers, block_kernel_sizes and block_dilations differ in length"
            );
        }
        if self.block_kernel_sizes.iter().any(|k| k % 2 == 0) {
            candle_core::bail!(
                "CAMPPlus: even kernel size in {:?}",
                self.block_kernel_sizes
            );
        }
        Ok(())
    }
}

impl Default for CAMPPlusConfig {
    fn default() -> Self {
        Self::s3gen()
    }
}

// chatterbox/models/s3gen/xvector.py `torch.nn.BatchNorm1d` / `BatchNorm2d` (eval)
/// A BatchNorm with its running statistics, as the per-channel map
/// `x·scale + shift` (`scale = weight / √(running_var + eps)`,
/// `shift = bias − running_mean·scale`; weight 1 and bias 0 when `affine=False`),
/// computed and folded in f64, then rounded once to the checkpoint's dtype.
#[derive(Debug, Clone)]
struct BatchNorm {
    /// `[C]` f64.
    scale: Tensor,
    shift: Tensor,
}

impl BatchNorm {
    fn load(vb: VarBuilder, channels: usize, affine: bool) -> Result<Self> {
        let mean = vb.get(channels, "running_mean")?.to_dtype(DType::F64)?;
        let var = vb.get(channels, "running_var")?.to_dtype(DType::F64)?;
        let mut scale = (var + BN_EPS)?.sqrt()?.recip()?;
        let mut shift = mean.neg()?.mul(&scale)?;
        if affine {
            let weight = vb.get(channels, "weight")?.to_dtype(DType::F64)?;
            let bias = vb.get(channels, "bias")?.to_dtype(DType::F64)?;
            scale = scale.mul(&weight)?;
            shift = shift.mul(&weight)?.add(&bias)?;
        }
        Ok(Self { scale, shift })
    }

    /// `bn(conv(x))` as one convolution: the bias-free `weight` [C, …] scaled per
    /// output channel, and the bias `shift`, both in `weight`'s dtype.
    fn fold(&self, weight: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut shape = vec![1; weight.rank()];
        shape[0] = self.scale.dim(0)?;
        let folded = weight
            .to_dtype(DType::F64)?
            .broadcast_mul(&self.scale.reshape(shape)?)?
            .to_dtype(weight.dtype())?;
        Ok((folded, self.shift.to_dtype(weight.dtype())?))
    }
}

/// A BatchNorm not folded into a convolution (it comes before one, with a ReLU
/// between): `relu(x·scale + shift)`.
#[derive(Debug, Clone)]
struct ChannelAffine {
    /// `[1, C, 1]`.
    scale: Tensor,
    shift: Tensor,
}

impl ChannelAffine {
    fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        let dtype = vb.dtype();
        let bn = BatchNorm::load(vb, channels, true)?;
        Ok(Self {
            scale: bn.scale.to_dtype(dtype)?.reshape((1, channels, 1))?,
            shift: bn.shift.to_dtype(dtype)?.reshape((1, channels, 1))?,
        })
    }

    /// `relu(bn(x))` for `x` [B, C, T].
    fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(&self.scale)?
            .broadcast_add(&self.shift)?
            .relu()
    }
}

/// A bias-free `nn.Conv1d` at `vb` followed by the `BatchNorm1d` at `bn`, as one
/// convolution with bias.
fn conv1d_bn(
    vb: VarBuilder,
    bn: VarBuilder,
    (c_in, c_out, kernel): (usize, usize, usize),
    cfg: candle_nn::Conv1dConfig,
) -> Result<GemmConv1d> {
    let weight = vb.get((c_out, c_in, kernel), "weight")?;
    let (weight, bias) = BatchNorm::load(bn, c_out, true)?.fold(&weight)?;
    GemmConv1d::new(Conv1d::new(weight, Some(bias), cfg))
}

/// `nn.Conv1d(c_in, c_out, 1, bias=bias)`.
fn pointwise(vb: VarBuilder, c_in: usize, c_out: usize, bias: bool) -> Result<GemmConv1d> {
    let weight = vb.get((c_out, c_in, 1), "weight")?;
    let bias = if bias {
        Some(vb.get(c_out, "bias")?)
    } else {
        None
    };
    GemmConv1d::new(Conv1d::new(weight, bias, conv_cfg(0, 1, 1)))
}

// chatterbox/models/s3gen/xvector.py `torch.nn.Conv2d(bias=False)` + `BatchNorm2d`
/// A square-kernel 2-D convolution with padding `kernel / 2` and stride
/// `(stride, 1)` (frequency, time), its BatchNorm folded in ([`GemmConv2d`]).
#[derive(Debug, Clone)]
struct Conv2dBn(GemmConv2d);

impl Conv2dBn {
    fn load(
        conv: VarBuilder,
        bn: VarBuilder,
        (c_in, c_out, kernel): (usize, usize, usize),
        stride: usize,
    ) -> Result<Self> {
        let weight = conv.get((c_out, c_in, kernel, kernel), "weight")?;
        let (weight, bias) = BatchNorm::load(bn, c_out, true)?.fold(&weight)?;
        Ok(Self(GemmConv2d::new(weight, Some(bias), stride)?))
    }
}

impl Module for Conv2dBn {
    /// `x` [B, C_in, F, T] → [B, C_out, ⌈F / stride⌉, T].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x)
    }
}

// chatterbox/models/s3gen/xvector.py `BasicResBlock`
/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`; `conv1` strides the
/// frequency axis. Each field holds the convolution and the BatchNorm after it.
#[derive(Debug, Clone)]
struct BasicResBlock {
    conv1: Conv2dBn,
    conv2: Conv2dBn,
    /// `Conv2d(1×1, stride) + BatchNorm2d` when the shape changes, else identity.
    shortcut: Option<Conv2dBn>,
}

impl BasicResBlock {
    fn load(vb: VarBuilder, c_in: usize, c_out: usize, stride: usize) -> Result<Self> {
        let shortcut = if stride != 1 || c_in != c_out {
            let sc = vb.pp("shortcut");
            Some(Conv2dBn::load(
                sc.pp(0),
                sc.pp(1),
                (c_in, c_out, 1),
                stride,
            )?)
        } else {
            None
        };
        Ok(Self {
            conv1: Conv2dBn::load(vb.pp("conv1"), vb.pp("bn1"), (c_in, c_out, 3), stride)?,
            conv2: Conv2dBn::load(vb.pp("conv2"), vb.pp("bn2"), (c_out, c_out, 3), 1)?,
            shortcut,
        })
    }
}

impl Module for BasicResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.conv2.forward(&self.conv1.forward(x)?.relu()?)?;
        let skip = match &self.shortcut {
            Some(sc) => sc.forward(x)?,
            None => x.clone(),
        };
        (out + skip)?.relu()
    }
}

// chatterbox/models/s3gen/xvector.py `FCM`
/// The 2-D head: a 3×3 convolution, two layers of residual blocks and a last
/// convolution, each halving the frequency axis; then frequency and channels are
/// flattened into one channel axis.
#[derive(Debug, Clone)]
struct Fcm {
    conv1: Conv2dBn,
    layer1: Vec<BasicResBlock>,
    layer2: Vec<BasicResBlock>,
    conv2: Conv2dBn,
}

impl Fcm {
    fn load(vb: VarBuilder, cfg: &CAMPPlusConfig) -> Result<Self> {
        let m = cfg.m_channels;
        // `_make_layer`: the first block strides, the rest keep the shape.
        let layer = |name: &str| -> Result<Vec<BasicResBlock>> {
            (0..cfg.fcm_num_blocks)
                .map(|i| {
                    let stride = if i == 0 { FCM_STRIDE } else { 1 };
                    BasicResBlock::load(vb.pp(name).pp(i), m, m, stride)
                })
                .collect()
        };
        Ok(Self {
            conv1: Conv2dBn::load(vb.pp("conv1"), vb.pp("bn1"), (1, m, 3), 1)?,
            layer1: layer("layer1")?,
            layer2: layer("layer2")?,
            conv2: Conv2dBn::load(vb.pp("conv2"), vb.pp("bn2"), (m, m, 3), FCM_STRIDE)?,
        })
    }
}

impl Module for Fcm {
    /// `x` [B, F, T] → [B, m_channels · F/8, T].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.conv1.forward(&x.unsqueeze(1)?)?.relu()?;
        for block in self.layer1.iter().chain(&self.layer2) {
            x = block.forward(&x)?;
        }
        let x = self.conv2.forward(&x)?.relu()?;
        let (b, c, f, t) = x.dims4()?;
        x.reshape((b, c * f, t))
    }
}

// chatterbox/models/s3gen/xvector.py `TDNNLayer`
/// `relu(bn(conv(x)))`, the BatchNorm (`nonlinear.batchnorm`) folded into `linear`.
#[derive(Debug, Clone)]
struct TDNNLayer {
    linear: GemmConv1d,
}

impl TDNNLayer {
    fn load(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        let cfg = conv_cfg((TDNN_KERNEL - 1) / 2, TDNN_STRIDE, 1);
        Ok(Self {
            linear: conv1d_bn(
                vb.pp("linear"),
                vb.pp("nonlinear").pp("batchnorm"),
                (c_in, c_out, TDNN_KERNEL),
                cfg,
            )?,
        })
    }
}

impl Module for TDNNLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(x)?.relu()
    }
}

// chatterbox/models/s3gen/xvector.py `CAMLayer`
/// Context-aware masking: a local dilated convolution, gated per channel by a
/// sigmoid mask computed from the mean over the whole clip plus the mean over the
/// frame's 100-frame segment.
#[derive(Debug, Clone)]
struct CAMLayer {
    linear_local: GemmConv1d,
    linear1: GemmConv1d,
    linear2: GemmConv1d,
}

impl CAMLayer {
    fn load(
        vb: VarBuilder,
        bn_channels: usize,
        out_channels: usize,
        kernel: usize,
        dilation: usize,
    ) -> Result<Self> {
        let padding = (kernel - 1) / 2 * dilation;
        let weight = vb
            .pp("linear_local")
            .get((out_channels, bn_channels, kernel), "weight")?;
        let hidden = bn_channels / CAM_REDUCTION;
        Ok(Self {
            linear_local: GemmConv1d::new(Conv1d::new(
                weight,
                None,
                conv_cfg(padding, 1, dilation),
            ))?,
            linear1: pointwise(vb.pp("linear1"), bn_channels, hidden, true)?,
            linear2: pointwise(vb.pp("linear2"), hidden, out_channels, true)?,
        })
    }
}

impl Module for CAMLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear_local.forward(x)?;
        // The reference spreads each segment's mean over its frames before the two
        // pointwise layers; they act frame by frame, so the mask is computed once
        // per segment and spread afterwards (the same values).
        let t = x.dim(2)?;
        let segments = (0..t.div_ceil(SEG_LEN))
            .map(|s| {
                let start = s * SEG_LEN;
                x.narrow(2, start, SEG_LEN.min(t - start))?.mean_keepdim(2)
            })
            .collect::<Result<Vec<_>>>()?;
        let context = Tensor::cat(&segments, 2)?.broadcast_add(&x.mean_keepdim(2)?)?;
        let context = self.linear1.forward(&context)?.relu()?;
        let mask = candle_nn::ops::sigmoid(&self.linear2.forward(&context)?)?;
        let segment_of: Vec<u32> = (0..t).map(|i| (i / SEG_LEN) as u32).collect();
        let segment_of = Tensor::new(segment_of, x.device())?;
        y.mul(&mask.index_select(&segment_of, 2)?)
    }
}

// chatterbox/models/s3gen/xvector.py `CAMDenseTDNNLayer`
/// `cam_layer(relu(bn2(linear1(relu(bn1(x))))))`: `nonlinear1` stays a BatchNorm,
/// `nonlinear2`'s is folded into `linear1`.
#[derive(Debug, Clone)]
struct CAMDenseTDNNLayer {
    nonlinear1: ChannelAffine,
    linear1: GemmConv1d,
    cam_layer: CAMLayer,
}

impl CAMDenseTDNNLayer {
    fn load(
        vb: VarBuilder,
        in_channels: usize,
        cfg: &CAMPPlusConfig,
        kernel: usize,
        dilation: usize,
    ) -> Result<Self> {
        let bn_channels = cfg.bn_size * cfg.growth_rate;
        Ok(Self {
            nonlinear1: ChannelAffine::load(vb.pp("nonlinear1").pp("batchnorm"), in_channels)?,
            linear1: conv1d_bn(
                vb.pp("linear1"),
                vb.pp("nonlinear2").pp("batchnorm"),
                (in_channels, bn_channels, 1),
                conv_cfg(0, 1, 1),
            )?,
            cam_layer: CAMLayer::load(
                vb.pp("cam_layer"),
                bn_channels,
                cfg.growth_rate,
                kernel,
                dilation,
            )?,
        })
    }
}

impl Module for CAMDenseTDNNLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.nonlinear1.forward_relu(x)?;
        let x = self.linear1.forward(&x)?.relu()?;
        self.cam_layer.forward(&x)
    }
}

// chatterbox/models/s3gen/xvector.py `CAMDenseTDNNBlock`
/// Dense connectivity: each layer's `growth_rate` new channels are appended to its
/// input. Layers are `tdnnd1`, `tdnnd2`, ….
#[derive(Debug, Clone)]
struct CAMDenseTDNNBlock {
    layers: Vec<CAMDenseTDNNLayer>,
}

impl CAMDenseTDNNBlock {
    fn load(
        vb: VarBuilder,
        in_channels: usize,
        cfg: &CAMPPlusConfig,
        block: usize,
    ) -> Result<Self> {
        let (kernel, dilation) = (cfg.block_kernel_sizes[block], cfg.block_dilations[block]);
        let layers = (0..cfg.block_layers[block])
            .map(|i| {
                CAMDenseTDNNLayer::load(
                    vb.pp(format!("tdnnd{}", i + 1)),
                    in_channels + i * cfg.growth_rate,
                    cfg,
                    kernel,
                    dilation,
                )
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
}

impl Module for CAMDenseTDNNBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            let new = layer.forward(&x)?;
            x = Tensor::cat(&[&x, &new], 1)?;
        }
        Ok(x)
    }
}

// chatterbox/models/s3gen/xvector.py `TransitLayer`
/// `linear(relu(bn(x)))`, a pointwise convolution halving the channels.
#[derive(Debug, Clone)]
struct TransitLayer {
    nonlinear: ChannelAffine,
    linear: GemmConv1d,
}

impl TransitLayer {
    fn load(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            nonlinear: ChannelAffine::load(vb.pp("nonlinear").pp("batchnorm"), c_in)?,
            linear: pointwise(vb.pp("linear"), c_in, c_out, false)?,
        })
    }
}

impl Module for TransitLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(&self.nonlinear.forward_relu(x)?)
    }
}

// chatterbox/models/s3gen/xvector.py `DenseLayer` (`config_str="batchnorm_"`)
/// The embedding: a pointwise convolution on the pooled statistics, then a
/// BatchNorm without affine parameters (no ReLU), folded into one linear map.
#[derive(Debug, Clone)]
struct DenseLayer {
    linear: Linear,
}

impl DenseLayer {
    fn load(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        let weight = vb.pp("linear").get((c_out, c_in, 1), "weight")?;
        let bn = BatchNorm::load(vb.pp("nonlinear").pp("batchnorm"), c_out, false)?;
        let (weight, bias) = bn.fold(&weight.squeeze(2)?)?;
        Ok(Self {
            linear: Linear::new(weight, Some(bias)),
        })
    }
}

impl Module for DenseLayer {
    /// `x` [B, C_in] → [B, C_out].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(x)
    }
}

/// `statistics_pooling`: mean and unbiased standard deviation over time,
/// `x` [B, C, T] → [B, 2C].
fn statistics_pooling(x: &Tensor) -> Result<Tensor> {
    let t = x.dim(D::Minus1)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let var = (x.broadcast_sub(&mean)?.sqr()?.sum(D::Minus1)? / (t - 1) as f64)?;
    Tensor::cat(&[mean.squeeze(D::Minus1)?, var.sqrt()?], 1)
}

// chatterbox/models/s3gen/xvector.py `CAMPPlus` (`output_level="segment"`)
/// The speaker encoder. `head` and the children of the reference's `xvector`
/// `nn.Sequential` (`tdnn`, `block1`, `transit1`, …, `out_nonlinear`, `dense`; `stats`
/// has no weights), with their checkpoint key paths.
#[derive(Debug, Clone)]
pub struct CAMPPlus {
    head: Fcm,
    tdnn: TDNNLayer,
    /// `block<i+1>`, each followed by `transit<i+1>`.
    blocks: Vec<(CAMDenseTDNNBlock, TransitLayer)>,
    out_nonlinear: ChannelAffine,
    dense: DenseLayer,
    feat_dim: usize,
    dtype: DType,
}

impl CAMPPlus {
    /// Loads the encoder from `vb` at the checkpoint's `speaker_encoder` prefix;
    /// unsupported settings in `cfg` are an error.
    pub fn load(vb: VarBuilder, cfg: &CAMPPlusConfig) -> Result<Self> {
        cfg.validate()?;
        let head = Fcm::load(vb.pp("head"), cfg)?;
        let xv = vb.pp("xvector");
        let mut channels = cfg.init_channels;
        let tdnn = TDNNLayer::load(xv.pp("tdnn"), cfg.m_channels * (cfg.feat_dim / 8), channels)?;
        let mut blocks = Vec::with_capacity(cfg.block_layers.len());
        for (i, layers) in cfg.block_layers.iter().enumerate() {
            let block =
                CAMDenseTDNNBlock::load(xv.pp(format!("block{}", i + 1)), channels, cfg, i)?;
            channels += layers * cfg.growth_rate;
            let transit =
                TransitLayer::load(xv.pp(format!("transit{}", i + 1)), channels, channels / 2)?;
            channels /= 2;
            blocks.push((block, transit));
        }
        Ok(Self {
            head,
            tdnn,
            blocks,
            out_nonlinear: ChannelAffine::load(xv.pp("out_nonlinear").pp("batchnorm"), channels)?,
            dense: DenseLayer::load(xv.pp("dense"), 2 * channels, cfg.embedding_size)?,
            feat_dim: cfg.feat_dim,
            dtype: vb.dtype(),
        })
    }

    /// [`Module::forward`], handing every stage's output to `observe`: `head`,
    /// `tdnn`, `block<i>`, `transit<i>` (i from 1), `out_nonlinear`, `stats` and
    /// `embedding`, the names of `tools/chatterbox_campplus_fixtures.py`.
    pub fn forward_observed(
        &self,
        feats: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let (_, frames, bins) = feats.dims3()?;
        if bins != self.feat_dim {
            candle_core::bail!("CAMPPlus: {bins} feature bins, want {}", self.feat_dim);
        }
        if frames < MIN_FRAMES {
            candle_core::bail!("CAMPPlus: {frames} feature frames, at least {MIN_FRAMES} needed");
        }
        let x = feats.to_dtype(self.dtype)?.transpose(1, 2)?.contiguous()?;
        let x = self.head.forward(&x)?;
        observe("head", &x);
        let mut x = self.tdnn.forward(&x)?;
        observe("tdnn", &x);
        for (i, (block, transit)) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            observe(&format!("block{}", i + 1), &x);
            x = transit.forward(&x)?;
            observe(&format!("transit{}", i + 1), &x);
        }
        let x = self.out_nonlinear.forward_relu(&x)?;
        observe("out_nonlinear", &x);
        let stats = statistics_pooling(&x)?;
        observe("stats", &stats);
        let embedding = self.dense.forward(&stats)?;
        observe("embedding", &embedding);
        Ok(embedding)
    }
}

impl Module for CAMPPlus {
    /// Mean-normalised fbank features `feats` [B, T, feat_dim] (T ≥ 3; a batch is
    /// zero-padded at the end, as `extract_feature` pads it, and the padding counts)
    /// → speaker embeddings [B, embedding_size].
    fn forward(&self, feats: &Tensor) -> Result<Tensor> {
        self.forward_observed(feats, &mut |_, _| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn statistics_pooling_uses_the_unbiased_std() -> Result<()> {
        let x = Tensor::new(&[[[1f32, 2.0, 3.0, 6.0]]], &Device::Cpu)?;
        let got = statistics_pooling(&x)?.to_vec2::<f32>()?;
        // Mean 3, squared deviations 4 + 1 + 0 + 9 = 14 over 3.
        assert_eq!(got[0][0], 3.0);
        assert!((got[0][1] - (14f32 / 3.0).sqrt()).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn official_config_round_trips_through_json() {
        let text = r#"{"feat_dim": 80, "embedding_size": 192, "growth_rate": 32, "bn_size": 4,
            "init_channels": 128, "config_str": "batchnorm-relu", "output_level": "segment",
            "m_channels": 32, "fcm_num_blocks": 2, "block_layers": [12, 24, 16],
            "block_kernel_sizes": [3, 3, 3], "block_dilations": [1, 2, 2]}"#;
        assert_eq!(
            CAMPPlusConfig::from_json(text).unwrap(),
            CAMPPlusConfig::s3gen()
        );
    }

    #[test]
    fn unsupported_options_fail_at_load() {
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let cfg = CAMPPlusConfig {
            output_level: "frame".into(),
            ..CAMPPlusConfig::s3gen()
        };
        assert!(CAMPPlus::load(vb, &cfg).is_err());
    }
}
