//! The S3 speech tokenizer of Chatterbox's voice cloning against the PyTorch reference
//! (`tools/chatterbox_s3tokenizer_fixtures.py`: `S3TokenizerV2` with a tiny config and
//! random weights, inside chatterbox's `S3Tokenizer` wrapper), from the log-mel on:
//! each encoder stage, the FSQ projection, and the tokens, which must be identical.
//! The script keeps every FSQ value compared at least 1e-4 from a rounding boundary.

#[path = "common/parity.rs"]
mod parity;

use parity::{assert_within, max_abs_diff};

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use voxpool::engine::chatterbox::s3tokenizer::{S3Tokenizer, S3TokenizerConfig};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatterbox");

struct Fixture {
    cfg: S3TokenizerConfig,
    tokenizer: S3Tokenizer,
    io: HashMap<String, Tensor>,
}

impl Fixture {
    fn load() -> Result<Self> {
        let text = std::fs::read_to_string(format!("{FIXTURES}/s3tokenizer_tiny_config.json"))?;
        let cfg = S3TokenizerConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
        let io = candle_core::safetensors::load(
            format!("{FIXTURES}/s3tokenizer_tiny.safetensors"),
            &Device::Cpu,
        )?;
        // The weights sit under S3Gen's `tokenizer.` prefix, beside the test data.
        let vb = VarBuilder::from_tensors(io.clone(), DType::F32, &Device::Cpu);
        let tokenizer = S3Tokenizer::load(vb.pp("tokenizer"), &cfg)?;
        Ok(Self { cfg, tokenizer, io })
    }

    fn get(&self, key: &str) -> Tensor {
        self.io
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("fixture has no {key}"))
    }

    fn int(&self, key: &str) -> usize {
        let v = self.get(key).flatten_all().and_then(|t| t.to_vec1::<i64>());
        v.expect("integer fixture value")[0] as usize
    }

    fn tokens(&self, key: &str) -> Vec<u32> {
        let v = self.get(key).flatten_all().and_then(|t| t.to_vec1::<i64>());
        v.expect("token fixture")
            .iter()
            .map(|&t| t as u32)
            .collect()
    }
}

fn assert_tokens(stage: &str, got: &[u32], want: &[u32]) {
    assert_eq!(got.len(), want.len(), "{stage}: token count");
    let wrong: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    assert!(
        wrong.is_empty(),
        "{stage}: {} of {} tokens differ, first at {}: {} vs {}",
        wrong.len(),
        got.len(),
        wrong[0],
        got[wrong[0]],
        want[wrong[0]]
    );
    println!("{stage}: {} tokens identical", got.len());
}

/// Encoder stages, projection and tokens of `case` (`mel` with `mel_len` valid
/// frames), all frames compared, padding included.
fn check_case(fx: &Fixture, case: &str, mel: &Tensor, mel_len: usize) -> Result<()> {
    let model = fx.tokenizer.model();
    let (stages, code_len) = model.encoder().forward_with_stages(mel, mel_len)?;
    assert_eq!(
        code_len,
        fx.int(&format!("{case}.code_len")),
        "{case}: code_len"
    );
    // Measured (x86_64 CPU): conv1 6e-7, conv2 1.2e-7, blocks.0 9e-7, blocks.1 1.8e-6,
    // project_down 2.4e-6.
    let tol = 1e-4;
    assert_within(
        &format!("{case} conv1"),
        &stages.conv1,
        &fx.get(&format!("{case}.conv1")),
        tol,
    )?;
    assert_within(
        &format!("{case} conv2"),
        &stages.conv2,
        &fx.get(&format!("{case}.conv2")),
        tol,
    )?;
    for (i, block) in stages.blocks.iter().enumerate() {
        let want = fx.get(&format!("{case}.blocks.{i}"));
        assert_within(&format!("{case} blocks.{i}"), block, &want, tol)?;
    }
    let hidden = stages.blocks.last().expect("at least one block");
    let projection = model.quantizer().codebook().project(hidden)?;
    assert_within(
        &format!("{case} project_down"),
        &projection,
        &fx.get(&format!("{case}.project_down")),
        tol,
    )?;

    let want = fx.tokens(&format!("{case}.tokens"));
    let all = model
        .quantizer()
        .encode(hidden)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    assert_tokens(&format!("{case} all frames"), &all, &want);
    let valid = model.quantize(mel, mel_len)?;
    assert_tokens(&format!("{case} quantize"), &valid, &want[..code_len]);
    Ok(())
}

#[test]
fn unpadded_clip_matches_stage_by_stage() -> Result<()> {
    let fx = Fixture::load()?;
    let mel = fx.get("case0.mel");
    assert_eq!(mel.dim(1)?, fx.cfg.n_mels);
    let frames = mel.dim(2)?;
    assert_eq!(fx.int("case0.mel_len"), frames);
    check_case(&fx, "case0", &mel, frames)
}

#[test]
fn padded_frames_are_masked() -> Result<()> {
    let fx = Fixture::load()?;
    // case0's first frames, of which only the first mel_len count: the rest is
    // not zero, so it must be masked out at every stage.
    let mel = fx.get("case0.mel").narrow(2, 0, fx.int("case1.frames"))?;
    check_case(&fx, "case1", &mel, fx.int("case1.mel_len"))
}

