//! Parity of Kokoro's iSTFTNet decoder with the PyTorch reference, stage by stage,
//! on the committed tiny fixture (`tools/kokoro_fixtures.py`; key table in
//! `tools/README.md`).

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use voxpool::engine::kokoro::istftnet::AdainResBlk1d;
use voxpool::engine::kokoro::KokoroConfig;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kokoro");
/// Largest absolute difference accepted on hidden states.
const TOL: f32 = 1e-4;

struct Fixture {
    cfg: KokoroConfig,
    weights: VarBuilder<'static>,
    tensors: HashMap<String, Tensor>,
}

impl Fixture {
    fn load() -> Result<Self> {
        let text = std::fs::read_to_string(format!("{FIXTURES}/tiny_config.json"))?;
        let cfg = KokoroConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
        let tensors =
            candle_core::safetensors::load(format!("{FIXTURES}/tiny.safetensors"), &Device::Cpu)?;
        let weights: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("weights.")
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        let weights = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        Ok(Self {
            cfg,
            weights,
            tensors,
        })
    }

    fn get(&self, case: usize, key: &str) -> Result<Tensor> {
        let name = format!("case{case}.{key}");
        self.tensors
            .get(&name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("fixture has no {name}")))
    }

    /// The decoder's style: `ref_s[:, :style_dim]`.
    fn style(&self, case: usize) -> Result<Tensor> {
        self.get(case, "input.ref_s")?
            .narrow(1, 0, self.cfg.style_dim)
    }
}

/// Asserts `got` has `want`'s shape and lies within `TOL` of it; returns the largest
/// difference.
fn assert_close(stage: &str, case: usize, got: &Tensor, want: &Tensor) -> Result<f32> {
    assert_eq!(got.dims(), want.dims(), "case {case} {stage}: shape");
    let diff = (got - want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    println!("case {case} {stage}: max abs diff {diff:e}");
    assert!(
        diff <= TOL,
        "case {case} {stage}: max abs diff {diff:e} > {TOL:e}"
    );
    Ok(diff)
}

#[test]
fn encode_block_matches_reference() -> Result<()> {
    let fx = Fixture::load()?;
    let cfg = &fx.cfg;
    let encode = AdainResBlk1d::load(
        fx.weights.pp("decoder").pp("encode"),
        cfg.hidden_dim + 2,
        cfg.decoder_hidden_dim,
        cfg.style_dim,
        false,
    )?;
    for case in 0..2 {
        let x = Tensor::cat(
            &[
                fx.get(case, "out.asr")?,
                fx.get(case, "dec.F0_conv")?,
                fx.get(case, "dec.N_conv")?,
            ],
            1,
        )?;
        let got = encode.forward(&x, &fx.style(case)?)?;
        assert_close("encode", case, &got, &fx.get(case, "dec.encode")?)?;
    }
    Ok(())
}

/// The `decode` blocks (the last one upsampling), fed the reference's own encode
/// output, `asr_res`, F0 and N.
#[test]
fn decode_blocks_match_reference() -> Result<()> {
    let fx = Fixture::load()?;
    let cfg = &fx.cfg;
    let (d, a) = (cfg.decoder_hidden_dim, cfg.asr_res_dim);
    let c0 = cfg.istftnet.upsample_initial_channel;
    let blocks = (0..4)
        .map(|i| {
            let out = if i == 3 { c0 } else { d };
            AdainResBlk1d::load(
                fx.weights.pp("decoder").pp("decode").pp(i),
                d + 2 + a,
                out,
                cfg.style_dim,
                i == 3,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    for case in 0..2 {
        let s = fx.style(case)?;
        let extra = [
            fx.get(case, "dec.asr_res")?,
            fx.get(case, "dec.F0_conv")?,
            fx.get(case, "dec.N_conv")?,
        ];
        let mut x = fx.get(case, "dec.encode")?;
        for block in &blocks {
            let mut parts = vec![x];
            parts.extend(extra.iter().cloned());
            x = block.forward(&Tensor::cat(&parts, 1)?, &s)?;
        }
        assert_close("decode_out", case, &x, &fx.get(case, "dec.decode_out")?)?;
    }
    Ok(())
}
