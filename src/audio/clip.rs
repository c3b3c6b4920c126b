//! Reference clips for voice cloning: decode an uploaded recording (wav, mp3, flac,
//! ogg/vorbis), mix it down to mono, resample it and normalise its loudness the way
//! Chatterbox's `prepare_conditionals` does before computing a voice's conditioning.

use std::io::Cursor;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The formats an upload may be in, as error messages name them.
pub const ACCEPTED_FORMATS: &str = "wav, mp3, flac or ogg (vorbis)";
/// Chatterbox refuses reference clips of 5 seconds or less.
pub const MIN_SECONDS: f64 = 5.0;
/// Longer clips would only cost time: the speaker encoders average over the whole
/// clip, while S3Gen keeps its first 10 s and the tokenizer its first 15 s.
pub const MAX_SECONDS: f64 = 300.0;
/// The loudness Chatterbox normalises reference clips to (`norm_loudness`).
pub const TARGET_LUFS: f64 = -27.0;

/// A reference clip ready for the conditioning encoders.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceClip {
    /// Mono, 24 kHz, loudness-normalised (S3Gen's rate).
    pub wav_24k: Vec<f32>,
    /// The same clip resampled to 16 kHz (the speech tokenizer's and voice encoder's rate).
    pub wav_16k: Vec<f32>,
}

impl ReferenceClip {
    pub fn seconds(&self) -> f64 {
        self.wav_24k.len() as f64 / 24_000.0
    }
}

/// Why an upload cannot be used as a reference clip; every case is the client's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClipError {
    #[error("audio_sample could not be decoded ({0}); upload {ACCEPTED_FORMATS}")]
    Format(String),
    #[error("audio_sample holds no audio; upload {ACCEPTED_FORMATS}")]
    Empty,
    #[error(
        "audio_sample is {seconds:.2} s long; a reference clip must be longer than {MIN_SECONDS} s"
    )]
    TooShort { seconds: f64 },
    #[error(
        "audio_sample is longer than {MAX_SECONDS} s; upload a shorter clip (10 to 30 s is plenty)"
    )]
    TooLong,
}

/// Decoded audio: mono samples at the file's own rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Decode `bytes` (any container and codec listed in [`ACCEPTED_FORMATS`]) to mono
/// f32, the mean of the channels. Stops with [`ClipError::TooLong`] once more than
/// `max_seconds` have been decoded, so a small file cannot expand without bound.
pub fn decode(bytes: &[u8], max_seconds: f64) -> Result<Decoded, ClipError> {
    // The decoders are written not to panic on corrupt input; a panic would still
    // be the upload's fault, so it is reported as one.
    let owned = bytes.to_vec();
    std::panic::catch_unwind(move || decode_inner(owned, max_seconds)).unwrap_or_else(|_| {
        Err(ClipError::Format(
            "the decoder rejected the stream".to_string(),
        ))
    })
}

