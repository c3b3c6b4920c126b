//! S3Gen token-to-mel (Chatterbox Turbo's meanflow flow) against the PyTorch
//! reference, stage by stage, on the tiny fixture of
//! `tools/chatterbox_s3gen_fixtures.py` (keys in `tools/README.md`).

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use voxpool::engine::chatterbox::s3gen::{PromptRef, S3GenConfig, S3Token2Mel};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatterbox");
/// Largest accepted difference, absolute, or relative to the largest magnitude of
/// the expected tensor when that exceeds 1.
const TOL: f32 = 1e-4;
const CASES: usize = 2;

struct Fixture {
    model: S3Token2Mel,
    cfg: S3GenConfig,
    io: HashMap<String, Tensor>,
}

impl Fixture {
    fn load() -> Result<Self> {
        let text = std::fs::read_to_string(format!("{FIXTURES}/s3gen_tiny_config.json"))?;
        let cfg = S3GenConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
        let weights = candle_core::safetensors::load(
            format!("{FIXTURES}/s3gen_tiny.safetensors"),
            &Device::Cpu,
        )?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let model = S3Token2Mel::load(vb, &cfg)?;
        let io = candle_core::safetensors::load(
            format!("{FIXTURES}/s3gen_tiny_io.safetensors"),
            &Device::Cpu,
        )?;
        Ok(Self { model, cfg, io })
    }

    fn get(&self, case: usize, key: &str) -> Result<Tensor> {
        let name = format!("case{case}.{key}");
        self.io
            .get(&name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("fixture has no {name}")))
    }

    fn prompt(&self, case: usize) -> Result<PromptRef> {
        Ok(PromptRef {
            prompt_token: self.get(case, "prompt_token")?,
            prompt_feat: self.get(case, "prompt_feat")?,
            embedding: self.get(case, "embedding")?,
        })
    }
}

