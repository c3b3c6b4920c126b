//! Chatterbox Turbo (Resemble AI): T3 (GPT-2 medium over text and speech tokens), then
//! S3Gen (meanflow conformer and flow decoder, tokens → mel), then the HiFT vocoder
//! (mel → 24 kHz audio). Ported from the `chatterbox-tts` 0.1.7 package.

pub mod campplus;
pub mod cloner;
pub mod conds;
pub mod config;
pub mod features;
pub mod s3gen;
pub mod s3tokenizer;
pub mod stream;
pub mod t3;
pub mod text;
pub mod tts_turbo;
pub mod voice_encoder;
