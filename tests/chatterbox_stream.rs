//! Chatterbox Turbo rendered while T3 speaks (`engine::chatterbox::stream`): HiFT
//! windows against one pass over the same mel, and a sentence cut in chunks against
//! the same sentence rendered whole, on the tiny S3Gen and HiFT fixtures.

use candle_core::{DType, Device, Result};
use candle_nn::VarBuilder;
use voxpool::engine::chatterbox::s3gen::hifigan::{HiFTConfig, HiFTGenerator};
use voxpool::engine::chatterbox::s3gen::{PromptRef, S3GenConfig, S3Token2Mel};
use voxpool::engine::chatterbox::stream::{SpeechRenderer, StreamPlan};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatterbox");
const RATE: u32 = 24_000;
const BANDS: usize = 80;

struct Models {
    s3gen: S3Token2Mel,
    hift: HiFTGenerator,
    prompt: PromptRef,
}

fn load() -> Result<Models> {
    let dev = Device::Cpu;
    let read = |name: &str| std::fs::read_to_string(format!("{FIXTURES}/{name}"));
    let s3_cfg = S3GenConfig::from_json(&read("s3gen_tiny_config.json")?)
        .map_err(candle_core::Error::wrap)?;
    let hift_cfg =
        HiFTConfig::from_json(&read("hift_tiny_config.json")?).map_err(candle_core::Error::wrap)?;
    let s3 = candle_core::safetensors::load(format!("{FIXTURES}/s3gen_tiny.safetensors"), &dev)?;
    let hift = candle_core::safetensors::load(format!("{FIXTURES}/hift_tiny.safetensors"), &dev)?;
    let io = candle_core::safetensors::load(format!("{FIXTURES}/s3gen_tiny_io.safetensors"), &dev)?;
    let get = |k: &str| io.get(k).cloned().expect(k);
    Ok(Models {
        s3gen: S3Token2Mel::load(VarBuilder::from_tensors(s3, DType::F32, &dev), &s3_cfg)?,
        hift: HiFTGenerator::load(
            VarBuilder::from_tensors(hift, DType::F32, &dev).pp("mel2wav"),
            &hift_cfg,
        )?,
        prompt: PromptRef {
            prompt_token: get("case0.prompt_token"),
            prompt_feat: get("case0.prompt_feat"),
            embedding: get("case0.embedding"),
        },
    })
}

fn renderer(m: &Models, plan: StreamPlan, seed: u64) -> Result<SpeechRenderer<'_>> {
    SpeechRenderer::new(&m.s3gen, &m.hift, &m.prompt, plan, seed, RATE)
}

