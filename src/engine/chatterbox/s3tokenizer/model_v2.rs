//! `s3tokenizer` 0.3.0 `model_v2.py` (the S3 speech tokenizer v2, inference only):
//! a 128-band log-mel at 100 frames/s → two stride-2 convolutions (25 frames/s) →
//! transformer blocks whose attention adds an FSMN memory (a depthwise convolution
//! over the values) and turns queries and keys by a rotary embedding → an 8-wide
//! projection, each value rounded to one of 3 levels → a token in 0..3⁸.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{
    conv1d, layer_norm, linear, Conv1d, Conv1dConfig, LayerNorm, LayerNormConfig, Linear,
    VarBuilder,
};

use super::config::S3TokenizerConfig;
use super::utils::{mask_to_bias, merge_tokenized_segments, zero_tail};
use crate::engine::nn::attention::self_attention;
use crate::engine::nn::linear::{transposed_linear_b, TransposedLinear};
use crate::engine::nn::ops::gelu_erf;
use crate::engine::nn::ops::with_cpu_f32;
use crate::engine::nn::threads::fill_chunks;

/// Rows of the rotary table (`precompute_freqs_cis(64, 1024 * 2)`): encoder frames
/// beyond it are an error, as in the reference (a 3000-frame window has 750).
const ROPE_POSITIONS: usize = 2048;
const ROPE_THETA: f32 = 10_000.0;
/// `ResidualAttentionBlock(kernel_size=31)`.
const FSMN_KERNEL: usize = 31;
/// Stride of both front-end convolutions (`S3TokenizerV2` passes 2; `conv2` has 2).
const CONV_STRIDE: usize = 2;
/// `AudioEncoderV2`'s `mlp` widening.
const MLP_RATIO: usize = 4;
/// FSQ dimensions, each rounded to one of `FSQ_LEVELS` values.
const FSQ_DIM: usize = 8;
const FSQ_LEVELS: usize = 3;
/// `FSQCodebook.encode` scales `tanh` by this (the f32 nearest 0.999) before rounding.
const FSQ_SCALE: f64 = 0.999_000_012_874_603_3;

/// `S3TokenizerV2.quantize`: inputs longer than this many log-mel frames (30 s) are
/// tokenized in windows of this size.
pub const MAX_FRAMES: usize = 3000;
/// Window hop of the long-input path: 30 s windows overlapping by 4 s.
const WINDOW_HOP_FRAMES: usize = 2600;
/// Tokens dropped at each inner window edge: half the 4 s overlap at 25 tokens/s.
const OVERLAP_HALF_TOKENS: usize = 50;

/// Frames after one front-end convolution (kernel 3, padding 1, stride 2).
fn conv_out_len(len: usize) -> usize {
    (len + 2 - 3) / CONV_STRIDE + 1
}

/// `FSMNMultiHeadAttention`: self-attention (queries and keys turned by the rotary
/// embedding, both scaled by head_dim^−¼) plus an FSMN memory of the values, a
/// depthwise convolution over time added to its own input.
#[derive(Debug, Clone)]
pub struct FSMNMultiHeadAttention {
    query: TransposedLinear,
    key: TransposedLinear,
    value: TransposedLinear,
    out: TransposedLinear,
    /// `fsmn_block.weight` [C, 1, K] as K taps of [C], for time-major input: [K, C].
    fsmn_taps: Tensor,
    n_head: usize,
}

impl FSMNMultiHeadAttention {
    pub fn load(vb: VarBuilder, cfg: &S3TokenizerConfig) -> Result<Self> {
        let n = cfg.n_audio_state;
        let w = vb.get((n, 1, FSMN_KERNEL), "fsmn_block.weight")?;
        let fsmn_taps = w.reshape((n, FSMN_KERNEL))?.t()?.contiguous()?;
        Ok(Self {
            query: transposed_linear_b(n, n, true, vb.pp("query"))?,
            key: transposed_linear_b(n, n, false, vb.pp("key"))?,
            value: transposed_linear_b(n, n, true, vb.pp("value"))?,
            out: transposed_linear_b(n, n, true, vb.pp("out"))?,
            fsmn_taps,
            n_head: cfg.n_audio_head,
        })
    }

