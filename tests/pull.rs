//! `voxpool pull` against a stand-in for the Hugging Face hub (`HF_ENDPOINT`): the
//! files the engine needs land in the HF cache layout and load; a second pull
//! fetches nothing; a file that does not match its SHA-256 is refused and removed;
//! without a reachable hub the error says so. Then a server with an empty models
//! folder: its first request downloads (once, however many wait) and speaks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use poem::http::{HeaderMap, StatusCode};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Path as PathParam};
use poem::{get, handler, EndpointExt, Response, Route};
use sha2::{Digest, Sha256};
use std::time::Duration;
use voxpool::config::{AutoPull, Config};
use voxpool::engine::Registry;
use voxpool::hub::Source;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kokoro");

struct Hub {
    files: HashMap<String, Vec<u8>>,
    downloads: AtomicUsize,
    /// Announce a wrong SHA-256 for the checkpoint.
    corrupt: AtomicBool,
    /// Where the last download of the checkpoint started.
    checkpoint_from: AtomicUsize,
    /// Milliseconds the checkpoint's download takes.
    slow_ms: std::sync::atomic::AtomicU64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[handler]
fn info(Data(hub): Data<&Arc<Hub>>) -> poem::web::Json<serde_json::Value> {
    let siblings: Vec<_> = hub
        .files
        .iter()
        .map(|(f, body)| serde_json::json!({ "rfilename": f, "size": body.len() }))
        .collect();
    poem::web::Json(serde_json::json!({ "sha": COMMIT, "siblings": siblings }))
}

#[handler]
async fn resolve(
    PathParam((_org, _name, _rev, file)): PathParam<(String, String, String, String)>,
    headers: &HeaderMap,
    Data(hub): Data<&Arc<Hub>>,
) -> Response {
    let Some(body) = hub.files.get(&file) else {
        return Response::builder().status(StatusCode::NOT_FOUND).finish();
    };
    // Weights are LFS files (ETag = SHA-256), config.json a git blob (40 hex).
    let etag = if file.ends_with(".json") {
        format!("{:0>40}", hex(&Sha256::digest(body))[..16].to_string())
    } else if file.ends_with(".pth") && hub.corrupt.load(Ordering::SeqCst) {
        "f".repeat(64)
    } else {
        hex(&Sha256::digest(body))
    };
    let start: usize = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let is_probe = headers.get("range").and_then(|v| v.to_str().ok()) == Some("bytes=0-0");
    let end = if is_probe { 1 } else { body.len() };
    if !is_probe {
        hub.downloads.fetch_add(1, Ordering::SeqCst);
        if file.ends_with(".pth") {
            hub.checkpoint_from.store(start, Ordering::SeqCst);
            let slow = hub.slow_ms.load(Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(slow)).await;
        }
    }
    Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header("etag", format!("\"{etag}\""))
        .header("x-repo-commit", COMMIT)
        .header(
            "content-range",
            format!("bytes {start}-{}/{}", end.max(1) - 1, body.len()),
        )
        .body(body[start.min(end)..end].to_vec())
}

async fn start_hub(hub: Arc<Hub>) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().cloned().unwrap();
    let app = Route::new()
        .at("/api/models/:org/:name/revision/:rev", get(info))
        .at("/:org/:name/resolve/:rev/*file", get(resolve))
        .data(hub);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}")
}

