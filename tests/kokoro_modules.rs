//! Parity of Kokoro's text side (ALBERT, text encoder, prosody predictor) with
//! the PyTorch reference, stage by stage, on the committed tiny fixture
//! (`tools/kokoro_fixtures.py`; key table in `tools/README.md`).

use candle_core::{DType, IndexOp, Module, Result, Tensor};
use candle_nn::linear;
use voxpool::engine::kokoro::albert::CustomAlbert;
use voxpool::engine::kokoro::modules::{duration, pred_dur, ProsodyPredictor, TextEncoder};

#[path = "common/kokoro_fixture.rs"]
mod kokoro_fixture;

use kokoro_fixture::{assert_within, Fixture, TOL};

/// The predictor's style: `ref_s[:, style_dim:]`.
fn style(fx: &Fixture, case: usize) -> Result<Tensor> {
    let s = fx.cfg.style_dim;
    fx.get(case, "input.ref_s")?.narrow(1, s, s)
}

/// Asserts `got` has `want`'s shape and lies within `TOL` of it.
fn assert_close(stage: &str, case: usize, got: &Tensor, want: &Tensor) -> Result<f32> {
    assert_within(stage, case, got, want, TOL)
}

/// As [`assert_close`] for an output in physical units (F0 in Hz, up to ~250
/// here): `TOL` relative to its largest magnitude, i.e. a few f32 ulps.
fn assert_close_scaled(stage: &str, case: usize, got: &Tensor, want: &Tensor) -> Result<f32> {
    let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    assert_within(stage, case, got, want, TOL * scale.max(1.0))
}

#[test]
fn albert_and_bert_encoder_match_the_reference() -> Result<()> {
    let fx = Fixture::load()?;
    let bert = CustomAlbert::load(fx.weights.pp("bert"), &fx.cfg.plbert, fx.cfg.n_token)?;
    let bert_encoder = linear(
        fx.cfg.plbert.hidden_size,
        fx.cfg.hidden_dim,
        fx.weights.pp("bert_encoder"),
    )?;
    for case in 0..2 {
        let ids = fx.get(case, "input.input_ids")?;
        let bert_dur = bert.forward(&ids, None)?;
        assert_close("bert_dur", case, &bert_dur, &fx.get(case, "out.bert_dur")?)?;
        // An all-ones attention mask is the same as none.
        let ones = ids.ones_like()?;
        let masked = bert.forward(&ids, Some(&ones))?;
        assert_close("bert_dur masked", case, &masked, &bert_dur)?;
        let d_en = bert_encoder.forward(&bert_dur)?.transpose(1, 2)?;
        assert_close("d_en", case, &d_en, &fx.get(case, "out.d_en")?)?;
    }
    Ok(())
}

#[test]
fn albert_padding_does_not_change_the_tokens() -> Result<()> {
    let fx = Fixture::load()?;
    let bert = CustomAlbert::load(fx.weights.pp("bert"), &fx.cfg.plbert, fx.cfg.n_token)?;
    let ids = fx.get(0, "input.input_ids")?;
    let t = ids.dim(1)?;
    let padded = Tensor::cat(&[&ids, &ids.zeros_like()?.narrow(1, 0, 3)?], 1)?;
    let mask = Tensor::cat(
        &[
            &Tensor::ones((1, t), DType::U8, &fx.device())?,
            &Tensor::zeros((1, 3), DType::U8, &fx.device())?,
        ],
        1,
    )?;
    let got = bert.forward(&padded, Some(&mask))?.narrow(1, 0, t)?;
    assert_close("bert padded", 0, &got, &fx.get(0, "out.bert_dur")?)?;
    Ok(())
}

