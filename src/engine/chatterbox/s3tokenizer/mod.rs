//! The S3 speech tokenizer of voice cloning: a 16 kHz reference clip → speech tokens at
//! 25 per second (vocabulary 6561), for T3's `cond_prompt_speech_tokens` and S3Gen's
//! `prompt_token`. chatterbox-tts 0.1.7 `models/s3tokenizer/s3tokenizer.py` wraps
//! `S3TokenizerV2("speech_tokenizer_v2_25hz")` of the `s3tokenizer` 0.3.0 package
//! ([`model_v2`]); its weights sit in the S3Gen checkpoint under `tokenizer.`.
//!
//! ```text
//! 16 kHz audio → log_mel_spectrogram [1, 128, T] (100 frames/s; not here)
//!   → cut to 4·max_len frames → AudioEncoderV2 [1, T/4, 1280] → FSQ → tokens
//! ```
//!
//! This module starts at the log-mel: the caller computes it exactly as
//! `S3Tokenizer.log_mel_spectrogram` does (400-point Hann STFT, hop 160, the last
//! frame dropped, 128 Slaney mel bands, `log10` clamped at 1e-10, floored 8 below
//! its maximum, then `(x + 4) / 4`).

pub mod config;
pub mod model_v2;
pub mod utils;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub use config::S3TokenizerConfig;
pub use model_v2::S3TokenizerV2;

/// Sample rate of the tokenizer's input audio.
pub const S3_SR: u32 = 16_000;
/// Audio samples per log-mel frame (100 frames/s).
pub const S3_HOP: usize = 160;
/// Audio samples per speech token (25 tokens/s).
pub const S3_TOKEN_HOP: usize = 640;
pub const S3_TOKEN_RATE: usize = 25;
/// Speech tokens are `0..SPEECH_VOCAB_SIZE`.
pub const SPEECH_VOCAB_SIZE: u32 = 6561;
/// Log-mel frames per speech token (the encoder's two stride-2 convolutions).
pub const MEL_FRAMES_PER_TOKEN: usize = 4;

/// chatterbox-tts 0.1.7 `models/s3tokenizer/s3tokenizer.py`, class `S3Tokenizer`, from
/// its log-mel on: `forward` for one clip.
#[derive(Debug, Clone)]
pub struct S3Tokenizer {
    model: S3TokenizerV2,
}

impl S3Tokenizer {
    /// Loads the tokenizer from `vb` at its own prefix (`tokenizer.` of S3Gen's
    /// checkpoint). The checkpoint's `_mel_filters` and `window` buffers belong to the
    /// log-mel front end and are not read.
    pub fn load(vb: VarBuilder, cfg: &S3TokenizerConfig) -> Result<Self> {
        Ok(Self {
            model: S3TokenizerV2::load(vb, cfg)?,
        })
    }

    pub fn model(&self) -> &S3TokenizerV2 {
        &self.model
    }

    /// `forward([wav], max_len)` from the log-mel on: `log_mel` [1, n_mels, T] of one
    /// clip (`log_mel_spectrogram(wav)`, every frame valid) → its speech tokens,
    /// at most `max_len` (the log-mel is first cut to `4·max_len` frames, as the
    /// reference does; T3's prompt uses 375, `S3Gen.embed_ref` none).
    pub fn forward(&self, log_mel: &Tensor, max_len: Option<usize>) -> Result<Vec<u32>> {
        let frames = log_mel.dim(2)?;
        let frames = max_len.map_or(frames, |m| frames.min(m * MEL_FRAMES_PER_TOKEN));
        self.model.quantize(&log_mel.narrow(2, 0, frames)?, frames)
    }
}
