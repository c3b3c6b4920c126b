//! The GPT-2 backbone of T3 (`T3.tfmr`), fed with input embeddings.
//!
//! Mirrors transformers 5.2.0 `models/gpt2/modeling_gpt2.py` (`GPT2Model`,
//! `GPT2Block`, `GPT2Attention`, `GPT2MLP`) as T3 calls it: `inputs_embeds`
//! only, absolute positions from `wpe` starting at the cache length, causal
//! self-attention scaled by 1/√head_dim, `gelu_new`, pre-LayerNorm blocks and
//! a final `ln_f`. `wte` is in the checkpoint but never used (Turbo deletes
//! it after loading), so it is not loaded. Dropout is off (inference).
//!
//! candle-transformers has no GPT-2 that takes embeddings and keeps its cache
//! outside the modules, hence this small one. The key/value cache is a
//! [`Gpt2Cache`] made per request and passed in; weights stay behind `&self`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::kv_cache::KvCache;
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};

use crate::engine::chatterbox::config::{Gpt2Config, T3Quant};
use crate::engine::nn::attention::{attend_one_query, causal_self_attention};
use crate::engine::nn::linear::PackedMatrix;
use crate::engine::nn::ops::with_cpu_f32;
use crate::engine::nn::quantized;

/// A linear layer over a weight quantised at load (`y = x Wᵀ + b`, `W` [out, in]),
/// the shape of candle-transformers' `quantized_nn::Linear`. Products of many rows
/// that candle has no fast kernel for dequantise the weight panel by panel instead
/// (see [`crate::engine::nn::quantized`]).
#[derive(Debug, Clone)]
pub struct QLinear {
    weight: Arc<QTensor>,
    matmul: QMatMul,
    bias: Tensor,
    /// The bias in CPU memory, for the dequantised products.
    bias_values: Vec<f32>,
}

impl QLinear {
    /// Quantises `weight` [out, in] as `quant` says; `None` for f32, or when
    /// `in` is not a multiple of the GGML block (32 for q8_0, 256 for q4k),
    /// where the caller keeps the layer in f32.
    pub fn quantize(weight: &Tensor, bias: &Tensor, quant: T3Quant) -> Result<Option<Self>> {
        let Some(dtype) = quant.ggml_dtype() else {
            return Ok(None);
        };
        if !weight.dim(1)?.is_multiple_of(dtype.block_size()) {
            return Ok(None);
        }
        let weight = QTensor::quantize(&weight.contiguous()?, dtype)?;
        Self::new(Arc::new(weight), bias).map(Some)
    }

    /// A layer over the quantised `weight` [out, in] and `bias` [out].
    pub fn new(weight: Arc<QTensor>, bias: &Tensor) -> Result<Self> {
        Ok(Self {
            matmul: QMatMul::from_arc(weight.clone())?,
            weight,
            bias: bias.clone(),
            bias_values: bias.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    /// The quantised weight [out, in].
    pub fn weight(&self) -> &Arc<QTensor> {
        &self.weight
    }

    /// Bytes the quantised weight takes less than the f32 one it replaced.
    pub fn bytes_saved(&self) -> u64 {
        let q = &self.weight;
        match &self.matmul {
            QMatMul::QTensor(_) => {
                (q.shape().elem_count() * 4).saturating_sub(q.storage_size_in_bytes()) as u64
            }
            // Dequantised by candle (`CANDLE_DEQUANTIZE_ALL`): f32 after all.
            QMatMul::Tensor(_) | QMatMul::TensorF16(_) => 0,
        }
    }

    /// Bytes the quantised weight takes.
    pub fn bytes(&self) -> u64 {
        self.weight.storage_size_in_bytes() as u64
    }
}

impl Module for QLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, k) = self.weight.shape().dims2()?;
        let rows = x.elem_count() / k.max(1);
        if matches!(self.matmul, QMatMul::QTensor(_))
            && quantized::dequantizes(self.weight.dtype(), rows, n, k)
        {
            let mut dims = x.dims().to_vec();
            if let Some(last) = dims.last_mut() {
                *last = n;
            }
            let y = with_cpu_f32(x, |xs| {
                let y = quantized::dequantized_times(&self.weight, xs, rows, &self.bias_values)?;
                Tensor::from_vec(y, dims.as_slice(), x.device())
            });
            if let Some(y) = y {
                return y;
            }
        }
        x.apply(&self.matmul)?.broadcast_add(&self.bias)
    }
}

