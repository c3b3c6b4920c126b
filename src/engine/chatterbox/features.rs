//! Audio front-ends of Chatterbox Turbo's voice cloning: from a reference clip, the
//! exact tensors that `ChatterboxTurboTTS.prepare_conditionals` (chatterbox-tts
//! 0.1.7, `tts_turbo.py`) hands to each network.
//!
//! The caller decodes the clip, applies the reference's loudness normalisation
//! (`norm_loudness`, −27 LUFS) to the 24 kHz samples and resamples them to 16 kHz.
//! The reference resamples twice: `librosa.resample` (soxr_hq) of the whole
//! normalised clip gives the 16 kHz audio of the T3 prompt tokens and the voice
//! encoder; inside `S3Gen.embed_ref`, torchaudio's `Resample` (Hann-windowed sinc,
//! width 6, roll-off 0.99) of the first 10 s gives the audio of CAMPPlus and of the
//! S3Gen prompt tokens. Any good resampler does for both; the functions here take
//! the samples as they are.
//!
//! | network | function | input | output |
//! |---|---|---|---|
//! | S3Gen flow (`prompt_feat`) | [`s3gen_prompt_feat`] | 24 kHz clip | `[1, T, 80]`, `T = min(len, 10 s)/480` |
//! | S3 tokenizer, T3 prompt | [`t3_prompt_tokenizer_mel`] | 16 kHz clip | `[1, 128, T]`, `T ≤ 4·375` |
//! | S3 tokenizer, S3Gen prompt | [`s3_tokenizer_mel`] with no `max_len` | 16 kHz of the first 10 s | `[1, 128, len/160]` |
//! | CAMPPlus x-vector | [`campplus_fbank`] | 16 kHz of the first 10 s | `[T, 80]`, `T = 1 + (len − 400)/160` |
//! | VoiceEncoder | [`voice_encoder_mel`] | 16 kHz clip | `[T, 40]`, `T = 1 + trimmed/160` |
//!
//! Every transform is a real FFT in f64 ([`PowerSpectrum`]), then the reference's
//! filterbank and log; the reference itself works in f32. These front-ends do not use
//! the vocoders' [`Stft`](crate::engine::nn::stft::Stft): that one is a DFT as a
//! matrix product over tensors, built for transforms of 16–20 points with a Hann window
//! as long as the transform, and inverts them; these take 400–1920 points, windows
//! shorter than the transform (Povey, Hamming), need only the power and run once per
//! clip, where an FFT in f64 is the tool.

use std::f64::consts::PI;

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::engine::nn::ops::reflection_pad1d;

/// Sample rate of S3Gen's prompt mel (`S3GEN_SR`).
pub const S3GEN_SR: usize = 24_000;
/// Sample rate of the S3 tokenizer, CAMPPlus and the voice encoder (`S3_SR`).
pub const S3_SR: usize = 16_000;
/// Mel frames per S3 speech token (`S3Tokenizer.forward`: `max_len * 4`).
const MEL_FRAMES_PER_TOKEN: usize = 4;

/// The cut lengths of `prepare_conditionals`; only sizes, no switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// `DEC_COND_LEN`: 24 kHz samples of the clip S3Gen sees (10 s).
    pub dec_cond_len: usize,
    /// `ENC_COND_LEN`: 16 kHz samples the T3 prompt tokens come from (15 s).
    pub enc_cond_len: usize,
    /// `T3Config.speech_cond_prompt_len`: speech tokens of the T3 prompt (375),
    /// the `max_len` of the tokenizer call.
    pub speech_cond_prompt_len: usize,
    /// `embeds_from_wavs(trim_top_db=…)`: silence threshold of the voice encoder's
    /// trim, in dB below the loudest frame (20); `None` keeps the whole clip.
    pub ve_trim_top_db: Option<f64>,
}

impl FeatureConfig {
    /// Chatterbox Turbo as released.
    pub fn turbo() -> Self {
        Self {
            dec_cond_len: 10 * S3GEN_SR,
            enc_cond_len: 15 * S3_SR,
            speech_cond_prompt_len: 375,
            ve_trim_top_db: Some(20.0),
        }
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self::turbo()
    }
}

