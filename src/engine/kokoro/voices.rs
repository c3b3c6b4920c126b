//! Kokoro voice packs: one `[510, 1, 256]` tensor per voice (`voices/<name>.pt`),
//! a style vector per phoneme count (row = phonemes − 1), and weighted blends
//! such as `af_bella(2)+af_sky(1)`.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, IndexOp, Tensor};

use crate::engine::EngineError;

/// Rows in a voice pack: one per possible phoneme count.
pub const PACK_ROWS: usize = 510;

/// One voice's style vectors, `[510, style_width]`.
#[derive(Debug, Clone)]
pub struct VoicePack {
    pub styles: Tensor,
}

impl VoicePack {
    /// The style vector `[1, width]` for an utterance of `phonemes` phonemes.
    pub fn style_for(&self, phonemes: usize) -> candle_core::Result<Tensor> {
        let rows = self.styles.dim(0)?;
        let row = phonemes.saturating_sub(1).min(rows.saturating_sub(1));
        self.styles.i(row..row + 1)
    }
}

/// A voice request: names with weights, e.g. `af_bella(2)+af_sky(1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceBlend {
    pub parts: Vec<(String, f32)>,
}

impl VoiceBlend {
    /// Parse `name`, `a+b` (equal weights) or `a(2)+b(1)`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        for raw in spec.split('+') {
            let raw = raw.trim();
            let (name, weight) = match raw.split_once('(') {
                Some((name, rest)) => {
                    let w = rest
                        .strip_suffix(')')
                        .and_then(|w| w.trim().parse::<f32>().ok())
                        .filter(|w| w.is_finite() && *w > 0.0)
                        .ok_or_else(|| {
                            format!("bad weight in voice '{raw}'; use e.g. af_bella(2)")
                        })?;
                    (name.trim(), w)
                }
                None => (raw, 1.0),
            };
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(format!("'{name}' is not a voice name"));
            }
            parts.push((name.to_string(), weight));
        }
        Ok(Self { parts })
    }
}

/// The voices of one checkpoint folder, loaded on first use and kept.
pub struct VoiceLibrary {
    dir: PathBuf,
    device: Device,
    loaded: Mutex<HashMap<String, Arc<VoicePack>>>,
}

