//! Settings of the S3 speech tokenizer: `s3tokenizer` 0.3.0 `model_v2.py` `ModelConfig`,
//! which `S3TokenizerV2("speech_tokenizer_v2_25hz")` uses at its defaults (the v2 name
//! forces the 3⁸ codebook); the S3Gen checkpoint ships no config.

use serde::Deserialize;

/// `ModelConfig` (`model_v2.py`), without the fields inference never reads
/// (`n_audio_ctx`, `use_sdpa`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct S3TokenizerConfig {
    /// Log-mel bands of the input.
    pub n_mels: usize,
    /// Encoder width.
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    /// Transformer blocks of the encoder.
    pub n_audio_layer: usize,
    /// Token vocabulary: 3 levels in each of the 8 FSQ dimensions.
    pub n_codebook_size: usize,
}

impl S3TokenizerConfig {
    /// `speech_tokenizer_v2_25hz`, the tokenizer inside Chatterbox Turbo's S3Gen.
    pub fn speech_tokenizer_v2_25hz() -> Self {
        Self {
            n_mels: 128,
            n_audio_state: 1280,
            n_audio_head: 20,
            n_audio_layer: 6,
            n_codebook_size: 6561,
        }
    }

    /// Parse the JSON form (as `tools/chatterbox_s3tokenizer_fixtures.py` writes it).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Width of one attention head, which the rotary embedding covers whole.
    pub fn head_dim(&self) -> usize {
        self.n_audio_state / self.n_audio_head
    }

    /// Rejects what the reference cannot build: another codebook than 3⁸ (the FSQ
    /// quantizer asserts it), a width the heads do not divide, an odd head width
    /// (the rotary embedding turns pairs of halves).
    pub fn check_supported(&self) -> Result<(), String> {
        if self.n_codebook_size != 6561 {
            return Err(format!(
                "n_codebook_size {} (the FSQ quantizer has 3^8 = 6561 codes)",
                self.n_codebook_size
            ));
        }
        if self.n_audio_head == 0 || !self.n_audio_state.is_multiple_of(self.n_audio_head) {
            return Err(format!(
                "n_audio_state {} not divisible by n_audio_head {}",
                self.n_audio_state, self.n_audio_head
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!("odd head width {}", self.head_dim()));
        }
        Ok(())
    }
}

impl Default for S3TokenizerConfig {
    fn default() -> Self {
        Self::speech_tokenizer_v2_25hz()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_config_is_supported_with_64_wide_heads() {
        let cfg = S3TokenizerConfig::default();
        assert_eq!(cfg.check_supported(), Ok(()));
        // The reference's rotary table is built for 64 dimensions, this head width.
        assert_eq!(cfg.head_dim(), 64);
    }

    #[test]
    fn other_codebooks_are_rejected() {
        let cfg = S3TokenizerConfig {
            n_codebook_size: 4096,
            ..S3TokenizerConfig::default()
        };
        assert!(cfg.check_supported().is_err());
    }
}
