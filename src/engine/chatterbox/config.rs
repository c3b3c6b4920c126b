//! T3 settings: the reference's `T3Config` (chatterbox-tts 0.1.7,
//! `chatterbox/models/t3/modules/t3_config.py`) as `ChatterboxTurboTTS.from_local`
//! sets it up, and the GPT-2 backbone it names (`llama_configs.py`,
//! `GPT2_MEDIUM_CONFIG`).
//!
//! The Turbo checkpoint ships no T3 config file: the loader hard-codes it, so
//! [`T3Config::turbo`] is the released configuration. The test fixtures carry a
//! JSON file of the same shape (`{"t3": {...}, "backbone": {...}}`) for a tiny
//! backbone, read with [`T3Config::from_json`].

use candle_core::quantized::GgmlDType;
use serde::{Deserialize, Serialize};

/// The reference `T3Config` fields. Options that Turbo does not use (learned
/// position embeddings, the perceiver resampler, emotion conditioning, CLAP)
/// are rejected by [`T3Config::validate`] rather than ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T3Hparams {
    pub start_text_token: u32,
    pub stop_text_token: u32,
    pub text_tokens_dict_size: usize,
    pub max_text_tokens: usize,
    pub start_speech_token: u32,
    pub stop_speech_token: u32,
    pub speech_tokens_dict_size: usize,
    pub max_speech_tokens: usize,
    pub llama_config_name: String,
    /// `"learned"` in the original Chatterbox, `None` in Turbo (GPT-2 has `wpe`).
    pub input_pos_emb: Option<String>,
    /// Length the voice prompt's speech tokens are cut to when a voice is made.
    pub speech_cond_prompt_len: usize,
    pub encoder_type: String,
    pub speaker_embed_size: usize,
    pub use_perceiver_resampler: bool,
    pub emotion_adv: bool,
}

impl T3Hparams {
    /// `T3Config(text_tokens_dict_size=50276)` with the overrides of
    /// `ChatterboxTurboTTS.from_local`.
    pub fn turbo() -> Self {
        Self {
            start_text_token: 255,
            stop_text_token: 0,
            text_tokens_dict_size: 50276,
            max_text_tokens: 2048,
            start_speech_token: 6561,
            stop_speech_token: 6562,
            speech_tokens_dict_size: 6563,
            max_speech_tokens: 4096,
            llama_config_name: "GPT2_medium".to_string(),
            input_pos_emb: None,
            speech_cond_prompt_len: 375,
            encoder_type: "voice_encoder".to_string(),
            speaker_embed_size: 256,
            use_perceiver_resampler: false,
            emotion_adv: false,
        }
    }
}

fn default_true() -> bool {
    true
}

/// The GPT-2 backbone (the `transformers.GPT2Config` keys T3 relies on).
/// Unknown keys of the reference dict (dropouts, summary settings, …) are
/// accepted and ignored: they do not affect inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub model_type: String,
    pub activation_function: String,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_layer: usize,
    pub n_positions: usize,
    /// MLP width; `None` means 4 × `n_embd`.
    #[serde(default)]
    pub n_inner: Option<usize>,
    pub layer_norm_epsilon: f64,
    /// Rows of `wte`, which T3 never uses (its own `text_emb`/`speech_emb` feed the
    /// backbone) but the checkpoint still holds.
    pub vocab_size: usize,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub add_cross_attention: bool,
}

impl Gpt2Config {
    /// `GPT2_MEDIUM_CONFIG`: 24 layers, 1024 wide, 16 heads, 8196 positions.
    pub fn medium() -> Self {
        Self {
            model_type: "gpt2".to_string(),
            activation_function: "gelu_new".to_string(),
            n_embd: 1024,
            n_head: 16,
            n_layer: 24,
            n_positions: 8196,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            vocab_size: 50276,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            add_cross_attention: false,
        }
    }

    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// Everything `T3::load` needs: the hyper-parameters and the backbone they name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T3Config {
    pub t3: T3Hparams,
    pub backbone: Gpt2Config,
}

/// A configuration this port cannot run.
#[derive(Debug, thiserror::Error)]
pub enum T3ConfigError {
    #[error("unsupported T3 configuration: {0}")]
    Unsupported(String),
    #[error("bad T3 configuration: {0}")]
    Json(#[from] serde_json::Error),
}

impl T3Config {
    /// The released Chatterbox Turbo T3 (`t3_turbo_v1.safetensors`).
    pub fn turbo() -> Self {
        Self {
            t3: T3Hparams::turbo(),
            backbone: Gpt2Config::medium(),
        }
    }