async fn pull(endpoint: &str, models: &std::path::Path) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxpool"))
        .args(["pull", "kokoro", "--models-dir"])
        .arg(models)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn pull_fetches_verifies_resumes_and_skips_what_is_there() {
    let read = |p: &str| std::fs::read(format!("{FIXTURES}/{p}")).unwrap();
    let files: HashMap<String, Vec<u8>> = [
        ("config.json", read("tiny_config.json")),
        ("kokoro-v1_0.pth", read("tiny.pth")),
        ("voices/af_alloy.pt", read("voices/tiny_a.pt")),
        ("README.md", b"not needed".to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let hub = Arc::new(Hub {
        files,
        downloads: AtomicUsize::new(0),
        corrupt: AtomicBool::new(false),
        checkpoint_from: AtomicUsize::new(usize::MAX),
        slow_ms: Default::default(),
    });
    let endpoint = start_hub(hub.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("hub");

    // An interrupted download left the first half of the checkpoint behind.
    let checkpoint = read("tiny.pth");
    let blobs = models.join("models--hexgrad--Kokoro-82M/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let sha = hex(&Sha256::digest(&checkpoint));
    let half = checkpoint.len() / 2;
    std::fs::write(blobs.join(format!("{sha}.part")), &checkpoint[..half]).unwrap();

    let (code, out, err) = pull(&endpoint, &models).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        hub.checkpoint_from.load(Ordering::SeqCst),
        half,
        "did not resume"
    );
    assert!(out.starts_with("kokoro: 3 files"), "{out}");
    assert_eq!(
        hub.downloads.load(Ordering::SeqCst),
        3,
        "README.md is not needed"
    );
    let snap = models.join(format!("models--hexgrad--Kokoro-82M/snapshots/{COMMIT}"));
    for (name, fixture) in [
        ("kokoro-v1_0.pth", "tiny.pth"),
        ("voices/af_alloy.pt", "voices/tiny_a.pt"),
    ] {
        assert_eq!(
            std::fs::read(snap.join(name)).unwrap(),
            read(fixture),
            "{name}"
        );
    }
    // The engine finds and loads what was pulled.
    let files = voxpool::engine::kokoro::weights::KokoroFiles::locate(&models).unwrap();
    voxpool::engine::kokoro::engine::KokoroEngine::load(
        &files,
        &dir.path().join("cache"),
        &candle_core::Device::Cpu,
    )
    .unwrap();

    // Already there: nothing is downloaded again.
    let (code, _, err) = pull(&endpoint, &models).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(hub.downloads.load(Ordering::SeqCst), 3);

    // A checkpoint that does not match its SHA-256 is refused and removed.
    hub.corrupt.store(true, Ordering::SeqCst);
    let fresh = dir.path().join("hub2");
    let (code, _, err) = pull(&endpoint, &fresh).await;
    assert_eq!(code, 1);
    assert!(err.contains("kokoro-v1_0.pth: checksum mismatch"), "{err}");
    let blobs = fresh.join("models--hexgrad--Kokoro-82M/blobs");
    assert!(!blobs.join("f".repeat(64)).exists());

    // No hub at all.
    let (code, _, err) = pull("http://127.0.0.1:9", &dir.path().join("hub3")).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach the Hugging Face hub at http://127.0.0.1:9"),
        "{err}"
    );
}

/// The tiny Kokoro as the hub serves it.
fn tiny_hub() -> Arc<Hub> {
    let read = |p: &str| std::fs::read(format!("{FIXTURES}/{p}")).unwrap();
    let files = [
        ("config.json", read("tiny_config.json")),
        ("kokoro-v1_0.pth", read("tiny.pth")),
        ("voices/af_alloy.pt", read("voices/tiny_a.pt")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Arc::new(Hub {
        files,
        downloads: AtomicUsize::new(0),
        corrupt: AtomicBool::new(false),
        checkpoint_from: AtomicUsize::new(usize::MAX),
        slow_ms: Default::default(),
    })
}

/// A server with an empty models folder that fetches from `endpoint` (`None`: it
/// does not fetch), waiting at most `wait` for a download.
async fn empty_server(
    endpoint: Option<&str>,
    wait: Duration,
) -> (voxpool::Server, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/v.db?mode=rwc", dir.path().display());
    let mut config = Config::local(&db).unwrap();
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    config.models_dir = dir.path().join("models");
    config.auto_pull = endpoint.map(|endpoint| AutoPull {
        source: Source {
            endpoint: endpoint.to_string(),
            pull_command: "voxpool pull {model}".into(),
        },
        wait,
    });
    let server = voxpool::Server::start(config, Registry::builtin())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    (server, base, dir)
}

async fn speak(client: &reqwest::Client, base: &str) -> (u16, Option<String>, String) {
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&serde_json::json!({"model": "kokoro", "input": "Hi.", "voice": "af_alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.bytes().await.unwrap();
    let message = if status == 200 {
        String::new()
    } else {
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (status, retry, message)
}

async fn status(client: &reqwest::Client, base: &str) -> serde_json::Value {
    client
        .get(format!("{base}/model/status?model=kokoro"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn first_requests_download_once_and_speak() {
    let hub = tiny_hub();
    let endpoint = start_hub(hub.clone()).await;
    let (server, base, _dir) = empty_server(Some(&endpoint), Duration::from_secs(60)).await;
    let client = reqwest::Client::new();
    // 20 first requests at once: one download, then all of them speak.
    let answers = futures_util::future::join_all((0..20).map(|_| speak(&client, &base))).await;
    for (status, _, message) in &answers {
        assert_eq!(*status, 200, "{message}");
    }
    assert_eq!(
        hub.downloads.load(Ordering::SeqCst),
        3,
        "one download of each file"
    );
    let status = status(&client, &base).await;
    assert_eq!(status["model_loaded"], true, "{status}");
    assert!(status["download"].is_null(), "{status}");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The recorder is the test process's: other tests' downloads count too.
    let total: usize = hub.files.values().map(Vec::len).sum();
    let counted: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("voxpool_download_bytes_total{model=\"kokoro\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(counted >= total, "{counted} < {total}: {metrics}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_long_download_answers_its_progress_then_speaks() {
    let hub = tiny_hub();
    hub.slow_ms.store(3000, Ordering::SeqCst);
    let endpoint = start_hub(hub.clone()).await;
    let (server, base, _dir) = empty_server(Some(&endpoint), Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    let (code, retry, message) = speak(&client, &base).await;
    assert_eq!(code, 503, "{message}");
    assert!(retry.is_some());
    assert!(message.starts_with("downloading kokoro: "), "{message}");
    assert!(message.contains("% of "), "{message}");
    // The status shows the download while it runs.
    let status = status(&client, &base).await;
    let download = &status["download"];
    assert!(download["bytes_total"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(download["file"], "kokoro-v1_0.pth", "{status}");
    // It goes on without the request that left; the model then loads and speaks.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut code = 0;
    while std::time::Instant::now() < deadline {
        code = speak(&client, &base).await.0;
        if code == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(code, 200);
    assert_eq!(hub.downloads.load(Ordering::SeqCst), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn without_the_hub_or_with_pull_off_the_answer_says_what_to_do() {
    let client = reqwest::Client::new();
    // No hub: 503 naming the hub, the pull command and offline mode.
    let (server, base, _dir) =
        empty_server(Some("http://127.0.0.1:9"), Duration::from_secs(30)).await;
    let (code, retry, message) = speak(&client, &base).await;
    assert_eq!(code, 503, "{message}");
    assert!(retry.is_some());
    for part in [
        "http://127.0.0.1:9",
        "voxpool pull kokoro",
        "HF_HUB_OFFLINE=1",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    server.shutdown().await;
    // A models folder that cannot be made (its parent is a file): 503 naming it.
    let hub = tiny_hub();
    let endpoint = start_hub(hub.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let db = format!("sqlite://{}/v.db?mode=rwc", dir.path().display());
    let mut config = Config::local(&db).unwrap();
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    config.models_dir = blocked.join("models");
    config.auto_pull = Some(AutoPull {
        source: Source {
            endpoint,
            pull_command: "voxpool pull {model}".into(),
        },
        wait: Duration::from_secs(30),
    });
    let server = voxpool::Server::start(config, Registry::builtin())
        .await
        .unwrap();
    let (code, _, message) = speak(&client, &format!("http://{}", server.addr())).await;
    assert_eq!(code, 503, "{message}");
    assert!(
        message.contains(&format!(
            "models folder {}",
            blocked.join("models").display()
        )),
        "{message}"
    );
    assert_eq!(hub.downloads.load(Ordering::SeqCst), 0);
    server.shutdown().await;
    // Downloads off: the pull message.
    let (server, base, _dir) = empty_server(None, Duration::from_secs(30)).await;
    let (code, _, message) = speak(&client, &base).await;
    assert_eq!(code, 503);
    assert_eq!(
        message,
        "Model files not found in cache. Run: voxpool pull kokoro"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_corrupted_download_is_removed_and_never_loaded() {
    let hub = tiny_hub();
    hub.corrupt.store(true, Ordering::SeqCst);
    let endpoint = start_hub(hub.clone()).await;
    let (server, base, dir) = empty_server(Some(&endpoint), Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    let (code, _, message) = speak(&client, &base).await;
    assert_eq!(code, 503, "{message}");
    assert!(
        message.contains("kokoro-v1_0.pth: checksum mismatch"),
        "{message}"
    );
    let status = status(&client, &base).await;
    assert_eq!(status["model_loaded"], false, "{status}");
    let blobs = dir.path().join("models/models--hexgrad--Kokoro-82M/blobs");
    assert!(
        !blobs.join("f".repeat(64)).exists(),
        "the bad file was kept"
    );
    let snapshot = dir.path().join(format!(
        "models/models--hexgrad--Kokoro-82M/snapshots/{COMMIT}/kokoro-v1_0.pth"
    ));
    assert!(!snapshot.exists(), "the bad file is still linked");
    server.shutdown().await;
}
