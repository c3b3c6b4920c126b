//! Parity of Kokoro's iSTFTNet decoder with the PyTorch reference, stage by stage,
//! on the committed tiny fixture (`tools/kokoro_fixtures.py`; key table in
//! `tools/README.md`).

use candle_core::{Module, Result, Tensor};
use voxpool::engine::kokoro::istftnet::{AdainResBlk1d, Decoder};

#[path = "common/kokoro_fixture.rs"]
mod kokoro_fixture;

use kokoro_fixture::{assert_close, Fixture};

/// The decoder's style: `ref_s[:, :style_dim]`.
fn style(fx: &Fixture, case: usize) -> Result<Tensor> {
    fx.get(case, "input.ref_s")?.narrow(1, 0, fx.cfg.style_dim)
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
        let got = encode.forward(&x, &style(&fx, case)?)?;
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
        let s = style(&fx, case)?;
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

/// Signal-to-noise ratio of `got` against `want`, in dB.
fn snr_db(got: &Tensor, want: &Tensor) -> Result<f64> {
    let signal = want.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    let noise = (got - want)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok(10.0 * (signal / noise.max(f64::MIN_POSITIVE)).log10())
}

/// Positions `(channel, frame)` of `har` whose phase lies within `eps` of ±π: bins
/// that are real and negative up to rounding noise (the first frame, see
/// `Generator::source_spectrum`), whose sign of π the reference leaves to chance.
/// DC and Nyquist are skipped: their imaginary part is an exact zero, so +π.
fn ambiguous_phases(har: &Tensor, bins: usize, eps: f32) -> Result<Vec<(usize, usize)>> {
    let v = har.squeeze(0)?.to_vec2::<f32>()?;
    let mut out = Vec::new();
    for (c, row) in v.iter().enumerate().skip(bins + 1).take(bins - 2) {
        for (f, &p) in row.iter().enumerate() {
            if (std::f32::consts::PI - p.abs()).abs() < eps {
                out.push((c, f));
            }
        }
    }
    Ok(out)
}

/// `har` with the phases at `flip[i]` negated where bit i of `mask` is set.
fn with_flipped(har: &Tensor, flip: &[(usize, usize)], mask: usize) -> Result<Tensor> {
    let mut v = har.squeeze(0)?.to_vec2::<f32>()?;
    for (i, &(c, f)) in flip.iter().enumerate() {
        if mask >> i & 1 == 1 {
            v[c][f] = -v[c][f];
        }
    }
    Tensor::new(v, har.device())?.unsqueeze(0)
}

/// Every stage of the whole decoder from the predictor's outputs, the reference's
/// sine noise injected.
#[test]
fn decoder_matches_reference_stage_by_stage() -> Result<()> {
    let fx = Fixture::load()?;
    let decoder = Decoder::load(fx.weights.pp("decoder"), &fx.cfg)?;
    let bins = fx.cfg.istftnet.gen_istft_n_fft / 2 + 1;
    for case in 0..2 {
        let s = style(&fx, case)?;
        let asr = fx.get(case, "out.asr")?;
        let f0 = fx.get(case, "out.F0_pred")?;
        let n = fx.get(case, "out.N_pred")?;
        let noise = fx.get(case, "noise.sine_randn")?;

        let f0_conv = decoder.F0_conv.forward(&f0.unsqueeze(1)?)?;
        assert_close("F0_conv", case, &f0_conv, &fx.get(case, "dec.F0_conv")?)?;
        let n_conv = decoder.N_conv.forward(&n.unsqueeze(1)?)?;
        assert_close("N_conv", case, &n_conv, &fx.get(case, "dec.N_conv")?)?;
        let encode = decoder
            .encode
            .forward(&Tensor::cat(&[&asr, &f0_conv, &n_conv], 1)?, &s)?;
        assert_close("encode", case, &encode, &fx.get(case, "dec.encode")?)?;
        let asr_res = decoder.asr_res.forward(&asr)?;
        assert_close("asr_res", case, &asr_res, &fx.get(case, "dec.asr_res")?)?;
        let features = decoder.features(&asr, &f0, &n, &s)?;
        assert_close(
            "decode_out",
            case,
            &features,
            &fx.get(case, "dec.decode_out")?,
        )?;

        let gen = &decoder.generator;
        let har_source = gen.har_source(&f0, &noise)?.unsqueeze(2)?;
        assert_close(
            "har_source",
            case,
            &har_source,
            &fx.get(case, "gen.har_source")?,
        )?;

        let want = fx.get(case, "out.audio")?;
        let audio = decoder.forward(&asr, &f0, &n, &s, &noise)?.flatten_all()?;
        assert_eq!(audio.dims(), want.dims(), "case {case} audio: shape");
        println!(
            "case {case} audio as computed: SNR {:.1} dB",
            snr_db(&audio, &want)?
        );

        // Take each ±π sign the reference left to rounding noise its way: the best
        // of all choices must match closely.
        let har = gen.source_spectrum(&f0, &noise)?;
        let flip = ambiguous_phases(&har, bins, 1e-4)?;
        assert!(
            flip.len() <= 10,
            "case {case}: {} ambiguous phases",
            flip.len()
        );
        let mut best: Option<(f64, usize, Tensor)> = None;
        for mask in 0..1usize << flip.len() {
            let spec = gen.spectrogram(&features, &s, &with_flipped(&har, &flip, mask)?)?;
            let audio = gen.istft(&spec)?.flatten_all()?;
            let snr = snr_db(&audio, &want)?;
            if best.as_ref().is_none_or(|(b, _, _)| snr > *b) {
                best = Some((snr, mask, spec));
            }
        }
        let Some((snr, mask, spec)) = best else {
            unreachable!("at least one sign choice is tried")
        };
        println!(
            "case {case}: {} ambiguous phases {flip:?}, reference's signs: mask {mask:b}",
            flip.len()
        );
        if case == 1 {
            assert_close("conv_post", case, &spec, &fx.get(case, "gen.conv_post")?)?;
        }
        let audio = gen.istft(&spec)?.flatten_all()?;
        let diff = (&audio - &want)?.abs()?.max(0)?.to_scalar::<f32>()?;
        println!("case {case} audio: SNR {snr:.1} dB, max abs diff {diff:e}");
        assert!(
            snr >= 50.0,
            "case {case} audio: SNR {snr:.1} dB < 50 dB (max abs diff {diff:e})"
        );
    }
    Ok(())
}