/// Asserts `got` matches `want` within [`TOL`] (scaled by `want`'s largest
/// magnitude when above 1); returns the scaled difference.
fn assert_close(stage: &str, case: usize, got: &Tensor, want: &Tensor) -> Result<f32> {
    assert_eq!(got.dims(), want.dims(), "case {case} {stage}: shape");
    let diff = (got - want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    let scale = want
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?
        .max(1.0);
    println!("case {case} {stage}: max abs diff {diff:e} (scale {scale:.1})");
    assert!(
        diff <= TOL * scale,
        "case {case} {stage}: largest abs difference {diff:e} > {:e}",
        TOL * scale
    );
    Ok(diff / scale)
}

#[test]
fn whole_flow_matches_reference_stage_by_stage() -> Result<()> {
    let fx = Fixture::load()?;
    for case in 0..CASES {
        let mut seen: Vec<(String, Tensor)> = Vec::new();
        let mel = fx.model.mel_observed(
            &fx.get(case, "speech_tokens")?,
            &fx.prompt(case)?,
            &fx.get(case, "noise")?,
            &mut |name, t| seen.push((name.to_string(), t.clone())),
        )?;
        let mut names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let mut want_names = vec![
            "token_emb",
            "spk_emb",
            "encoder.embed",
            "encoder.pre_lookahead_layer",
            "encoder.up_layer",
            "encoder.up_embed",
            "encoder.out",
            "mu",
            "conds",
            "mel",
        ];
        let encoders: Vec<String> = (0..fx.cfg.encoder.num_blocks)
            .map(|i| format!("encoder.encoders.{i}"))
            .chain((0..fx.cfg.encoder.num_up_blocks).map(|i| format!("encoder.up_encoders.{i}")))
            .chain(
                (0..fx.cfg.cfm.n_timesteps)
                    .flat_map(|k| [format!("step{k}.dxdt"), format!("step{k}.x")]),
            )
            .collect();
        want_names.extend(encoders.iter().map(String::as_str));
        want_names.sort_unstable();
        assert_eq!(names, want_names, "stages observed");
        for (name, got) in &seen {
            assert_close(name, case, got, &fx.get(case, name)?)?;
        }
        assert_close("mel (returned)", case, &mel, &fx.get(case, "mel")?)?;
    }
    Ok(())
}

#[test]
fn encoder_alone_matches_reference() -> Result<()> {
    let fx = Fixture::load()?;
    for case in 0..CASES {
        let h = fx
            .model
            .flow()
            .encoder()
            .forward(&fx.get(case, "token_emb")?)?;
        assert_close(
            "encoder.out from token_emb",
            case,
            &h,
            &fx.get(case, "encoder.out")?,
        )?;
    }
    Ok(())
}

#[test]
fn each_meanflow_step_matches_reference() -> Result<()> {
    let fx = Fixture::load()?;
    let cfm = fx.model.flow().decoder();
    let t_span = cfm.t_span();
    let want_span = fx.get(0, "t_span")?.to_vec1::<f32>()?;
    assert_eq!(t_span, want_span, "t_span");
    for case in 0..CASES {
        let (mu, spks, cond) = (
            fx.get(case, "mu")?,
            fx.get(case, "spk_emb")?,
            fx.get(case, "conds")?,
        );
        for (k, w) in t_span.windows(2).enumerate() {
            let x_in = fx.get(case, &format!("step{k}.x_in"))?;
            let dxdt = cfm
                .estimator()
                .forward(&x_in, &mu, w[0], w[1], &spks, &cond)?;
            assert_close(
                &format!("step{k}.dxdt from step{k}.x_in"),
                case,
                &dxdt,
                &fx.get(case, &format!("step{k}.dxdt"))?,
            )?;
        }
    }
    Ok(())
}

/// Mel SNR of `got` against `want`, in dB.
fn snr_db(got: &Tensor, want: &Tensor) -> Result<f64> {
    let signal = want.sqr()?.sum_all()?.to_scalar::<f32>()?;
    let noise = (got - want)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
    Ok(10.0 * f64::from(signal / noise).log10())
}

/// The mel with the velocity network's products in 8-bit integers
/// (`CHATTERBOX_S3GEN_QUANT=int8`) against the reference's f32 mel: the bound
/// README's Chatterbox Turbo speed documents for random weights.
#[test]
fn int8_flow_stays_near_the_reference() -> Result<()> {
    let mut fx = Fixture::load()?;
    fx.model.quantise_int8();
    for case in 0..CASES {
        let mel = fx.model.mel(
            &fx.get(case, "speech_tokens")?,
            &fx.prompt(case)?,
            &fx.get(case, "noise")?,
        )?;
        let want = fx.get(case, "mel")?;
        let snr = snr_db(&mel, &want)?;
        println!("case {case}: int8 mel {snr:.1} dB SNR against f32");
        assert!(snr >= INT8_MEL_SNR_DB, "case {case}: {snr:.1} dB");
        if voxpool::engine::nn::int8::int8_available() {
            // The products did change: not the f32 mel to within its tolerance.
            assert!(snr < 80.0, "case {case}: the int8 mel equals the f32 one");
        }
    }
    Ok(())
}

/// The least mel SNR of the int8 flow against f32 (random weights).
const INT8_MEL_SNR_DB: f64 = 25.0;

#[test]
fn noise_of_the_wrong_length_is_an_error() -> Result<()> {
    let fx = Fixture::load()?;
    let tokens = fx.get(0, "speech_tokens")?;
    let prompt = fx.prompt(0)?;
    let shape = fx.model.noise_shape(tokens.dim(1)?, &prompt)?;
    assert_eq!(shape, fx.get(0, "noise")?.dims3()?);
    let short = Tensor::zeros((1, 80, shape.2 - 1), DType::F32, &Device::Cpu)?;
    assert!(fx.model.mel(&tokens, &prompt, &short).is_err());
    Ok(())
}

/// Turbo-size random weights (`tools/chatterbox_s3gen_fixtures.py --full DIR`,
/// 250 prompt + 100 speech tokens): the same comparison, plus the time `mel` takes.
/// Run with `S3GEN_FULL_DIR=DIR cargo test --release --test chatterbox_s3gen -- --ignored`.
#[test]
#[ignore = "needs S3GEN_FULL_DIR with the --full fixture (~480 MB)"]
fn full_size_matches_reference() -> Result<()> {
    let Ok(dir) = std::env::var("S3GEN_FULL_DIR") else {
        panic!("set S3GEN_FULL_DIR to the --full output directory");
    };
    let text = std::fs::read_to_string(format!("{dir}/s3gen_full_config.json"))?;
    let cfg = S3GenConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
    assert_eq!(cfg, S3GenConfig::turbo(), "the --full config is Turbo's");
    let files = [format!("{dir}/s3gen_full.safetensors")];
    // SAFETY: the file is not modified while mapped (a test-only scratch file).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu)? };
    let model = S3Token2Mel::load(vb, &cfg)?;
    let io =
        candle_core::safetensors::load(format!("{dir}/s3gen_full_io.safetensors"), &Device::Cpu)?;
    let get = |k: &str| io[&format!("case0.{k}")].clone();
    let prompt = PromptRef {
        prompt_token: get("prompt_token"),
        prompt_feat: get("prompt_feat"),
        embedding: get("embedding"),
    };
    let (tokens, noise) = (get("speech_tokens"), get("noise"));
    voxpool::engine::nn::reuse_freed_heap();
    for run in 0..3 {
        let start = std::time::Instant::now();
        let mut last = start;
        let mel = model.mel_observed(&tokens, &prompt, &noise, &mut |name, _| {
            if matches!(name, "encoder.out" | "step0.x" | "step1.x") {
                println!("  {name}: {:.3} s", last.elapsed().as_secs_f64());
                last = std::time::Instant::now();
            }
        })?;
        println!(
            "run {run}: {} + {} tokens -> {} mel frames in {:.3} s",
            prompt.prompt_token.dim(1)?,
            tokens.dim(1)?,
            mel.dim(2)?,
            start.elapsed().as_secs_f64()
        );
        assert_close("mel (full size)", 0, &mel, &get("mel"))?;
    }
    // The same with the velocity network's products in 8-bit integers.
    let mut model = model;
    model.quantise_int8();
    for run in 0..3 {
        let start = std::time::Instant::now();
        let mel = model.mel(&tokens, &prompt, &noise)?;
        let snr = snr_db(&mel, &get("mel"))?;
        println!(
            "int8 run {run}: {:.3} s, mel {snr:.1} dB SNR against f32",
            start.elapsed().as_secs_f64()
        );
        assert!(snr >= INT8_MEL_SNR_DB, "int8 mel: {snr:.1} dB");
    }
    Ok(())
}
