//! Where S3Gen's flow (speech tokens → mel) spends its time on the CPU.
//!
//! ```text
//! cargo run --release --example s3gen_timing                 # one decoder block, its parts
//! S3GEN_FULL_DIR=/tmp/s3gen-full cargo run --release --example s3gen_timing
//! ```
//!
//! The first part runs one Turbo-size decoder transformer block (random weights, 700
//! frames: 250 prompt + 100 speech tokens) and the ops inside it; with
//! `S3GEN_FULL_DIR` (the output of `tools/chatterbox_s3gen_fixtures.py --full`) it
//! also times the whole flow stage by stage. Each line gives the median wall time and
//! the process CPU time of one call: on a shared machine the CPU time moves less with
//! the load than the wall time does.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use voxpool::engine::chatterbox::s3gen::matcha::transformer::BasicTransformerBlock;
use voxpool::engine::chatterbox::s3gen::{PromptRef, S3GenConfig, S3Token2Mel};

/// Frames of the decoder for 250 prompt + 100 speech tokens.
const FRAMES: usize = 700;
const REPEATS: usize = 7;

/// Process CPU time in seconds (all threads).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs `f` [`REPEATS`] times after one warm-up; prints the median wall and CPU time.
fn time(label: &str, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    f()?;
    let mut walls = Vec::with_capacity(REPEATS);
    let mut cpus = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let (wall, cpu) = (std::time::Instant::now(), cpu_seconds());
        f()?;
        walls.push(wall.elapsed().as_secs_f64());
        cpus.push(cpu_seconds() - cpu);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{label:<34} wall {:>8.2} ms   cpu {:>8.2} ms",
        median(&mut walls) * 1e3,
        median(&mut cpus) * 1e3
    );
    Ok(())
}

fn decoder_block() -> Result<()> {
    let dev = Device::Cpu;
    let cfg = S3GenConfig::turbo();
    let d = &cfg.decoder;
    let dim = d.channels[0];
    let (heads, head_dim) = (d.num_heads, d.attention_head_dim);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let block = BasicTransformerBlock::load(vb, dim, heads, head_dim)?;
    let x = Tensor::randn(0f32, 1., (1, FRAMES, dim), &dev)?;
    println!("decoder block: {FRAMES} frames, {dim} wide, {heads} heads of {head_dim}");
    time("block forward", || block.forward(&x).map(drop))?;

    let hidden = Tensor::randn(0f32, 1., (1, FRAMES, 4 * dim), &dev)?;
    time("candle gelu_erf [700, 1024]", || {
        hidden.gelu_erf().map(drop)
    })?;
    time("ops::gelu_erf [700, 1024]", || {
        voxpool::engine::nn::ops::gelu_erf(&hidden).map(drop)
    })?;
    let scores = Tensor::randn(0f32, 1., (1, heads, FRAMES, FRAMES), &dev)?;
    time("softmax [8, 700, 700]", || {
        candle_nn::ops::softmax_last_dim(&scores).map(drop)
    })?;
    let q = Tensor::randn(0f32, 1., (1, heads, FRAMES, head_dim), &dev)?;
    let kt = q.t()?;
    time("Q·Kᵀ [8, 700, 64]", || q.matmul(&kt).map(drop))?;
    time("P·V [8, 700, 700]·[700, 64]", || {
        scores.matmul(&q).map(drop)
    })?;
    let qkv = Tensor::randn(0f32, 1., (1, FRAMES, heads * head_dim), &dev)?;
    time("fused attention [700, 8 × 64]", || {
        voxpool::engine::nn::attention::self_attention(&qkv, &qkv, &qkv, heads).map(drop)
    })?;
    Ok(())
}

fn whole_flow(dir: &str) -> Result<()> {
    let text = std::fs::read_to_string(format!("{dir}/s3gen_full_config.json"))?;
    let cfg = S3GenConfig::from_json(&text).map_err(candle_core::Error::wrap)?;
    let files = [format!("{dir}/s3gen_full.safetensors")];
    // SAFETY: the fixture file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu)? };
    let model = S3Token2Mel::load(vb, &cfg)?;
    let io =
        candle_core::safetensors::load(format!("{dir}/s3gen_full_io.safetensors"), &Device::Cpu)?;
    let get = |k: &str| io[&format!("case0.{k}")].clone();
    let prompt = PromptRef {
        prompt_token: get("prompt_token"),
        prompt_feat: get("prompt_feat"),
        embedding: get("embedding"),
    };
    let (tokens, noise) = (get("speech_tokens"), get("noise"));
    println!("whole flow: 250 + 100 tokens");
    for run in 0..3 {
        let (start, cpu0) = (std::time::Instant::now(), cpu_seconds());
        let (mut last, mut last_cpu) = (start, cpu0);
        let mut stages = Vec::new();
        model.mel_observed(&tokens, &prompt, &noise, &mut |name, _| {
            if matches!(name, "encoder.out" | "step0.x" | "step1.x") {
                let cpu = cpu_seconds();
                stages.push(format!(
                    "{name} {:.3} s (cpu {:.3} s)",
                    last.elapsed().as_secs_f64(),
                    cpu - last_cpu
                ));
                (last, last_cpu) = (std::time::Instant::now(), cpu);
            }
        })?;
        println!(
            "run {run}: {:.3} s (cpu {:.3} s): {}",
            start.elapsed().as_secs_f64(),
            cpu_seconds() - cpu0,
            stages.join(", ")
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    // As the server does (see its `main`).
    voxpool::config::apply_cpu_threads(voxpool::config::cpu_threads());
    voxpool::engine::nn::reuse_freed_heap();
    println!(
        "threads {}, load average {}",
        candle_core::utils::get_num_threads(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    decoder_block()?;
    if let Ok(dir) = std::env::var("S3GEN_FULL_DIR") {
        whole_flow(&dir)?;
    }
    Ok(())
}
