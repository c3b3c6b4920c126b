//! The audio front-ends of Chatterbox Turbo's voice cloning against the PyTorch
//! reference, on the 1.6 s clip of `tools/chatterbox_features_fixtures.py` (keys in
//! `tools/README.md`): each tensor is what the reference hands to its network.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};
use voxpool::engine::chatterbox::features::{
    campplus_fbank, s3_tokenizer_mel, s3gen_prompt_feat, t3_prompt_tokenizer_mel, trim_silence,
    voice_encoder_mel, FeatureConfig,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatterbox");

struct Fixture {
    cfg: FeatureConfig,
    io: HashMap<String, Tensor>,
}

impl Fixture {
    fn load() -> Result<Self> {
        let text = std::fs::read_to_string(format!("{FIXTURES}/features_tiny_config.json"))?;
        let cfg = FeatureConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
        let io = candle_core::safetensors::load(
            format!("{FIXTURES}/features_tiny.safetensors"),
            &Device::Cpu,
        )?;
        Ok(Self { cfg, io })
    }

    fn get(&self, key: &str) -> Result<Tensor> {
        self.io
            .get(key)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("fixture has no {key}")))
    }

    fn wav(&self, key: &str) -> Result<Vec<f32>> {
        self.get(key)?.to_vec1::<f32>()
    }
}

/// Largest absolute difference; fails above `tol`, or on a shape mismatch.
fn assert_close(stage: &str, got: &Tensor, want: &Tensor, tol: f64) -> Result<f64> {
    assert_eq!(got.dims(), want.dims(), "{stage}: shape");
    let diff = (got.to_dtype(DType::F64)? - want.to_dtype(DType::F64)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?;
    println!("{stage}: max abs diff {diff:.3e}");
    assert!(diff <= tol, "{stage}: max abs diff {diff:.3e} > {tol:.0e}");
    Ok(diff)
}

#[test]
fn fixture_config_only_shrinks_the_cuts() -> Result<()> {
    let fx = Fixture::load()?;
    let turbo = FeatureConfig::turbo();
    assert_eq!(fx.cfg.ve_trim_top_db, turbo.ve_trim_top_db);
    assert!(fx.cfg.dec_cond_len < turbo.dec_cond_len);
    assert_eq!(turbo.dec_cond_len, 240_000);
    assert_eq!(turbo.enc_cond_len, 240_000);
    assert_eq!(turbo.speech_cond_prompt_len, 375);
    Ok(())
}

/// `S3Gen.embed_ref` `prompt_feat` of the first `DEC_COND_LEN` samples (cut here:
/// 1.4 of 1.6 s). Measured: 4.8e-6 (values −11.4 … 0.01).
#[test]
fn s3gen_prompt_feat_matches() -> Result<()> {
    let fx = Fixture::load()?;
    let wav24 = fx.wav("wav24")?;
    assert!(wav24.len() > fx.cfg.dec_cond_len, "the cut must bite");
    let got = s3gen_prompt_feat(&wav24, &fx.cfg)?;
    assert_close("prompt_feat", &got, &fx.get("prompt_feat")?, 1e-4)?;
    Ok(())
}

/// The mel `S3Tokenizer.forward([wav16[:ENC_COND_LEN]], max_len)` hands to
/// `quantize`: 1.2 s cut to 28 tokens (112 of 120 frames), floored at the maximum of
/// all 120. Measured: 6.4e-6.
#[test]
fn s3_tokenizer_mel_matches() -> Result<()> {
    let fx = Fixture::load()?;
    let wav16 = fx.wav("wav16")?;
    let (mel, len) = t3_prompt_tokenizer_mel(&wav16, &fx.cfg)?;
    let want_lens = fx.get("s3tok_mel_lens")?.to_vec1::<i64>()?;
    assert_eq!(want_lens, [len as i64]);
    assert_close("s3tok_mel", &mel, &fx.get("s3tok_mel")?, 1e-4)?;
    // Without a cut: one frame per 160 samples.
    let (full, full_len) = s3_tokenizer_mel(&wav16, None)?;
    assert_eq!((full.dims(), full_len), (&[1, 128, 160][..], 160));
    Ok(())
}

/// CAMPPlus's kaldi fbank with the mean removed. Measured: 7.9e-5. The reference
/// computes it in float32, and its weakest bins carry that FFT's rounding: the
/// largest differences sit in mel bin 1 (20–60 Hz, where DC removal and
/// pre-emphasis leave ~15 nats less than the frame's strongest bin); torch itself
/// gives 8.0e-5 between float32 and float64 input on this clip, while bins within
/// 12 nats of their frame's peak agree to 2.2e-5. On the 18 s clip of `--full`:
/// 1.4e-4 here, 1.0e-4 between torch's own float32 and float64.
#[test]
fn campplus_fbank_matches() -> Result<()> {
    let fx = Fixture::load()?;
    let got = campplus_fbank(&fx.wav("wav16")?)?;
    assert_close("fbank", &got, &fx.get("fbank")?, 1e-4)?;
    Ok(())
}

/// `embeds_from_wavs`: the same trim as librosa, then the linear-power mel (values up
/// to 0.48). Measured: 6.0e-8.
#[test]
fn voice_encoder_mel_matches() -> Result<()> {
    let fx = Fixture::load()?;
    let wav16 = fx.wav("wav16")?;
    let want_trim = fx.get("ve_trim")?.to_vec1::<i64>()?;
    let top_db = fx.cfg.ve_trim_top_db.expect("the fixture trims");
    let (start, end) = trim_silence(&wav16, top_db);
    assert_eq!([start as i64, end as i64], want_trim[..]);
    assert!(
        start > 0 && end < wav16.len(),
        "the trim must cut both ends"
    );
    let got = voice_encoder_mel(&wav16, &fx.cfg)?;
    assert_close("ve_mel", &got, &fx.get("ve_mel")?, 1e-6)?;
    Ok(())
}

/// Turbo's own cuts on an 18 s clip: 10 s of 24 kHz for S3Gen (500 mel frames),
/// 15 s of 16 kHz for T3's prompt (1500 frames = 4 × 375 tokens).
#[test]
fn turbo_cuts_on_a_long_clip() -> Result<()> {
    let cfg = FeatureConfig::turbo();
    let tone = |rate: f32, secs: usize| -> Vec<f32> {
        (0..secs * rate as usize)
            .map(|i| 0.1 * (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / rate).sin())
            .collect()
    };
    let (wav24, wav16) = (tone(24_000.0, 18), tone(16_000.0, 18));
    assert_eq!(s3gen_prompt_feat(&wav24, &cfg)?.dims(), [1, 500, 80]);
    let (mel, len) = t3_prompt_tokenizer_mel(&wav16, &cfg)?;
    assert_eq!((mel.dims(), len), (&[1, 128, 1500][..], 1500));
    // embed_ref's 16 kHz clip is the first 10 s: 1 + (160000 − 400)/160 frames.
    assert_eq!(campplus_fbank(&wav16[..160_000])?.dims(), [998, 80]);
    assert_eq!(voice_encoder_mel(&wav16, &cfg)?.dims(), [1801, 40]);
    Ok(())
}
