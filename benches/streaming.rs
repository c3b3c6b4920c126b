//! Time to first audio over HTTP, per response format and streaming mode, with the
//! Kokoro engine warm; and each encoder's throughput.
//!
//!     cargo bench --bench streaming
//!     VOXPOOL_BENCH_MODELS=~/.cache/huggingface/hub VOXPOOL_BENCH_VOICE=af_heart cargo bench --bench streaming
//!
//! Always measures the tiny Kokoro checkpoint of the test fixtures; with
//! `VOXPOOL_BENCH_MODELS` (a models folder holding a full-size Kokoro, e.g. the real
//! weights prepared by `tools/realweights/prepare.sh`, or random ones) the full-size
//! model too. The input is ~300 characters whose first sentence is short: every
//! format (and SSE) sends it as soon as it is spoken, and "whole" is when the last
//! byte arrives, what a client that waits for the full file gets. Medians of
//! `VOXPOOL_BENCH_RUNS` (default 5) runs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use voxpool::audio::{encode, AudioFormat};
use voxpool::config::Config;
use voxpool::engine::Registry;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kokoro");
const INPUT: &str = "Hello there. This benchmark measures how soon the first audio \
    arrives, with a longer second sentence that keeps the model busy for a while after \
    the first one. A third sentence follows, and then a fourth, so that the whole \
    response is several seconds long when it is spoken at normal speed.";

