//! Gateway overhead: requests/s and latency of `POST /v1/audio/speech` with the
//! test engine, against calling the same engine (and WAV encoder) directly, in one
//! run; what a worker process adds per request (the `tone` engine in the server's
//! process against the same engine in its worker); the idle RSS of the real binary
//! after start; and how late an idle model leaves after its deadline.
//!
//! Run: `cargo bench --bench gateway`.

#[path = "../tests/common/test_engine.rs"]
mod test_engine;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use test_engine::TestLoader;
use voxpool::config::{Config, IdleTimeout};
use voxpool::engine::tone::ToneLoader;
use voxpool::engine::{LoadContext, Registry, SynthRequest};

const TEXT: &str = "The quick brown fox jumps over the lazy dog.";
const MODEL: &str = "bench-tts";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn start(timeout: IdleTimeout, dir: &tempfile::TempDir) -> voxpool::Server {
    let db = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let mut config = Config::local(&db).expect("config");
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    config.unload_timeout = timeout;
    config.default_model = MODEL.into();
    let (spec, _) = TestLoader::spec(MODEL, 1 << 20);
    let registry = Registry::builtin()
        .with_model(spec)
        .with_model(ToneLoader::spec(
            "tone-here",
            ToneLoader {
                in_process: true,
                ..ToneLoader::default()
            },
        ))
        .with_model(ToneLoader::spec("tone-worker", ToneLoader::default()));
    voxpool::Server::start(config, registry)
        .await
        .expect("server")
}

fn direct(n: usize) -> Vec<Duration> {
    let (spec, _) = TestLoader::spec(MODEL, 1 << 20);
    let ctx = LoadContext {
        models_dir: std::env::temp_dir(),
        device: voxpool::engine::DeviceSpec::Cpu,
        t3_quant: None,
        s3gen_quant: None,
    };
    let engine = spec.loader.load(&ctx).expect("load");
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let audio = engine
            .synthesize(&SynthRequest {
                text: TEXT,
                voice: "alloy",
                speed: 1.0,
                phonemes: false,
                cloned: None,
                language: None,
                lexicon: &[],
                words: false,
            })
            .expect("synth");
        let bytes = voxpool::audio::encode(
            voxpool::audio::AudioFormat::Wav,
            &audio.samples,
            audio.sample_rate,
        )
        .expect("encode");
        std::hint::black_box(bytes);
        times.push(t.elapsed());
    }
    times.sort();
    times
}

async fn gateway(base: &str, n: usize, concurrency: usize) -> (Vec<Duration>, Duration) {
    gateway_model(base, MODEL, n, concurrency).await
}

