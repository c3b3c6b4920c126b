//! Voice cloning speed: voxpool's conditioning encoders against the PyTorch reference
//! (chatterbox-tts 0.1.7), on the same full-size random weights and the same clip.
//!
//! 1. Full-size random weights (not committed), with the reference's venv:
//!    `python tools/chatterbox_ve_fixtures.py --full /tmp/clone-full/ve`,
//!    `python tools/chatterbox_s3tokenizer_fixtures.py --full /tmp/clone-full/s3tokenizer`,
//!    `python tools/chatterbox_campplus_fixtures.py --full /tmp/clone-full/campplus`.
//! 2. `cargo bench --bench cloning` (`VOXPOOL_CLONE_FULL`, default `/tmp/clone-full`;
//!    the reference runs in the same command with `CHATTERBOX_REF_PYTHON`, default
//!    `/tmp/cbvenv/bin/python`, when it exists; `VOXPOOL_BENCH_RUNS`, default 3).
//!
//! The work is what `prepare_conditionals` does after decoding, loudness and
//! resampling: S3Gen's prompt mel, CAMPPlus and the speech tokens of the first 10 s,
//! T3's prompt tokens of the first 15 s and the voice encoder over the whole 12 s clip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use voxpool::audio::clip::ReferenceClip;
use voxpool::engine::chatterbox::cloner::{ClonerConfig, VoiceCloner};

const SECONDS: f64 = 12.0;

/// The bench clip (the same formula as `tools/chatterbox_clone_bench_reference.py`).
fn clip(rate: u32) -> Vec<f32> {
    let n = (SECONDS * f64::from(rate)) as usize;
    let rate = f64::from(rate);
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let pitch = 120.0 + 30.0 * (2.0 * std::f64::consts::PI * 0.3 * t).sin();
            phase += 2.0 * std::f64::consts::PI * pitch / rate;
            let voiced: f64 = (1..8).map(|k| (k as f64 * phase).sin() / k as f64).sum();
            let tremolo = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let noise = ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0 - 0.5;
            (0.15 * voiced * tremolo + 0.01 * noise) as f32
        })
        .collect()
}

fn weights(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name).join(format!("{name}_full.safetensors"));
    if !path.exists() {
        eprintln!(
            "{} not found: run `/tmp/cbvenv/bin/python tools/chatterbox_{name}_fixtures.py --full {}` first",
            path.display(),
            dir.join(name).display()
        );
        std::process::exit(2);
    }
    path
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    // As the server does (see its `main`).
    voxpool::config::apply_cpu_threads(voxpool::config::cpu_threads());
    let dir = PathBuf::from(
        std::env::var("VOXPOOL_CLONE_FULL").unwrap_or_else(|_| "/tmp/clone-full".into()),
    );
    let runs: usize = std::env::var("VOXPOOL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (ve, tok, camp) = (
        weights(&dir, "ve"),
        weights(&dir, "s3tokenizer"),
        weights(&dir, "campplus"),
    );
    let device = Device::Cpu;
    let load_started = Instant::now();
    // SAFETY: read-only mappings of files this process does not modify.
    let ve_vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&ve], DType::F32, &device)? };
    // SAFETY: as above.
    let s3_vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&tok, &camp], DType::F32, &device)? };
    let cloner = VoiceCloner::load(ve_vb, s3_vb, &ClonerConfig::default())?;
    let load = load_started.elapsed().as_secs_f64();
    let reference_clip = ReferenceClip {
        wav_24k: clip(24_000),
        wav_16k: clip(16_000),
    };
    let voice = cloner.conditionals(&reference_clip)?; // warm-up
    let shapes = (
        voice.gen.prompt_feat.dims().to_vec(),
        voice.gen.prompt_token.dims().to_vec(),
        voice
            .t3
            .cond_prompt_speech_tokens
            .as_ref()
            .map(|t| t.dims().to_vec()),
        voice.t3.speaker_emb.dims().to_vec(),
    );
    let ours = median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                cloner.conditionals(&reference_clip).expect("clone");
                started.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let peak = common::peak_rss_mib();
    drop(cloner);

    let python =
        std::env::var("CHATTERBOX_REF_PYTHON").unwrap_or_else(|_| "/tmp/cbvenv/bin/python".into());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let reference = Path::new(&python)
        .exists()
        .then(|| {
            Command::new(&python)
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tools"))
                .arg("chatterbox_clone_bench_reference.py")
                .arg("--ve")
                .arg(dir.join("ve"))
                .arg("--s3tokenizer")
                .arg(dir.join("s3tokenizer"))
                .arg("--campplus")
                .arg(dir.join("campplus"))
                .args(["--runs", &runs.to_string(), "--threads", &cores.to_string()])
                .output()
                .ok()
        })
        .flatten()
        .and_then(|o| {
            if !o.status.success() {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            }
            serde_json::from_slice::<serde_json::Value>(&o.stdout).ok()
        });

    println!(
        "voice cloning, {SECONDS} s clip, full-size random weights — {} ({cores} threads), median of {runs}",
        common::cpu_model()
    );
    println!("  voxpool: encoders loaded in {load:.2} s; prompt mel {:?}, S3Gen tokens {:?}, T3 tokens {:?}, speaker embedding {:?}", shapes.0, shapes.1, shapes.2, shapes.3);
    println!(
        "  {:<28} {:>10} {:>10} {:>8}",
        "", "voxpool", "reference", "ratio"
    );
    match &reference {
        Some(r) => {
            let theirs = r["seconds"]["total"].as_f64().unwrap_or(f64::NAN);
            println!(
                "  {:<28} {:>9.2}s {:>9.2}s {:>7.2}×",
                "clone (all encoders)",
                ours,
                theirs,
                theirs / ours
            );
            for stage in ["prompt_mel", "campplus", "tokenizer", "voice_encoder"] {
                println!(
                    "    reference {stage:<16} {:>9.2}s",
                    r["seconds"][stage].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
        None => println!(
            "  {:<28} {:>9.2}s {:>10} (reference not run: {python} missing)",
            "clone (all encoders)", ours, "-"
        ),
    }
    println!("  voxpool peak RSS {peak:.0} MiB");
    Ok(())
}
