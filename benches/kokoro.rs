//! Kokoro speed: voxpool's Candle port against the PyTorch reference on the same
//! full-size weights and inputs, in one command.
//!
//! 1. `python tools/kokoro_fixtures.py --full /tmp/kokoro-full` (random weights at the
//!    official size, durations calibrated to ~3 frames per token like real speech);
//! 2. `cargo bench --bench kokoro` (reads `KOKORO_FULL`, default
//!    `/tmp/kokoro-full/full.safetensors`; runs the reference with `KOKORO_REF_PYTHON`,
//!    default `/tmp/kvenv/bin/python`, when it exists; `KOKORO_BENCH_RUNS` timed runs
//!    after one warm-up, default 3, median reported; `KOKORO_BENCH_DEVICE=cuda` runs
//!    both on the GPU, which needs a build with `--features cuda`).
//!
//! Prints seconds of audio per second of compute for both and their ratio for
//! ~50, ~150 and ~400 phonemes, the cold load time and peak RSS.

mod common;

use common::{cpu_model, peak_rss_mib, reset_peak_rss};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use voxpool::engine::kokoro::model::KModel;
use voxpool::engine::kokoro::KokoroConfig;
use voxpool::engine::nn::safetensors_file::var_builder;

const TOKENS: [usize; 3] = [50, 150, 400];

/// Deterministic ids in 1..177 with the pads (same formula as the reference script).
fn token_ids(n: usize) -> Vec<u32> {
    let mut ids = vec![0];
    ids.extend((0..n).map(|i| 1 + ((i * 37 + 11) % 177) as u32));
    ids.push(0);
    ids
}

fn main() -> candle_core::Result<()> {
    // As the server does (see its `main`).
    voxpool::config::apply_cpu_threads(voxpool::config::cpu_threads());
    let weights = std::env::var("KOKORO_FULL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/tmp/kokoro-full/full.safetensors"));
    if !weights.is_file() {
        println!(
            "{} not found: run `python tools/kokoro_fixtures.py --full /tmp/kokoro-full` first",
            weights.display()
        );
        return Ok(());
    }
    let cpu = cpu_model();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("Kokoro-82M, full size, random weights — {cpu}, {cores} cores");

    let runs: usize = std::env::var("KOKORO_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let device_name = std::env::var("KOKORO_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = match device_name.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0)?,
        other => candle_core::bail!("KOKORO_BENCH_DEVICE: expected cpu or cuda, got {other}"),
    };
    if device.is_cuda() {
        println!("device: CUDA 0 (voxpool and PyTorch both on the GPU)");
    }
    let started = Instant::now();
    // As the server loads a checkpoint: tensor by tensor from the file.
    let vb = var_builder(&weights, DType::F32, &device)?;
    let model = KModel::load(vb.pp("weights"), &KokoroConfig::v1_0())?;
    let load_s = started.elapsed().as_secs_f64();
    let ref_s = vb.get((1, 256), "case0.input.ref_s")?;
    let load_peak = peak_rss_mib();

    let mut ours = Vec::new();
    let per_input_peaks = reset_peak_rss();
    for n in TOKENS {
        reset_peak_rss();
        let ids = Tensor::new(token_ids(n).as_slice(), &device)?.unsqueeze(0)?;
        let mut times = Vec::new();
        let mut audio_s = 0.0;
        for run in 0..=runs {
            let t = Instant::now();
            let out = model.forward_with_tokens(&ids, &ref_s, 1.0, None)?;
            if run > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
            audio_s = out.audio.len() as f64 / 24_000.0;
        }
        times.sort_by(f64::total_cmp);
        ours.push((n, times[times.len() / 2], audio_s, peak_rss_mib()));
    }

    let python =
        std::env::var("KOKORO_REF_PYTHON").unwrap_or_else(|_| "/tmp/kvenv/bin/python".into());
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/tools");
    let reference = Command::new(&python)
        .current_dir(tools)
        .args(["kokoro_bench_reference.py", "--weights"])
        .arg(&weights)
        .arg("--tokens")
        .args(TOKENS.iter().map(|n| n.to_string()))
        .args(["--runs", &runs.to_string(), "--threads", &cores.to_string()])
        .args(["--device", &device_name])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());

    println!(
        "\n{:>8} {:>10} {:>14} {:>14} {:>10} {:>16}",
        "tokens", "audio s", "voxpool ×RT", "PyTorch ×RT", "ratio", "voxpool peak"
    );
    for (n, secs, audio_s, peak) in &ours {
        // The process's peak while it ran this input (the model loaded, nothing
        // else): per input where the peak can be reset, else since the start.
        let peak = format!("{peak:.0} MiB");
        let our_rtf = audio_s / secs;
        let theirs = reference.as_ref().and_then(|r| {
            let e = &r["results"][n.to_string()];
            Some(e["audio_seconds"].as_f64()? / e["seconds"].as_f64()?)
        });
        match theirs {
            Some(t) => println!(
                "{n:>8} {audio_s:>10.2} {our_rtf:>13.2}× {t:>13.2}× {:>9.2}× {peak:>16}",
                our_rtf / t
            ),
            None => println!(
                "{n:>8} {audio_s:>10.2} {our_rtf:>13.2}× {:>14} {:>10} {peak:>16}",
                "-", "-"
            ),
        }
    }
    println!(
        "\nvoxpool: load {load_s:.2} s (safetensors read tensor by tensor), peak RSS {load_peak:.0} MiB while loading; per-input peaks {}",
        if per_input_peaks { "above" } else { "not separable here (each is the peak so far)" }
    );
    match &reference {
        Some(r) => println!(
            "PyTorch {}: load {:.2} s, peak RSS {:.0} MiB, {} threads",
            r["torch"].as_str().unwrap_or("?"),
            r["load_seconds"].as_f64().unwrap_or(0.0),
            r["peak_rss_mib"].as_f64().unwrap_or(0.0),
            r["threads"]
        ),
        None => println!(
            "PyTorch reference not run (set KOKORO_REF_PYTHON to a venv with torch and kokoro)"
        ),
    }
    Ok(())
}
