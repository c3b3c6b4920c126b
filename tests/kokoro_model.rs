//! The whole Kokoro network against the PyTorch reference on the tiny fixture, with
//! the reference's noise: identical durations, and the same audio.
//!
//! The waveform does not match sample for sample end to end, and this test says by
//! how much (measured: waveform SNR 19.8 / 22.5 dB, magnitude-spectrum SNR 22.5 /
//! 26.5 dB for the two cases). Every stage before the decoder matches to ~1e-6
//! relative (tests/kokoro_modules.rs), durations are identical, and the decoder
//! given the reference's spectrogram reproduces the audio at > 100 dB
//! (tests/kokoro_decoder.rs). What is left is the random-weight decoder's
//! sensitivity: its instance norms and `exp` magnitudes amplify 1e-6 input
//! differences, and in the first STFT frame of the harmonic source every bin is
//! real, so its phase is ±π by the sign of rounding noise, which differs between
//! PyTorch's FFT and ours. With the real weights the output transcribes word for
//! word (see the README's Listen section).

#[path = "common/kokoro_fixture.rs"]
mod kokoro_fixture;

use candle_core::DType;
use kokoro_fixture::Fixture;
use voxpool::engine::kokoro::model::KModel;

fn snr_db(reference: &[f32], got: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let noise: f64 = reference
        .iter()
        .zip(got)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// SNR of the short-time magnitude spectra (512-sample Hann frames, hop 128).
fn spectral_snr_db(reference: &[f32], got: &[f32]) -> f64 {
    const N: usize = 512;
    const HOP: usize = 128;
    let window: Vec<f64> = (0..N)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N as f64).cos())
        .collect();
    let magnitudes = |x: &[f32], start: usize| -> Vec<f64> {
        (0..=N / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (n, w) in window.iter().enumerate() {
                    let v = f64::from(x[start + n]) * w;
                    let a = -2.0 * std::f64::consts::PI * (k * n) as f64 / N as f64;
                    re += v * a.cos();
                    im += v * a.sin();
                }
                (re * re + im * im).sqrt()
            })
            .collect()
    };
    let (mut signal, mut noise) = (0.0, 0.0);
    let mut start = 0;
    while start + N <= reference.len().min(got.len()) {
        let (a, b) = (magnitudes(reference, start), magnitudes(got, start));
        for (x, y) in a.iter().zip(&b) {
            signal += x * x;
            noise += (x - y) * (x - y);
        }
        start += HOP;
    }
    10.0 * (signal / noise.max(1e-30)).log10()
}

#[test]
fn whole_model_matches_the_reference() {
    let fx = Fixture::load().unwrap();
    let m = KModel::load(fx.weights.clone(), &fx.cfg).unwrap();
    for (index, case) in ["case0", "case1"].into_iter().enumerate() {
        let get = |k: &str| fx.get(index, k).unwrap();
        let speed = get("input.speed")
            .to_dtype(DType::F32)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let out = m
            .forward_with_tokens(
                &get("input.input_ids"),
                &get("input.ref_s"),
                speed,
                Some(&get("noise.sine_randn")),
            )
            .unwrap();
        let want_dur: Vec<u32> = get("out.pred_dur")
            .to_dtype(DType::I64)
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|d| d as u32)
            .collect();
        assert_eq!(out.pred_dur, want_dur, "{case} durations");
        let want = get("out.audio").to_vec1::<f32>().unwrap();
        assert_eq!(out.audio.len(), want.len(), "{case} audio length");
        let snr = snr_db(&want, &out.audio);
        let spectral = spectral_snr_db(&want, &out.audio);
        println!(
            "{case}: {} samples, waveform SNR {snr:.1} dB, magnitude-spectrum SNR {spectral:.1} dB",
            want.len()
        );
        assert!(
            spectral >= 20.0,
            "{case}: magnitude-spectrum SNR {spectral:.1} dB below 20 dB"
        );
        assert!(snr >= 15.0, "{case}: waveform SNR {snr:.1} dB below 15 dB");
    }
}
