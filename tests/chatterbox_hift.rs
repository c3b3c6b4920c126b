//! The HiFT vocoder of Chatterbox's S3Gen against the PyTorch reference
//! (`tools/chatterbox_hift_fixtures.py`, tiny random weights, the reference's random
//! draws replayed), stage by stage. Each stage is fed the reference's input, so a
//! difference points at one stage; the end-to-end audio then runs on the port's own
//! intermediate results.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use voxpool::engine::chatterbox::s3gen::hifigan::{
    trim_fade, HiFTConfig, HiFTGenerator, SourceNoise,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatterbox");
const CASES: usize = 2;

struct Fixture {
    cfg: HiFTConfig,
    model: HiFTGenerator,
    io: HashMap<String, Tensor>,
}

impl Fixture {
    fn load() -> Result<Self> {
        let text = std::fs::read_to_string(format!("{FIXTURES}/hift_tiny_config.json"))?;
        let cfg = HiFTConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
        let weights = candle_core::safetensors::load(
            format!("{FIXTURES}/hift_tiny.safetensors"),
            &Device::Cpu,
        )?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let model = HiFTGenerator::load(vb.pp("mel2wav"), &cfg)?;
        let io = candle_core::safetensors::load(
            format!("{FIXTURES}/hift_tiny_io.safetensors"),
            &Device::Cpu,
        )?;
        Ok(Self { cfg, model, io })
    }

    fn get(&self, case: usize, key: &str) -> Tensor {
        let name = format!("case{case}.{key}");
        self.io
            .get(&name)
            .cloned()
            .unwrap_or_else(|| panic!("fixture has no {name}"))
    }

    fn noise(&self, case: usize) -> Result<SourceNoise> {
        SourceNoise::from_draws(
            &self.get(case, "noise.sine_phase_rand"),
            &self.get(case, "noise.sine_randn"),
        )
    }
}