    /// `x` [1, T, C] → [1, T, C].
    pub fn forward(&self, x: &Tensor, mask: &EncoderMask) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let (h, d) = (self.n_head, c / self.n_head);
        let q = self.query.forward(x)?.reshape((b, t, h, d))?;
        let k = self.key.forward(x)?.reshape((b, t, h, d))?;
        let v = self.value.forward(x)?;
        let q = candle_nn::rotary_emb::rope_thd(&q, &mask.cos, &mask.sin)?;
        let k = candle_nn::rotary_emb::rope_thd(&k, &mask.cos, &mask.sin)?;
        let fsm_memory = self.forward_fsmn(&v, mask)?;

        let scale = (d as f64).powf(-0.25);
        let q = (q * scale)?.reshape((b, t, c))?;
        let k = (k * scale)?.reshape((b, t, c))?;
        let wv = match &mask.bias {
            None => self_attention(&q, &k, &v, h)?,
            Some(bias) => {
                let split = |x: &Tensor| x.reshape((b, t, h, d))?.transpose(1, 2)?.contiguous();
                let scores = split(&q)?.matmul(&split(&k)?.t()?)?.broadcast_add(bias)?;
                let w = candle_nn::ops::softmax_last_dim(&scores)?;
                w.matmul(&split(&v)?)?.transpose(1, 2)?.reshape((b, t, c))?
            }
        };
        self.out.forward(&wv)? + fsm_memory
    }

    /// `forward_fsmn`: the values (padding zeroed), convolved per channel with the
    /// 31 taps centred on each frame, plus themselves; padding zeroed again.
    fn forward_fsmn(&self, v: &Tensor, mask: &EncoderMask) -> Result<Tensor> {
        let (b, t, c) = v.dims3()?;
        if b == 1 {
            let rows = with_cpu_f32(v, |values| {
                Ok(with_cpu_f32(&self.fsmn_taps, |w| {
                    Ok(fsmn_rows(values, w, (t, c), mask.len))
                }))
            });
            // Any case this pass does not take (another device or dtype) goes the
            // tensor way below.
            if let Some(Ok(Some(Ok(out)))) = rows {
                return Tensor::from_vec(out, (1, t, c), v.device());
            }
        }
        fsmn_tensors(v, &self.fsmn_taps, mask.len)
    }
}

/// [`fsmn_rows`] in tensor operations, for any device, dtype and batch: `v` [B, T,
/// C], `taps` [K, C].
fn fsmn_tensors(v: &Tensor, taps: &Tensor, len: usize) -> Result<Tensor> {
    let t = v.dim(1)?;
    let k = taps.dim(0)?;
    let inputs = zero_tail(v, 1, len)?;
    let left = (k - 1) / 2;
    let padded = inputs.pad_with_zeros(1, left, k - 1 - left)?;
    let mut acc = inputs.clone();
    for j in 0..k {
        let tap = taps.narrow(0, j, 1)?;
        acc = (acc + padded.narrow(1, j, t)?.broadcast_mul(&tap)?)?;
    }
    zero_tail(&acc, 1, len)
}

/// The FSMN memory on time-major values `v` `[T, C]` with taps `w` `[K, C]`: frame
/// `i < len` is `v_i + Σ_j w_j · v_{i + j − (K−1)/2}` over the frames inside
/// `0..len`; frames from `len` on are zero. One pass per output frame, frames split
/// over threads.
fn fsmn_rows(v: &[f32], w: &[f32], (t, c): (usize, usize), len: usize) -> Vec<f32> {
    let k = w.len() / c.max(1);
    let left = (k.max(1) - 1) / 2;
    let len = len.min(t);
    let mut out = vec![0f32; t * c];
    fill_chunks(&mut out[..len * c], c.max(1), |i, row| {
        row.copy_from_slice(&v[i * c..(i + 1) * c]);
        for (j, tap) in w.chunks_exact(c).enumerate() {
            let Some(src) = (i + j).checked_sub(left).filter(|&s| s < len) else {
                continue;
            };
            for ((o, &x), &wt) in row.iter_mut().zip(&v[src * c..(src + 1) * c]).zip(tap) {
                *o += wt * x;
            }
        }
    });
    out
}