/// One-sided power spectra `|DFT|²` of frames of `window.len()` samples, each
/// multiplied by the window and zero-padded to `n_fft` points: a real FFT per frame,
/// in f64.
#[derive(Clone)]
pub struct PowerSpectrum {
    bins: usize,
    window: Vec<f64>,
    fft: std::sync::Arc<dyn realfft::RealToComplex<f64>>,
}

impl std::fmt::Debug for PowerSpectrum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerSpectrum")
            .field("n_fft", &self.fft.len())
            .field("win_len", &self.window.len())
            .finish()
    }
}

impl PowerSpectrum {
    pub fn new(n_fft: usize, window: &[f64]) -> Result<Self> {
        let win_len = window.len();
        if win_len == 0 || win_len > n_fft {
            candle_core::bail!("power spectrum: window of {win_len} for {n_fft} points");
        }
        Ok(Self {
            bins: n_fft / 2 + 1,
            window: window.to_vec(),
            fft: realfft::RealFftPlanner::<f64>::new().plan_fft_forward(n_fft),
        })
    }

    pub fn bins(&self) -> usize {
        self.bins
    }

    /// `frames` [F, win_len] (any float dtype) → power [F, bins] in f64.
    pub fn power(&self, frames: &Tensor) -> Result<Tensor> {
        let (count, len) = frames.dims2()?;
        if len != self.window.len() {
            candle_core::bail!(
                "power spectrum: frames of {len}, window of {}",
                self.window.len()
            );
        }
        let samples = frames
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut out = Vec::with_capacity(count * self.bins);
        for frame in samples.chunks_exact(len) {
            input.fill(0.0);
            for ((x, s), w) in input.iter_mut().zip(frame).zip(&self.window) {
                *x = s * w;
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .map_err(candle_core::Error::wrap)?;
            out.extend(spectrum.iter().map(|c| c.norm_sqr()));
        }
        Tensor::from_vec(out, (count, self.bins), &Device::Cpu)
    }
}

/// Periodic Hann window (`torch.hann_window(n)`, `scipy.signal.get_window("hann", n)`).
fn hann_periodic(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos())
        .collect()
}

/// Frames of `win` samples every `hop` samples, as many as fit whole → [F, win].
fn frames(x: &[f64], win: usize, hop: usize) -> Result<Tensor> {
    if x.len() < win {
        candle_core::bail!(
            "features: {} samples, less than one frame of {win}",
            x.len()
        );
    }
    let count = 1 + (x.len() - win) / hop;
    let mut data = Vec::with_capacity(count * win);
    for f in 0..count {
        data.extend_from_slice(&x[f * hop..f * hop + win]);
    }
    Tensor::from_vec(data, (count, win), &Device::Cpu)
}

/// `x` mirrored by `pad` samples at both ends (numpy/torch "reflect").
fn reflect(x: &[f32], pad: usize) -> Result<Vec<f64>> {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let len = x.len();
    let t = Tensor::from_vec(x, (1, len), &Device::Cpu)?;
    reflection_pad1d(&t, pad, pad)?.flatten_all()?.to_vec1()
}

/// `filters` [n_mels, bins] (f32 values, as the reference keeps them) times `power`
/// [F, bins]ᵀ → [n_mels, F] in f64.
fn apply_filters(filters: &[f32], n_mels: usize, power: &Tensor) -> Result<Tensor> {
    let bins = filters.len() / n_mels;
    let filters: Vec<f64> = filters.iter().map(|&v| v as f64).collect();
    let filters = Tensor::from_vec(filters, (n_mels, bins), &Device::Cpu)?;
    filters.matmul(&power.t()?)
}