async fn gateway_model(
    base: &str,
    model: &str,
    n: usize,
    concurrency: usize,
) -> (Vec<Duration>, Duration) {
    let client = reqwest::Client::new();
    let body = json!({"model": model, "input": TEXT, "voice": "alloy", "response_format": "wav"});
    let per_worker = n / concurrency;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let body = body.clone();
        let url = format!("{base}/v1/audio/speech");
        workers.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let t = Instant::now();
                let resp = client.post(&url).json(&body).send().await.expect("request");
                assert_eq!(resp.status(), 200);
                std::hint::black_box(resp.bytes().await.expect("body"));
                times.push(t.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for w in workers {
        times.extend(w.await.expect("worker"));
    }
    let wall = started.elapsed();
    times.sort();
    (times, wall)
}

fn idle_rss_of_binary() -> Option<(f64, f64)> {
    let dir = tempfile::tempdir().ok()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxpool"))
        .env_clear()
        .env("HOME", dir.path())
        .env("PORT", "0")
        .env("VOXPOOL_HOST", "127.0.0.1")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    let addr = loop {
        let line = lines.next()?.ok()?;
        if let Some(a) = line.split("voxpool listening addr=").nth(1) {
            break a.trim().to_string();
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    let at_start = rss_kib(child.id()) as f64 / 1024.0;
    // After answering some requests (status, models, a failed load), still idle.
    let rt = tokio::runtime::Runtime::new().ok()?;
    rt.block_on(async {
        let c = reqwest::Client::new();
        for _ in 0..50 {
            let _ = c.get(format!("http://{addr}/model/status")).send().await;
            let _ = c.get(format!("http://{addr}/v1/models")).send().await;
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kib(child.id()) as f64 / 1024.0;
    let _ = child.kill();
    let _ = child.wait();
    Some((at_start, after))
}

async fn unload_lateness(rounds: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("dir");
    let timeout = Duration::from_secs(1);
    let server = start(IdleTimeout::After(timeout), &dir).await;
    let pool = server.pool().clone();
    let mut late = Vec::new();
    for _ in 0..rounds {
        pool.load(MODEL).await.expect("load");
        let idle_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if !pool.status(MODEL).await.expect("status").loaded {
                break;
            }
        }
        late.push(idle_since.elapsed().saturating_sub(timeout));
    }
    server.shutdown().await;
    late.sort();
    late
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!("voxpool gateway benchmark — {}", machine());
    println!(
        "text: {:?} ({} chars), test engine, WAV output\n",
        TEXT,
        TEXT.len()
    );

    let n = 2000;
    let _ = direct(100);
    let base = direct(n);
    let base_p50 = percentile(&base, 0.5);
    let base_rps = n as f64 / base.iter().sum::<Duration>().as_secs_f64();

    let dir = tempfile::tempdir().expect("dir");
    let server = rt.block_on(start(IdleTimeout::Never, &dir));
    let url = format!("http://{}", server.addr());
    rt.block_on(gateway(&url, 200, 1));
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>12}",
        "path", "req/s", "p50 µs", "p99 µs", "p50 ratio"
    );
    println!(
        "{:<28} {:>10.0} {:>10.0} {:>10.0} {:>12}",
        "engine + encoder, direct",
        base_rps,
        micros(base_p50),
        micros(percentile(&base, 0.99)),
        "1.00x"
    );
    for concurrency in [1, 8] {
        let (times, wall) = rt.block_on(gateway(&url, n, concurrency));
        let p50 = percentile(&times, 0.5);
        println!(
            "{:<28} {:>10.0} {:>10.0} {:>10.0} {:>11.2}x",
            format!("HTTP gateway, {concurrency} client(s)"),
            times.len() as f64 / wall.as_secs_f64(),
            micros(p50),
            micros(percentile(&times, 0.99)),
            p50.as_secs_f64() / base_p50.as_secs_f64()
        );
    }
    // The same engine in the server's process and in a worker, taking turns in
    // rounds so a change of load falls on both.
    let mut here = Vec::new();
    let mut there = Vec::new();
    rt.block_on(async {
        for model in ["tone-here", "tone-worker"] {
            gateway_model(&url, model, 100, 1).await;
        }
        for _ in 0..5 {
            here.extend(gateway_model(&url, "tone-here", 200, 1).await.0);
            there.extend(gateway_model(&url, "tone-worker", 200, 1).await.0);
        }
    });
    here.sort();
    there.sort();
    println!(
        "\n{:<28} {:>10} {:>10} {:>12}",
        "tone engine, 1 client", "p50 µs", "p99 µs", "p50 ratio"
    );
    for (label, times) in [
        ("in the server's process", &here),
        ("in a worker process", &there),
    ] {
        println!(
            "{:<28} {:>10.0} {:>10.0} {:>11.2}x",
            label,
            micros(percentile(times, 0.5)),
            micros(percentile(times, 0.99)),
            percentile(times, 0.5).as_secs_f64() / percentile(&here, 0.5).as_secs_f64()
        );
    }
    println!(
        "worker cost per warm request: {:+.3} ms at the median (goal ≤ 2 ms)",
        (percentile(&there, 0.5).as_secs_f64() - percentile(&here, 0.5).as_secs_f64()) * 1e3
    );
    rt.block_on(server.shutdown());

    match idle_rss_of_binary() {
        Some((start, after)) => println!(
            "\nidle server RSS: {start:.1} MiB after start, {after:.1} MiB after 100 admin requests (goal ≤ 30 MiB)"
        ),
        None => println!("\nidle server RSS: could not start the binary"),
    }
    let late = rt.block_on(unload_lateness(5));
    println!(
        "idle deadline → unloaded: median {:.0} ms, max {:.0} ms over {} rounds (1 s timeout)",
        late[late.len() / 2].as_secs_f64() * 1e3,
        late[late.len() - 1].as_secs_f64() * 1e3,
        late.len()
    );
}
