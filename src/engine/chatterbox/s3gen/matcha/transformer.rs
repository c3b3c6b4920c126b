//! chatterbox-tts 0.1.7 `models/s3gen/matcha/transformer.py`, with the diffusers
//! 0.29 `Attention` it builds (`diffusers/models/attention_processor.py`,
//! `AttnProcessor2_0`) and its `GELU` projection (`diffusers/models/activations.py`).

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use crate::engine::nn::attention::{self_attention, self_attention_int8};
use crate::engine::nn::linear::{transposed_linear_b, TransposedLinear};
use crate::engine::nn::ops::gelu_erf;

/// LayerNorm epsilon of the block (`nn.LayerNorm` default).
const EPS: f64 = 1e-5;

/// diffusers `Attention` as the block builds it: self-attention with bias-free
/// `to_q`/`to_k`/`to_v` of width `heads · dim_head` and an output projection
/// `to_out.0` back to `query_dim`.
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: TransposedLinear,
    to_k: TransposedLinear,
    to_v: TransposedLinear,
    to_out: TransposedLinear,
    heads: usize,
    dim_head: usize,
    /// Scores and weighted sums in 8-bit integers ([`self_attention_int8`]).
    int8: bool,
}

impl Attention {
    pub fn load(vb: VarBuilder, query_dim: usize, heads: usize, dim_head: usize) -> Result<Self> {
        let inner = heads * dim_head;
        Ok(Self {
            to_q: transposed_linear_b(query_dim, inner, false, vb.pp("to_q"))?,
            to_k: transposed_linear_b(query_dim, inner, false, vb.pp("to_k"))?,
            to_v: transposed_linear_b(query_dim, inner, false, vb.pp("to_v"))?,
            to_out: transposed_linear_b(inner, query_dim, true, vb.pp("to_out.0"))?,
            heads,
            dim_head,
            int8: false,
        })
    }
}

impl Attention {
    /// Quantises the projections to bytes ([`TransposedLinear::quantise_int8`]) and
    /// runs the attention's own products in 8-bit integers too.
    pub fn quantise_int8(&mut self) {
        for p in [
            &mut self.to_q,
            &mut self.to_k,
            &mut self.to_v,
            &mut self.to_out,
        ] {
            p.quantise_int8();
        }
        self.int8 = true;
    }
}

impl Module for Attention {
    /// `x` [B, T, query_dim] → [B, T, query_dim]; every frame sees every frame (the
    /// decoder's mask is all ones for an unpadded utterance).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.dim_head;
        // The 1/√d scale goes on the queries (T·h·d values) rather than the scores
        // (h·T² values): the same product up to float rounding.
        let q = (self.to_q.forward(x)? * (1.0 / (d as f64).sqrt()))?;
        let k = self.to_k.forward(x)?;
        let v = self.to_v.forward(x)?;
        let y = if self.int8 {
            self_attention_int8(&q, &k, &v, self.heads)?
        } else {
            self_attention(&q, &k, &v, self.heads)?
        };
        self.to_out.forward(&y)
    }
}

/// `FeedForward` with `activation_fn="gelu"`: `net.0` = diffusers `GELU` (a linear
/// `proj` then exact GELU), `net.2` the output linear layer.
#[derive(Debug, Clone)]
pub struct FeedForward {
    proj_in: TransposedLinear,
    proj_out: TransposedLinear,
}

impl FeedForward {
    pub fn load(vb: VarBuilder, dim: usize, mult: usize) -> Result<Self> {
        let inner = dim * mult;
        Ok(Self {
            proj_in: transposed_linear_b(dim, inner, true, vb.pp("net.0.proj"))?,
            proj_out: transposed_linear_b(inner, dim, true, vb.pp("net.2"))?,
        })
    }
}

impl FeedForward {
    /// Quantises both layers to bytes ([`TransposedLinear::quantise_int8`]).
    pub fn quantise_int8(&mut self) {
        self.proj_in.quantise_int8();
        self.proj_out.quantise_int8();
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj_out.forward(&gelu_erf(&self.proj_in.forward(x)?)?)
    }
}

/// `BasicTransformerBlock` as the decoder builds it (layer norms, no cross-attention,
/// no adaptive norm): `x + attn1(norm1(x))`, then `+ ff(norm3(x))`.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn load(
        vb: VarBuilder,
        dim: usize,
        num_attention_heads: usize,
        attention_head_dim: usize,
    ) -> Result<Self> {
        Ok(Self {
            norm1: layer_norm(dim, EPS, vb.pp("norm1"))?,
            attn1: Attention::load(vb.pp("attn1"), dim, num_attention_heads, attention_head_dim)?,
            norm3: layer_norm(dim, EPS, vb.pp("norm3"))?,
            ff: FeedForward::load(vb.pp("ff"), dim, 4)?,
        })
    }
}

impl BasicTransformerBlock {
    /// Quantises the attention's and feed-forward's matrix products to bytes.
    pub fn quantise_int8(&mut self) {
        self.attn1.quantise_int8();
        self.ff.quantise_int8();
    }
}

impl Module for BasicTransformerBlock {
    /// `hidden_states` [B, T, dim] → [B, T, dim].
    fn forward(&self, hidden_states: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("transformer_block").entered();
        let x = (self.attn1.forward(&self.norm1.forward(hidden_states)?)? + hidden_states)?;
        let ff = self.ff.forward(&self.norm3.forward(&x)?)?;
        ff + x
    }
}