/// `librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)`
/// (Slaney mel scale, Slaney area normalisation) as its float32 result, row-major
/// [n_mels, n_fft/2 + 1]. The arithmetic follows librosa 0.11 step by step, in f64
/// with the same float32 roundings, so the values are the reference's.
pub fn slaney_mel_filters(sr: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<f32> {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |f: f64| {
        if f >= MIN_LOG_HZ {
            min_log_mel + (f / MIN_LOG_HZ).ln() / logstep
        } else {
            f / F_SP
        }
    };
    let mel_to_hz = |m: f64| {
        if m >= min_log_mel {
            MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
        } else {
            F_SP * m
        }
    };
    let bins = n_fft / 2 + 1;
    // np.fft.rfftfreq(n_fft, 1/sr): k · 1/(n_fft · (1/sr)).
    let step = 1.0 / (n_fft as f64 * (1.0 / sr));
    let fftfreqs: Vec<f64> = (0..bins).map(|k| k as f64 * step).collect();
    // np.linspace(min_mel, max_mel, n_mels + 2): i·step + start, the last one exact.
    let (lo, hi) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let points = n_mels + 2;
    let mel_step = (hi - lo) / (points - 1) as f64;
    let mel_f: Vec<f64> = (0..points)
        .map(|i| {
            let m = if i == points - 1 {
                hi
            } else {
                i as f64 * mel_step + lo
            };
            mel_to_hz(m)
        })
        .collect();
    let mut weights = vec![0f32; n_mels * bins];
    for i in 0..n_mels {
        let (fdiff_lo, fdiff_hi) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = -(mel_f[i] - f) / fdiff_lo;
            let upper = (mel_f[i + 2] - f) / fdiff_hi;
            // Stored as float32, then scaled in place (float64 product, float32 result).
            let tri = lower.min(upper).max(0.0) as f32;
            weights[i * bins + k] = (tri as f64 * enorm) as f32;
        }
    }
    weights
}

/// `torchaudio.compliance.kaldi.get_mel_banks(num_bins, padded_window, sample_freq,
/// low_freq, high_freq, …)` without VTLN, with the zero Nyquist column `fbank` adds:
/// row-major [num_bins, padded_window/2 + 1]. torchaudio computes the bank in
/// float32; so does this, the same operations in the same order (the edge weights of
/// each triangle are differences of nearby float32 mel values, far from exact).
pub fn kaldi_mel_banks(
    num_bins: usize,
    padded_window: usize,
    sample_freq: f64,
    low_freq: f64,
    high_freq: f64,
) -> Vec<f32> {
    let mel_scale = |f: f64| 1127.0 * (1.0 + f / 700.0).ln();
    let nyquist = 0.5 * sample_freq;
    let high_freq = if high_freq <= 0.0 {
        high_freq + nyquist
    } else {
        high_freq
    };
    let fft_bins = padded_window / 2;
    let fft_bin_width = sample_freq / padded_window as f64;
    let mel_low = mel_scale(low_freq);
    let mel_delta = (mel_scale(high_freq) - mel_low) / (num_bins + 1) as f64;
    // Python floats meet float32 tensors: each scalar is rounded to float32 first.
    let (low32, delta32) = (mel_low as f32, mel_delta as f32);
    let mel: Vec<f32> = (0..fft_bins)
        .map(|k| {
            let freq = k as f32 * fft_bin_width as f32;
            1127.0f32 * (1.0f32 + freq / 700.0f32).ln()
        })
        .collect();
    let mut banks = vec![0f32; num_bins * (fft_bins + 1)];
    for b in 0..num_bins {
        let left = b as f32 * delta32 + low32;
        let center = (b as f32 + 1.0) * delta32 + low32;
        let right = (b as f32 + 2.0) * delta32 + low32;
        for (k, &m) in mel.iter().enumerate() {
            let up = (m - left) / (center - left);
            let down = (right - m) / (right - center);
            banks[b * (fft_bins + 1) + k] = up.min(down).max(0.0);
        }
    }
    banks
}

/// `matcha`'s `mel_spectrogram` as `S3Gen.mel_extractor` calls it (n_fft 1920, hop
/// 480, Hann window of 1920, 80 Slaney mels over 0–8 kHz at 24 kHz): reflect padding
/// of (n_fft − hop)/2 per side, an uncentred STFT, magnitude `√(power + 1e-9)`, mel
/// filters, `ln(max(·, 1e-5))`. `wav` at 24 kHz (more than 720 samples) → [80, F]
/// with `F = len/480`.
pub fn s3gen_mel(wav: &[f32]) -> Result<Tensor> {
    const N_FFT: usize = 1920;
    const HOP: usize = 480;
    const N_MELS: usize = 80;
    let padded = reflect(wav, (N_FFT - HOP) / 2)?;
    let power =
        PowerSpectrum::new(N_FFT, &hann_periodic(N_FFT))?.power(&frames(&padded, N_FFT, HOP)?)?;
    let magnitude = (power + 1e-9)?.sqrt()?;
    let filters = slaney_mel_filters(S3GEN_SR as f64, N_FFT, N_MELS, 0.0, 8000.0);
    apply_filters(&filters, N_MELS, &magnitude)?
        .clamp(1e-5, f64::INFINITY)?
        .log()?
        .to_dtype(DType::F32)
}