/// `ResidualAttentionBlock` (`model_v2.py`): pre-LayerNorm attention with FSMN
/// memory, then a pre-LayerNorm GELU MLP of 4× width.
#[derive(Debug, Clone)]
pub struct ResidualAttentionBlock {
    attn: FSMNMultiHeadAttention,
    attn_ln: LayerNorm,
    /// `mlp`, a `Sequential(Linear, GELU, Linear)`: children `0` and `2`.
    mlp: (TransposedLinear, TransposedLinear),
    mlp_ln: LayerNorm,
}

impl ResidualAttentionBlock {
    pub fn load(vb: VarBuilder, cfg: &S3TokenizerConfig) -> Result<Self> {
        let n = cfg.n_audio_state;
        let ln = LayerNormConfig {
            eps: 1e-5,
            ..Default::default()
        };
        Ok(Self {
            attn: FSMNMultiHeadAttention::load(vb.pp("attn"), cfg)?,
            attn_ln: layer_norm(n, ln, vb.pp("attn_ln"))?,
            mlp: (
                transposed_linear_b(n, n * MLP_RATIO, true, vb.pp("mlp.0"))?,
                transposed_linear_b(n * MLP_RATIO, n, true, vb.pp("mlp.2"))?,
            ),
            mlp_ln: layer_norm(n, ln, vb.pp("mlp_ln"))?,
        })
    }

    /// `x` [1, T, C] → [1, T, C].
    pub fn forward(&self, x: &Tensor, mask: &EncoderMask) -> Result<Tensor> {
        let _span = tracing::trace_span!("s3tokenizer_block").entered();
        let x = (x + self.attn.forward(&self.attn_ln.forward(x)?, mask)?)?;
        let h = gelu_erf(&self.mlp.0.forward(&self.mlp_ln.forward(&x)?)?)?;
        x + self.mlp.1.forward(&h)?
    }
}

/// What the blocks of one encoder call share: the valid length, the padding bias
/// (none when every frame is valid) and the rotary table cut to the frames.
#[derive(Debug, Clone)]
pub struct EncoderMask {
    len: usize,
    bias: Option<Tensor>,
    cos: Tensor,
    sin: Tensor,
}

/// Outputs of the encoder's stages, for parity checks.
#[derive(Debug, Clone)]
pub struct EncoderStages {
    /// `conv1` before its GELU, [1, C, ⌈T/2⌉].
    pub conv1: Tensor,
    /// `conv2` before its GELU, [1, C, T'].
    pub conv2: Tensor,
    /// Output of each block, [1, T', C]; the last is the encoder's output.
    pub blocks: Vec<Tensor>,
}

/// `AudioEncoderV2`: log-mel [1, n_mels, T] → [1, T', C] at a quarter of the frame
/// rate (T' = ⌈⌈T/2⌉/2⌉).
#[derive(Debug, Clone)]
pub struct AudioEncoderV2 {
    conv1: Conv1d,
    conv2: Conv1d,
    blocks: Vec<ResidualAttentionBlock>,
    /// `freqs_cis` as cos and sin tables [2048, head_dim/2]; the reference repeats
    /// them over the two halves of each head.
    freqs_cos: Tensor,
    freqs_sin: Tensor,
}

