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
    /// Bytes of its tensors.
    pub fn bytes(&self) -> u64 {
        let t3 = [
            Some(&self.t3.speaker_emb),
            self.t3.cond_prompt_speech_tokens.as_ref(),
        ];
        let gen = [
            Some(&self.gen.prompt_token),
            Some(&self.gen.prompt_feat),
            Some(&self.gen.embedding),
        ];
        t3.into_iter()
            .chain(gen)
            .flatten()
            .map(|t| (t.elem_count() * t.dtype().size_in_bytes()) as u64)
            .sum()
    }

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

/// The tensor names of a serialised voice; `t3.cond_prompt_speech_tokens` may be absent.
const SPEAKER_EMB: &str = "t3.speaker_emb";
const PROMPT_SPEECH_TOKENS: &str = "t3.cond_prompt_speech_tokens";
const PROMPT_TOKEN: &str = "gen.prompt_token";
const PROMPT_FEAT: &str = "gen.prompt_feat";
const EMBEDDING: &str = "gen.embedding";

impl Conditionals {
    /// The voice as a safetensors file in memory (f32 features, u32 token ids), what
    /// the voices table stores.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CondsError> {
        let cpu = |t: &Tensor, dtype: DType| -> Result<Tensor, CondsError> {
            Ok(t.to_device(&Device::Cpu)?.to_dtype(dtype)?.contiguous()?)
        };
        let mut tensors = vec![
            (SPEAKER_EMB, cpu(&self.t3.speaker_emb, DType::F32)?),
            (PROMPT_TOKEN, cpu(&self.gen.prompt_token, DType::U32)?),
            (PROMPT_FEAT, cpu(&self.gen.prompt_feat, DType::F32)?),
            (EMBEDDING, cpu(&self.gen.embedding, DType::F32)?),
        ];
        if let Some(t) = &self.t3.cond_prompt_speech_tokens {
            tensors.push((PROMPT_SPEECH_TOKENS, cpu(t, DType::U32)?));
        }
        let metadata = std::collections::HashMap::from([(
            "format".to_string(),
            "voxpool-chatterbox-voice-1".to_string(),
        )]);
        safetensors::serialize(tensors.iter().map(|(k, t)| (*k, t)), Some(metadata))
            .map_err(|e| CondsError::Read(candle_core::Error::Msg(e.to_string())))
    }

    /// Reads what [`Conditionals::to_bytes`] wrote, onto `device`.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self, CondsError> {
        let mut tensors = candle_core::safetensors::load_buffer(bytes, device)?;
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| CondsError::Missing(name.to_string()))
        };
        let t3 = T3Cond {
            speaker_emb: take(SPEAKER_EMB)?,
            cond_prompt_speech_tokens: take(PROMPT_SPEECH_TOKENS).ok(),
        };
        let gen = PromptRef {
            prompt_token: take(PROMPT_TOKEN)?,
            prompt_feat: take(PROMPT_FEAT)?,
            embedding: take(EMBEDDING)?,
        };
        Ok(Self { t3, gen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let d = Device::Cpu;
        let voice = Conditionals {
            t3: T3Cond {
                speaker_emb: Tensor::new(&[[0.25f32, -1.5, 3.0]], &d).unwrap(),
                cond_prompt_speech_tokens: Some(Tensor::new(&[[7u32, 6560, 0]], &d).unwrap()),
            },
            gen: PromptRef {
                prompt_token: Tensor::new(&[[1u32, 2]], &d).unwrap(),
                prompt_feat: Tensor::arange(0f32, 8.0, &d)
                    .unwrap()
                    .reshape((1, 2, 4))
                    .unwrap(),
                embedding: Tensor::new(&[[0.5f32, 0.125]], &d).unwrap(),
            },
        };
        let back = Conditionals::from_bytes(&voice.to_bytes().unwrap(), &d).unwrap();
        let v = |t: &Tensor| {
            t.flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        assert_eq!(v(&back.t3.speaker_emb), v(&voice.t3.speaker_emb));
        assert_eq!(back.gen.prompt_feat.dims(), &[1, 2, 4]);
        assert_eq!(v(&back.gen.prompt_feat), v(&voice.gen.prompt_feat));
        assert_eq!(back.gen.prompt_token.dtype(), DType::U32);
        assert_eq!(v(&back.gen.prompt_token), vec![1.0, 2.0]);
        assert_eq!(v(&back.gen.embedding), vec![0.5, 0.125]);
        let prompt = back.t3.cond_prompt_speech_tokens.unwrap();
        assert_eq!(v(&prompt), vec![7.0, 6560.0, 0.0]);
        assert!(Conditionals::from_bytes(b"not a voice", &d).is_err());
    }
}