impl VoiceLibrary {
    pub fn new(dir: PathBuf, device: Device) -> Self {
        Self {
            dir,
            device,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// Voice names available on disk, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let p = e.path();
                        (p.extension().and_then(|x| x.to_str()) == Some("pt"))
                            .then(|| p.file_stem()?.to_str().map(String::from))
                            .flatten()
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Bytes the library holds once every voice on disk is loaded: a
    /// `[PACK_ROWS, width]` f32 pack each (`width` is the style vector's, twice the
    /// model's `style_dim`).
    pub fn bytes_when_all_loaded(&self, width: usize) -> u64 {
        let pack = PACK_ROWS * width * DType::F32.size_in_bytes();
        (self.names().len() * pack) as u64
    }

    fn pack(&self, name: &str) -> Result<Arc<VoicePack>, EngineError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = loaded.get(name) {
            return Ok(Arc::clone(p));
        }
        let path = self.dir.join(format!("{name}.pt"));
        if !path.is_file() {
            return Err(EngineError::UnknownVoice {
                model: "kokoro".into(),
                voice: name.to_string(),
            });
        }
        let styles = read_pt_tensor(&path)
            .and_then(|t| {
                let rows = t.dim(0)?;
                let width = t.elem_count() / rows.max(1);
                t.reshape((rows, width))?
                    .to_dtype(DType::F32)?
                    .to_device(&self.device)
            })
            .map_err(|e| EngineError::BadFile {
                model: "kokoro".into(),
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let pack = Arc::new(VoicePack { styles });
        loaded.insert(name.to_string(), Arc::clone(&pack));
        Ok(pack)
    }

    /// The style vector `[1, width]` of a voice or blend for `phonemes` phonemes.
    pub fn style(&self, voice: &str, phonemes: usize) -> Result<Tensor, EngineError> {
        let blend = VoiceBlend::parse(voice).map_err(EngineError::InvalidInput)?;
        let total: f32 = blend.parts.iter().map(|(_, w)| w).sum();
        let mut acc: Option<Tensor> = None;
        for (name, weight) in &blend.parts {
            let s = self
                .pack(name)?
                .style_for(phonemes)
                .and_then(|s| s.affine(f64::from(weight / total), 0.0))
                .map_err(EngineError::from)?;
            acc = Some(match acc {
                None => s,
                Some(a) => (a + s).map_err(EngineError::from)?,
            });
        }
        acc.ok_or_else(|| EngineError::InvalidInput("no voice given".into()))
    }
}

/// Read a file written by `torch.save(tensor)`: a zip holding one pickled tensor.
pub fn read_pt_tensor(path: &Path) -> candle_core::Result<Tensor> {
    let file = BufReader::new(std::fs::File::open(path)?);
    let mut zip = zip::ZipArchive::new(file).map_err(candle_core::Error::wrap)?;
    let pkl = zip
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with("data.pkl"))
        .map(|n| n.to_string())
        .ok_or_else(|| candle_core::Error::Msg("no data.pkl in the archive".into()))?;
    let dir = PathBuf::from(pkl.trim_end_matches(".pkl"));
    let obj = {
        let mut reader = BufReader::new(zip.by_name(&pkl).map_err(candle_core::Error::wrap)?);
        let mut stack = Stack::empty();
        stack.read_loop(&mut reader)?;
        stack.finalize()?
    };
    let info = obj
        .into_tensor_info(Object::Unicode("tensor".into()), &dir)?
        .ok_or_else(|| candle_core::Error::Msg("the file does not hold one tensor".into()))?;
    if !info.layout.is_contiguous() {
        candle_core::bail!("non-contiguous tensor in {}", path.display());
    }
    let mut reader = zip.by_name(&info.path).map_err(candle_core::Error::wrap)?;
    let size = info.dtype.size_in_bytes();
    let skip = info.layout.start_offset() * size;
    std::io::copy(&mut reader.by_ref().take(skip as u64), &mut std::io::sink())?;
    let mut bytes = vec![0u8; info.layout.shape().elem_count() * size];
    reader.read_exact(&mut bytes)?;
    Tensor::from_raw_buffer(&bytes, info.dtype, info.layout.dims(), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blends_parse() {
        assert_eq!(
            VoiceBlend::parse("af_bella(2)+af_sky(1)").unwrap().parts,
            vec![("af_bella".into(), 2.0), ("af_sky".into(), 1.0)]
        );
        assert_eq!(
            VoiceBlend::parse("af_bella + af_sky").unwrap().parts,
            vec![("af_bella".into(), 1.0), ("af_sky".into(), 1.0)]
        );
        assert!(VoiceBlend::parse("af_bella(0)").is_err());
        assert!(VoiceBlend::parse("af_bella(x)").is_err());
        assert!(VoiceBlend::parse("../etc/passwd").is_err());
        assert!(VoiceBlend::parse("").is_err());
    }

    #[test]
    fn style_row_follows_the_phoneme_count() -> candle_core::Result<()> {
        let styles = Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((3, 2))?;
        let pack = VoicePack { styles };
        assert_eq!(pack.style_for(1)?.to_vec2::<f32>()?, vec![vec![0.0, 1.0]]);
        assert_eq!(pack.style_for(3)?.to_vec2::<f32>()?, vec![vec![4.0, 5.0]]);
        assert_eq!(pack.style_for(99)?.to_vec2::<f32>()?, vec![vec![4.0, 5.0]]);
        assert_eq!(pack.style_for(0)?.to_vec2::<f32>()?, vec![vec![0.0, 1.0]]);
        Ok(())
    }

    #[test]
    fn blends_are_weighted_means() -> candle_core::Result<()> {
        let dir = tempfile::tempdir()?;
        let lib = VoiceLibrary::new(dir.path().to_path_buf(), Device::Cpu);
        let a = Arc::new(VoicePack {
            styles: Tensor::new(&[[3f32, 0.0]], &Device::Cpu)?,
        });
        let b = Arc::new(VoicePack {
            styles: Tensor::new(&[[0f32, 3.0]], &Device::Cpu)?,
        });
        {
            let mut l = lib.loaded.lock().unwrap();
            l.insert("a".into(), a);
            l.insert("b".into(), b);
        }
        let s = lib.style("a(2)+b(1)", 5).unwrap();
        assert_eq!(s.to_vec2::<f32>()?, vec![vec![2.0, 1.0]]);
        assert!(matches!(
            lib.style("missing", 1),
            Err(EngineError::UnknownVoice { .. })
        ));
        Ok(())
    }
}