#[test]
fn wrapper_cuts_the_log_mel_to_max_len() -> Result<()> {
    let fx = Fixture::load()?;
    let mel = fx.get("case0.mel");
    let max_len = fx.int("wrapper.max_len");
    let got = fx.tokenizer.forward(&mel, Some(max_len))?;
    assert_tokens("wrapper", &got, &fx.tokens("wrapper.tokens"));
    // A max_len beyond the clip changes nothing.
    let whole = fx.tokenizer.forward(&mel, Some(1000))?;
    assert_tokens("wrapper, no cut", &whole, &fx.tokens("case0.tokens"));
    assert_eq!(fx.tokenizer.forward(&mel, None)?, whole);
    Ok(())
}

/// MurmurHash3's 32-bit finaliser.
fn fmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^ (x >> 16)
}

/// The script's `long_mel`: value at (c, t) is k / 1024 − 1 with
/// k = fmix32(c·frames + t + salt·0x9E3779B9) >> 21, exact in f32.
fn long_mel(n_mels: usize, frames: usize, salt: u32) -> Result<Tensor> {
    let values: Vec<f32> = (0..n_mels * frames)
        .map(|i| {
            let k = fmix32((i as u32).wrapping_add(salt.wrapping_mul(0x9e37_79b9))) >> 21;
            k as f32 / 1024.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, (1, n_mels, frames), &Device::Cpu)
}

#[test]
fn long_clip_is_tokenized_in_merged_windows() -> Result<()> {
    let fx = Fixture::load()?;
    let frames = fx.int("long.frames");
    let mel = long_mel(fx.cfg.n_mels, frames, fx.int("long.salt") as u32)?;
    // The formula is the script's: its first frames are stored.
    let head = fx.get("long.mel_head");
    assert_eq!(max_abs_diff(&mel.narrow(2, 0, head.dim(2)?)?, &head)?, 0.0);
    let got = fx.tokenizer.forward(&mel, None)?;
    assert_tokens("long", &got, &fx.tokens("long.tokens"));
    Ok(())
}

#[test]
fn released_config_builds_and_runs() -> Result<()> {
    // The released sizes (64-wide heads, 6 blocks), zero weights: every frame's
    // projection is 0, so every token is the middle code, all 8 digits 1.
    let cfg = S3TokenizerConfig::speech_tokenizer_v2_25hz();
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let tokenizer = S3Tokenizer::load(vb, &cfg)?;
    let mel = Tensor::zeros((1, cfg.n_mels, 40), DType::F32, &Device::Cpu)?;
    assert_eq!(tokenizer.forward(&mel, None)?, vec![3280; 10]);
    Ok(())
}

/// Released-size random weights (`tools/chatterbox_s3tokenizer_fixtures.py --full DIR`,
/// one 15 s log-mel): the encoder output, projection and tokens, and the time a
/// call takes. Run with
/// `S3TOKENIZER_FULL_DIR=DIR cargo test --release --test chatterbox_s3tokenizer -- --ignored`.
#[test]
#[ignore = "needs S3TOKENIZER_FULL_DIR with the --full fixture (~510 MB)"]
fn full_size_matches_reference() -> Result<()> {
    let Ok(dir) = std::env::var("S3TOKENIZER_FULL_DIR") else {
        panic!("set S3TOKENIZER_FULL_DIR to the --full output directory");
    };
    let text = std::fs::read_to_string(format!("{dir}/s3tokenizer_full_config.json"))?;
    let cfg = S3TokenizerConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
    assert_eq!(cfg, S3TokenizerConfig::speech_tokenizer_v2_25hz());
    let path = format!("{dir}/s3tokenizer_full.safetensors");
    // SAFETY: the file is not modified while mapped (a test-only scratch file).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu)? };
    let tokenizer = S3Tokenizer::load(vb.pp("tokenizer"), &cfg)?;
    let io = candle_core::safetensors::load(&path, &Device::Cpu)?;
    let get = |k: &str| io[&format!("case0.{k}")].clone();
    let mel = get("mel");
    let frames = mel.dim(2)?;
    let model = tokenizer.model();
    let (stages, _) = model.encoder().forward_with_stages(&mel, frames)?;
    let last = cfg.n_audio_layer - 1;
    let hidden = &stages.blocks[last];
    assert_within(
        "full blocks.5",
        hidden,
        &get(&format!("blocks.{last}")),
        1e-3,
    )?;
    let projection = model.quantizer().codebook().project(hidden)?;
    assert_within("full project_down", &projection, &get("project_down"), 1e-3)?;
    let want: Vec<u32> = get("tokens")
        .flatten_all()?
        .to_vec1::<i64>()?
        .iter()
        .map(|&t| t as u32)
        .collect();
    for run in 0..3 {
        let start = std::time::Instant::now();
        let got = tokenizer.forward(&mel, Some(375))?;
        println!(
            "run {run}: {frames} frames -> {} tokens in {:.3} s",
            got.len(),
            start.elapsed().as_secs_f64()
        );
        assert_tokens("full", &got, &want);
    }
    Ok(())
}
