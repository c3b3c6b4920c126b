//! Start a real voxpool server on 127.0.0.1:0 with a temporary SQLite file and
//! test-engine models, and talk to it over HTTP like a client.
#![allow(dead_code, unused_imports)]

pub mod test_engine;
pub mod tiny_turbo;
pub mod workloads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use voxpool::config::{Config, IdleTimeout};
use voxpool::engine::Registry;
use voxpool::Server;

pub use test_engine::{expected_samples, Knobs, TestLoader};

/// Writes the tiny Kokoro checkpoint (the committed parity fixture, voices `tiny_a`
/// and `tiny_b`) into `models` in the Hugging Face cache layout.
pub fn install_tiny_kokoro(models: &std::path::Path) {
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kokoro");
    let snap = models.join("models--hexgrad--Kokoro-82M/snapshots/tiny");
    std::fs::create_dir_all(snap.join("voices")).unwrap();
    std::fs::copy(format!("{FIXTURES}/tiny.pth"), snap.join("kokoro-v1_0.pth")).unwrap();
    std::fs::copy(
        format!("{FIXTURES}/tiny_config.json"),
        snap.join("config.json"),
    )
    .unwrap();
    for v in ["tiny_a", "tiny_b"] {
        std::fs::copy(
            format!("{FIXTURES}/voices/{v}.pt"),
            snap.join(format!("voices/{v}.pt")),
        )
        .unwrap();
    }
}

/// The strings of a JSON array (`available_languages`, …).
pub fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The test model every server gets, and the default one.
pub const MODEL: &str = "test-tts";

pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub client: reqwest::Client,
    pub knobs: Arc<Knobs>,
    pub dir: Arc<tempfile::TempDir>,
    pub db_url: String,
}

pub struct Options {
    pub timeout: IdleTimeout,
    pub memory_bytes: usize,
    pub extra_models: Vec<(String, usize)>,
    /// Models of the built-in `tone` engine, each in its own worker process.
    pub tone_models: Vec<(String, voxpool::engine::tone::ToneLoader)>,
    pub configure: Box<dyn FnOnce(&mut Config)>,
    pub dir: Option<Arc<tempfile::TempDir>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: IdleTimeout::After(Duration::from_secs(300)),
            memory_bytes: 1 << 20,
            extra_models: Vec::new(),
            tone_models: Vec::new(),
            configure: Box::new(|_| {}),
            dir: None,
        }
    }
}

pub async fn start() -> TestServer {
    start_with(Options::default()).await
}

/// Start a server; with `opts.dir`, reuse that folder's database (a restart).
pub async fn start_with(opts: Options) -> TestServer {
    let dir = opts
        .dir
        .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temp dir")));
    let db_url = format!("sqlite://{}/voxpool.db?mode=rwc", dir.path().display());
    let mut config = Config::local(&db_url).expect("config");
    config.unload_timeout = opts.timeout;
    config.default_model = MODEL.into();
    config.models_dir = dir.path().join("models");
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    (opts.configure)(&mut config);
    let (spec, knobs) = TestLoader::spec(MODEL, opts.memory_bytes);
    let mut registry = Registry::builtin().with_model(spec);
    for (id, bytes) in opts.extra_models {
        let (spec, _) = TestLoader::spec(&id, bytes);
        registry = registry.with_model(spec);
    }
    for (id, loader) in opts.tone_models {
        registry = registry.with_model(voxpool::engine::tone::ToneLoader::spec(&id, loader));
    }
    let server = Server::start(config, registry)
        .await
        .expect("server starts");
    let base = format!("http://{}", server.addr());
    TestServer {
        server: Some(server),
        base,
        client: reqwest::Client::new(),
        knobs,
        dir,
        db_url,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.client.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/audio/speech` in WAV; returns the status and the body bytes.
    pub async fn speak(&self, input: &str) -> (u16, Vec<u8>) {
        let resp = self
            .client
            .post(self.url("/v1/audio/speech"))
            .json(&json!({"model": MODEL, "input": input, "voice": "alloy", "response_format": "wav"}))
            .send()
            .await
            .expect("speech");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    pub async fn status(&self) -> Value {
        let (code, body) = self.get(&format!("/model/status?model={MODEL}")).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Poll `/model/status` until `pred` holds or `limit` passes; returns whether it held.
    pub async fn wait_status(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        self.wait_status_of(MODEL, limit, pred).await
    }

    /// Poll `/model/status` for `window`; returns whether `pred` held every time
    /// (for what must stay true, such as a model that must not be unloaded).
    pub async fn holds_for(&self, window: Duration, pred: impl Fn(&Value) -> bool) -> bool {
        let deadline = Instant::now() + window;
        while Instant::now() < deadline {
            if !pred(&self.status().await) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pred(&self.status().await)
    }

    /// `GET` a text body (`/metrics`).
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// [`TestServer::wait_status`] for `model`.
    pub async fn wait_status_of(
        &self,
        model: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let (code, status) = self.get(&format!("/model/status?model={model}")).await;
            assert_eq!(code, 200, "{status}");
            if pred(&status) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.dir
    }
}

/// Samples in a 16-bit mono WAV file, whole or streamed (length left unknown in the
/// header, then everything to the end is audio).
pub fn wav_samples(bytes: &[u8]) -> (u32, usize) {
    let (rate, samples) = wav_decode(bytes);
    (rate, samples.len())
}

/// The sample rate and samples of a 16-bit mono WAV file, whole or streamed.
pub fn wav_decode(bytes: &[u8]) -> (u32, Vec<i16>) {
    if bytes.len() >= 44 && bytes[4..8] == [0xff; 4] {
        // Streamed: RIFF and data sizes unknown (hound refuses those), the canonical
        // 44-byte header, then samples to the end.
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        assert_eq!(
            (&bytes[..4], &bytes[8..16]),
            (&b"RIFF"[..], &b"WAVEfmt "[..])
        );
        assert_eq!(
            (u16_at(20), u16_at(22), u16_at(34)),
            (1, 1, 16),
            "16-bit mono PCM"
        );
        assert_eq!(
            (&bytes[36..40], &bytes[40..44]),
            (&b"data"[..], &[0xff; 4][..])
        );
        let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
        let samples = bytes[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        return (rate, samples);
    }
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("valid WAV");
    assert_eq!(reader.spec().channels, 1);
    assert_eq!(reader.spec().bits_per_sample, 16);
    let rate = reader.spec().sample_rate;
    let samples = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    (rate, samples)
}

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> u64 {
    rss_of("self").expect("VmRSS of this process")
}

/// Resident set of process `pid` (`"self"` for this one); `None` once it has ended
/// (a zombie, which holds no memory, counts as ended).
pub fn rss_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    if status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'))
    {
        return None;
    }
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(kb * 1024)
}

/// Processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // The fields after the command name, which is in parentheses.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The audio of an SSE speech response: the `speech.audio.delta` events' base64
/// payloads joined, and how many there were.
pub fn sse_audio(body: &str) -> (Vec<u8>, usize) {
    use base64::Engine as _;
    let mut audio = Vec::new();
    let mut deltas = 0;
    for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let event: Value = serde_json::from_str(line).unwrap();
        if event["type"] == "speech.audio.delta" {
            deltas += 1;
            audio.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(event["audio"].as_str().unwrap())
                    .unwrap(),
            );
        }
    }
    (audio, deltas)
}
