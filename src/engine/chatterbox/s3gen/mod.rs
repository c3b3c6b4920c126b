//! S3Gen: speech tokens → mel (the flow) → 24 kHz audio (the HiFT vocoder).
//! Mirrors `chatterbox/models/s3gen/` of `chatterbox-tts` 0.1.7.

pub mod f0_predictor;
pub mod hifigan;