/// `prompt_feat` of `S3Gen.embed_ref`, after `prepare_conditionals` keeps the first
/// `DEC_COND_LEN` samples: `wav` at 24 kHz → [1, F, 80] (time-major).
pub fn s3gen_prompt_feat(wav: &[f32], cfg: &FeatureConfig) -> Result<Tensor> {
    let wav = &wav[..wav.len().min(cfg.dec_cond_len)];
    s3gen_mel(wav)?.t()?.unsqueeze(0)?.contiguous()
}

/// `S3Tokenizer.log_mel_spectrogram` (chatterbox's override: n_fft 400, hop 160,
/// periodic Hann, centred STFT with reflect padding, last frame dropped, power, 128
/// Slaney mels over 0–8 kHz, `log10(max(·, 1e-10))`, floored at the clip's maximum
/// − 8, then `(x + 4)/4`). `wav` at 16 kHz (more than 200 samples) → [128, len/160].
pub fn s3_tokenizer_log_mel(wav: &[f32]) -> Result<Tensor> {
    const N_FFT: usize = 400;
    const HOP: usize = 160;
    const N_MELS: usize = 128;
    let padded = reflect(wav, N_FFT / 2)?;
    let framed = frames(&padded, N_FFT, HOP)?;
    let count = framed.dim(0)?;
    let power = PowerSpectrum::new(N_FFT, &hann_periodic(N_FFT))?.power(&framed.narrow(
        0,
        0,
        count - 1,
    )?)?;
    let filters = slaney_mel_filters(S3_SR as f64, N_FFT, N_MELS, 0.0, S3_SR as f64 / 2.0);
    let log_spec = apply_filters(&filters, N_MELS, &power)?
        .clamp(1e-10, f64::INFINITY)?
        .log()?
        .affine(1.0 / 10f64.ln(), 0.0)?;
    let floor = log_spec.flatten_all()?.max(0)?.to_scalar::<f64>()? - 8.0;
    log_spec
        .clamp(floor, f64::INFINITY)?
        .affine(0.25, 1.0)?
        .to_dtype(DType::F32)
}

/// What `S3Tokenizer.forward([wav], max_len)` hands to `quantize` for one clip: the
/// log-mel cut to `4·max_len` frames (the maximum that floors it is the uncut
/// clip's), batched → ([1, 128, T], T).
pub fn s3_tokenizer_mel(wav: &[f32], max_len: Option<usize>) -> Result<(Tensor, usize)> {
    let mel = s3_tokenizer_log_mel(wav)?;
    let frames = mel.dim(1)?;
    let keep = max_len.map_or(frames, |n| frames.min(n * MEL_FRAMES_PER_TOKEN));
    Ok((mel.narrow(1, 0, keep)?.unsqueeze(0)?.contiguous()?, keep))
}

/// The tokenizer input of T3's speech prompt: `s3_tokzr.forward([ref_16k_wav[:
/// ENC_COND_LEN]], max_len=speech_cond_prompt_len)`. `wav` is the whole clip at
/// 16 kHz → ([1, 128, T], T).
pub fn t3_prompt_tokenizer_mel(wav: &[f32], cfg: &FeatureConfig) -> Result<(Tensor, usize)> {
    let wav = &wav[..wav.len().min(cfg.enc_cond_len)];
    s3_tokenizer_mel(wav, Some(cfg.speech_cond_prompt_len))
}

