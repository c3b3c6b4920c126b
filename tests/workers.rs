//! Worker processes: each loaded model runs in a `voxpool worker` of its own. An
//! unload ends that process; a worker killed mid-request fails only its own
//! requests and the next request starts a new one; a killed server leaves no
//! worker behind; a request gives the same samples in a worker as in-process.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::workloads::{clone_and_speak, concurrent, stress, ServeProcess};
use common::{children_of, rss_of, start_with, Options};
use serde_json::{json, Value};
use voxpool::config::Config;
use voxpool::engine::tone::{expected_samples, ToneLoader};
use voxpool::engine::{EngineError, EngineLoader, LoadContext, ModelSpec, Registry, TtsEngine};

fn tone(memory_bytes: usize, delay_ms: u64) -> ToneLoader {
    ToneLoader {
        memory_bytes,
        delay: Duration::from_millis(delay_ms),
        ..ToneLoader::default()
    }
}

async fn status_of(srv: &common::TestServer, model: &str) -> Value {
    let (code, body) = srv.get(&format!("/model/status?model={model}")).await;
    assert_eq!(code, 200, "{body}");
    body
}

fn kill(pid: u64, signal: i32) {
    // SAFETY: kill sends a signal to a process this test started (its worker).
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// Poll until process `pid` is gone (or a zombie); whether it went within `limit`.
async fn gone_within(pid: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if rss_of(&pid.to_string()).is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_has_its_own_worker_and_an_unload_ends_it() {
    const BYTES: usize = 64 << 20;
    let srv = start_with(Options {
        tone_models: vec![
            ("tone-a".into(), tone(BYTES, 0)),
            ("tone-b".into(), tone(0, 0)),
        ],
        ..Options::default()
    })
    .await;
    let idle = status_of(&srv, "tone-a").await;
    assert_eq!(idle["model_loaded"], false);
    assert_eq!(idle["worker_pid"], Value::Null);
    assert!(idle["gateway"]["rss_bytes"].as_u64().unwrap() > 0, "{idle}");
    assert_eq!(idle["gateway"]["pid"], std::process::id());

    for model in ["tone-a", "tone-b"] {
        let (code, body) = srv.post("/model/load", json!({"model": model})).await;
        assert_eq!(code, 200, "{body}");
    }
    let a = status_of(&srv, "tone-a").await;
    let b = status_of(&srv, "tone-b").await;
    let (pid_a, pid_b) = (
        a["worker_pid"].as_u64().unwrap(),
        b["worker_pid"].as_u64().unwrap(),
    );
    assert_ne!(pid_a, pid_b);
    let children = children_of(std::process::id());
    assert!(children.contains(&(pid_a as u32)) && children.contains(&(pid_b as u32)));
    // memory_bytes is the worker's own resident set: the 64 MiB it holds and more.
    let rss_a = rss_of(&pid_a.to_string()).unwrap();
    let reported = a["memory_bytes"].as_u64().unwrap();
    assert!(reported >= BYTES as u64, "{a}");
    assert!(
        reported.abs_diff(rss_a) < 8 << 20,
        "reported {reported}, /proc {rss_a}"
    );
    assert!(b["memory_bytes"].as_u64().unwrap() < reported - (32 << 20));

    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": "tone-a", "input": "One. Two two.", "voice": "alloy", "response_format": "pcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let pcm = resp.bytes().await.unwrap();
    assert_eq!(
        pcm.len() / 2,
        expected_samples("One.", 1.0) + expected_samples("Two two.", 1.0)
    );
    // An unknown voice is refused by the worker, with the same 404 as ever.
    let (code, body) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": "tone-a", "input": "Hi.", "voice": "nobody"}),
        )
        .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"]["code"], "voice_not_found");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("available voices include: alloy"));

    // The unload returns once the worker has exited; the other keeps running.
    let (code, _) = srv.post("/model/unload", json!({"model": "tone-a"})).await;
    assert_eq!(code, 200);
    assert!(
        rss_of(&pid_a.to_string()).is_none(),
        "worker {pid_a} still running"
    );
    assert!(rss_of(&pid_b.to_string()).is_some());
    let a = status_of(&srv, "tone-a").await;
    assert_eq!(
        (a["model_loaded"].clone(), a["worker_pid"].clone()),
        (json!(false), Value::Null)
    );
    // Shutdown stops the rest.
    srv.stop().await;
    assert!(gone_within(pid_b, Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_only_its_requests_and_the_next_request_gets_audio() {
    let srv = start_with(Options {
        tone_models: vec![
            // Each sentence takes long enough that R2 is still on its first when its
            // worker is killed, even on a busy machine.
            ("tone-slow".into(), tone(0, 600)),
            ("tone-b".into(), tone(0, 0)),
        ],
        ..Options::default()
    })
    .await;
    assert_eq!(
        srv.post("/model/load", json!({"model": "tone-b"})).await.0,
        200
    );
    let sentences: String = (0..40).map(|i| format!("Sentence {i}. ")).collect();
    // R1 streams: its first audio arrives, then its worker is killed.
    let mut r1 = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": "tone-slow", "input": sentences, "voice": "alloy", "response_format": "pcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r1.status(), 200);
    let first = r1.chunk().await.unwrap().expect("first audio");
    assert!(!first.is_empty());
    // R2 is in the worker, before its first audio, when the worker dies.
    let r2 = {
        let (client, url) = (srv.client.clone(), srv.url("/v1/audio/speech"));
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"model": "tone-slow", "input": "Cut short.", "voice": "alloy", "response_format": "mp3"}))
                .send()
                .await
                .unwrap()
        })
    };
    assert!(
        srv.wait_status_of("tone-slow", Duration::from_secs(5), |s| s["in_flight"] == 2)
            .await,
        "R2 never started"
    );
    tokio::time::sleep(Duration::from_millis(40)).await;
    let pid = status_of(&srv, "tone-slow").await["worker_pid"]
        .as_u64()
        .unwrap();
    kill(pid, libc::SIGKILL);

    let r2 = r2.await.unwrap();
    assert_eq!(r2.status(), 503);
    let body: Value = r2.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tone-slow") && message.contains("signal 9"),
        "{message}"
    );
    // R1's stream is cut: an error, never a clean end.
    let mut received = first.len();
    let cut = loop {
        match r1.chunk().await {
            Ok(Some(bytes)) => received += bytes.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "the stream ended cleanly after {received} bytes");
    assert!(received / 2 < 40 * expected_samples("Sentence 10. ", 1.0));

    // The other model never noticed.
    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": "tone-b", "input": "Still here.", "voice": "alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The pool saw the worker end; the next request starts a new one.
    assert!(
        srv.wait_status_of("tone-slow", Duration::from_secs(5), |s| s["model_loaded"]
            == false)
            .await
    );
    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": "tone-slow", "input": "Back again.", "voice": "alloy", "response_format": "pcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().len() / 2,
        expected_samples("Back again.", 1.0)
    );
    let new_pid = status_of(&srv, "tone-slow").await["worker_pid"]
        .as_u64()
        .unwrap();
    assert_ne!(new_pid, pid);
    let (_, metrics) = srv.get_text("/metrics").await;
    assert!(
        metrics.contains("voxpool_worker_crashes_total{model=\"tone-slow\"} 1"),
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_worker_fails_that_request_and_a_worker_dying_while_loading_is_a_failed_load()
{
    let crashing = ToneLoader {
        abort_on_load: true,
        ..ToneLoader::default()
    };
    let srv = start_with(Options {
        tone_models: vec![("tone".into(), tone(0, 0)), ("tone-crash".into(), crashing)],
        ..Options::default()
    })
    .await;
    assert_eq!(
        srv.post("/model/load", json!({"model": "tone"})).await.0,
        200
    );
    let pid = status_of(&srv, "tone").await["worker_pid"]
        .as_u64()
        .unwrap();
    let (code, body) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": "tone", "input": "[panic]", "voice": "alloy"}),
        )
        .await;
    assert_eq!(code, 500, "{body}");
    // The model is reloaded: a new worker answers the next request.
    assert!(gone_within(pid, Duration::from_secs(5)).await);
    let (code, _) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": "tone", "input": "Fine.", "voice": "alloy"}),
        )
        .await;
    assert_eq!(code, 200);
    assert_ne!(
        status_of(&srv, "tone").await["worker_pid"]
            .as_u64()
            .unwrap(),
        pid
    );

    let (code, body) = srv
        .post("/model/load", json!({"model": "tone-crash"}))
        .await;
    assert_eq!(code, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("tone-crash") && message.contains("while loading"),
        "{message}"
    );
    // A failed load: the cooldown answers the next caller at once, with the same error.
    let started = Instant::now();
    let (code, again) = srv
        .post("/model/load", json!({"model": "tone-crash"}))
        .await;
    assert_eq!(code, 503);
    assert_eq!(again["error"]["message"], message.as_str());
    assert!(started.elapsed() < Duration::from_millis(500));
    let status = status_of(&srv, "tone-crash").await;
    assert_eq!(status["last_error"], message.as_str());
    srv.stop().await;
}

