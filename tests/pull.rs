//! `voxpool pull` against a stand-in for the Hugging Face hub (`HF_ENDPOINT`): the
//! files the engine needs land in the HF cache layout and load; a second pull
//! fetches nothing; a file that does not match its SHA-256 is refused and removed;
//! without a reachable hub the error says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use poem::http::{HeaderMap, StatusCode};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Path as PathParam};
use poem::{get, handler, EndpointExt, Response, Route};
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kokoro");

struct Hub {
    files: HashMap<String, Vec<u8>>,
    downloads: AtomicUsize,
    /// Announce a wrong SHA-256 for the checkpoint.
    corrupt: AtomicBool,
    /// Where the last download of the checkpoint started.
    checkpoint_from: AtomicUsize,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[handler]
fn info(Data(hub): Data<&Arc<Hub>>) -> poem::web::Json<serde_json::Value> {
    let siblings: Vec<_> = hub
        .files
        .keys()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    poem::web::Json(serde_json::json!({ "sha": COMMIT, "siblings": siblings }))
}

#[handler]
fn resolve(
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
