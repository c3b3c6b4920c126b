//! Reference clips for voice cloning: every accepted upload format decodes to the
//! right duration, is mixed down and resampled to 24 and 16 kHz and normalised to
//! −27 LUFS; short clips and damaged files are refused with the reason.

use voxpool::audio::clip::{self, ClipError, TARGET_LUFS};
use voxpool::audio::{encode, AudioFormat};

const OGG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/audio/voice_6s.ogg"
);

fn tone(seconds: f64, rate: u32) -> Vec<f32> {
    (0..(seconds * f64::from(rate)) as usize)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (0.25
                * (2.0 * std::f64::consts::PI * 180.0 * t).sin()
                * (0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin())) as f32
        })
        .collect()
}

/// Right channel = `right_gain` × left.
fn stereo_wav_f32(seconds: f64, rate: u32, right_gain: f32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for s in tone(seconds, rate) {
        w.write_sample(s).unwrap();
        w.write_sample(right_gain * s).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

fn check(name: &str, bytes: &[u8], seconds: f64, tolerance_s: f64) {
    let prepared = clip::prepare(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = prepared.wav_24k.len() as f64 / 24_000.0;
    assert!(
        (got - seconds).abs() <= tolerance_s,
        "{name}: {got} s, expected {seconds} s"
    );
    let ratio = prepared.wav_16k.len() as f64 / prepared.wav_24k.len() as f64;
    assert!(
        (ratio - 2.0 / 3.0).abs() < 1e-3,
        "{name}: 16/24 kHz ratio {ratio}"
    );
    let loudness = clip::integrated_loudness(&prepared.wav_24k, 24_000).unwrap();
    assert!(
        (loudness - TARGET_LUFS).abs() < 0.05,
        "{name}: {loudness} LUFS"
    );
    let lufs_16k = clip::integrated_loudness(&prepared.wav_16k, 16_000).unwrap();
    assert!(
        (lufs_16k - TARGET_LUFS).abs() < 0.5,
        "{name}: 16 kHz {lufs_16k} LUFS"
    );
}

#[test]
fn every_accepted_format_becomes_a_normalised_clip() {
    let mono_44k = tone(6.0, 44_100);
    let mp3 = encode(AudioFormat::Mp3, &mono_44k, 44_100).unwrap();
    // mp3 adds encoder delay and padding: a frame or two.
    check("mp3", &mp3, 6.0, 0.1);
    let flac = encode(AudioFormat::Flac, &tone(6.5, 24_000), 24_000).unwrap();
    check("flac", &flac, 6.5, 1e-3);
    let wav16 = encode(AudioFormat::Wav, &tone(5.5, 22_050), 22_050).unwrap();
    check("wav s16", &wav16, 5.5, 1e-3);
    check(
        "wav f32 stereo",
        &stereo_wav_f32(6.0, 48_000, 0.5),
        6.0,
        1e-3,
    );
    let ogg = std::fs::read(OGG).unwrap();
    check("ogg vorbis", &ogg, 6.0, 1e-3);
}

#[test]
fn stereo_is_mixed_down_to_the_mean() {
    // Left and right in opposite phase cancel out: nothing is left to hear.
    let decoded = clip::decode(&stereo_wav_f32(1.0, 16_000, -1.0), 300.0).unwrap();
    assert_eq!(decoded.sample_rate, 16_000);
    assert_eq!(decoded.samples.len(), 16_000);
    assert!(decoded.samples.iter().all(|s| s.abs() < 1e-6));
}

#[test]
fn short_long_and_damaged_uploads_are_refused() {
    let short = encode(AudioFormat::Wav, &tone(4.9, 24_000), 24_000).unwrap();
    match clip::prepare(&short) {
        Err(ClipError::TooShort { seconds }) => assert!((seconds - 4.9).abs() < 1e-3),
        other => panic!("{other:?}"),
    }
    let message = clip::prepare(&short).unwrap_err().to_string();
    assert!(message.contains("longer than 5 s"), "{message}");

    let long = encode(AudioFormat::Wav, &vec![0.0; 8_000 * 12], 8_000).unwrap();
    assert_eq!(clip::decode(&long, 10.0), Err(ClipError::TooLong));

    let mut mp3 = encode(AudioFormat::Mp3, &tone(6.0, 24_000), 24_000).unwrap();
    mp3.truncate(200);
    match clip::prepare(&mp3) {
        Err(ClipError::TooShort { .. }) | Err(ClipError::Format(_)) | Err(ClipError::Empty) => {}
        other => panic!("a truncated mp3 must be refused: {other:?}"),
    }
    let mut ogg = std::fs::read(OGG).unwrap();
    for b in ogg.iter_mut().skip(200).step_by(7) {
        *b ^= 0x5a;
    }
    // A damaged stream is either refused or decodes to what survives; never a panic.
    let _ = clip::prepare(&ogg);
    let message = clip::prepare(b"GIF89a not audio").unwrap_err().to_string();
    assert!(message.contains("wav, mp3, flac or ogg"), "{message}");
}