impl AudioEncoderV2 {
    pub fn load(vb: VarBuilder, cfg: &S3TokenizerConfig) -> Result<Self> {
        let n = cfg.n_audio_state;
        let conv = Conv1dConfig {
            padding: 1,
            stride: CONV_STRIDE,
            ..Default::default()
        };
        let (freqs_cos, freqs_sin) = precompute_freqs_cis(cfg.head_dim(), vb.device())?;
        Ok(Self {
            conv1: conv1d(cfg.n_mels, n, 3, conv, vb.pp("conv1"))?,
            conv2: conv1d(n, n, 3, conv, vb.pp("conv2"))?,
            blocks: (0..cfg.n_audio_layer)
                .map(|i| ResidualAttentionBlock::load(vb.pp(format!("blocks.{i}")), cfg))
                .collect::<Result<_>>()?,
            freqs_cos: freqs_cos.to_dtype(vb.dtype())?,
            freqs_sin: freqs_sin.to_dtype(vb.dtype())?,
        })
    }

    /// `forward(x, x_len)`: `x` [1, n_mels, T] of which the first `x_len` frames are
    /// valid (the rest is padding, masked out) → ([1, T', C], valid frames of it).
    pub fn forward(&self, x: &Tensor, x_len: usize) -> Result<(Tensor, usize)> {
        self.run(x, x_len, None)
    }

    /// [`Self::forward`], keeping the output of every stage.
    pub fn forward_with_stages(&self, x: &Tensor, x_len: usize) -> Result<(EncoderStages, usize)> {
        let mut stages = EncoderStages {
            conv1: x.clone(),
            conv2: x.clone(),
            blocks: Vec::with_capacity(self.blocks.len()),
        };
        let (_, len) = self.run(x, x_len, Some(&mut stages))?;
        Ok((stages, len))
    }

    fn run(
        &self,
        x: &Tensor,
        x_len: usize,
        mut stages: Option<&mut EncoderStages>,
    ) -> Result<(Tensor, usize)> {
        let _span = tracing::trace_span!("s3tokenizer_encoder", frames = x_len).entered();
        let (b, _, t) = x.dims3()?;
        if b != 1 || x_len == 0 || x_len > t {
            candle_core::bail!(
                "s3tokenizer encoder: batch of one with 1..={t} valid frames, got {:?} and {x_len}",
                x.dims()
            );
        }
        let h = self.conv1.forward(&zero_tail(x, 2, x_len)?)?;
        let x_len = conv_out_len(x_len);
        let x = zero_tail(&gelu_erf(&h)?, 2, x_len)?;
        if let Some(s) = stages.as_deref_mut() {
            s.conv1 = h;
        }
        let h = self.conv2.forward(&x)?;
        let x_len = conv_out_len(x_len);
        let mut x = gelu_erf(&h)?.transpose(1, 2)?.contiguous()?;
        if let Some(s) = stages.as_deref_mut() {
            s.conv2 = h;
        }

        let t = x.dim(1)?;
        if t > ROPE_POSITIONS {
            candle_core::bail!(
                "s3tokenizer encoder: {t} frames after the convolutions, at most {ROPE_POSITIONS}"
            );
        }
        let mask = EncoderMask {
            len: x_len,
            bias: if x_len < t {
                Some(mask_to_bias(x_len, t, &x)?)
            } else {
                None
            },
            cos: self.freqs_cos.narrow(0, 0, t)?,
            sin: self.freqs_sin.narrow(0, 0, t)?,
        };
        for block in &self.blocks {
            x = block.forward(&x, &mask)?;
            if let Some(s) = stages.as_deref_mut() {
                s.blocks.push(x.clone());
            }
        }
        Ok((x, x_len))
    }
}

/// `precompute_freqs_cis(head_dim, 2048)` as (cos, sin) [2048, head_dim/2], in f32
/// the way torch computes it (the reference fixes 64, the released head width).
fn precompute_freqs_cis(dim: usize, device: &candle_core::Device) -> Result<(Tensor, Tensor)> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|j| 1.0 / ROPE_THETA.powf((2 * j) as f32 / dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(ROPE_POSITIONS * half);
    let mut sin = Vec::with_capacity(ROPE_POSITIONS * half);
    for t in 0..ROPE_POSITIONS {
        for &f in &freqs {
            let angle = t as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (ROPE_POSITIONS, half), device)?,
        Tensor::from_vec(sin, (ROPE_POSITIONS, half), device)?,
    ))
}

