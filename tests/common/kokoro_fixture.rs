//! The committed tiny Kokoro fixture (`tools/kokoro_fixtures.py`; key table in
//! `tools/README.md`) and the comparisons the parity tests share.
#![allow(dead_code)]

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use voxpool::engine::kokoro::KokoroConfig;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kokoro");
/// Largest absolute difference accepted on hidden states.
pub const TOL: f32 = 1e-4;

pub struct Fixture {
    pub cfg: KokoroConfig,
    /// The reference's weights under the checkpoint's key names.
    pub weights: VarBuilder<'static>,
    /// Everything in the file: `weights.*`, `case0.*`, `case1.*`.
    pub tensors: HashMap<String, Tensor>,
}

/// The device the parity tests run on: `VOXPOOL_TEST_DEVICE=cuda` (a build with
/// `--features cuda`) repeats them on the GPU; CPU otherwise.
pub fn test_device() -> Device {
    match std::env::var("VOXPOOL_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0).expect("VOXPOOL_TEST_DEVICE=cuda but no CUDA device"),
        _ => Device::Cpu,
    }
}

impl Fixture {
    pub fn load() -> Result<Self> {
        let device = test_device();
        let text = std::fs::read_to_string(format!("{FIXTURES}/tiny_config.json"))?;
        let cfg = KokoroConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
        let tensors =
            candle_core::safetensors::load(format!("{FIXTURES}/tiny.safetensors"), &device)?;
        let weights: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("weights.")
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        let weights = VarBuilder::from_tensors(weights, DType::F32, &device);
        Ok(Self {
            cfg,
            weights,
            tensors,
        })
    }

    /// The device the fixture's tensors live on.
    pub fn device(&self) -> Device {
        self.weights.device().clone()
    }

    /// `case<case>.<key>`.
    pub fn get(&self, case: usize, key: &str) -> Result<Tensor> {
        let name = format!("case{case}.{key}");
        self.tensors
            .get(&name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("fixture has no {name}")))
    }
}

/// Asserts `got` has `want`'s shape and lies within `tol` of it; prints and returns
/// the largest difference.
pub fn assert_within(
    stage: &str,
    case: usize,
    got: &Tensor,
    want: &Tensor,
    tol: f32,
) -> Result<f32> {
    assert_eq!(got.dims(), want.dims(), "case {case} {stage}: shape");
    let diff = (got - want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    println!("case {case} {stage}: max abs diff {diff:e}");
    assert!(
        diff <= tol,
        "case {case} {stage}: largest abs difference {diff:e} > {tol:e}"
    );
    Ok(diff)
}

/// [`assert_within`] at [`TOL`].
pub fn assert_close(stage: &str, case: usize, got: &Tensor, want: &Tensor) -> Result<f32> {
    assert_within(stage, case, got, want, TOL)
}
