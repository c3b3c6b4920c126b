//! The conformer encoder of the flow (`models/s3gen/transformer/`, from CosyVoice /
//! WeNet): linear input layer with ESPnet relative positions, conformer layers with
//! relative-position self-attention, a lookahead convolution and a ×2 upsampling.
//!
//! Every sequence is one unpadded utterance (the reference runs batch 1 at full
//! length, and its padding and chunk masks are then all ones), so the masks are left
//! out.

pub mod attention;
pub mod embedding;
pub mod encoder_layer;
pub mod positionwise_feed_forward;
pub mod subsampling;
pub mod upsample_encoder;

pub use upsample_encoder::UpsampleConformerEncoder;
