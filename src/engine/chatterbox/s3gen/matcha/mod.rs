//! The Matcha-TTS pieces the flow decoder reuses (`models/s3gen/matcha/`): the
//! diffusion-time embedding and the diffusers-style transformer block.

pub mod decoder;
pub mod transformer;
