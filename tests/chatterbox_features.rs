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

/// CAMPPlus's kaldi fbank with the mean removed. The reference computes it in
/// float32: a bin far below its frame's strongest (here ~13 nats down) carries the
/// float32 FFT's rounding, up to 7.9e-5 of log against an f64 transform; the same
/// difference is measured here (7.9e-5).
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
