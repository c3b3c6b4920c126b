//! Kokoro through the server: a temporary models folder in the Hugging Face cache
//! layout holding the tiny checkpoint; `POST /v1/audio/speech` returns a WAV whose
//! length follows the predicted durations.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use serde_json::{json, Value};
use voxpool::config::Config;
use voxpool::engine::kokoro::engine::KokoroEngine;
use voxpool::engine::kokoro::weights::KokoroFiles;
use voxpool::engine::Registry;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kokoro");

fn install_tiny_model(models: &Path) {
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

#[tokio::test]
async fn kokoro_speaks_through_the_server() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let models = dir.path().join("models");
    install_tiny_model(&models);
    let db = format!("sqlite://{}/v.db?mode=rwc", dir.path().display());
    let mut config = Config::local(&db).unwrap();
    config.models_dir = models.clone();
    let server = voxpool::Server::start(config, Registry::builtin())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::new();

    // Durations predicted by the engine itself for the same phonemes.
    let phonemes = "hˈI fˈɑks!";
    let files = KokoroFiles::locate(&models).unwrap();
    let engine = KokoroEngine::load(&files, &dir.path().join("cache"), &Device::Cpu).unwrap();
    let frames: u32 = engine
        .predicted_frames(phonemes, "tiny_a", 1.0)
        .unwrap()
        .iter()
        .sum();

    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "tts-1", "input": phonemes, "voice": "tiny_a", "response_format": "wav", "input_format": "phonemes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let wav = resp.bytes().await.unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
    assert_eq!(reader.spec().sample_rate, 24_000);
    assert_eq!(reader.len(), frames * 600);
    let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    assert!(samples.iter().any(|&s| s != 0), "silence");

    // Text goes through G2P; a blend of two voices works; unknown voices are 404.
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "kokoro", "input": "Hello there.", "voice": "tiny_a(2)+tiny_b(1)", "response_format": "pcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.bytes().await.unwrap().is_empty());
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "kokoro", "input": "Hello.", "voice": "af_nobody", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tiny_a"),
        "{body}"
    );

    let status: Value = client
        .get(format!("{base}/model/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["model"], "kokoro");
    assert_eq!(status["model_loaded"], true);
    assert_eq!(status["available_languages"], json!(["a", "b"]));
    server.shutdown().await;
}
