//! The workloads after which a server's memory must be back at its idle figure,
//! run against a `voxpool serve` process: many concurrent Kokoro requests, a stress
//! of requests while the model is unloaded again and again, and a voice cloned and
//! spoken with Chatterbox Turbo. Shared by `tests/workers.rs` (tiny models) and
//! `benches/memory.rs` (full-size weights).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A `voxpool serve` process on a free port.
pub struct ServeProcess {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

impl ServeProcess {
    /// Start the binary with its database and models under `dir` and `env` added.
    pub fn start(dir: &Path, models: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxpool"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env(
                "VOXPOOL_DB_URL",
                format!("sqlite://{}/v.db?mode=rwc", dir.display()),
            )
            .env("VOXPOOL_HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("VOXPOOL_MODELS_DIR", models)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("voxpool serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(a) = line.split("voxpool listening addr=").nth(1) {
                break a.trim().to_string();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Self {
            child,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident bytes of the server and every process it started (its workers).
    pub fn rss_all(&self) -> (u64, usize) {
        let workers = super::children_of(self.pid());
        let sum = super::rss_of(&self.pid().to_string()).unwrap_or(0)
            + workers
                .iter()
                .filter_map(|w| super::rss_of(&w.to_string()))
                .sum::<u64>();
        let alive = workers
            .iter()
            .filter(|w| super::rss_of(&w.to_string()).is_some())
            .count();
        (sum, alive)
    }

    /// Anonymous resident memory (what the processes own, not the binary's code and
    /// data read from its file) of the server and its workers.
    pub fn anon_all(&self) -> u64 {
        let status_kb = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("RssAnon:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        let workers = super::children_of(self.pid());
        (status_kb(self.pid()) + workers.into_iter().map(status_kb).sum::<u64>()) * 1024
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// One speech request; its status and body length.
    pub async fn speak(&self, model: &str, voice: &str, input: &str) -> (u16, usize) {
        let resp = self
            .client
            .post(format!("{}/v1/audio/speech", self.base))
            .json(
                &json!({"model": model, "input": input, "voice": voice, "response_format": "mp3"}),
            )
            .send()
            .await
            .expect("speech");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.map_or(0, |b| b.len()))
    }

    /// Unload every model and wait until no worker is left; the total RSS then.
    pub async fn settle(&self, models: &[&str]) -> u64 {
        for model in models {
            let (code, body) = self.post("/model/unload", json!({"model": model})).await;
            assert_eq!(code, 200, "{body}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (rss, workers) = self.rss_all();
            if workers == 0 {
                // Let the last request's threads finish their bookkeeping.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.rss_all().0;
            }
            assert!(Instant::now() < deadline, "{workers} workers still running");
            let _ = rss;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` requests to `model` at once, each two sentences long.
pub async fn concurrent(srv: &ServeProcess, model: &str, voice: &str, n: usize) {
    let requests = (0..n).map(|i| {
        let text = format!("Request number {i} is here. It has a second sentence.");
        async move { srv.speak(model, voice, &text).await }
    });
    for (code, len) in futures_util::future::join_all(requests).await {
        assert_eq!(code, 200);
        assert!(len > 0);
    }
}

/// `total` requests, `at_once` at a time, while another task unloads the model
/// every 200 ms; every request must get audio. Returns the unloads done.
pub async fn stress(
    srv: &ServeProcess,
    model: &str,
    voice: &str,
    total: usize,
    at_once: usize,
) -> usize {
    use futures_util::StreamExt;
    let done = std::sync::atomic::AtomicBool::new(false);
    let unloader = async {
        let mut unloads = 0;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (code, _) = srv.post("/model/unload", json!({"model": model})).await;
            assert_eq!(code, 200);
            unloads += 1;
        }
        unloads
    };
    let requests = async {
        let results: Vec<(u16, usize)> = futures_util::stream::iter(0..total)
            .map(|i| {
                let text = format!("Stress request {i}.");
                async move { srv.speak(model, voice, &text).await }
            })
            .buffer_unordered(at_once)
            .collect()
            .await;
        done.store(true, std::sync::atomic::Ordering::Release);
        results
    };
    let (results, unloads) = tokio::join!(requests, unloader);
    for (code, len) in results {
        assert_eq!(code, 200);
        assert!(len > 0);
    }
    unloads
}

/// Clone a voice from `sample` with `model`, speak with it, delete it.
pub async fn clone_and_speak(srv: &ServeProcess, model: &str, sample: Vec<u8>) {
    let form = reqwest::multipart::Form::new()
        .text("name", "memory")
        .text("model", model.to_string())
        .part(
            "audio_sample",
            reqwest::multipart::Part::bytes(sample).file_name("ref.wav"),
        );
    let resp = srv
        .client
        .post(format!("{}/v1/audio/voices", srv.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let voice: Value = resp.json().await.unwrap();
    let id = voice["id"].as_str().unwrap().to_string();
    let (code, len) = srv.speak(model, &id, "A cloned voice speaks.").await;
    assert_eq!(code, 200);
    assert!(len > 0);
    let resp = srv
        .client
        .delete(format!("{}/v1/audio/voices/{id}", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
