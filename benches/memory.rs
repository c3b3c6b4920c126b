//! Memory back: the resident memory of every voxpool process together (the server
//! and its workers) at idle, while a model is loaded, and after each workload once
//! the models are unloaded, against the server's idle figure in the same run.
//!
//! `cargo bench --bench memory` runs `voxpool serve` on the models in
//! `VOXPOOL_MEMORY_MODELS` (the Hugging Face cache layout; default: the real Kokoro
//! weights that `tools/speech/run.sh` prepares in
//! `~/.cache/voxpool-speech/realweights/hf`), with the voice `VOXPOOL_MEMORY_VOICE`
//! (default `jf_alpha`). The workloads: 8 concurrent Kokoro requests; 200 requests,
//! 32 at a time, while the model is unloaded every 200 ms; and, when the folder
//! also holds Chatterbox Turbo with its cloning encoders, a voice cloned and spoken.

#[path = "../tests/common/mod.rs"]
mod tests_common;

mod common;

use std::path::PathBuf;
use std::time::Duration;

use tests_common::workloads::{clone_and_speak, concurrent, stress, ServeProcess};

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

fn main() {
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    let models = std::env::var("VOXPOOL_MEMORY_MODELS").map_or_else(
        |_| PathBuf::from(home).join(".cache/voxpool-speech/realweights/hf"),
        PathBuf::from,
    );
    let voice = std::env::var("VOXPOOL_MEMORY_VOICE").unwrap_or_else(|_| "jf_alpha".into());
    if !models.join("models--hexgrad--Kokoro-82M").is_dir() {
        println!(
            "no Kokoro weights in {} (set VOXPOOL_MEMORY_MODELS, or run tools/speech/run.sh)",
            models.display()
        );
        return;
    }
    // Without a full-size Chatterbox Turbo (with its cloning encoders) beside Kokoro,
    // the clone runs on the tiny test checkpoint: the server's side of a clone is the
    // same, and the worker ends with the unload either way.
    let has_turbo = models
        .join("models--ResembleAI--chatterbox-turbo/snapshots")
        .read_dir()
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .is_some_and(|e| e.path().join("ve.safetensors").is_file());
    let scratch = tempfile::tempdir().expect("dir");
    let models = if has_turbo {
        models
    } else {
        let both = scratch.path().join("models");
        std::fs::create_dir_all(&both).expect("models dir");
        std::os::unix::fs::symlink(
            models.join("models--hexgrad--Kokoro-82M"),
            both.join("models--hexgrad--Kokoro-82M"),
        )
        .expect("link Kokoro");
        let snap = tests_common::tiny_turbo::install_tiny_turbo(&both);
        tests_common::tiny_turbo::install_tiny_cloner(&snap);
        println!("(Chatterbox Turbo: the tiny test checkpoint)");
        both
    };
    println!(
        "voxpool memory back — {}, {} cores; models {}",
        common::cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        models.display()
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let srv = ServeProcess::start(dir.path(), &models, &[]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (idle, _) = srv.rss_all();
        let idle_anon = srv.anon_all();
        println!(
            "\n{:<44} {:>10} {:>14} {:>16}",
            "moment", "RSS (MiB)", "vs idle (MiB)", "anon vs idle"
        );
        // The last column: the anonymous part of the difference, what the processes
        // own (the rest is the binary's code and data, mapped from its file).
        let row = |what: &str, rss: u64| {
            println!(
                "{:<44} {:>10.1} {:>+14.2} {:>+16.2}",
                what,
                mib(rss),
                (rss as f64 - idle as f64) / f64::from(1 << 20),
                (srv.anon_all() as f64 - idle_anon as f64) / f64::from(1 << 20)
            );
        };
        row("idle at start (server alone)", idle);
        concurrent(&srv, "kokoro", &voice, 8).await;
        row("8 concurrent Kokoro requests, loaded", srv.rss_all().0);
        row("  then unloaded", srv.settle(&["kokoro"]).await);
        let unloads = stress(&srv, "kokoro", &voice, 200, 32).await;
        row(
            &format!("200 requests, {unloads} forced unloads; unloaded"),
            srv.settle(&["kokoro"]).await,
        );
        clone_and_speak(
            &srv,
            "chatterbox-turbo",
            tests_common::tiny_turbo::recording(8.0, 120.0),
        )
        .await;
        row("a Turbo voice clone, loaded", srv.rss_all().0);
        row("  then unloaded", srv.settle(&["chatterbox-turbo"]).await);
        for round in 1..=3 {
            concurrent(&srv, "kokoro", &voice, 8).await;
            clone_and_speak(
                &srv,
                "chatterbox-turbo",
                tests_common::tiny_turbo::recording(8.0, 100.0 + 10.0 * f64::from(round)),
            )
            .await;
            row(
                &format!("all of it again (round {round}); unloaded"),
                srv.settle(&["kokoro", "chatterbox-turbo"]).await,
            );
        }
        // Cold loads: each starts a worker and reads the converted checkpoint.
        let mut loads = Vec::new();
        for _ in 0..5 {
            let (code, _) = srv
                .post("/model/load", serde_json::json!({"model": "kokoro"}))
                .await;
            assert_eq!(code, 200);
            let status: serde_json::Value = srv
                .client
                .get(format!("{}/model/status?model=kokoro", srv.base))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            loads.push(status["last_load_seconds"].as_f64().unwrap_or(f64::NAN));
            srv.settle(&["kokoro"]).await;
        }
        loads.sort_by(f64::total_cmp);
        println!(
            "Kokoro cold load, worker start included: median {:.2} s, max {:.2} s over {} loads",
            loads[loads.len() / 2],
            loads[loads.len() - 1],
            loads.len()
        );
        let (_, workers) = srv.rss_all();
        println!("workers left: {workers}; goal: every row after an unload ≤ +2 MiB");
    });
}
