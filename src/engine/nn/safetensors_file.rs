//! Loading a `.safetensors` checkpoint by reading each tensor from the file as it is
//! asked for.
//!
//! Candle's memory-mapped loader copies every tensor out of the mapping, and the
//! mapping's pages count as the process's resident memory until the `VarBuilder` is
//! dropped: loading Kokoro's 330 MB peaked at twice that. Reading each tensor with a
//! positioned read into its own buffer leaves the file in the page cache (shared,
//! reclaimable, not part of the process) and the peak at the weights plus one tensor.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// A `VarBuilder` over the `.safetensors` file at `path` (see [`SafetensorsFile`]),
/// tensors converted to `dtype` on `device`.
pub fn var_builder(path: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    Ok(SafetensorsFile::open(path)?.into_var_builder(dtype, device))
}

/// Bytes of the tensors a [`SafetensorsFile`] has handed out through its `VarBuilder`,
/// in the dtype asked for: what a model built from it holds, less what it drops or
/// converts after.
#[derive(Debug, Clone, Default)]
pub struct LoadedBytes(Arc<AtomicU64>);

impl LoadedBytes {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The largest header the safetensors format allows.
const MAX_HEADER: u64 = 100 << 20;

/// A tensor's place in the file.
#[derive(Debug, Clone)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    /// Byte offset from the start of the file.
    start: u64,
    len: usize,
}

/// An open `.safetensors` file and its header.
#[derive(Debug)]
pub struct SafetensorsFile {
    file: File,
    path: PathBuf,
    entries: HashMap<String, Entry>,
    loaded: LoadedBytes,
}

impl SafetensorsFile {
    /// Opens `path` and reads its header; the tensors are read when asked for.
    pub fn open(path: &Path) -> Result<Self> {
        let fail = |msg: String| candle_core::Error::Msg(format!("{}: {msg}", path.display()));
        let file = File::open(path).map_err(|e| fail(e.to_string()))?;
        let size = file.metadata().map_err(|e| fail(e.to_string()))?.len();
        let mut n = [0u8; 8];
        file.read_exact_at(&mut n, 0)
            .map_err(|_| fail("too short for a safetensors header".into()))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || 8 + n > size {
            return Err(fail(format!("header of {n} bytes in a {size}-byte file")));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact_at(&mut header, 8)
            .map_err(|e| fail(e.to_string()))?;
        let header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| fail(format!("header: {e}")))?;
        let data_start = 8 + n;
        let mut entries = HashMap::with_capacity(header.len());
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let entry =
                parse_entry(&info, data_start, size).map_err(|e| fail(format!("{name}: {e}")))?;
            entries.insert(name, entry);
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            entries,
            loaded: LoadedBytes::default(),
        })
    }

    /// A `VarBuilder` over this file with tensors converted to `dtype` on `device`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    /// The count of bytes handed out by this file's `VarBuilder`, shared with it.
    pub fn loaded(&self) -> LoadedBytes {
        self.loaded.clone()
    }

    /// Bytes the tensors whose names start with `prefix` take as `dtype`.
    pub fn bytes_under(&self, prefix: &str, dtype: DType) -> u64 {
        self.entries
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, e)| (e.shape.iter().product::<usize>() * dtype.size_in_bytes()) as u64)
            .sum()
    }

    /// The tensor `name` as stored, read from the file now.
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        let Some(e) = self.entries.get(name) else {
            candle_core::bail!("{}: no tensor named {name}", self.path.display());
        };
        let read = |bytes: &mut [u8]| {
            self.file.read_exact_at(bytes, e.start).map_err(|err| {
                candle_core::Error::Msg(format!("{}: {name}: {err}", self.path.display()))
            })
        };
        let tensor = if e.dtype == DType::F32 && cfg!(target_endian = "little") {
            // Straight into the tensor's own buffer (most checkpoints are f32).
            let mut values = vec![0f32; e.len / 4];
            // SAFETY: the bytes of initialised f32 values, every pattern of which is
            // a valid f32; the file stores them little-endian, as this machine does.
            read(unsafe {
                std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), e.len)
            })?;
            Tensor::from_vec(values, e.shape.as_slice(), &Device::Cpu)?
        } else {
            let mut bytes = vec![0u8; e.len];
            read(&mut bytes)?;
            Tensor::from_raw_buffer(&bytes, e.dtype, &e.shape, &Device::Cpu)?
        };
        tensor.to_device(device)
    }
}