/// `FSQCodebook`: projects each frame to 8 values, rounds `0.999·tanh` of each to
/// −1, 0 or 1 and reads the 8 digits (+1) as a base-3 number, first digit least
/// significant.
#[derive(Debug, Clone)]
pub struct FSQCodebook {
    project_down: Linear,
    /// 3^j for digit j, [8].
    powers: Tensor,
}

impl FSQCodebook {
    pub fn load(vb: VarBuilder, cfg: &S3TokenizerConfig) -> Result<Self> {
        let powers: Vec<f32> = (0..FSQ_DIM)
            .map(|j| FSQ_LEVELS.pow(j as u32) as f32)
            .collect();
        Ok(Self {
            project_down: linear(cfg.n_audio_state, FSQ_DIM, vb.pp("project_down"))?,
            powers: Tensor::from_vec(powers, FSQ_DIM, vb.device())?,
        })
    }

    /// `project_down(x)`: [.., C] → [.., 8], the values FSQ rounds (before `tanh`).
    pub fn project(&self, x: &Tensor) -> Result<Tensor> {
        self.project_down.forward(x)
    }

    /// `encode`: [B, T, C] → token ids [B, T] (u32, 0..6561).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let h = (self.project(x)?.to_dtype(DType::F32)?.tanh()? * FSQ_SCALE)?;
        // `round` for |h| < 1 with torch's ties to even: ±0.5 goes to 0.
        let digits =
            ((h.gt(0.5)?.to_dtype(DType::F32)? - h.lt(-0.5)?.to_dtype(DType::F32)?)? + 1.0)?;
        digits
            .broadcast_mul(&self.powers)?
            .sum(D::Minus1)?
            .to_dtype(DType::U32)
    }
}

/// `FSQVectorQuantization`: the codebook above (its `_codebook`).
#[derive(Debug, Clone)]
pub struct FSQVectorQuantization {
    codebook: FSQCodebook,
}

impl FSQVectorQuantization {
    pub fn load(vb: VarBuilder, cfg: &S3TokenizerConfig) -> Result<Self> {
        Ok(Self {
            codebook: FSQCodebook::load(vb.pp("_codebook"), cfg)?,
        })
    }

    pub fn codebook(&self) -> &FSQCodebook {
        &self.codebook
    }

    /// Encoder output [B, T, C] → token ids [B, T] (u32).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.codebook.encode(x)
    }
}

/// `S3TokenizerV2`: the encoder and the FSQ quantizer.
#[derive(Debug, Clone)]
pub struct S3TokenizerV2 {
    encoder: AudioEncoderV2,
    quantizer: FSQVectorQuantization,
}

impl S3TokenizerV2 {
    /// Loads `encoder.*` and `quantizer.*` (in the S3Gen checkpoint, under
    /// `tokenizer.`); a config the reference cannot build is an error.
    pub fn load(vb: VarBuilder, cfg: &S3TokenizerConfig) -> Result<Self> {
        cfg.check_supported().map_err(|e| {
            candle_core::Error::Msg(format!("unsupported S3 tokenizer config: {e}"))
        })?;
        Ok(Self {
            encoder: AudioEncoderV2::load(vb.pp("encoder"), cfg)?,
            quantizer: FSQVectorQuantization::load(vb.pp("quantizer"), cfg)?,
        })
    }

    pub fn encoder(&self) -> &AudioEncoderV2 {
        &self.encoder
    }

    pub fn quantizer(&self) -> &FSQVectorQuantization {
        &self.quantizer
    }

