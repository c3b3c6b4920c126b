//! A voice's conditioning for Chatterbox Turbo (`tts_turbo.py`, class
//! `Conditionals`): what T3 needs (`T3Cond`) and what S3Gen needs (`gen`), as the
//! built-in voice ships it in `conds.pt`.

use std::path::Path;

use candle_core::pickle::PthTensors;
use candle_core::{DType, Device, Tensor};

use super::s3gen::PromptRef;
use super::t3::cond_enc::T3Cond;

/// One voice, ready for T3 and S3Gen.
#[derive(Debug, Clone)]
pub struct Conditionals {
    pub t3: T3Cond,
    pub gen: PromptRef,
}

/// What can be wrong with a `conds.pt`.
#[derive(Debug, thiserror::Error)]
pub enum CondsError {
    #[error("{0}")]
    Read(#[from] candle_core::Error),
    #[error("no '{0}' tensor")]
    Missing(String),
}

impl Conditionals {
    /// Reads a file written by `Conditionals.save`: `torch.save({"t3": T3Cond.__dict__,
    /// "gen": ref_dict})`. Tensors land on `device` as f32 (token ids as u32); the
    /// fields Turbo does not use (`clap_emb`, `emotion_adv`, …) are ignored.
    pub fn load(path: &Path, device: &Device) -> Result<Self, CondsError> {
        let t3 = PthTensors::new(path, Some("t3"))?;
        let gen = PthTensors::new(path, Some("gen"))?;
        let get = |set: &PthTensors, group: &str, name: &str| -> Result<Tensor, CondsError> {
            set.get(name)?
                .ok_or_else(|| CondsError::Missing(format!("{group}.{name}")))
        };
        let floats = |t: Tensor| -> Result<Tensor, CondsError> {
            Ok(t.to_dtype(DType::F32)?.to_device(device)?)
        };
        let ids = |t: Tensor| -> Result<Tensor, CondsError> {
            // Token ids are stored as int64; candle reads them as i64.
            Ok(t.to_dtype(DType::U32)?.to_device(device)?)
        };
        let prompt_tokens = match t3.get("cond_prompt_speech_tokens")? {
            Some(t) => Some(ids(t)?),
            None => None,
        };
        Ok(Self {
            t3: T3Cond {
                speaker_emb: floats(get(&t3, "t3", "speaker_emb")?)?,
                cond_prompt_speech_tokens: prompt_tokens,
            },
            gen: PromptRef {
                prompt_token: ids(get(&gen, "gen", "prompt_token")?)?,
                prompt_feat: floats(get(&gen, "gen", "prompt_feat")?)?,
                embedding: floats(get(&gen, "gen", "embedding")?)?,
            },
        })
    }
}