#[derive(Debug, Clone)]
enum Conv1DWeight {
    /// `[in, out]`, as the checkpoint stores it (off the CPU).
    F32(Tensor),
    /// `[in, out]` in CPU memory, packed for the products, and the bias.
    Cpu {
        weight: PackedMatrix,
        bias: Vec<f32>,
    },
    /// Transposed to `[out, in]` and quantised.
    Quantized(QLinear),
}

/// transformers `pytorch_utils.Conv1D`: a linear layer whose weight is stored
/// `[in, out]` (`y = x @ W + b`).
#[derive(Debug, Clone)]
pub struct Conv1D {
    weight: Conv1DWeight,
    bias: Tensor,
    n_out: usize,
}

/// Where a load of T3 takes the quantised weights of its matrix products (the
/// backbone's `Conv1D`s and the speech head) from: quantised from the checkpoint's f32
/// ones as `quant` says (recording them, for the cache), or read from the cache, in
/// which case the checkpoint's f32 weights are never read.
#[derive(Debug)]
pub struct QuantWeights {
    quant: T3Quant,
    cached: Option<HashMap<String, Arc<QTensor>>>,
    made: RefCell<Vec<(String, Arc<QTensor>)>>,
}

impl QuantWeights {
    /// Weights quantised at load as `quant` says (none for f32).
    pub fn quantize(quant: T3Quant) -> Self {
        Self {
            quant,
            cached: None,
            made: RefCell::default(),
        }
    }

    /// The quantised weights in `tensors`, by checkpoint name (`[out, in]` each).
    pub fn cached(quant: T3Quant, tensors: HashMap<String, Arc<QTensor>>) -> Self {
        Self {
            quant,
            cached: Some(tensors),
            made: RefCell::default(),
        }
    }

    pub fn quant(&self) -> T3Quant {
        self.quant
    }

    /// Whether the weights come from the cache.
    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    /// The weights quantised by the loads so far, by checkpoint name, in load order.
    pub fn into_made(self) -> Vec<(String, Arc<QTensor>)> {
        self.made.into_inner()
    }

    /// Whether a layer of `n_in` inputs is quantised: a GGML type is asked for and
    /// `n_in` is a multiple of its block (32 for q8_0, 256 for q4k).
    pub fn quantizes(quant: T3Quant, n_in: usize) -> bool {
        quant
            .ggml_dtype()
            .is_some_and(|d| n_in.is_multiple_of(d.block_size()))
    }

    /// The layer `[n_out, n_in]` named `name` (its checkpoint key) with `bias`, when
    /// quantised: from the cache, or quantised from `read()` (the f32 weight `[out,
    /// in]`, asked for only then); `None` where it stays f32.
    fn linear(
        &self,
        name: String,
        (n_out, n_in): (usize, usize),
        bias: &Tensor,
        read: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Option<QLinear>> {
        if !Self::quantizes(self.quant, n_in) {
            return Ok(None);
        }
        if let Some(cached) = &self.cached {
            let Some(w) = cached.get(&name) else {
                candle_core::bail!("{name}: not in the quantised weights' cache");
            };
            if w.shape().dims() != [n_out, n_in] || Some(w.dtype()) != self.quant.ggml_dtype() {
                candle_core::bail!(
                    "{name}: cached as {:?} {:?}, expected [{n_out}, {n_in}] {}",
                    w.dtype(),
                    w.shape(),
                    self.quant
                );
            }
            return QLinear::new(w.clone(), bias).map(Some);
        }
        let layer = QLinear::quantize(&read()?, bias, self.quant)?;
        if let Some(layer) = &layer {
            self.made.borrow_mut().push((name, layer.weight().clone()));
        }
        Ok(layer)
    }
}

/// `vb`'s key for its tensor `name`.
fn key(vb: &VarBuilder, name: &str) -> String {
    let prefix = vb.prefix();
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl Conv1D {
    pub fn load(vb: VarBuilder, n_in: usize, n_out: usize, weights: &QuantWeights) -> Result<Self> {
        let bias = vb.get(n_out, "bias")?;
        let read = || vb.get((n_in, n_out), "weight")?.t();
        let weight = match weights.linear(key(&vb, "weight"), (n_out, n_in), &bias, read)? {
            Some(q) => Conv1DWeight::Quantized(q),
            None => Conv1DWeight::f32(vb.get((n_in, n_out), "weight")?, &bias)?,
        };
        Ok(Self {
            weight,
            bias,
            n_out,
        })
    }

    /// [`Conv1D::load`] of an `nn.Linear` (`weight` [out, in] under `vb`), as T3's
    /// speech head is stored. In f32 the weight is transposed once at load, so that a
    /// decode step's single row streams it (see `cpu_product`) where a matrix product
    /// by the transposed view read it at a fraction of the memory bandwidth (T3's 27 MB
    /// speech head: ~10 ms of a ~90 ms step).
    pub fn load_linear(
        vb: VarBuilder,
        n_in: usize,
        n_out: usize,
        weights: &QuantWeights,
    ) -> Result<Self> {
        let bias = vb.get(n_out, "bias")?;
        let read = || vb.get((n_out, n_in), "weight");
        let weight = match weights.linear(key(&vb, "weight"), (n_out, n_in), &bias, read)? {
            Some(q) => Conv1DWeight::Quantized(q),
            None => {
                let w = vb.get((n_out, n_in), "weight")?;
                Conv1DWeight::f32(w.t()?.contiguous()?, &bias)?
            }
        };
        Ok(Self {
            weight,
            bias,
            n_out,
        })
    }
}

impl Module for Conv1D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let n_in = dims[dims.len() - 1];
        let rows = x.elem_count() / n_in;
        let x = x.reshape((rows, n_in))?;
        let y = match &self.weight {
            Conv1DWeight::F32(w) => x.matmul(w)?.broadcast_add(&self.bias)?,
            Conv1DWeight::Cpu { weight, bias } => cpu_product(&x, weight, bias)?,
            Conv1DWeight::Quantized(q) => q.forward(&x)?,
        };
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = self.n_out;
        y.reshape(out)
    }
}

