//! Comparing Rust outputs with the PyTorch reference's parity fixtures.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Result, Tensor};
use serde_json::Value;

/// The `__metadata__` of a safetensors file (the fixture scripts keep configs there).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path)?;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(candle_core::Error::wrap)?;
    Ok(header["__metadata__"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default())
}

/// Largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(got: &Tensor, want: &Tensor) -> Result<f32> {
    (got - want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()
}

/// Same shape and every value within `tol` of the reference; prints and returns the
/// largest difference.
pub fn assert_within(stage: &str, got: &Tensor, want: &Tensor, tol: f32) -> Result<f32> {
    assert_eq!(got.dims(), want.dims(), "{stage}: shape");
    let diff = max_abs_diff(got, want)?;
    println!("{stage}: max abs diff {diff:e}");
    assert!(
        diff <= tol,
        "{stage}: largest abs difference {diff:e} > {tol:e}"
    );
    Ok(diff)
}