fn install_tiny(models: &Path) {
    let snap = models.join("models--hexgrad--Kokoro-82M/snapshots/tiny");
    std::fs::create_dir_all(snap.join("voices")).unwrap();
    std::fs::copy(format!("{FIXTURES}/tiny.pth"), snap.join("kokoro-v1_0.pth")).unwrap();
    std::fs::copy(
        format!("{FIXTURES}/tiny_config.json"),
        snap.join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        format!("{FIXTURES}/voices/tiny_a.pt"),
        snap.join("voices/tiny_a.pt"),
    )
    .unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// (time to the first body bytes, time to the last, bytes) of one request.
async fn timed(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> (Duration, Duration, usize) {
    let start = Instant::now();
    let mut resp = client.post(url).json(body).send().await.expect("request");
    assert_eq!(resp.status(), 200, "{body}");
    let mut first = None;
    let mut bytes = 0;
    while let Some(chunk) = resp.chunk().await.expect("body") {
        if first.is_none() && !chunk.is_empty() {
            first = Some(start.elapsed());
        }
        bytes += chunk.len();
    }
    (first.unwrap_or_default(), start.elapsed(), bytes)
}

async fn measure(label: &str, models: &Path, voice: &str, runs: usize, estimate: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::local(&format!(
        "sqlite://{}/bench.db?mode=rwc",
        dir.path().display()
    ))
    .unwrap();
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    config.models_dir = models.to_path_buf();
    let server = voxpool::Server::start(config, Registry::builtin())
        .await
        .unwrap();
    let url = format!("http://{}/v1/audio/speech", server.addr());
    let client = reqwest::Client::new();
    let request = |format: &str, sse: bool| {
        let mut b =
            json!({"model": "kokoro", "input": INPUT, "voice": voice, "response_format": format});
        if sse {
            b["stream_format"] = json!("sse");
        }
        b
    };
    // Warm: the model loads (and its weights are converted) outside the timings.
    timed(&client, &url, &request("pcm", false)).await;
    println!(
        "\n{label}: {} characters, first sentence \"Hello there.\"",
        INPUT.len()
    );
    println!(
        "{:<16} {:>12} {:>12} {:>10}",
        "format", "first audio", "whole", "bytes"
    );
    let mut first_pcm = Duration::ZERO;
    for (format, sse, name) in [
        ("pcm", false, "pcm (chunked)"),
        ("mp3", false, "mp3 (chunked)"),
        ("opus", false, "opus (chunked)"),
        ("aac", false, "aac (chunked)"),
        ("wav", false, "wav (exact)"),
        ("flac", false, "flac (exact)"),
        ("pcm", true, "pcm (SSE)"),
        ("wav", true, "wav (SSE)"),
    ] {
        let mut firsts = Vec::new();
        let mut totals = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let (first, total, bytes) = timed(&client, &url, &request(format, sse)).await;
            firsts.push(first);
            totals.push(total);
            size = bytes;
        }
        let first = median(firsts);
        if name == "pcm (chunked)" {
            first_pcm = first;
        }
        println!(
            "{name:<16} {:>10.3} s {:>10.3} s {size:>10}",
            first.as_secs_f64(),
            median(totals).as_secs_f64()
        );
    }
    // The other way to an exact header: predict every sentence's duration first
    // (Kokoro's text encoder and duration predictor), send the header, then speak.
    // Its first audio comes no sooner than those predictions plus the first sentence.
    // (Full size only: the tiny checkpoint's 64 positions do not hold a sentence.)
    if estimate {
        let (models, voice) = (models.to_path_buf(), voice.to_string());
        let predict = tokio::task::spawn_blocking(move || durations_first(&models, &voice, runs))
            .await
            .unwrap();
        println!(
            "exact length first (estimate): durations of all sentences {:.3} s + first sentence {:.3} s = first audio >= {:.3} s",
            predict.as_secs_f64(),
            first_pcm.as_secs_f64(),
            (predict + first_pcm).as_secs_f64()
        );
    }
    server.shutdown().await;
}

/// Median time to predict the durations of every sentence of [`INPUT`], in this
/// process, with the model warm.
fn durations_first(models: &Path, voice: &str, runs: usize) -> Duration {
    use voxpool::engine::kokoro::engine::KokoroEngine;
    use voxpool::engine::kokoro::weights::KokoroFiles;
    let cache = tempfile::tempdir().unwrap();
    let files = KokoroFiles::locate(models).unwrap();
    let engine = KokoroEngine::load(&files, cache.path(), &candle_core::Device::Cpu).unwrap();
    let phonemes: Vec<String> = voxpool::text::split_sentences(INPUT)
        .iter()
        .map(|s| {
            voxpool::text::g2p::phonemize(s, voxpool::text::Language::AmericanEnglish).unwrap()
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..=runs {
        let started = Instant::now();
        for p in &phonemes {
            engine.predicted_frames(p, voice, 1.0).unwrap();
        }
        times.push(started.elapsed());
    }
    times.remove(0); // warm-up
    median(times)
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("VOXPOOL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Time to first audio over HTTP, warm model — {}, {cores} cores",
        common::cpu_model()
    );

    let tiny = tempfile::tempdir().unwrap();
    install_tiny(tiny.path());
    measure(
        "Kokoro, tiny test checkpoint",
        tiny.path(),
        "tiny_a",
        runs,
        false,
    )
    .await;
    if let Ok(models) = std::env::var("VOXPOOL_BENCH_MODELS") {
        let voice = std::env::var("VOXPOOL_BENCH_VOICE").unwrap_or_else(|_| "af_heart".into());
        measure(
            &format!("Kokoro, full size ({models}, voice {voice})"),
            Path::new(&models),
            &voice,
            runs,
            true,
        )
        .await;
    } else {
        println!("\n(set VOXPOOL_BENCH_MODELS to a models folder with a full-size Kokoro to measure it too)");
    }

    // Encoders alone: 30 s of a voice-like signal at 24 kHz.
    let rate = 24_000u32;
    let seconds = 30.0;
    let samples: Vec<f32> = (0..(seconds * rate as f64) as usize)
        .map(|i| {
            let t = i as f32 / rate as f32;
            0.3 * (2.0 * std::f32::consts::PI * 180.0 * t).sin() * (1.0 + (6.0 * t).sin()) * 0.5
                + 0.05 * (2.0 * std::f32::consts::PI * 2300.0 * t).sin()
        })
        .collect();
    println!("\nEncoders, {seconds} s of 24 kHz mono:");
    for format in [
        AudioFormat::Mp3,
        AudioFormat::Opus,
        AudioFormat::Aac,
        AudioFormat::Flac,
        AudioFormat::Wav,
        AudioFormat::Pcm,
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let t = Instant::now();
            size = encode(format, &samples, rate).expect("encode").len();
            times.push(t.elapsed());
        }
        let t = median(times).as_secs_f64();
        println!(
            "{:<6} {:>10.0}x real time {:>10} bytes",
            format!("{format:?}").to_lowercase(),
            seconds / t,
            size
        );
    }
}
