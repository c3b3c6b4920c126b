//! Voice cloning for Chatterbox Turbo: a reference clip → the [`Conditionals`] T3
//! and S3Gen speak with, as `ChatterboxTurboTTS.prepare_conditionals` and
//! `S3Gen.embed_ref` compute them in chatterbox-tts 0.1.7:
//!
//! - S3Gen: the prompt mel of the first 10 s at 24 kHz, the speech tokens of the same
//!   stretch at 16 kHz (cut to half the mel frames), and its CAMPPlus x-vector;
//! - T3: the voice encoder's speaker embedding of the whole clip and the speech
//!   tokens of its first 15 s (at most `speech_cond_prompt_len`).
//!
//! The caller hands over the clip already loudness-normalised at both rates
//! ([`crate::audio::clip::prepare`]).

use candle_core::{Device, Result, Tensor};
use candle_nn::{Module, VarBuilder};

use super::campplus::{CAMPPlus, CAMPPlusConfig};
use super::conds::Conditionals;
use super::features::{self, FeatureConfig};
use super::s3gen::PromptRef;
use super::s3tokenizer::{S3Tokenizer, S3TokenizerConfig};
use super::t3::cond_enc::T3Cond;
use super::voice_encoder::{VoiceEncConfig, VoiceEncoder};
use crate::audio::clip::ReferenceClip;

/// The configurations of the cloning networks (the released ones by default).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ClonerConfig {
    #[serde(default)]
    pub ve: Option<VoiceEncConfig>,
    #[serde(default)]
    pub s3tokenizer: Option<S3TokenizerConfig>,
    #[serde(default)]
    pub campplus: Option<CAMPPlusConfig>,
    #[serde(default)]
    pub features: Option<FeatureConfig>,
}

/// The three conditioning encoders and their front-end settings.
pub struct VoiceCloner {
    ve: VoiceEncoder,
    tokenizer: S3Tokenizer,
    campplus: CAMPPlus,
    features: FeatureConfig,
    device: Device,
}

impl VoiceCloner {
    /// `ve` at the root of `ve.safetensors`; `s3gen` at the root of the S3Gen file,
    /// which holds the tokenizer (`tokenizer.`) and CAMPPlus (`speaker_encoder.`).
    pub fn load(ve: VarBuilder, s3gen: VarBuilder, cfg: &ClonerConfig) -> Result<Self> {
        let device = s3gen.device().clone();
        let ve_cfg = cfg.ve.clone().unwrap_or_default();
        let tok_cfg = cfg.s3tokenizer.clone().unwrap_or_default();
        let camp_cfg = cfg.campplus.clone().unwrap_or_default();
        Ok(Self {
            ve: VoiceEncoder::load(ve, &ve_cfg)?,
            tokenizer: S3Tokenizer::load(s3gen.pp("tokenizer"), &tok_cfg)?,
            campplus: CAMPPlus::load(s3gen.pp("speaker_encoder"), &camp_cfg)?,
            features: cfg.features.clone().unwrap_or_default(),
            device,
        })
    }

    /// A voice from `clip`. The clip must be long enough for every front-end (the
    /// server requires more than 5 s).
    pub fn conditionals(&self, clip: &ReferenceClip) -> Result<Conditionals> {
        let cfg = &self.features;
        // S3Gen's reference: the first DEC_COND_LEN samples at 24 kHz, and the same
        // stretch at 16 kHz.
        let prompt_feat =
            features::s3gen_prompt_feat(&clip.wav_24k, cfg)?.to_device(&self.device)?;
        let kept_24k = clip.wav_24k.len().min(cfg.dec_cond_len);
        let kept_16k = (kept_24k * features::S3_SR / features::S3GEN_SR).min(clip.wav_16k.len());
        let ref_16k = &clip.wav_16k[..kept_16k];
        let fbank = features::campplus_fbank(ref_16k)?
            .unsqueeze(0)?
            .to_device(&self.device)?;
        let embedding = self.campplus.forward(&fbank)?;
        let (mel, _) = features::s3_tokenizer_mel(ref_16k, None)?;
        let mut prompt_token = self
            .tokenizer
            .forward(&mel.to_device(&self.device)?, None)?;
        // embed_ref: mel frames must be twice the tokens; the tokens give way.
        let mel_frames = prompt_feat.dim(1)?;
        if mel_frames != 2 * prompt_token.len() {
            prompt_token.truncate(mel_frames / 2);
        }
        let prompt_token = Tensor::new(prompt_token.as_slice(), &self.device)?.unsqueeze(0)?;

        // T3: prompt tokens of the first ENC_COND_LEN samples, speaker embedding of all.
        let (t3_mel, _) = features::t3_prompt_tokenizer_mel(&clip.wav_16k, cfg)?;
        let t3_tokens = self.tokenizer.forward(
            &t3_mel.to_device(&self.device)?,
            Some(cfg.speech_cond_prompt_len),
        )?;
        let t3_tokens = Tensor::new(t3_tokens.as_slice(), &self.device)?.unsqueeze(0)?;
        let ve_mel = features::voice_encoder_mel(&clip.wav_16k, cfg)?;
        let speaker_emb = self.ve.speaker_emb(&ve_mel)?;

        Ok(Conditionals {
            t3: T3Cond {
                speaker_emb,
                cond_prompt_speech_tokens: Some(t3_tokens),
            },
            gen: PromptRef {
                prompt_token,
                prompt_feat,
                embedding,
            },
        })
    }
}
