//! T3's quantised weights kept on disk, so that only the first load with a weight
//! type pays for quantising (q4k: 11–15 s for the full-size T3, against ~3 s for an
//! f32 load) and later ones read the quantised tensors instead of the f32 ones.
//!
//! One GGUF file per checkpoint and weight type, in the models folder's
//! `voxpool-cache/chatterbox-turbo/` (as Kokoro's converted checkpoint is in
//! `voxpool-cache/kokoro/`): `<checkpoint stem>-<size>-<mtime>-<type>-v<format>.gguf`,
//! so that a replaced checkpoint, another weight type or a change of this format is
//! quantised again. It holds every quantised weight under its checkpoint key
//! (`Conv1D`s transposed, `[out, in]`) and says in its metadata what it was made from.
//! Written to a `.partial` file that is then renamed, so nothing half-written is read;
//! a file that cannot be read or does not hold what the model needs is ignored (and
//! rewritten) by [`super::T3::load_cached`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Result};

use crate::engine::chatterbox::config::T3Quant;

/// Version of the cache's layout, in its name and metadata: a change of what the file
/// holds or how it is named must raise it, so that older files are not read.
pub const FORMAT_VERSION: u32 = 1;

const KEY_FORMAT: &str = "voxpool.t3_quant.format";
const KEY_TYPE: &str = "voxpool.t3_quant.type";
const KEY_SOURCE: &str = "voxpool.t3_quant.source";

/// The cache file of one checkpoint quantised to one weight type.
#[derive(Debug, Clone)]
pub struct QuantCache {
    path: PathBuf,
    /// `<size>-<mtime>` of the checkpoint it was made from.
    source: String,
    quant: T3Quant,
}

impl QuantCache {
    /// The cache of `checkpoint` quantised to `quant`, in `dir` (which need not exist
    /// yet); `None` for f32 (nothing to cache) or when the checkpoint's size and
    /// modification time cannot be read.
    pub fn new(dir: &Path, checkpoint: &Path, quant: T3Quant) -> Option<Self> {
        quant.ggml_dtype()?;
        let meta = std::fs::metadata(checkpoint).ok()?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let stem = checkpoint.file_stem()?.to_str()?;
        let source = format!("{}-{mtime}", meta.len());
        Some(Self {
            path: dir.join(format!("{stem}-{source}-{quant}-v{FORMAT_VERSION}.gguf")),
            source,
            quant,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn quant(&self) -> T3Quant {
        self.quant
    }

    /// The tensors of the cache file, when it holds exactly `expected` (names and
    /// `[out, in]` shapes) in this weight type and says it was made from this
    /// checkpoint; `Ok(None)` when there is no file, an error when there is one that
    /// cannot be read or does not match.
    pub fn read(
        &self,
        expected: &[(String, (usize, usize))],
    ) -> Result<Option<HashMap<String, Arc<QTensor>>>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)?;
        let text = |key: &str| match content.metadata.get(key) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let format = match content.metadata.get(KEY_FORMAT) {
            Some(Value::U32(v)) => Some(*v),
            _ => None,
        };
        let quant = self.quant.to_string();
        if format != Some(FORMAT_VERSION)
            || text(KEY_TYPE) != Some(quant.as_str())
            || text(KEY_SOURCE) != Some(self.source.as_str())
        {
            candle_core::bail!(
                "made from another checkpoint, weight type or format ({:?} {:?} {:?})",
                text(KEY_SOURCE),
                text(KEY_TYPE),
                format
            );
        }
        if content.tensor_infos.len() != expected.len() {
            candle_core::bail!(
                "{} tensors, {} expected",
                content.tensor_infos.len(),
                expected.len()
            );
        }
        let dtype = self.quant.ggml_dtype();
        let mut tensors = HashMap::with_capacity(expected.len());
        for (name, (n_out, n_in)) in expected {
            let Some(info) = content.tensor_infos.get(name) else {
                candle_core::bail!("{name} is missing");
            };
            if info.shape.dims() != [*n_out, *n_in] || Some(info.ggml_dtype) != dtype {
                candle_core::bail!(
                    "{name} is {:?} {:?}, expected [{n_out}, {n_in}] {quant}",
                    info.ggml_dtype,
                    info.shape
                );
            }
            let tensor = content.tensor(&mut reader, name, &Device::Cpu)?;
            tensors.insert(name.clone(), Arc::new(tensor));
        }
        Ok(Some(tensors))
    }

    /// Writes `tensors` (checkpoint keys and quantised weights) as the cache file: into
    /// a `.partial` file of this process, renamed into place when complete; then removes
    /// the files of the same checkpoint name and weight type made from other versions
    /// of the checkpoint or in other formats.
    pub fn write(&self, tensors: &[(String, Arc<QTensor>)]) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let partial = self
            .path
            .with_extension(format!("{}.partial", std::process::id()));
        let written = (|| -> Result<()> {
            let mut out = BufWriter::new(File::create(&partial)?);
            let format = Value::U32(FORMAT_VERSION);
            let quant = Value::String(self.quant.to_string());
            let source = Value::String(self.source.clone());
            let metadata = [
                (KEY_FORMAT, &format),
                (KEY_TYPE, &quant),
                (KEY_SOURCE, &source),
            ];
            let tensors: Vec<(&str, &QTensor)> = tensors
                .iter()
                .map(|(name, t)| (name.as_str(), t.as_ref()))
                .collect();
            gguf_file::write(&mut out, &metadata, &tensors)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&partial, &self.path)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?;
        self.remove_superseded();
        Ok(())
    }

    /// Removes this cache's predecessors: files in its folder of the same checkpoint
    /// name and weight type but another source or format.
    fn remove_superseded(&self) {
        let (Some(dir), Some(name)) = (
            self.path.parent(),
            self.path.file_name().and_then(|n| n.to_str()),
        ) else {
            return;
        };
        let Some(stem) = name.strip_suffix(&format!(
            "-{}-{}-v{FORMAT_VERSION}.gguf",
            self.source, self.quant
        )) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let suffix = format!("-{}-v", self.quant);
        for entry in entries.filter_map(std::result::Result::ok) {
            let other = entry.file_name();
            let Some(other) = other.to_str() else {
                continue;
            };
            let Some(rest) = other.strip_prefix(stem).and_then(|r| r.strip_prefix('-')) else {
                continue;
            };
            // `<size>-<mtime>-<type>-v<format>.gguf`, this type, not this file.
            let ours = rest.split('-').take(2).all(|p| p.parse::<u64>().is_ok())
                && rest.contains(&suffix)
                && rest.ends_with(".gguf");
            if ours && other != name {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::info!(
                        path = %entry.path().display(),
                        "removed an outdated cache of quantised T3 weights"
                    ),
                    Err(e) => tracing::warn!(
                        path = %entry.path().display(),
                        error = %e,
                        "could not remove an outdated cache of quantised T3 weights"
                    ),
                }
            }
        }
    }
}