impl Conv1D {
    /// Bytes this layer's weight takes less than in f32 (quantised, else 0).
    pub fn bytes_saved(&self) -> u64 {
        match &self.weight {
            Conv1DWeight::Quantized(q) => q.bytes_saved(),
            Conv1DWeight::F32(_) | Conv1DWeight::Cpu { .. } => 0,
        }
    }

    /// Bytes of this layer's quantised weight (0 in f32).
    pub fn quantized_bytes(&self) -> u64 {
        match &self.weight {
            Conv1DWeight::Quantized(q) => q.bytes(),
            Conv1DWeight::F32(_) | Conv1DWeight::Cpu { .. } => 0,
        }
    }
}

impl Conv1DWeight {
    /// An f32 `weight` [in, out]: kept aligned in CPU memory when it lives there.
    fn f32(weight: Tensor, bias: &Tensor) -> Result<Self> {
        if !weight.device().is_cpu() || weight.dtype() != DType::F32 {
            return Ok(Self::F32(weight));
        }
        Ok(Self::Cpu {
            weight: PackedMatrix::from_tensor(&weight)?,
            bias: bias.to_dtype(DType::F32)?.to_vec1::<f32>()?,
        })
    }
}

/// `x·W + b` for `x` [rows, in] on the CPU (a decode step's single row streams `W`
/// once, see [`PackedMatrix::strided_times`]).
fn cpu_product(x: &Tensor, w: &PackedMatrix, bias: &[f32]) -> Result<Tensor> {
    let rows = x.dim(0)?;
    let y = with_cpu_f32(x, |xs| w.times(xs, bias))
        .unwrap_or_else(|| candle_core::bail!("linear input: expected f32 on the CPU"))?;
    Tensor::from_vec(y, (rows, bias.len()), x.device())
}

/// Per-request key/value cache of every layer (transformers' `DynamicCache`),
/// preallocated for `capacity` positions.
#[derive(Debug, Clone)]
pub struct Gpt2Cache {
    layers: Vec<KvCache>,
}

impl Gpt2Cache {
    /// A cache for `n_layer` layers and up to `capacity` positions (it grows if
    /// more are appended).
    pub fn new(n_layer: usize, capacity: usize) -> Self {
        Self {
            layers: (0..n_layer)
                .map(|_| KvCache::new(2, capacity.max(1)))
                .collect(),
        }
    }