#[test]
fn text_encoder_matches_the_reference() -> Result<()> {
    let fx = Fixture::load()?;
    let enc = TextEncoder::load_config(fx.weights.pp("text_encoder"), &fx.cfg)?;
    for case in 0..2 {
        let t_en = enc.forward(&fx.get(case, "input.input_ids")?)?;
        assert_close("t_en", case, &t_en, &fx.get(case, "out.t_en")?)?;
    }
    Ok(())
}

#[test]
fn duration_path_matches_the_reference() -> Result<()> {
    let fx = Fixture::load()?;
    let predictor = ProsodyPredictor::load(fx.weights.pp("predictor"), &fx.cfg)?;
    for case in 0..2 {
        let s = style(&fx, case)?;
        // From the reference `d_en`, so each stage is judged on its own.
        let d = predictor
            .text_encoder
            .forward(&fx.get(case, "out.d_en")?, &s)?;
        assert_close("d", case, &d, &fx.get(case, "out.d")?)?;
        let d = fx.get(case, "out.d")?;
        let x = predictor.lstm.forward(&d)?;
        assert_close("lstm", case, &x, &fx.get(case, "out.lstm")?)?;
        let logits = predictor.duration_logits(&d)?;
        assert_close(
            "duration_logits",
            case,
            &logits,
            &fx.get(case, "out.duration_logits")?,
        )?;
        let speed = fx.get(case, "input.speed")?.to_scalar::<f32>()?;
        let dur = duration(&fx.get(case, "out.duration_logits")?, speed)?;
        assert_close("duration", case, &dur, &fx.get(case, "out.duration")?)?;
        let want: Vec<u32> = fx
            .get(case, "out.pred_dur")?
            .to_vec1::<i64>()?
            .into_iter()
            .map(|v| v as u32)
            .collect();
        assert_eq!(
            pred_dur(&dur.i(0)?.to_vec1::<f32>()?),
            want,
            "case {case} pred_dur"
        );
    }
    Ok(())
}

#[test]
fn durations_from_tokens_match_the_reference() -> Result<()> {
    let fx = Fixture::load()?;
    let bert = CustomAlbert::load(fx.weights.pp("bert"), &fx.cfg.plbert, fx.cfg.n_token)?;
    let bert_encoder = linear(
        fx.cfg.plbert.hidden_size,
        fx.cfg.hidden_dim,
        fx.weights.pp("bert_encoder"),
    )?;
    let predictor = ProsodyPredictor::load(fx.weights.pp("predictor"), &fx.cfg)?;
    for case in 0..2 {
        let bert_dur = bert.forward(&fx.get(case, "input.input_ids")?, None)?;
        let d_en = bert_encoder.forward(&bert_dur)?.transpose(1, 2)?;
        let d = predictor.text_encoder.forward(&d_en, &style(&fx, case)?)?;
        let speed = fx.get(case, "input.speed")?.to_scalar::<f32>()?;
        let dur = duration(&predictor.duration_logits(&d)?, speed)?;
        assert_close(
            "chained duration",
            case,
            &dur,
            &fx.get(case, "out.duration")?,
        )?;
        let want: Vec<u32> = fx
            .get(case, "out.pred_dur")?
            .to_vec1::<i64>()?
            .into_iter()
            .map(|v| v as u32)
            .collect();
        assert_eq!(
            pred_dur(&dur.i(0)?.to_vec1::<f32>()?),
            want,
            "case {case} pred_dur"
        );
    }
    Ok(())
}

#[test]
fn f0_and_energy_match_the_reference() -> Result<()> {
    let fx = Fixture::load()?;
    let predictor = ProsodyPredictor::load(fx.weights.pp("predictor"), &fx.cfg)?;
    for case in 0..2 {
        let (f0, n) = predictor.f0_ntrain(&fx.get(case, "out.en")?, &style(&fx, case)?)?;
        assert_close_scaled("F0_pred", case, &f0, &fx.get(case, "out.F0_pred")?)?;
        assert_close("N_pred", case, &n, &fx.get(case, "out.N_pred")?)?;
    }
    Ok(())
}
