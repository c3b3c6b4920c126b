//! Chatterbox Turbo (Resemble AI), ported from the `chatterbox-tts` 0.1.7 package.

pub mod s3gen;
