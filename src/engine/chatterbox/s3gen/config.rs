//! Settings of the S3Gen token-to-mel flow, named after the constructor arguments
//! of the reference classes (chatterbox-tts 0.1.7, `models/s3gen/s3gen.py`
//! `S3Token2Mel.__init__`), which hard-codes them; the checkpoint ships no config.

use serde::Deserialize;

/// `UpsampleConformerEncoder` arguments (`transformer/upsample_encoder.py`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EncoderConfig {
    pub output_size: usize,
    pub attention_heads: usize,
    pub linear_units: usize,
    /// Conformer layers before the upsampling.
    pub num_blocks: usize,
    /// Conformer layers after the upsampling (4, fixed in the reference).
    pub num_up_blocks: usize,
    /// `up_layer` stride (2, fixed in the reference).
    pub upsample_stride: usize,
    pub input_layer: String,
    pub pos_enc_layer_type: String,
    pub selfattention_layer_type: String,
    pub activation_type: String,
    pub normalize_before: bool,
    pub use_cnn_module: bool,
    pub macaron_style: bool,
    pub static_chunk_size: usize,
    pub key_bias: bool,
}

/// `ConditionalDecoder` arguments (`decoder.py`), the flow's vector-field estimator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoderConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub causal: bool,
    pub channels: Vec<usize>,
    pub attention_head_dim: usize,
    /// Transformer blocks after each resnet block.
    pub n_blocks: usize,
    pub num_mid_blocks: usize,
    pub num_heads: usize,
    pub act_fn: String,
    pub meanflow: bool,
}

/// `CausalConditionalCFM` settings (`flow_matching.py`, `configs.py`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CfmConfig {
    pub spk_emb_dim: usize,
    /// Euler steps (`S3Token2Wav.flow_inference`: 2 for the meanflow model).
    pub n_timesteps: usize,
    /// Unused by the meanflow path, which steps uniformly.
    pub t_scheduler: String,
    /// Unused by the meanflow path (distilled, no classifier-free guidance).
    pub inference_cfg_rate: f64,
}

/// `CausalMaskedDiffWithXvec` arguments (`flow.py`) and its two sub-modules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct S3GenConfig {
    /// Speech-token vocabulary of the flow's embedding.
    pub vocab_size: usize,
    pub input_size: usize,
    /// Mel bands.
    pub output_size: usize,
    /// Speaker x-vector width (CAMPPlus).
    pub spk_embed_dim: usize,
    /// Mel frames per speech token.
    pub token_mel_ratio: usize,
    /// Tokens the encoder's lookahead layer reads ahead.
    pub pre_lookahead_len: usize,
    pub encoder: EncoderConfig,
    pub decoder: DecoderConfig,
    pub cfm: CfmConfig,
}

impl S3GenConfig {
    /// `S3Gen(meanflow=True)` as Chatterbox Turbo builds it (`s3gen_meanflow.safetensors`).
    pub fn turbo() -> Self {
        Self {
            vocab_size: 6561,
            input_size: 512,
            output_size: 80,
            spk_embed_dim: 192,
            token_mel_ratio: 2,
            pre_lookahead_len: 3,
            encoder: EncoderConfig {
                output_size: 512,
                attention_heads: 8,
                linear_units: 2048,
                num_blocks: 6,
                num_up_blocks: 4,
                upsample_stride: 2,
                input_layer: "linear".into(),
                pos_enc_layer_type: "rel_pos_espnet".into(),
                selfattention_layer_type: "rel_selfattn".into(),
                activation_type: "swish".into(),
                normalize_before: true,
                use_cnn_module: false,
                macaron_style: false,
                static_chunk_size: 0,
                key_bias: true,
            },
            decoder: DecoderConfig {
                in_channels: 320,
                out_channels: 80,
                causal: true,
                channels: vec![256],
                attention_head_dim: 64,
                n_blocks: 4,
                num_mid_blocks: 12,
                num_heads: 8,
                act_fn: "gelu".into(),
                meanflow: true,
            },
            cfm: CfmConfig {
                spk_emb_dim: 80,
                n_timesteps: 2,
                t_scheduler: "cosine".into(),
                inference_cfg_rate: 0.7,
            },
        }
    }

    /// Parse the JSON form (as `tools/chatterbox_s3gen_fixtures.py` writes it).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Rejects the settings this port does not implement (the reference's other
    /// layer types, streaming chunk masks, classifier-free guidance, downsampling
    /// U-Nets), naming the first one found.
    pub fn check_supported(&self) -> Result<(), String> {
        let e = &self.encoder;
        let d = &self.decoder;
        let checks: [(bool, String); 16] = [
            (
                e.input_layer == "linear",
                format!("encoder input_layer {:?}", e.input_layer),
            ),
            (
                e.pos_enc_layer_type == "rel_pos_espnet",
                format!("encoder pos_enc_layer_type {:?}", e.pos_enc_layer_type),
            ),
            (
                e.selfattention_layer_type == "rel_selfattn",
                format!(
                    "encoder selfattention_layer_type {:?}",
                    e.selfattention_layer_type
                ),
            ),
            (
                e.activation_type == "swish",
                format!("encoder activation_type {:?}", e.activation_type),
            ),
            (e.normalize_before, "encoder normalize_before false".into()),
            (!e.use_cnn_module, "encoder use_cnn_module".into()),
            (!e.macaron_style, "encoder macaron_style".into()),
            (
                e.static_chunk_size == 0,
                format!("encoder static_chunk_size {}", e.static_chunk_size),
            ),
            (
                e.attention_heads > 0 && e.output_size.is_multiple_of(e.attention_heads),
                format!(
                    "encoder width {} over {} heads",
                    e.output_size, e.attention_heads
                ),
            ),
            (
                self.input_size == e.output_size,
                format!(
                    "input_size {} != encoder output_size {}",
                    self.input_size, e.output_size
                ),
            ),
            (
                self.token_mel_ratio == e.upsample_stride,
                format!(
                    "token_mel_ratio {} != encoder upsample_stride {}",
                    self.token_mel_ratio, e.upsample_stride
                ),
            ),
            (d.causal, "non-causal decoder".into()),
            (
                d.channels.len() == 1,
                format!("decoder channels {:?} (only one level)", d.channels),
            ),
            (d.act_fn == "gelu", format!("decoder act_fn {:?}", d.act_fn)),
            (
                d.meanflow,
                "decoder without meanflow (classifier-free guidance path)".into(),
            ),
            (
                d.in_channels == 4 * self.output_size
                    && d.out_channels == self.output_size
                    && self.cfm.spk_emb_dim == self.output_size,
                format!(
                    "decoder in/out channels {}/{} for {} mel bands",
                    d.in_channels, d.out_channels, self.output_size
                ),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(format!("unsupported S3Gen setting: {what}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_is_supported() {
        assert_eq!(S3GenConfig::turbo().check_supported(), Ok(()));
    }

    #[test]
    fn unsupported_options_are_named() {
        let mut cfg = S3GenConfig::turbo();
        cfg.decoder.channels = vec![256, 256];
        let err = cfg.check_supported().unwrap_err();
        assert!(err.contains("decoder channels"), "{err}");
        let mut cfg = S3GenConfig::turbo();
        cfg.encoder.use_cnn_module = true;
        assert!(cfg
            .check_supported()
            .unwrap_err()
            .contains("use_cnn_module"));
    }
}