/// One header entry: `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}`,
/// offsets from `data_start`, checked against the file's `size` and the shape.
fn parse_entry(
    info: &serde_json::Value,
    data_start: u64,
    size: u64,
) -> std::result::Result<Entry, String> {
    let dtype = match info["dtype"].as_str() {
        Some("F32") => DType::F32,
        Some("F16") => DType::F16,
        Some("BF16") => DType::BF16,
        Some("F64") => DType::F64,
        Some("I64") => DType::I64,
        Some("U32") => DType::U32,
        Some("U8") => DType::U8,
        other => return Err(format!("unsupported dtype {other:?}")),
    };
    let shape = info["shape"]
        .as_array()
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or("shape is not a list of sizes")?;
    let offsets = info["data_offsets"]
        .as_array()
        .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)))
        .ok_or("data_offsets is not [begin, end]")?;
    let (begin, end) = offsets;
    let want = shape
        .iter()
        .try_fold(dtype.size_in_bytes() as u64, |n, &d| {
            n.checked_mul(d as u64)
        })
        .ok_or("shape too large")?;
    if end < begin || end - begin != want || data_start + end > size {
        return Err(format!(
            "bytes {begin}..{end} do not hold {shape:?} {dtype:?} inside the file"
        ));
    }
    Ok(Entry {
        dtype,
        shape,
        start: data_start + begin,
        len: want as usize,
    })
}

impl SimpleBackend for SafetensorsFile {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, dev)?;
        if tensor.shape() != &s {
            Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: tensor.shape().clone(),
            }
            .bt())?
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        let tensor = self.load(name, dev)?.to_dtype(dtype)?;
        let bytes = tensor.elem_count() * tensor.dtype().size_in_bytes();
        self.loaded.0.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(tensor)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_candle_reads_and_refuses_a_bad_file() -> Result<()> {
        let dev = Device::Cpu;
        let dir = tempfile::tempdir().map_err(candle_core::Error::wrap)?;
        let path = dir.path().join("w.safetensors");
        let mut tensors = HashMap::new();
        tensors.insert(
            "a.weight".to_string(),
            Tensor::randn(0f32, 1., (3, 5, 7), &dev)?,
        );
        tensors.insert("b".to_string(), Tensor::new(&[1u32, 2, 3], &dev)?);
        tensors.insert(
            "half".to_string(),
            Tensor::randn(0f32, 1., (4, 4), &dev)?.to_dtype(DType::F16)?,
        );
        tensors.insert("scalar".to_string(), Tensor::new(2.5f32, &dev)?);
        candle_core::safetensors::save(&tensors, &path)?;

        let file = SafetensorsFile::open(&path)?;
        for (name, want) in &tensors {
            let got = file.load(name, &dev)?;
            assert_eq!(got.dtype(), want.dtype(), "{name}");
            assert_eq!(got.dims(), want.dims(), "{name}");
            let same = got.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?
                == want.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            assert!(same, "{name}");
        }
        assert_eq!(file.bytes_under("a.", DType::F32), 3 * 5 * 7 * 4);
        assert_eq!(file.bytes_under("", DType::F32), (105 + 3 + 16 + 1) * 4);
        let count = file.loaded();
        let vb = file.into_var_builder(DType::F32, &dev);
        assert_eq!(count.get(), 0);
        vb.get(3, "b")?;
        assert_eq!(count.get(), 12);
        vb.get((4, 4), "half")?;
        assert_eq!(count.get(), 12 + 64, "counted in the dtype asked for");
        assert!(vb.contains_tensor("a.weight") && !vb.contains_tensor("missing"));
        assert_eq!(vb.get((3, 5, 7), "a.weight")?.dtype(), DType::F32);
        assert_eq!(vb.get((4, 4), "half")?.dtype(), DType::F32);
        assert!(vb.get((3, 5, 8), "a.weight").is_err());
        assert!(vb.get(3, "missing").is_err());

        // Cut short, a header past the end, a header that is not JSON: errors.
        let bytes = std::fs::read(&path).map_err(candle_core::Error::wrap)?;
        let bad = dir.path().join("bad.safetensors");
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) as usize;
        let mut not_json = bytes.clone();
        not_json[8] = b'!';
        for broken in [
            bytes[..bytes.len() - 4].to_vec(),
            bytes[..8 + n / 2].to_vec(),
            bytes[..5].to_vec(),
            not_json,
        ] {
            std::fs::write(&bad, &broken).map_err(candle_core::Error::wrap)?;
            assert!(SafetensorsFile::open(&bad).is_err());
        }
        Ok(())
    }
}