/// CAMPPlus's input (`xvector.py` `extract_feature`): `kaldi.fbank(wav,
/// num_mel_bins=80)` with torchaudio's defaults (25 ms frames every 10 ms, whole
/// frames only, no dither, DC removal, pre-emphasis 0.97, Povey window, 512-point
/// power spectrum, 80 mel bins over 20 Hz–8 kHz, `ln(max(·, f32::EPSILON))`), then
/// each bin's mean over time removed. `wav` at 16 kHz (at least 400 samples) →
/// [F, 80] with `F = 1 + (len − 400)/160`; the reference feeds it as [1, F, 80].
pub fn campplus_fbank(wav: &[f32]) -> Result<Tensor> {
    const WIN: usize = 400;
    const HOP: usize = 160;
    const PADDED: usize = 512;
    const N_MELS: usize = 80;
    const PREEMPHASIS: f64 = 0.97;
    let wav: Vec<f64> = wav.iter().map(|&v| v as f64).collect();
    let framed = frames(&wav, WIN, HOP)?;
    let count = framed.dim(0)?;
    let mut data = framed.flatten_all()?.to_vec1::<f64>()?;
    for frame in data.chunks_exact_mut(WIN) {
        let mean = frame.iter().sum::<f64>() / WIN as f64;
        frame.iter_mut().for_each(|v| *v -= mean);
        // x[j] −= 0.97·x[j−1], with x[−1] = x[0]; from the end so each uses the old value.
        for j in (1..WIN).rev() {
            frame[j] -= PREEMPHASIS * frame[j - 1];
        }
        frame[0] -= PREEMPHASIS * frame[0];
    }
    // Povey window: a symmetric Hann window to the power 0.85.
    let window: Vec<f64> = (0..WIN)
        .map(|i| (0.5 - 0.5 * (2.0 * PI * i as f64 / (WIN - 1) as f64).cos()).powf(0.85))
        .collect();
    let framed = Tensor::from_vec(data, (count, WIN), &Device::Cpu)?;
    let power = PowerSpectrum::new(PADDED, &window)?.power(&framed)?;
    let banks = kaldi_mel_banks(N_MELS, PADDED, S3_SR as f64, 20.0, 0.0);
    let fbank = apply_filters(&banks, N_MELS, &power)?
        .t()?
        .clamp(f32::EPSILON as f64, f64::INFINITY)?
        .log()?;
    fbank
        .broadcast_sub(&fbank.mean_keepdim(0)?)?
        .to_dtype(DType::F32)
}

/// `librosa.effects.trim(wav, top_db)` (RMS over 2048 samples every 512, zero-padded
/// by 1024 at both ends; frames within `top_db` of the loudest are kept, cut at
/// frame starts): the kept range `(start, end)`. A clip of zeros is kept whole, as
/// librosa keeps it.
pub fn trim_silence(wav: &[f32], top_db: f64) -> (usize, usize) {
    const FRAME: usize = 2048;
    const HOP: usize = 512;
    let count = 1 + wav.len() / HOP;
    let at = |i: isize| -> f64 {
        usize::try_from(i)
            .ok()
            .and_then(|i| wav.get(i))
            .map_or(0.0, |&v| v as f64)
    };
    let power: Vec<f64> = (0..count)
        .map(|f| {
            let start = (f * HOP) as isize - (FRAME / 2) as isize;
            (0..FRAME as isize)
                .map(|j| at(start + j).powi(2))
                .sum::<f64>()
                / FRAME as f64
        })
        .collect();
    // amplitude_to_db(rms, ref=max, amin=1e-5): 10·log10 of the clamped squares.
    const AMIN: f64 = 1e-10;
    let loudest = power.iter().cloned().fold(0.0, f64::max);
    let ref_db = 10.0 * loudest.max(AMIN).log10();
    let loud: Vec<usize> = (0..count)
        .filter(|&f| 10.0 * power[f].max(AMIN).log10() - ref_db > -top_db)
        .collect();
    match (loud.first(), loud.last()) {
        (Some(&first), Some(&last)) => (first * HOP, wav.len().min((last + 1) * HOP)),
        _ => (0, 0),
    }
}