/// Signal-to-noise ratio of `got` against `want`, in dB.
fn snr_db(want: &[f32], got: &[f32]) -> f64 {
    assert_eq!(want.len(), got.len());
    let signal: f64 = want.iter().map(|&w| f64::from(w).powi(2)).sum();
    let noise: f64 = want
        .iter()
        .zip(got)
        .map(|(&w, &g)| f64::from(w - g).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// A mel that moves like speech: a few slow sines per band around the prompt's level.
fn test_mel(frames: usize) -> Vec<f32> {
    let mut mel = Vec::with_capacity(frames * BANDS);
    for t in 0..frames {
        for b in 0..BANDS {
            let (t, b) = (t as f32, b as f32);
            mel.push(-4.0 + 1.5 * (0.07 * t + 0.3 * b).sin() + 0.8 * (0.19 * t - 0.11 * b).cos());
        }
    }
    mel
}

/// Mel frames in chunks, each with the next few frames as provisional, give the audio
/// one pass gives: HiFT's windows overlap by more than its receptive field and the
/// source's phase runs on across them.
#[test]
fn hift_windows_give_the_audio_of_one_pass() -> Result<()> {
    let m = load()?;
    let frames = 300;
    let mel = test_mel(frames);
    let whole = renderer(&m, StreamPlan::default(), 5)?.push_mel(&mel, &[], true)?;
    assert_eq!(whole.len(), frames * m.hift.upsample_scale());
    for cuts in [
        vec![20, 40, 80, 200],
        vec![1, 2, 3, 50, 51, 150],
        vec![7, 290],
    ] {
        let mut r = renderer(&m, StreamPlan::default(), 5)?;
        let mut audio = Vec::new();
        let mut at = 0;
        for &cut in &cuts {
            let provisional = &mel[cut * BANDS..((cut + 6).min(frames)) * BANDS];
            audio.extend(r.push_mel(&mel[at * BANDS..cut * BANDS], provisional, false)?);
            at = cut;
        }
        audio.extend(r.push_mel(&mel[at * BANDS..], &[], true)?);
        let snr = snr_db(&whole, &audio);
        let worst = whole
            .iter()
            .zip(&audio)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("cuts {cuts:?}: SNR {snr:.1} dB, largest difference {worst:.2e}");
        assert!(snr > 80.0, "cuts {cuts:?}: SNR {snr:.1} dB");
    }
    Ok(())
}

/// A sentence's tokens arriving one by one render in chunks whose mel stays close to
/// the whole sentence's (same tokens, same noise per frame), and the audio has the
/// same length; the same seed renders the same audio again.
#[test]
fn a_sentence_in_chunks_stays_close_to_it_whole() -> Result<()> {
    let m = load()?;
    let tokens: Vec<u32> = (0..160u32).map(|i| (i * 37 + 11) % 6561).collect();
    let mut whole = renderer(&m, StreamPlan::default(), 9)?;
    let whole_audio = whole.finish(&tokens)?;
    let whole_mel = whole.mel()?.flatten_all()?.to_vec1::<f32>()?;
    let streamed = |plan: StreamPlan| -> Result<(Vec<f32>, Vec<f32>, usize, usize)> {
        let mut r = renderer(&m, plan, 9)?;
        let mut audio = Vec::new();
        let mut first = 0;
        for n in 1..tokens.len() {
            let piece = r.push(&tokens[..n])?;
            if first == 0 && !piece.is_empty() {
                first = n;
            }
            audio.extend(piece);
        }
        audio.extend(r.finish(&tokens)?);
        let mel = r.mel()?.flatten_all()?.to_vec1::<f32>()?;
        Ok((audio, mel, r.chunks(), first))
    };
    let (audio, mel, chunks, first) = streamed(StreamPlan::default())?;
    assert_eq!(audio.len(), whole_audio.len());
    assert_eq!(mel.len(), whole_mel.len());
    assert!(chunks >= 4, "{chunks} chunks");
    assert_eq!(
        first, 11,
        "first audio after the first 8 tokens and 3 ahead"
    );
    let mel_snr = snr_db(&whole_mel, &mel);
    println!("default plan: {chunks} chunks, mel SNR {mel_snr:.1} dB");
    assert!(mel_snr > 10.0, "mel SNR {mel_snr:.1} dB");
    let again = streamed(StreamPlan::default())?;
    assert_eq!(again.0, audio);
    // The voice's whole prompt and every earlier token as context: only the cuts
    // and the look-ahead differ from one pass.
    let (_, mel, _, _) = streamed(StreamPlan {
        prompt_tokens: usize::MAX,
        context_tokens: usize::MAX,
        ..StreamPlan::default()
    })?;
    println!(
        "whole prompt and context: mel SNR {:.1} dB",
        snr_db(&whole_mel, &mel)
    );
    Ok(())
}

/// Official sizes (`S3GEN_FULL_DIR` and `VOXPOOL_HIFT_FULL`, the `--full` outputs of
/// the fixture scripts, not committed): how close chunks come to one pass, and what
/// they cost, for several plans. Prints a table.
/// `cargo test --release --test chatterbox_stream -- --ignored --nocapture`
#[test]
#[ignore = "needs the full-size random weights written by the fixture scripts"]
fn full_size_plans() -> Result<()> {
    let dev = Device::Cpu;
    let s3_dir = std::env::var("S3GEN_FULL_DIR").unwrap_or_else(|_| "/tmp/s3gen-full".into());
    let hift_dir = std::env::var("VOXPOOL_HIFT_FULL").unwrap_or_else(|_| "/tmp/hift-full".into());
    let s3 = candle_core::safetensors::load(format!("{s3_dir}/s3gen_full.safetensors"), &dev)?;
    let hift = candle_core::safetensors::load(format!("{hift_dir}/hift_full.safetensors"), &dev)?;
    let io = candle_core::safetensors::load(format!("{s3_dir}/s3gen_full_io.safetensors"), &dev)?;
    let get = |k: &str| io[&format!("case0.{k}")].clone();
    let m = Models {
        s3gen: S3Token2Mel::load(
            VarBuilder::from_tensors(s3, DType::F32, &dev),
            &S3GenConfig::turbo(),
        )?,
        hift: HiFTGenerator::load(
            VarBuilder::from_tensors(hift, DType::F32, &dev).pp("mel2wav"),
            &HiFTConfig::s3gen(),
        )?,
        prompt: PromptRef {
            prompt_token: get("prompt_token"),
            prompt_feat: get("prompt_feat"),
            embedding: get("embedding"),
        },
    };
    voxpool::engine::nn::reuse_freed_heap();
    let n: usize = std::env::var("STREAM_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(78);
    let tokens: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 11) % 6561).collect();
    let seconds = |audio: &[f32]| audio.len() as f64 / f64::from(RATE);
    let started = std::time::Instant::now();
    let mut whole = renderer(&m, StreamPlan::default(), 9)?;
    let whole_audio = whole.finish(&tokens)?;
    let whole_time = started.elapsed().as_secs_f64();
    let whole_mel = whole.mel()?.flatten_all()?.to_vec1::<f32>()?;
    println!(
        "{n} tokens, {:.2} s of audio: whole {whole_time:.2} s",
        seconds(&whole_audio)
    );
    // What any rendering that cannot see the future is up against: the same tokens
    // followed by more, rendered whole, over the frames of the first `n`.
    for extra in [3usize, 10, 25] {
        let longer: Vec<u32> = (0..(n + extra) as u32)
            .map(|i| (i * 37 + 11) % 6561)
            .collect();
        let mut r = renderer(&m, StreamPlan::default(), 9)?;
        r.finish(&longer)?;
        let mel = r
            .mel()?
            .narrow(2, 0, 2 * n)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        println!(
            "whole, {extra} tokens more after them: mel SNR {:.1} dB over the first {n} tokens",
            snr_db(&whole_mel, &mel)
        );
    }
    let d = StreamPlan::default();
    let plans = [
        d.clone(),
        StreamPlan {
            first_prompt_tokens: 100,
            ..d.clone()
        },
        StreamPlan {
            context_tokens: 25,
            ..d.clone()
        },
        StreamPlan {
            prompt_tokens: 50,
            ..d.clone()
        },
        StreamPlan {
            prompt_tokens: 150,
            ..d.clone()
        },
        StreamPlan {
            prompt_tokens: usize::MAX,
            ..d.clone()
        },
        StreamPlan {
            context_as_prompt: true,
            ..d.clone()
        },
        StreamPlan {
            first_tokens: 6,
            ..d.clone()
        },
    ];
    for plan in plans {
        let mut r = renderer(&m, plan.clone(), 9)?;
        let started = std::time::Instant::now();
        let mut first = None;
        let mut audio = Vec::new();
        let mut joins = Vec::new();
        for k in 1..tokens.len() {
            let piece = r.push(&tokens[..k])?;
            if first.is_none() && !piece.is_empty() {
                first = Some((k, started.elapsed().as_secs_f64(), seconds(&piece)));
            }
            if !piece.is_empty() && !audio.is_empty() {
                joins.push(audio.len());
            }
            audio.extend(piece);
        }
        joins.push(audio.len());
        audio.extend(r.finish(&tokens)?);
        let step = |i: usize| (audio[i] - audio[i - 1]).abs();
        let mut steps: Vec<f32> = (1..audio.len()).map(step).collect();
        steps.sort_by(f32::total_cmp);
        let p999 = steps[steps.len() * 999 / 1000];
        let join_step = joins.iter().map(|&i| step(i)).fold(0f32, f32::max);
        let total = started.elapsed().as_secs_f64();
        let mel = r.mel()?.flatten_all()?.to_vec1::<f32>()?;
        let (k, t, s) = first.unwrap_or((0, 0.0, 0.0));
        println!(
            "prompt {:>4} ({:>3} first) context {:>3}{} lookahead {} first {:>2} max {:>3}: {} chunks, mel SNR {:.1} dB, \
             largest step at a join {join_step:.4} (inside: 99.9th percentile {p999:.4}), \
             first {s:.2} s of audio after token {k} in {t:.2} s, total {total:.2} s",
            plan.prompt_tokens.min(9999),
            plan.first_prompt_tokens.min(999),
            plan.context_tokens.min(999),
            if plan.context_as_prompt { " as prompt" } else { "" },
            plan.lookahead,
            plan.first_tokens,
            plan.max_tokens,
            r.chunks(),
            snr_db(&whole_mel, &mel),
        );
    }
    Ok(())
}