    /// `quantize(mel, mel_len)` for one clip: `mel` [1, n_mels, T], its first
    /// `mel_len` frames valid → the valid speech tokens, ⌈⌈mel_len/2⌉/2⌉ of them (the
    /// reference also returns the padded frames' tokens, which callers drop). Beyond
    /// 30 s (3000 frames), windows of 30 s every 26 s, their tokens merged.
    pub fn quantize(&self, mel: &Tensor, mel_len: usize) -> Result<Vec<u32>> {
        if mel_len > MAX_FRAMES {
            return self.quantize_windows(mel, mel_len);
        }
        let (hidden, code_len) = self.encoder.forward(mel, mel_len)?;
        let codes = self.quantizer.encode(&hidden)?;
        codes.narrow(1, 0, code_len)?.squeeze(0)?.to_vec1::<u32>()
    }

    /// `_quantize_mixed_batch` for one long clip: each window padded to 3000 frames
    /// and masked to its length, as the reference batches them.
    fn quantize_windows(&self, mel: &Tensor, mel_len: usize) -> Result<Vec<u32>> {
        let mut segments = Vec::new();
        let mut start = 0;
        while start < mel_len {
            let len = MAX_FRAMES.min(mel_len - start);
            let window = mel
                .narrow(2, start, len)?
                .pad_with_zeros(2, 0, MAX_FRAMES - len)?;
            segments.push(self.quantize(&window, len)?);
            start += WINDOW_HOP_FRAMES;
        }
        Ok(merge_tokenized_segments(&segments, OVERLAP_HALF_TOKENS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fsmn_in_one_pass_equals_the_tensor_form() -> Result<()> {
        let dev = Device::Cpu;
        let (t, c, k) = (40, 24, FSMN_KERNEL);
        let v = Tensor::randn(0f32, 1., (1, t, c), &dev)?;
        let taps = Tensor::randn(0f32, 1., (k, c), &dev)?;
        for len in [t, 29, 1] {
            let rows = fsmn_rows(
                &v.flatten_all()?.to_vec1::<f32>()?,
                &taps.flatten_all()?.to_vec1::<f32>()?,
                (t, c),
                len,
            );
            let want = fsmn_tensors(&v, &taps, len)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let diff = rows
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "len {len}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn conv_lengths_follow_the_reference_formula() {
        // (len + 2 − 1·(3 − 1) − 1) // 2 + 1
        for len in 1..50usize {
            assert_eq!(conv_out_len(len), (len + 2 - 2 - 1) / 2 + 1);
        }
        assert_eq!(conv_out_len(conv_out_len(3000)), 750);
        assert_eq!(conv_out_len(conv_out_len(1500)), 375);
    }

    #[test]
    fn fsq_rounds_each_dimension_and_reads_base_3() -> Result<()> {
        // A codebook whose projection is the identity on 8 inputs, bias 0, so the
        // inputs are the values FSQ rounds: either side of each boundary, the
        // saturated ends, zero; digit j weighs 3^j.
        let dev = Device::Cpu;
        let eye = Tensor::eye(FSQ_DIM, DType::F32, &dev)?;
        let codebook = FSQCodebook {
            project_down: Linear::new(eye, Some(Tensor::zeros(FSQ_DIM, DType::F32, &dev)?)),
            powers: Tensor::from_vec(
                (0..FSQ_DIM)
                    .map(|j| 3f32.powi(j as i32))
                    .collect::<Vec<_>>(),
                FSQ_DIM,
                &dev,
            )?,
        };
        // atanh(0.5 / 0.999) ≈ 0.5498: 0.56 rounds to 1 (digit 2), 0.54 to 0 (digit 1).
        let x = Tensor::new(
            &[[[0.56f32, 0.54, -0.54, -0.56, 3.0, -3.0, 0.0, 0.56]]],
            &dev,
        )?;
        let ids = codebook.encode(&x)?.flatten_all()?.to_vec1::<u32>()?;
        let digits = [2u32, 1, 1, 0, 2, 0, 1, 2];
        let want: u32 = digits
            .iter()
            .enumerate()
            .map(|(j, d)| d * 3u32.pow(j as u32))
            .sum();
        assert_eq!(ids, vec![want]);
        Ok(())
    }
}