    /// Reads `{"t3": {...}, "backbone": {...}}` and validates it.
    pub fn from_json(text: &str) -> Result<Self, T3ConfigError> {
        let cfg: Self = serde_json::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects every option the Turbo path does not implement.
    pub fn validate(&self) -> Result<(), T3ConfigError> {
        let unsupported = |what: String| Err(T3ConfigError::Unsupported(what));
        let (hp, b) = (&self.t3, &self.backbone);
        if b.model_type != "gpt2" {
            return unsupported(format!(
                "backbone model_type {:?} (only gpt2)",
                b.model_type
            ));
        }
        if b.activation_function != "gelu_new" {
            return unsupported(format!("activation {:?}", b.activation_function));
        }
        if b.n_head == 0 || !b.n_embd.is_multiple_of(b.n_head) {
            return unsupported(format!("{} wide with {} heads", b.n_embd, b.n_head));
        }
        if !b.scale_attn_weights || b.scale_attn_by_inverse_layer_idx || b.add_cross_attention {
            return unsupported("GPT-2 attention scaling/cross-attention options".to_string());
        }
        if let Some(pe) = &hp.input_pos_emb {
            return unsupported(format!("input_pos_emb {pe:?} (Turbo uses none)"));
        }
        if hp.use_perceiver_resampler {
            return unsupported("the perceiver resampler".to_string());
        }
        if hp.emotion_adv {
            return unsupported("emotion_adv conditioning".to_string());
        }
        if hp.encoder_type != "voice_encoder" {
            return unsupported(format!("encoder_type {:?}", hp.encoder_type));
        }
        let speech = hp.speech_tokens_dict_size as u32;
        if hp.start_speech_token >= speech || hp.stop_speech_token >= speech {
            return unsupported("start/stop speech tokens outside the speech vocabulary".into());
        }
        Ok(())
    }
}

/// How T3 stores the weights of its matrix products (the backbone's attention
/// and MLP `Conv1D`s and the speech head). The decode loop reads every one of
/// them per token, so on CPU it is bound by memory bandwidth: 8-bit weights
/// read about 3.8× fewer bytes than f32, 4-bit ones about 7×. Embeddings,
/// layer norms and biases stay f32 whatever the choice. Names as in
/// `voxpool_chatterbox.json` (`"t3_quant"`) and GGML.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum T3Quant {
    /// The checkpoint's f32 weights, unchanged.
    #[serde(rename = "f32")]
    F32,
    /// GGML `Q8_0`: blocks of 32 weights, 8 bits each and an f16 scale. The default:
    /// a decode step ~2.5× faster than f32's with logits within ~0.1 of them, about
    /// as fast as `q4k`, whose logits move ten times further (README, Chatterbox
    /// Turbo speed).
    #[default]
    #[serde(rename = "q8_0")]
    Q8_0,
    /// GGML `Q4_K`: super-blocks of 256 weights, 4 bits each with 6-bit scales.
    #[serde(rename = "q4k")]
    Q4K,
}

/// How S3Gen's flow multiplies: its velocity network (the two meanflow steps, about
/// 150 G multiply-adds for 4 s of audio, most of S3Gen's time) in f32, or its matrix
/// products over frames in 8-bit integers on x86-64 CPUs with AVX2 or AVX-512 VNNI (see
/// `engine::nn::int8`). Names as in `voxpool_chatterbox.json` (`"s3gen_quant"`) and
/// `CHATTERBOX_S3GEN_QUANT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum S3GenQuant {
    /// f32 throughout, as the reference. The default.
    #[default]
    #[serde(rename = "f32")]
    F32,
    /// The encoder's projections, and the velocity network's convolutions,
    /// projections and attention, in 8-bit integers (weights per output channel,
    /// inputs per frame): a 1.4–1.6× faster flow on 2 cores, its mel ~31 dB SNR
    /// from f32's on random weights (README, Chatterbox Turbo speed). Without AVX2 or
    /// AVX-512 VNNI the flow stays f32, with a warning.
    #[serde(rename = "int8")]
    Int8,
}

impl std::fmt::Display for S3GenQuant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Int8 => "int8",
        })
    }
}

impl std::str::FromStr for S3GenQuant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "int8" => Ok(Self::Int8),
            other => Err(format!("{other:?}: expected f32 or int8")),
        }
    }
}

impl T3Quant {
    /// The GGML type weights are quantised to, `None` for f32.
    pub fn ggml_dtype(self) -> Option<GgmlDType> {
        match self {
            Self::F32 => None,
            Self::Q8_0 => Some(GgmlDType::Q8_0),
            Self::Q4K => Some(GgmlDType::Q4K),
        }
    }
}

impl std::fmt::Display for T3Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Q8_0 => "q8_0",
            Self::Q4K => "q4k",
        })
    }
}

impl std::str::FromStr for T3Quant {
    type Err = T3ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "q8_0" => Ok(Self::Q8_0),
            "q4k" => Ok(Self::Q4K),
            other => Err(T3ConfigError::Unsupported(format!(
                "T3 weight type {other:?} (f32, q8_0 or q4k)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_is_valid_and_round_trips() {
        let cfg = T3Config::turbo();
        cfg.validate().unwrap();
        let text = serde_json::to_string(&cfg).unwrap();
        assert_eq!(T3Config::from_json(&text).unwrap(), cfg);
        assert_eq!(cfg.backbone.inner_dim(), 4096);
        assert_eq!(cfg.backbone.head_dim(), 64);
    }

    #[test]
    fn unsupported_options_fail() {
        let mut cfg = T3Config::turbo();
        cfg.t3.input_pos_emb = Some("learned".into());
        assert!(cfg.validate().is_err());
        let mut cfg = T3Config::turbo();
        cfg.t3.use_perceiver_resampler = true;
        assert!(cfg.validate().is_err());
        let mut cfg = T3Config::turbo();
        cfg.backbone.model_type = "llama".into();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn t3_quant_names() {
        for (name, quant) in [
            ("f32", T3Quant::F32),
            ("q8_0", T3Quant::Q8_0),
            ("q4k", T3Quant::Q4K),
        ] {
            assert_eq!(name.parse::<T3Quant>().unwrap(), quant);
            assert_eq!(quant.to_string(), name);
            let json = format!("{name:?}");
            assert_eq!(serde_json::from_str::<T3Quant>(&json).unwrap(), quant);
            assert_eq!(serde_json::to_string(&quant).unwrap(), json);
        }
        assert!("q4_0".parse::<T3Quant>().is_err());
        assert_eq!(T3Quant::default(), T3Quant::Q8_0);
    }
}