fn max_abs_diff(got: &Tensor, want: &Tensor) -> Result<f32> {
    (got - want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()
}

/// Asserts `got` has `want`'s shape and lies within `tol` of it, printing the
/// largest difference.
fn assert_within(stage: &str, case: usize, got: &Tensor, want: &Tensor, tol: f32) -> Result<()> {
    assert_eq!(got.dims(), want.dims(), "case {case} {stage}: shape");
    let diff = max_abs_diff(got, want)?;
    println!("case {case} {stage}: max abs diff {diff:e}");
    assert!(
        diff <= tol,
        "case {case} {stage}: largest abs difference {diff:e} > {tol:e}"
    );
    Ok(())
}

fn snr_db(reference: &Tensor, got: &Tensor) -> Result<f64> {
    let r = reference.flatten_all()?.to_vec1::<f32>()?;
    let g = got.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(r.len(), g.len());
    let signal: f64 = r.iter().map(|&x| f64::from(x).powi(2)).sum();
    let noise: f64 = r
        .iter()
        .zip(&g)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    Ok(10.0 * (signal / noise.max(1e-30)).log10())
}

#[test]
fn f0_predictor_matches() -> Result<()> {
    let fx = Fixture::load()?;
    for case in 0..CASES {
        let f0 = fx.model.f0(&fx.get(case, "input.mel"))?;
        let want = fx.get(case, "out.f0");
        // F0 is in Hz (up to ~330 here, where one f32 ulp is 3e-5), and the head
        // reaches it by a large cancelling sum (classifier weights with an L1 norm
        // of 6.7e3 over the last features, bias −154): the features' last-bit
        // differences (convolution summation order) come out at ~1.7e-4 Hz, 6e-7
        // of the largest F0. So the bound is relative to the largest F0.
        let largest = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert_within("f0", case, &f0, &want, 1e-6 * largest)?;
    }
    Ok(())
}

#[test]
fn harmonic_source_matches() -> Result<()> {
    let fx = Fixture::load()?;
    for case in 0..CASES {
        let want_f0 = fx.get(case, "out.f0");
        let source = fx.model.source(&want_f0, &fx.noise(case)?)?;
        assert_within("source", case, &source, &fx.get(case, "out.source"), 1e-5)?;
        // From the port's own F0: its last-bit differences shift the integrated phase.
        let f0 = fx.model.f0(&fx.get(case, "input.mel"))?;
        let source = fx.model.source(&f0, &fx.noise(case)?)?;
        assert_within(
            "source (own F0)",
            case,
            &source,
            &fx.get(case, "out.source"),
            1e-4,
        )?;
    }
    Ok(())
}

#[test]
fn source_stft_matches() -> Result<()> {
    let fx = Fixture::load()?;
    for case in 0..CASES {
        let stft = fx.model.source_stft(&fx.get(case, "out.source"))?;
        assert_within(
            "source_stft",
            case,
            &stft,
            &fx.get(case, "out.source_stft"),
            1e-5,
        )?;
    }
    Ok(())
}

#[test]
fn generator_stages_match() -> Result<()> {
    let fx = Fixture::load()?;
    let stages = fx.cfg.upsample_rates.len();
    for case in 0..CASES {
        let mel = fx.get(case, "input.mel");
        let s_stft = fx.get(case, "out.source_stft");
        let pre = fx.model.pre(&mel)?;
        assert_within("conv_pre", case, &pre, &fx.get(case, "out.conv_pre"), 1e-4)?;
        let mut x = fx.get(case, "out.conv_pre");
        for i in 0..stages {
            let got = fx.model.stage(i, &x, &s_stft)?;
            x = fx.get(case, &format!("out.stage{i}"));
            assert_within(&format!("stage{i}"), case, &got, &x, 1e-4)?;
        }
        let spec = fx.model.spectrogram(&mel, &s_stft)?;
        assert_within(
            "conv_post",
            case,
            &spec,
            &fx.get(case, "out.conv_post"),
            1e-4,
        )?;
        let audio = fx.model.istft(&fx.get(case, "out.conv_post"))?;
        assert_within("istft", case, &audio, &fx.get(case, "out.audio"), 1e-5)?;
    }
    Ok(())
}

#[test]
fn inference_matches_the_reference() -> Result<()> {
    let fx = Fixture::load()?;
    for case in 0..CASES {
        let mel = fx.get(case, "input.mel");
        let audio = fx.model.inference(&mel, &fx.noise(case)?)?;
        let want = fx.get(case, "out.audio");
        assert_eq!(audio.dims(), want.dims());
        let snr = snr_db(&want, &audio)?;
        let diff = max_abs_diff(&audio, &want)?;
        println!("case {case} audio: SNR {snr:.1} dB, max abs diff {diff:e}");
        assert!(
            snr >= 50.0,
            "case {case}: audio SNR {snr:.1} dB below 50 dB"
        );
        let faded = trim_fade(&audio, fx.cfg.sampling_rate)?;
        let want = fx.get(case, "out.audio_faded");
        let snr = snr_db(&want, &faded)?;
        println!("case {case} faded audio: SNR {snr:.1} dB");
        assert!(
            snr >= 50.0,
            "case {case}: faded SNR {snr:.1} dB below 50 dB"
        );
    }
    Ok(())
}

#[test]
fn seeded_inference_is_reproducible() -> Result<()> {
    let fx = Fixture::load()?;
    let mel = fx.get(1, "input.mel");
    let a = fx.model.inference_seeded(&mel, 7)?;
    let b = fx.model.inference_seeded(&mel, 7)?;
    let c = fx.model.inference_seeded(&mel, 8)?;
    assert_eq!(max_abs_diff(&a, &b)?, 0.0);
    assert!(max_abs_diff(&a, &c)? > 0.0, "the seed changes nothing");
    assert_eq!(a.dims(), fx.get(1, "out.audio").dims());
    Ok(())
}

/// Official widths (`tools/chatterbox_hift_fixtures.py --full DIR`, not committed):
/// `VOXPOOL_HIFT_FULL=DIR cargo test --release --test chatterbox_hift -- --ignored`.
/// Checks the audio against the reference at full size and prints the time for
/// 4 s of audio.
#[test]
#[ignore = "needs the full-size random weights written by the fixture script"]
fn full_size_matches_the_reference() -> Result<()> {
    let dir =
        std::env::var("VOXPOOL_HIFT_FULL").expect("VOXPOOL_HIFT_FULL names the --full directory");
    let cfg = HiFTConfig::s3gen();
    let weights =
        candle_core::safetensors::load(format!("{dir}/hift_full.safetensors"), &Device::Cpu)?;
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let model = HiFTGenerator::load(vb.pp("mel2wav"), &cfg)?;
    let io =
        candle_core::safetensors::load(format!("{dir}/hift_full_io.safetensors"), &Device::Cpu)?;
    for case in 0..CASES {
        let get = |k: &str| io[&format!("case{case}.{k}")].clone();
        let noise =
            SourceNoise::from_draws(&get("noise.sine_phase_rand"), &get("noise.sine_randn"))?;
        let audio = model.inference(&get("input.mel"), &noise)?;
        let snr = snr_db(&get("out.audio"), &audio)?;
        println!("full case {case}: audio SNR {snr:.1} dB");
        assert!(
            snr >= 50.0,
            "full case {case}: audio SNR {snr:.1} dB below 50 dB"
        );
    }
    let mel = (Tensor::randn(0f32, 2.0, (1, 80, 200), &Device::Cpu)? - 4.0)?;
    model.inference_seeded(&mel, 0)?;
    let start = std::time::Instant::now();
    let audio = model.inference_seeded(&mel, 1)?;
    let secs = start.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let f0 = model.f0(&mel)?;
    let t_f0 = t.elapsed().as_secs_f64();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let noise = SourceNoise::draw(&mut rng, 1, model.source_dim(), audio.dim(1)?, &Device::Cpu)?;
    let t = std::time::Instant::now();
    let source = model.source(&f0, &noise)?;
    let s_stft = model.source_stft(&source)?;
    let t_source = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut x = model.pre(&mel)?;
    let mut t_stages = Vec::new();
    for i in 0..cfg.upsample_rates.len() {
        let ts = std::time::Instant::now();
        x = model.stage(i, &x, &s_stft)?;
        t_stages.push(ts.elapsed().as_secs_f64());
    }
    let t_spec = t.elapsed().as_secs_f64();
    println!("f0 {t_f0:.3} s, source + stft {t_source:.3} s, generator {t_spec:.3} s (stages {t_stages:.3?})");
    let len = audio.dim(1)? as f64 / f64::from(cfg.sampling_rate);
    println!(
        "{len:.1} s of audio in {secs:.3} s ({:.1}x real time)",
        len / secs
    );
    Ok(())
}
