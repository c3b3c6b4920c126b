//! Finding and reading Kokoro's files: `config.json`, `kokoro-v1_0.pth` (a zip
//! pickle of five state dicts with `module.` prefixes) or a safetensors copy of
//! it, and `voices/`. The `.pth` is converted once to safetensors in a cache
//! folder, so later loads memory-map it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::pickle::PthTensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::KokoroConfig;
use crate::engine::files::find_model_file;
use crate::engine::nn::SafetensorsFile;
use crate::engine::EngineError;

pub const HUB_REPO: &str = "hexgrad/Kokoro-82M";
pub const CHECKPOINT: &str = "kokoro-v1_0.pth";
pub const CONFIG: &str = "config.json";
/// The state dicts of the checkpoint, in file order.
pub const GROUPS: [&str; 5] = [
    "bert",
    "bert_encoder",
    "predictor",
    "text_encoder",
    "decoder",
];

/// Where one Kokoro checkpoint lives.
#[derive(Debug, Clone)]
pub struct KokoroFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
    pub voices: PathBuf,
}

fn missing() -> EngineError {
    EngineError::FilesMissing {
        model: "kokoro".into(),
    }
}

fn bad_file(path: &Path, reason: impl std::fmt::Display) -> EngineError {
    EngineError::BadFile {
        model: "kokoro".into(),
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl KokoroFiles {
    /// Find the files in `models_dir` (Hugging Face cache layout of
    /// `hexgrad/Kokoro-82M`, or `<models_dir>/kokoro/`).
    pub fn locate(models_dir: &Path) -> Result<Self, EngineError> {
        let weights = find_model_file(models_dir, HUB_REPO, "kokoro", CHECKPOINT)
            .or_else(|| find_model_file(models_dir, HUB_REPO, "kokoro", "kokoro-v1_0.safetensors"))
            .ok_or_else(missing)?;
        let dir = weights.parent().ok_or_else(missing)?.to_path_buf();
        let config = dir.join(CONFIG);
        if !config.is_file() {
            return Err(missing());
        }
        Ok(Self {
            config,
            weights,
            voices: dir.join("voices"),
        })
    }

    pub fn read_config(&self) -> Result<KokoroConfig, EngineError> {
        let text = std::fs::read_to_string(&self.config).map_err(|e| bad_file(&self.config, e))?;
        KokoroConfig::from_json(&text).map_err(|e| bad_file(&self.config, e))
    }

    /// Weights as a `VarBuilder`: a safetensors file read tensor by tensor, or a
    /// `.pth` converted once into `cache_dir` and read from there.
    pub fn var_builder(
        &self,
        cache_dir: &Path,
        device: &Device,
    ) -> Result<VarBuilder<'static>, EngineError> {
        Ok(self
            .weights_file(cache_dir)?
            .into_var_builder(DType::F32, device))
    }

    /// The safetensors file [`Self::var_builder`] reads (for its count of the bytes
    /// handed out).
    pub fn weights_file(&self, cache_dir: &Path) -> Result<SafetensorsFile, EngineError> {
        let safetensors = if self.weights.extension().and_then(|e| e.to_str()) == Some("pth") {
            converted_copy(&self.weights, cache_dir)?
        } else {
            self.weights.clone()
        };
        SafetensorsFile::open(&safetensors).map_err(|e| bad_file(&safetensors, e))
    }
}

/// Read every tensor of a Kokoro `.pth` as `"<group>.<key>"`, `module.` removed.
pub fn read_pth(path: &Path) -> Result<HashMap<String, Tensor>, EngineError> {
    let mut out = HashMap::new();
    for group in GROUPS {
        let tensors = PthTensors::new(path, Some(group)).map_err(|e| bad_file(path, e))?;
        let mut names: Vec<&String> = tensors.tensor_infos().keys().collect();
        names.sort();
        if names.is_empty() {
            return Err(bad_file(path, format!("no tensors under '{group}'")));
        }
        for name in names {
            let tensor = tensors
                .get(name)
                .map_err(|e| bad_file(path, e))?
                .ok_or_else(|| bad_file(path, format!("tensor {name} vanished")))?;
            let key = name.strip_prefix("module.").unwrap_or(name);
            out.insert(
                format!("{group}.{key}"),
                tensor.to_dtype(DType::F32).map_err(|e| bad_file(path, e))?,
            );
        }
    }
    Ok(out)
}

/// The safetensors copy of `pth` in `cache_dir`, written on first use. Named by
/// the source's size and modification time, so a replaced checkpoint converts again.
fn converted_copy(pth: &Path, cache_dir: &Path) -> Result<PathBuf, EngineError> {
    let meta = std::fs::metadata(pth).map_err(|e| bad_file(pth, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let target = cache_dir.join(format!("kokoro-v1_0-{}-{mtime}.safetensors", meta.len()));
    if target.is_file() {
        return Ok(target);
    }
    let tensors = read_pth(pth)?;
    std::fs::create_dir_all(cache_dir).map_err(|e| bad_file(cache_dir, e))?;
    let partial = target.with_extension("partial");
    candle_core::safetensors::save(&tensors, &partial).map_err(|e| bad_file(&partial, e))?;
    std::fs::rename(&partial, &target).map_err(|e| bad_file(&target, e))?;
    tracing::info!(path = %target.display(), "converted the Kokoro checkpoint to safetensors");
    Ok(target)
}
