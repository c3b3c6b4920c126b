//! Kokoro-82M (hexgrad), ported from the `kokoro` Python package 0.9.4:
//! ALBERT (PL-BERT) → text encoder → prosody predictor (durations, F0, energy) →
//! iSTFTNet decoder, 24 kHz. One file per reference file, same stem.

pub mod config;
pub mod engine;
pub mod model;

pub use config::KokoroConfig;
pub mod albert;
pub mod istftnet;
pub mod modules;
pub mod timing;
pub mod vocab;
pub mod voices;
pub mod weights;