    /// Positions already cached (`past_key_values.get_seq_length()`).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::current_seq_len)
    }

    /// Copies of every layer's keys and values for the first `n` cached positions,
    /// `[B, H, n, D]` each.
    pub fn prefix(&self, n: usize) -> Result<Vec<(Tensor, Tensor)>> {
        let copy = |t: Tensor| -> Result<Tensor> {
            let t = t.narrow(2, 0, n)?;
            // A view of a buffer this cache goes on writing into: its own copy.
            if t.is_contiguous() {
                t.copy()
            } else {
                t.contiguous()
            }
        };
        self.layers
            .iter()
            .map(|layer| match (layer.k()?, layer.v()?) {
                (Some(k), Some(v)) => Ok((copy(k)?, copy(v)?)),
                _ => candle_core::bail!("an empty cache has no prefix"),
            })
            .collect()
    }

    /// A cache for `capacity` positions holding a copy of `prefix`'s (one key/value
    /// pair per layer, as [`Gpt2Cache::into_prefix`] gives them).
    pub fn from_prefix(prefix: &[(Tensor, Tensor)], capacity: usize) -> Result<Self> {
        let held = prefix.first().map_or(Ok(0), |(k, _)| k.dim(2))?;
        let mut cache = Self::new(prefix.len(), capacity.max(held));
        for (layer, (k, v)) in cache.layers.iter_mut().zip(prefix) {
            layer.append(k, v)?;
        }
        Ok(cache)
    }
}

/// transformers `GPT2Attention` (self-attention only).
#[derive(Debug, Clone)]
pub struct Gpt2Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: usize,
    head_dim: usize,
}