/// Kokoro loaded in this process, for comparison with its worker.
struct InProcess;

impl EngineLoader for InProcess {
    fn load(&self, ctx: &LoadContext) -> Result<Box<dyn TtsEngine>, EngineError> {
        voxpool::engine::kokoro::engine::KokoroLoader.load(ctx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gives_the_same_samples_in_a_worker_as_in_process() {
    let dir = tempfile::tempdir().unwrap();
    common::install_tiny_kokoro(&dir.path().join("models"));
    let db = format!("sqlite://{}/v.db?mode=rwc", dir.path().display());
    let mut config = Config::local(&db).unwrap();
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    config.models_dir = dir.path().join("models");
    let registry = Registry::builtin().with_model(ModelSpec {
        id: "kokoro-here".into(),
        owned_by: "tests".into(),
        languages: vec!["a".into()],
        loader: Arc::new(InProcess),
    });
    let server = voxpool::Server::start(config, registry).await.unwrap();
    let client = reqwest::Client::new();
    let speak = |model: &'static str, format: &'static str| {
        let (client, url) = (
            client.clone(),
            format!("http://{}/v1/audio/speech", server.addr()),
        );
        async move {
            let resp = client
                .post(url)
                .json(&json!({"model": model, "input": "Hello there. How are you today?", "voice": "tiny_a", "response_format": format, "speed": 1.1}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap()
        }
    };
    for format in ["pcm", "wav", "flac"] {
        let here = speak("kokoro-here", format).await;
        let there = speak("kokoro", format).await;
        assert!(here.len() > 1000);
        assert!(
            here == there,
            "{format}: {} vs {} bytes",
            here.len(),
            there.len()
        );
    }
    let worker_pid = |model: &'static str| {
        let (client, url) = (
            client.clone(),
            format!("http://{}/model/status?model={model}", server.addr()),
        );
        async move {
            let status: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            status["worker_pid"].clone()
        }
    };
    assert!(worker_pid("kokoro").await.is_u64());
    assert_eq!(worker_pid("kokoro-here").await, Value::Null);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_no_worker_behind() {
    let dir = tempfile::tempdir().unwrap();
    common::install_tiny_kokoro(&dir.path().join("models"));
    common::tiny_turbo::install_tiny_turbo(&dir.path().join("models"));
    let mut srv = ServeProcess::start(
        dir.path(),
        &dir.path().join("models"),
        &[("MODEL_PRELOAD", "kokoro,chatterbox-turbo")],
    );
    let (client, base) = (srv.client.clone(), srv.base.clone());
    let mut pids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids.len() < 2 {
        assert!(Instant::now() < deadline, "the models never loaded");
        let status: Value = client
            .get(format!("{base}/model/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pids = status["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["worker_pid"].as_u64())
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A request in flight when the server dies.
    let speaking = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let text: String = (0..50).map(|i| format!("Sentence number {i}. ")).collect();
            let _ = client
                .post(format!("{base}/v1/audio/speech"))
                .json(&json!({"model": "kokoro", "input": text, "voice": "tiny_a", "response_format": "pcm"}))
                .send()
                .await;
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.kill();
    let killed = Instant::now();
    for pid in &pids {
        assert!(
            gone_within(*pid, Duration::from_secs(2)).await,
            "worker {pid} still running {:?} after the server was killed",
            killed.elapsed()
        );
    }
    speaking.abort();
}

/// Every voxpool process together (server and workers) is back within 2 MiB of
/// the server's idle figure after each workload, with no worker left. The idle
/// figure is taken after a first round of the same requests: a server's first
/// requests page in its code and fill its caches once (see README, Lifecycle).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_comes_back_after_concurrent_requests_a_stress_and_a_clone() {
    const SLACK: u64 = 2 << 20;
    // Unoptimised, the server's async handlers take deep stack frames: each runtime
    // thread's stack keeps ~0.5 MiB more once used (0 in a release build, measured by
    // `cargo bench --bench memory`).
    const ANON_SLACK: u64 = if cfg!(debug_assertions) {
        4 << 20
    } else {
        SLACK
    };
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    common::install_tiny_kokoro(&models);
    let snap = common::tiny_turbo::install_tiny_turbo(&models);
    common::tiny_turbo::install_tiny_cloner(&snap);
    let srv = ServeProcess::start(dir.path(), &models, &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (at_start, workers) = srv.rss_all();
    let anon_at_start = srv.anon_all();
    assert_eq!(workers, 0);
    let recording = |pitch| common::tiny_turbo::recording(6.0, pitch);
    concurrent(&srv, "kokoro", "tiny_a", 16).await;
    clone_and_speak(&srv, "chatterbox-turbo", recording(120.0)).await;
    let idle = srv.settle(&["kokoro", "chatterbox-turbo"]).await;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let mut report = vec![format!(
        "at start {:.1} MiB, idle after the first requests {:.1} MiB",
        mib(at_start),
        mib(idle)
    )];
    let mut check = |what: &str, after: u64| {
        // What the processes own (not the binary's pages mapped from its file) is
        // back near the very start.
        let anon = srv.anon_all();
        report.push(format!(
            "after {what} {:.1} MiB ({:+.2} MiB anonymous since the start)",
            mib(after),
            (anon as f64 - anon_at_start as f64) / f64::from(1 << 20)
        ));
        assert!(
            anon <= anon_at_start + ANON_SLACK,
            "{what}: {}",
            report.join(", ")
        );
        assert!(
            after <= idle + SLACK,
            "{what}: {:.1} MiB > idle {:.1} MiB + 2 MiB ({})",
            mib(after),
            mib(idle),
            report.join(", ")
        );
    };
    concurrent(&srv, "kokoro", "tiny_a", 8).await;
    check("8 concurrent requests", srv.settle(&["kokoro"]).await);
    let unloads = stress(&srv, "kokoro", "tiny_a", 100, 16).await;
    assert!(unloads >= 2, "only {unloads} unloads during the stress");
    check("100 requests with unloads", srv.settle(&["kokoro"]).await);
    clone_and_speak(&srv, "chatterbox-turbo", recording(130.0)).await;
    check("a voice clone", srv.settle(&["chatterbox-turbo"]).await);
    for round in 1..=2 {
        concurrent(&srv, "kokoro", "tiny_a", 8).await;
        clone_and_speak(&srv, "chatterbox-turbo", recording(140.0)).await;
        let after = srv.settle(&["kokoro", "chatterbox-turbo"]).await;
        check(&format!("all of it again ({round})"), after);
    }
    println!("{}", report.join(", "));
}
