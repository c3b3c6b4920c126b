//! The checkpoint's `config.json`, as shipped with Kokoro-82M v1.0.

use std::collections::HashMap;

use serde::Deserialize;

/// ALBERT (PL-BERT) settings under `plbert`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlbertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub num_hidden_layers: usize,
    /// ALBERT's factorised embedding width (transformers' default 128).
    #[serde(default = "default_embedding_size")]
    pub embedding_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
}

fn default_embedding_size() -> usize {
    128
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_type_vocab_size() -> usize {
    2
}

/// iSTFTNet generator settings under `istftnet`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IstftnetConfig {
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub upsample_initial_channel: usize,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub gen_istft_n_fft: usize,
    pub gen_istft_hop_size: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KokoroConfig {
    pub hidden_dim: usize,
    pub style_dim: usize,
    pub n_layer: usize,
    pub n_token: usize,
    pub max_dur: usize,
    pub text_encoder_kernel_size: usize,
    pub n_mels: usize,
    pub plbert: PlbertConfig,
    pub istftnet: IstftnetConfig,
    /// Phoneme symbol → token id.
    #[serde(default)]
    pub vocab: HashMap<String, u32>,
    /// Width of the decoder's encode/decode blocks (fixed at 1024 in the release;
    /// smaller only in test checkpoints).
    #[serde(default = "default_decoder_hidden_dim")]
    pub decoder_hidden_dim: usize,
    /// Channels of the decoder's `asr_res` projection (64 in the release).
    #[serde(default = "default_asr_res_dim")]
    pub asr_res_dim: usize,
}

fn default_decoder_hidden_dim() -> usize {
    1024
}
fn default_asr_res_dim() -> usize {
    64
}

impl KokoroConfig {
    /// Parse a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Kokoro-82M v1.0 (`hexgrad/Kokoro-82M`), without its vocabulary.
    pub fn v1_0() -> Self {
        Self {
            hidden_dim: 512,
            style_dim: 128,
            n_layer: 3,
            n_token: 178,
            max_dur: 50,
            text_encoder_kernel_size: 5,
            n_mels: 80,
            plbert: PlbertConfig {
                hidden_size: 768,
                num_attention_heads: 12,
                intermediate_size: 2048,
                max_position_embeddings: 512,
                num_hidden_layers: 12,
                embedding_size: 128,
                layer_norm_eps: 1e-12,
                type_vocab_size: 2,
            },
            istftnet: IstftnetConfig {
                upsample_rates: vec![10, 6],
                upsample_kernel_sizes: vec![20, 12],
                upsample_initial_channel: 512,
                resblock_kernel_sizes: vec![3, 7, 11],
                resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
                gen_istft_n_fft: 20,
                gen_istft_hop_size: 5,
            },
            vocab: HashMap::new(),
            decoder_hidden_dim: 1024,
            asr_res_dim: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_fixture_config_parses() {
        let text = include_str!("../../../tests/fixtures/kokoro/tiny_config.json");
        let cfg = KokoroConfig::from_json(text).unwrap();
        assert_eq!(cfg.hidden_dim, 32);
        assert_eq!(cfg.decoder_hidden_dim, 28);
        assert_eq!(cfg.plbert.embedding_size, 128);
        assert_eq!(cfg.vocab.len(), 114);
        assert_eq!(cfg.istftnet.gen_istft_n_fft, 20);
    }
}