impl Gpt2Attention {
    pub fn load(vb: VarBuilder, cfg: &Gpt2Config, weights: &QuantWeights) -> Result<Self> {
        let e = cfg.n_embd;
        Ok(Self {
            c_attn: Conv1D::load(vb.pp("c_attn"), e, 3 * e, weights)?,
            c_proj: Conv1D::load(vb.pp("c_proj"), e, e, weights)?,
            n_head: cfg.n_head,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x` [B, T, E] at positions `past..past + T`; `mask` [T, past + T] (0 or
    /// −∞) when T > 1. Appends this step's keys and values to `cache`.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t, e) = x.dims3()?;
        let qkv = self.c_attn.forward(x)?;
        let heads = |i: usize| {
            qkv.narrow(2, i * e, e)?
                .reshape((b, t, self.n_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        // Scaling q (T·E values) rather than the scores.
        let scale = (self.head_dim as f64).powf(-0.5);
        if t > 1 && cache.current_seq_len() == 0 {
            // The prompt, nothing cached before it: causal attention over its own
            // positions (the mask says no more than that).
            let q = (qkv.narrow(2, 0, e)? * scale)?;
            let (k, v) = (qkv.narrow(2, e, e)?, qkv.narrow(2, 2 * e, e)?);
            let out = causal_self_attention(&q, &k, &v, self.n_head)?;
            cache.append(&heads(1)?, &heads(2)?)?;
            return self.c_proj.forward(&out);
        }
        let q = (heads(0)? * scale)?;
        // The cache's views are read in place: each head's positions are contiguous
        // rows, heads a fixed stride apart, which the matrix product takes as it is
        // (a copy of the whole cache per layer and step was ~5% of a decode step).
        let (k, v) = cache.append(&heads(1)?, &heads(2)?)?;
        if t == 1 {
            // A decode step: one query sees every cached position.
            return self.c_proj.forward(&attend_one_query(&q, &k, &v)?);
        }
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, e))?;
        self.c_proj.forward(&out)
    }
}

/// transformers `GPT2MLP`: `c_proj(gelu_new(c_fc(x)))`.
#[derive(Debug, Clone)]
pub struct Gpt2Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
}

impl Gpt2Mlp {
    pub fn load(vb: VarBuilder, cfg: &Gpt2Config, weights: &QuantWeights) -> Result<Self> {
        let (e, i) = (cfg.n_embd, cfg.inner_dim());
        Ok(Self {
            c_fc: Conv1D::load(vb.pp("c_fc"), e, i, weights)?,
            c_proj: Conv1D::load(vb.pp("c_proj"), i, e, weights)?,
        })
    }
}

impl Module for Gpt2Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // transformers' `gelu_new` is the tanh approximation.
        self.c_proj
            .forward(&crate::engine::nn::ops::gelu_tanh(&self.c_fc.forward(x)?)?)
    }
}

/// transformers `GPT2Block`: pre-norm attention and MLP, each with a residual.
#[derive(Debug, Clone)]
pub struct Gpt2Block {
    ln_1: LayerNorm,
    attn: Gpt2Attention,
    ln_2: LayerNorm,
    mlp: Gpt2Mlp,
}

impl Gpt2Block {
    pub fn load(vb: VarBuilder, cfg: &Gpt2Config, weights: &QuantWeights) -> Result<Self> {
        let (e, eps) = (cfg.n_embd, cfg.layer_norm_epsilon);
        Ok(Self {
            ln_1: layer_norm(e, eps, vb.pp("ln_1"))?,
            attn: Gpt2Attention::load(vb.pp("attn"), cfg, weights)?,
            ln_2: layer_norm(e, eps, vb.pp("ln_2"))?,
            mlp: Gpt2Mlp::load(vb.pp("mlp"), cfg, weights)?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let _span = tracing::trace_span!("gpt2_block").entered();
        let h = (x + self.attn.forward(&self.ln_1.forward(x)?, mask, cache)?)?;
        &h + self.mlp.forward(&self.ln_2.forward(&h)?)?
    }
}

/// transformers `GPT2Model` without `wte`.
#[derive(Debug, Clone)]
pub struct Gpt2Model {
    wpe: Embedding,
    h: Vec<Gpt2Block>,
    ln_f: LayerNorm,
    n_positions: usize,
}

impl Gpt2Model {
    /// `weights` gives the blocks' `Conv1D`s; `wpe` and the layer norms stay f32.
    pub fn load(vb: VarBuilder, cfg: &Gpt2Config, weights: &QuantWeights) -> Result<Self> {
        let h = (0..cfg.n_layer)
            .map(|i| Gpt2Block::load(vb.pp("h").pp(i), cfg, weights))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            wpe: embedding(cfg.n_positions, cfg.n_embd, vb.pp("wpe"))?,
            h,
            ln_f: layer_norm(cfg.n_embd, cfg.layer_norm_epsilon, vb.pp("ln_f"))?,
            n_positions: cfg.n_positions,
        })
    }

    fn conv1ds(&self) -> impl Iterator<Item = &Conv1D> {
        self.h
            .iter()
            .flat_map(|b| [&b.attn.c_attn, &b.attn.c_proj, &b.mlp.c_fc, &b.mlp.c_proj])
    }

    /// Bytes the blocks' quantised weights take less than in f32.
    pub fn bytes_saved(&self) -> u64 {
        self.conv1ds().map(Conv1D::bytes_saved).sum()
    }

    /// Bytes of the blocks' quantised weights.
    pub fn quantized_bytes(&self) -> u64 {
        self.conv1ds().map(Conv1D::quantized_bytes).sum()
    }

    /// Bytes of keys and values a cache holds per position (every layer, f32).
    pub fn cache_bytes_per_position(&self) -> u64 {
        let width = self.wpe.embeddings().dim(1).unwrap_or(0);
        (2 * self.h.len() * width * 4) as u64
    }

    /// A cache sized for `capacity` positions (at most the model's `n_positions`).
    pub fn new_cache(&self, capacity: usize) -> Gpt2Cache {
        Gpt2Cache::new(self.h.len(), capacity.min(self.n_positions))
    }

    pub fn n_positions(&self) -> usize {
        self.n_positions
    }

    /// `inputs_embeds` [B, T, E] following the `cache.seq_len()` positions already
    /// in `cache` → last hidden state [B, T, E] (after `ln_f`); appends to `cache`.
    pub fn forward(&self, inputs_embeds: &Tensor, cache: &mut Gpt2Cache) -> Result<Tensor> {
        let (_, t, _) = inputs_embeds.dims3()?;
        let past = cache.seq_len();
        if past + t > self.n_positions {
            candle_core::bail!(
                "{} positions exceed GPT-2's {} (wpe)",
                past + t,
                self.n_positions
            );
        }
        if cache.layers.len() != self.h.len() {
            candle_core::bail!(
                "cache has {} layers, model {}",
                cache.layers.len(),
                self.h.len()
            );
        }
        let positions = self.wpe.embeddings().narrow(0, past, t)?;
        let mut x = inputs_embeds.broadcast_add(&positions)?;
        let mask = if t > 1 {
            Some(causal_mask(
                t,
                past,
                inputs_embeds.dtype(),
                inputs_embeds.device(),
            )?)
        } else {
            None
        };
        for (block, layer_cache) in self.h.iter().zip(cache.layers.iter_mut()) {
            x = block.forward(&x, mask.as_ref(), layer_cache)?;
        }
        self.ln_f.forward(&x)
    }
}

/// [T, past + T]: 0 where query i (at position past + i) may see key j, −∞ after it.
fn causal_mask(t: usize, past: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, total), device)?.to_dtype(dtype)
}