/// The voice encoder's input (`VoiceEncoder.embeds_from_wavs` before
/// `embeds_from_mels`): the clip trimmed with [`trim_silence`], then
/// `melspectrogram` with `VoiceEncConfig` (n_fft 400, hop 160, periodic Hann,
/// centred STFT with reflect padding, power 2, 40 Slaney mels over 0–8 kHz, linear
/// amplitude: no dB, no normalisation). `wav` at 16 kHz → [F, 40] with
/// `F = 1 + trimmed/160`. The 160-frame partial windows are cut from this later.
pub fn voice_encoder_mel(wav: &[f32], cfg: &FeatureConfig) -> Result<Tensor> {
    const N_FFT: usize = 400;
    const HOP: usize = 160;
    const N_MELS: usize = 40;
    let (start, end) = match cfg.ve_trim_top_db {
        Some(db) if db > 0.0 => trim_silence(wav, db),
        _ => (0, wav.len()),
    };
    let padded = reflect(&wav[start..end], N_FFT / 2)?;
    let power =
        PowerSpectrum::new(N_FFT, &hann_periodic(N_FFT))?.power(&frames(&padded, N_FFT, HOP)?)?;
    let filters = slaney_mel_filters(S3_SR as f64, N_FFT, N_MELS, 0.0, 8000.0);
    apply_filters(&filters, N_MELS, &power)?
        .t()?
        .contiguous()?
        .to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_spectrum_of_a_cosine() -> Result<()> {
        // cos(2π·3t/16) with a rectangular window: bin 3 holds (16/2)² = 64.
        let x: Vec<f64> = (0..16)
            .map(|t| (2.0 * PI * 3.0 * t as f64 / 16.0).cos())
            .collect();
        let ps = PowerSpectrum::new(16, &[1.0; 16])?;
        let p = ps.power(&Tensor::from_vec(x, (1, 16), &Device::Cpu)?)?;
        let p = p.flatten_all()?.to_vec1::<f64>()?;
        for (k, v) in p.iter().enumerate() {
            let want = if k == 3 { 64.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-9, "bin {k}: {p:?}");
        }
        Ok(())
    }

    #[test]
    fn slaney_filters_have_unit_area_in_hz() {
        // Slaney normalisation: each triangle's area is 1 (height 2/width over a
        // base of width Hz); summed over a fine grid, weight·Δf ≈ 1.
        let n_fft = 8192;
        let f = slaney_mel_filters(16000.0, n_fft, 40, 0.0, 8000.0);
        let bins = n_fft / 2 + 1;
        let df = 16000.0 / n_fft as f64;
        for m in [0, 10, 39] {
            let area: f64 = f[m * bins..(m + 1) * bins]
                .iter()
                .map(|&w| w as f64 * df)
                .sum();
            assert!((area - 1.0).abs() < 0.02, "filter {m}: {area}");
        }
    }

    #[test]
    fn trim_keeps_the_loud_part() {
        let mut wav = vec![0f32; 16000];
        for (i, v) in wav.iter_mut().enumerate().skip(5000).take(4000) {
            *v = 0.3 * (i as f32 * 0.1).sin();
        }
        let (start, end) = trim_silence(&wav, 20.0);
        assert!((3001..=5000).contains(&start), "{start}");
        assert!((9000..11000).contains(&end), "{end}");
        // All zeros: every frame equals the loudest (librosa keeps everything).
        assert_eq!(trim_silence(&[0f32; 4000], 20.0), (0, 4000));
    }

    #[test]
    fn cuts_follow_the_config() -> Result<()> {
        let wav: Vec<f32> = (0..9600).map(|i| (i as f32 * 0.05).sin() * 0.1).collect();
        let cfg = FeatureConfig {
            dec_cond_len: 4800,
            enc_cond_len: 3200,
            speech_cond_prompt_len: 3,
            ve_trim_top_db: None,
        };
        assert_eq!(s3gen_prompt_feat(&wav, &cfg)?.dims(), [1, 10, 80]);
        let (mel, len) = t3_prompt_tokenizer_mel(&wav, &cfg)?;
        assert_eq!((mel.dims(), len), (&[1, 128, 12][..], 12));
        assert_eq!(s3_tokenizer_mel(&wav, None)?.0.dims(), [1, 128, 60]);
        assert_eq!(campplus_fbank(&wav)?.dims(), [58, 80]);
        assert_eq!(voice_encoder_mel(&wav, &cfg)?.dims(), [61, 40]);
        Ok(())
    }
}
