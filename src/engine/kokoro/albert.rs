//! PL-BERT: transformers' ALBERT encoder as Kokoro uses it (`CustomAlbert`,
//! which returns `last_hidden_state`). Checkpoint group `bert`.
//!
//! Settings Kokoro leaves at `AlbertConfig`'s defaults: activation `gelu_new`
//! (tanh approximation), one hidden group holding one layer (`num_hidden_groups`
//! = `inner_group_num` = 1) applied `num_hidden_layers` times, token type 0.
//! The pooler is in the checkpoint but not on the path to the output; it is not
//! loaded.

use candle_core::{Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, VarBuilder};

use crate::engine::nn::TransposedLinear;

use super::config::PlbertConfig;

/// transformers 5.24 `models/albert/modeling_albert.py`, class `AlbertEmbeddings`.
#[allow(non_snake_case)]
#[derive(Debug, Clone)]
pub struct AlbertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    LayerNorm: LayerNorm,
}

impl AlbertEmbeddings {
    pub fn load(vb: VarBuilder, cfg: &PlbertConfig, vocab_size: usize) -> Result<Self> {
        let e = cfg.embedding_size;
        Ok(Self {
            word_embeddings: embedding(vocab_size, e, vb.pp("word_embeddings"))?,
            position_embeddings: embedding(
                cfg.max_position_embeddings,
                e,
                vb.pp("position_embeddings"),
            )?,
            token_type_embeddings: embedding(
                cfg.type_vocab_size,
                e,
                vb.pp("token_type_embeddings"),
            )?,
            LayerNorm: layer_norm(e, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `input_ids` [B, T] → [B, T, embedding_size]; positions 0..T, token type 0.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, t) = input_ids.dims2()?;
        let positions = self.position_embeddings.embeddings();
        if t > positions.dim(0)? {
            candle_core::bail!("{t} tokens exceed ALBERT's {} positions", positions.dim(0)?);
        }
        let token_type = self.token_type_embeddings.embeddings().narrow(0, 0, 1)?;
        let x = self
            .word_embeddings
            .forward(input_ids)?
            .broadcast_add(&token_type)?
            .broadcast_add(&positions.narrow(0, 0, t)?)?;
        self.LayerNorm.forward(&x)
    }
}

/// transformers 5.24 `models/albert/modeling_albert.py`, class `AlbertAttention`
/// (eager attention, scaled by 1/√head_dim), with its output `dense` and
/// post-residual `LayerNorm`.
#[allow(non_snake_case)]
#[derive(Debug, Clone)]
pub struct AlbertAttention {
    query: TransposedLinear,
    key: TransposedLinear,
    value: TransposedLinear,
    dense: TransposedLinear,
    LayerNorm: LayerNorm,
    num_attention_heads: usize,
    attention_head_size: usize,
}

impl AlbertAttention {
    pub fn load(vb: VarBuilder, cfg: &PlbertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!(
                "ALBERT hidden size {h} is not a multiple of {} heads",
                cfg.num_attention_heads
            );
        }
        Ok(Self {
            query: TransposedLinear::new(linear(h, h, vb.pp("query"))?)?,
            key: TransposedLinear::new(linear(h, h, vb.pp("key"))?)?,
            value: TransposedLinear::new(linear(h, h, vb.pp("value"))?)?,
            dense: TransposedLinear::new(linear(h, h, vb.pp("dense"))?)?,
            LayerNorm: layer_norm(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            num_attention_heads: cfg.num_attention_heads,
            attention_head_size: h / cfg.num_attention_heads,
        })
    }

    /// `x` [B, T, H]; `mask_bias` [B, 1, 1, T], added to the scores (0 where a
    /// key may be attended, a large negative value where not).
    pub fn forward(&self, x: &Tensor, mask_bias: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let heads = |lin: &TransposedLinear| {
            lin.forward(x)?
                .reshape((b, t, self.num_attention_heads, self.attention_head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        // Scaling q (T·H values) instead of the scores (heads·T² values).
        let scale = (self.attention_head_size as f64).powf(-0.5);
        let q = (heads(&self.query)? * scale)?;
        let k = heads(&self.key)?;
        let v = heads(&self.value)?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask_bias {
            Some(bias) => scores.broadcast_add(bias)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        let out = self.dense.forward(&context)?;
        self.LayerNorm.forward(&(x + out)?)
    }
}

/// transformers 5.24 `models/albert/modeling_albert.py`, class `AlbertLayer`.
#[derive(Debug, Clone)]
pub struct AlbertLayer {
    full_layer_layer_norm: LayerNorm,
    attention: AlbertAttention,
    ffn: TransposedLinear,
    ffn_output: TransposedLinear,
}

impl AlbertLayer {
    pub fn load(vb: VarBuilder, cfg: &PlbertConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            full_layer_layer_norm: layer_norm(
                h,
                cfg.layer_norm_eps,
                vb.pp("full_layer_layer_norm"),
            )?,
            attention: AlbertAttention::load(vb.pp("attention"), cfg)?,
            ffn: TransposedLinear::new(linear(h, i, vb.pp("ffn"))?)?,
            ffn_output: TransposedLinear::new(linear(i, h, vb.pp("ffn_output"))?)?,
        })
    }

    pub fn forward(&self, x: &Tensor, mask_bias: Option<&Tensor>) -> Result<Tensor> {
        let attention_output = self.attention.forward(x, mask_bias)?;
        // `Tensor::gelu` is the tanh approximation, i.e. transformers' `gelu_new`.
        let ffn_output = self
            .ffn_output
            .forward(&self.ffn.forward(&attention_output)?.gelu()?)?;
        self.full_layer_layer_norm
            .forward(&(ffn_output + attention_output)?)
    }
}

/// transformers 5.24 `models/albert/modeling_albert.py`, class `AlbertLayerGroup`
/// (`inner_group_num` = 1: one layer).
#[derive(Debug, Clone)]
pub struct AlbertLayerGroup {
    albert_layers: Vec<AlbertLayer>,
}

impl AlbertLayerGroup {
    pub fn load(vb: VarBuilder, cfg: &PlbertConfig) -> Result<Self> {
        Ok(Self {
            albert_layers: vec![AlbertLayer::load(vb.pp("albert_layers").pp(0), cfg)?],
        })
    }

    pub fn forward(&self, x: &Tensor, mask_bias: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.albert_layers {
            x = layer.forward(&x, mask_bias)?;
        }
        Ok(x)
    }
}

/// transformers 5.24 `models/albert/modeling_albert.py`, class `AlbertTransformer`
/// (`num_hidden_groups` = 1: the one group is shared by every layer).
#[derive(Debug, Clone)]
pub struct AlbertTransformer {
    embedding_hidden_mapping_in: TransposedLinear,
    albert_layer_groups: Vec<AlbertLayerGroup>,
    num_hidden_layers: usize,
}

impl AlbertTransformer {
    pub fn load(vb: VarBuilder, cfg: &PlbertConfig) -> Result<Self> {
        Ok(Self {
            embedding_hidden_mapping_in: TransposedLinear::new(linear(
                cfg.embedding_size,
                cfg.hidden_size,
                vb.pp("embedding_hidden_mapping_in"),
            )?)?,
            albert_layer_groups: vec![AlbertLayerGroup::load(
                vb.pp("albert_layer_groups").pp(0),
                cfg,
            )?],
            num_hidden_layers: cfg.num_hidden_layers,
        })
    }

    pub fn forward(&self, x: &Tensor, mask_bias: Option<&Tensor>) -> Result<Tensor> {
        let mut x = self.embedding_hidden_mapping_in.forward(x)?;
        let groups = self.albert_layer_groups.len();
        for i in 0..self.num_hidden_layers {
            x = self.albert_layer_groups[i * groups / self.num_hidden_layers]
                .forward(&x, mask_bias)?;
        }
        Ok(x)
    }
}

/// kokoro 0.9.4 `kokoro/modules.py`, class `CustomAlbert`: transformers'
/// `AlbertModel` returning `last_hidden_state`.
#[derive(Debug, Clone)]
pub struct CustomAlbert {
    embeddings: AlbertEmbeddings,
    encoder: AlbertTransformer,
}

impl CustomAlbert {
    /// `vb` at the checkpoint group `bert`; `vocab_size` is Kokoro's `n_token`.
    pub fn load(vb: VarBuilder, cfg: &PlbertConfig, vocab_size: usize) -> Result<Self> {
        Ok(Self {
            embeddings: AlbertEmbeddings::load(vb.pp("embeddings"), cfg, vocab_size)?,
            encoder: AlbertTransformer::load(vb.pp("encoder"), cfg)?,
        })
    }

    /// `input_ids` [B, T] (integer) → `last_hidden_state` [B, T, hidden_size].
    /// `attention_mask` [B, T] is 1 for tokens and 0 for padding; `None` means
    /// every position is a token (Kokoro's single unpadded sequence).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let x = self.embeddings.forward(input_ids)?;
        let bias = match attention_mask {
            Some(mask) => {
                let (b, t) = mask.dims2()?;
                // (1 − mask) · f32::MIN, as transformers' additive mask: finite, so a
                // row with every key masked still gives a softmax without NaN.
                let min = f64::from(f32::MIN);
                Some(
                    mask.to_dtype(x.dtype())?
                        .affine(-min, min)?
                        .reshape((b, 1, 1, t))?,
                )
            }
            None => None,
        };
        self.encoder.forward(&x, bias.as_ref())
    }
}