fn decode_inner(bytes: Vec<u8>, max_seconds: f64) -> Result<Decoded, ClipError> {
    let format_err = |e: SymphoniaError| ClipError::Format(short_reason(&e));
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            // Gapless: drop encoder delay and padding (mp3 LAME headers, Ogg granules).
            &FormatOptions {
                enable_gapless: true,
                ..FormatOptions::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(format_err)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| ClipError::Format("no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(format_err)?;
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut samples: Vec<f32> = Vec::new();
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(format_err(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(format_err(e)),
        };
        let spec = *decoded.spec();
        if spec.rate == 0 {
            return Err(ClipError::Format("sample rate 0".into()));
        }
        sample_rate = spec.rate;
        let channels = spec.channels.count().max(1);
        let frames = decoded.capacity() as u64;
        let buf = match &mut buffer {
            Some(b) if b.capacity() >= decoded.capacity() * channels => b,
            _ => buffer.insert(SampleBuffer::new(frames, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        samples.extend(
            buf.samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        if samples.len() as f64 > max_seconds * f64::from(sample_rate) {
            return Err(ClipError::TooLong);
        }
    }
    if samples.is_empty() || sample_rate == 0 {
        return Err(ClipError::Empty);
    }
    // Some encoders write NaN or huge values into damaged frames: keep the math finite.
    for s in &mut samples {
        if !s.is_finite() {
            *s = 0.0;
        }
    }
    Ok(Decoded {
        samples,
        sample_rate,
    })
}

/// The first line of a decoder error, without internals a client cannot act on.
fn short_reason(e: &SymphoniaError) -> String {
    match e {
        SymphoniaError::Unsupported(what) => format!("unsupported {what}"),
        SymphoniaError::IoError(_) => "the stream ended early".into(),
        SymphoniaError::DecodeError(what) => format!("malformed stream: {what}"),
        other => other.to_string(),
    }
}

/// Resample mono `samples` from `from` Hz to `to` Hz (band-limited, FFT based).
/// The output has `round(len · to / from)` samples and no added delay.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let wanted = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let chunk = 1024;
    let mut resampler = match FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, 1) {
        Ok(r) => r,
        // Only zero rates are refused, and decode never returns one.
        Err(_) => return Vec::new(),
    };
    let delay = resampler.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(wanted + delay + chunk);
    let mut pos = 0;
    while pos + resampler.input_frames_next() <= samples.len() {
        let n = resampler.input_frames_next();
        if let Ok(block) = resampler.process(&[&samples[pos..pos + n]], None) {
            out.extend_from_slice(&block[0]);
        }
        pos += n;
    }
    let rest: &[f32] = &samples[pos..];
    if let Ok(block) = resampler.process_partial(Some(&[rest]), None) {
        out.extend_from_slice(&block[0]);
    }
    while out.len() < wanted + delay {
        match resampler.process_partial::<&[f32]>(None, None) {
            Ok(block) if !block[0].is_empty() => out.extend_from_slice(&block[0]),
            _ => break,
        }
    }
    out.drain(..delay.min(out.len()));
    out.truncate(wanted);
    out.resize(wanted, 0.0);
    out
}

/// BS.1770 integrated loudness (K-weighting, 400 ms blocks with 75 % overlap,
/// absolute gate −70 LUFS, relative gate −10 LU), as `pyloudnorm.Meter` measures
/// it. `-inf` for silence; `None` when the clip is shorter than one block.
pub fn integrated_loudness(samples: &[f32], rate: u32) -> Option<f64> {
    let rate_f = f64::from(rate);
    let block = 0.4;
    if (samples.len() as f64) < block * rate_f {
        return None;
    }
    let mut x: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    // pyloudnorm's K-weighting: RBJ high shelf (+4 dB at 1500 Hz, Q 1/√2), then an
    // RBJ high pass (38 Hz, Q 0.5).
    biquad(
        &mut x,
        rbj_high_shelf(4.0, 1.0 / 2f64.sqrt(), 1500.0, rate_f),
    );
    biquad(&mut x, rbj_high_pass(0.5, 38.0, rate_f));
    let step = 0.25;
    let t = samples.len() as f64 / rate_f;
    let blocks = (((t - block) / (block * step)).round() as i64 + 1).max(0) as usize;
    let z: Vec<f64> = (0..blocks)
        .map(|j| {
            let lo = ((block * (j as f64 * step)) * rate_f) as usize;
            let hi = (((block * (j as f64 * step + 1.0)) * rate_f) as usize).min(x.len());
            let sum: f64 = x[lo.min(hi)..hi].iter().map(|v| v * v).sum();
            sum / (block * rate_f)
        })
        .collect();
    let loudness = |z: f64| -0.691 + 10.0 * z.log10();
    let mean_over = |keep: &dyn Fn(f64) -> bool| -> f64 {
        let kept: Vec<f64> = z.iter().copied().filter(|&zj| keep(loudness(zj))).collect();
        if kept.is_empty() {
            f64::NAN
        } else {
            kept.iter().sum::<f64>() / kept.len() as f64
        }
    };
    let gamma_a = -70.0;
    let gamma_r = loudness(mean_over(&|l| l >= gamma_a)) - 10.0;
    let gated = mean_over(&|l| l > gamma_r && l > gamma_a);
    // numpy's nan_to_num: no block above the gates measures as silence.
    let gated = if gated.is_nan() { 0.0 } else { gated };
    Some(loudness(gated))
}

/// Scale `samples` to `target_lufs` integrated loudness; unchanged when the gain
/// would not be finite (silence, or a clip shorter than one 400 ms block).
pub fn normalize_loudness(samples: &mut [f32], rate: u32, target_lufs: f64) {
    let Some(loudness) = integrated_loudness(samples, rate) else {
        return;
    };
    let gain = 10f64.powf((target_lufs - loudness) / 20.0);
    if gain.is_finite() && gain > 0.0 {
        for s in samples.iter_mut() {
            *s = (f64::from(*s) * gain) as f32;
        }
    }
}

/// Turn an upload into a reference clip as Chatterbox does: decode, resample to
/// 24 kHz, require more than [`MIN_SECONDS`], normalise to [`TARGET_LUFS`], then
/// derive the 16 kHz copy from the normalised 24 kHz clip.
pub fn prepare(bytes: &[u8]) -> Result<ReferenceClip, ClipError> {
    let decoded = decode(bytes, MAX_SECONDS)?;
    let mut wav_24k = resample(&decoded.samples, decoded.sample_rate, 24_000);
    let seconds = wav_24k.len() as f64 / 24_000.0;
    if seconds <= MIN_SECONDS {
        return Err(ClipError::TooShort { seconds });
    }
    normalize_loudness(&mut wav_24k, 24_000, TARGET_LUFS);
    let wav_16k = resample(&wav_24k, 24_000, 16_000);
    Ok(ReferenceClip { wav_24k, wav_16k })
}

/// Biquad coefficients `(b0, b1, b2, a1, a2)`, normalised by `a0`.
type Biquad = [f64; 5];

fn normalised(b: [f64; 3], a: [f64; 3]) -> Biquad {
    [
        b[0] / a[0],
        b[1] / a[0],
        b[2] / a[0],
        a[1] / a[0],
        a[2] / a[0],
    ]
}

fn rbj_high_shelf(gain_db: f64, q: f64, fc: f64, rate: f64) -> Biquad {
    let a = 10f64.powf(gain_db / 40.0);
    let w0 = 2.0 * std::f64::consts::PI * fc / rate;
    let alpha = w0.sin() / (2.0 * q);
    let (c, sa) = (w0.cos(), 2.0 * a.sqrt() * alpha);
    normalised(
        [
            a * ((a + 1.0) + (a - 1.0) * c + sa),
            -2.0 * a * ((a - 1.0) + (a + 1.0) * c),
            a * ((a + 1.0) + (a - 1.0) * c - sa),
        ],
        [
            (a + 1.0) - (a - 1.0) * c + sa,
            2.0 * ((a - 1.0) - (a + 1.0) * c),
            (a + 1.0) - (a - 1.0) * c - sa,
        ],
    )
}

fn rbj_high_pass(q: f64, fc: f64, rate: f64) -> Biquad {
    let w0 = 2.0 * std::f64::consts::PI * fc / rate;
    let alpha = w0.sin() / (2.0 * q);
    let c = w0.cos();
    normalised(
        [(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0],
        [1.0 + alpha, -2.0 * c, 1.0 - alpha],
    )
}

/// Direct form II transposed, as `scipy.signal.lfilter` runs it.
fn biquad(x: &mut [f64], [b0, b1, b2, a1, a2]: Biquad) {
    let (mut z1, mut z2) = (0.0, 0.0);
    for v in x.iter_mut() {
        let input = *v;
        let y = b0 * input + z1;
        z1 = b1 * input - a1 * y + z2;
        z2 = b2 * input - a2 * y;
        *v = y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, amp: f32, seconds: f64, rate: u32) -> Vec<f32> {
        (0..(seconds * f64::from(rate)) as usize)
            .map(|i| {
                amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32
            })
            .collect()
    }

    #[test]
    fn loudness_matches_pyloudnorm() {
        // pyloudnorm 0.1.1: Meter(24000).integrated_loudness of these two signals.
        let a = tone(1000.0, 0.5, 3.0, 24_000);
        let la = integrated_loudness(&a, 24_000).unwrap();
        assert!((la - -9.0774).abs() < 1e-3, "{la}");
        let mut b = tone(200.0, 0.1, 2.0, 24_000);
        b.extend(vec![0.0; 24_000]);
        b.extend(tone(3000.0, 0.3, 2.0, 24_000));
        let lb = integrated_loudness(&b, 24_000).unwrap();
        assert!((lb - -10.7069).abs() < 1e-3, "{lb}");
    }

    #[test]
    fn silence_and_short_clips_are_left_alone() {
        let mut silent = vec![0.0f32; 48_000];
        normalize_loudness(&mut silent, 24_000, TARGET_LUFS);
        assert!(silent.iter().all(|&s| s == 0.0));
        assert_eq!(integrated_loudness(&[0.1; 100], 24_000), None);
    }

    #[test]
    fn normalised_clip_measures_the_target() {
        let mut a = tone(440.0, 0.05, 6.0, 24_000);
        normalize_loudness(&mut a, 24_000, TARGET_LUFS);
        let l = integrated_loudness(&a, 24_000).unwrap();
        assert!((l - TARGET_LUFS).abs() < 1e-6, "{l}");
    }

    #[test]
    fn resampling_keeps_length_and_pitch() {
        let x = tone(440.0, 0.5, 1.0, 44_100);
        let y = resample(&x, 44_100, 24_000);
        assert_eq!(y.len(), 24_000);
        let reference = tone(440.0, 0.5, 1.0, 24_000);
        // Away from the edges the resampled tone is the tone sampled at 24 kHz.
        let err = y[2_000..22_000]
            .iter()
            .zip(&reference[2_000..22_000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.01, "max error {err}");
        let down = resample(&reference, 24_000, 16_000);
        assert_eq!(down.len(), 16_000);
    }

    #[test]
    fn garbage_is_a_format_error() {
        for bytes in [
            &b""[..],
            b"RIFF\0\0\0\0WAVE",
            &[0xff; 4096][..],
            b"hello world",
        ] {
            match decode(bytes, MAX_SECONDS) {
                Err(ClipError::Format(_)) | Err(ClipError::Empty) => {}
                other => panic!("{other:?}"),
            }
        }
    }
}
