//! The voices API over HTTP against a real server and SQLite file: cloning a voice
//! from an upload, listing, fetching, deleting, speaking with it, persistence across
//! a restart, every client error leaving the stored voices unchanged, and the seed's
//! `/load_voice` endpoints with their path confinement.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{start_with, wav_samples, Options, TestServer, MODEL};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

/// A WAV recording: `seconds` of a tone at `freq` Hz, `rate` Hz, `channels` channels.
fn wav(seconds: f64, freq: f64, rate: u32, channels: u16) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..(seconds * f64::from(rate)) as usize {
        let v = 0.3 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin();
        for _ in 0..channels {
            w.write_sample((v * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    out.into_inner()
}

async fn cloning_server(configure: Box<dyn FnOnce(&mut voxpool::config::Config)>) -> TestServer {
    let server = start_with(Options {
        configure,
        ..Options::default()
    })
    .await;
    server.knobs.clones.store(true, Ordering::SeqCst);
    server
}

async fn send_form(server: &TestServer, path: &str, form: Form) -> (u16, Value) {
    let resp = server
        .client
        .post(server.url(path))
        .multipart(form)
        .send()
        .await
        .expect("POST multipart");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn voice_form(name: &str, sample: Vec<u8>, model: Option<&str>) -> Form {
    let form = Form::new().text("name", name.to_string()).part(
        "audio_sample",
        Part::bytes(sample)
            .file_name("sample.wav")
            .mime_str("audio/wav")
            .unwrap(),
    );
    match model {
        Some(m) => form.text("model", m.to_string()),
        None => form,
    }
}

async fn create_voice(server: &TestServer, name: &str, sample: Vec<u8>) -> String {
    let (code, body) = send_form(
        server,
        "/v1/audio/voices",
        voice_form(name, sample, Some(MODEL)),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["object"], "audio.voice");
    assert_eq!(body["name"], name);
    assert_eq!(body["model"], MODEL);
    let id = body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("voice_"), "{id}");
    id
}

/// Speak `input` as WAV with `voice` (a JSON value: a name or `{"id": …}`).
async fn speak_with(server: &TestServer, model: &str, voice: Value) -> (u16, Vec<u8>) {
    let resp = server
        .client
        .post(server.url("/v1/audio/speech"))
        .json(&json!({"model": model, "input": "Hello there.", "voice": voice, "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

async fn stored_ids(server: &TestServer) -> Vec<String> {
    let (code, body) = server.get(&format!("/v1/audio/voices?model={MODEL}")).await;
    assert_eq!(code, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["builtin"] == false)
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn clone_list_speak_delete_and_survive_a_restart() {
    let server = cloning_server(Box::new(|_| {})).await;
    // Stereo 44.1 kHz: mixed down and resampled.
    let ada = create_voice(&server, "Ada", wav(6.0, 220.0, 44_100, 2)).await;
    let bob = create_voice(&server, "Bob", wav(7.0, 330.0, 16_000, 1)).await;
    assert_ne!(ada, bob);

    let (code, list) = server.get("/v1/audio/voices").await;
    assert_eq!(code, 200);
    let data = list["data"].as_array().unwrap();
    let ada_row = data
        .iter()
        .find(|v| v["id"] == ada.as_str())
        .expect("listed");
    assert_eq!(ada_row["builtin"], false);
    assert_eq!(ada_row["name"], "Ada");
    assert!(data
        .iter()
        .any(|v| v["id"] == "alloy" && v["builtin"] == true));
    assert_eq!(stored_ids(&server).await, vec![ada.clone(), bob.clone()]);
    let (code, kokoro) = server.get("/v1/audio/voices?model=kokoro").await;
    assert_eq!(code, 200);
    assert!(!kokoro["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["id"] == ada.as_str()));

    let (code, one) = server.get(&format!("/v1/audio/voices/{ada}")).await;
    assert_eq!((code, one["name"].clone()), (200, json!("Ada")));
    let (code, builtin) = server.get("/v1/audio/voices/alloy").await;
    assert_eq!((code, builtin["builtin"].clone()), (200, json!(true)));

    // By id string, by {"id"}, and with an OpenAI model name (the voice picks its model).
    let (code, as_string) = speak_with(&server, MODEL, json!(ada)).await;
    assert_eq!(code, 200);
    let (code, as_object) = speak_with(&server, MODEL, json!({"id": ada})).await;
    assert_eq!(code, 200);
    assert_eq!(as_string, as_object);
    let (code, via_alias) = speak_with(&server, "tts-1", json!(ada)).await;
    assert_eq!(code, 200);
    assert_eq!(via_alias, as_string);
    let (_, builtin_audio) = speak_with(&server, MODEL, json!("alloy")).await;
    let (_, bob_audio) = speak_with(&server, MODEL, json!(bob)).await;
    assert_eq!(wav_samples(&as_string).1, wav_samples(&builtin_audio).1);
    assert_ne!(
        as_string, builtin_audio,
        "a cloned voice speaks with its conditioning"
    );
    assert_ne!(as_string, bob_audio, "two voices, two conditionings");
    // A voice of one model asked of another.
    let (code, body) = speak_with(&server, "kokoro", json!(ada)).await;
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));

    // Restart on the same database: the voices and their conditioning are back.
    let dir = server.stop().await;
    let server = start_with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    assert_eq!(stored_ids(&server).await, vec![ada.clone(), bob.clone()]);
    let (code, again) = speak_with(&server, MODEL, json!(ada)).await;
    assert_eq!(code, 200);
    assert_eq!(again, as_string, "same conditioning after a restart");

    let resp = server
        .client
        .delete(server.url(&format!("/v1/audio/voices/{ada}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": ada, "object": "audio.voice", "deleted": true})
    );
    assert_eq!(server.get(&format!("/v1/audio/voices/{ada}")).await.0, 404);
    let (code, body) = speak_with(&server, MODEL, json!(ada)).await;
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    let again = server
        .client
        .delete(server.url(&format!("/v1/audio/voices/{ada}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
    let builtin = server
        .client
        .delete(server.url("/v1/audio/voices/alloy"))
        .send()
        .await
        .unwrap();
    assert_eq!(builtin.status().as_u16(), 400);
    assert_eq!(stored_ids(&server).await, vec![bob.clone()]);

    // The recording went with the row.
    let url = voxpool::config::normalize_db_url(&server.db_url).unwrap();
    let db = sea_orm::Database::connect(&url).await.unwrap();
    use sea_orm::{ConnectionTrait, Statement};
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, length(sample) AS n FROM voices".to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let id: String = rows[0].try_get("", "id").unwrap();
    let n: i64 = rows[0].try_get("", "n").unwrap();
    assert_eq!(
        (id.as_str(), n as usize),
        (bob.as_str(), wav(7.0, 330.0, 16_000, 1).len())
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_and_change_nothing() {
    let server = cloning_server(Box::new(|_| {})).await;
    let kept = create_voice(&server, "Kept", wav(6.0, 200.0, 24_000, 1)).await;
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "too short",
            voice_form("x", wav(3.0, 200.0, 24_000, 1), Some(MODEL)),
            400,
            "longer than 5",
        ),
        (
            "not audio",
            voice_form("x", b"this is not audio at all".repeat(100), Some(MODEL)),
            400,
            "wav, mp3, flac or ogg",
        ),
        (
            "truncated wav header",
            voice_form("x", wav(6.0, 200.0, 24_000, 1)[..30].to_vec(), Some(MODEL)),
            400,
            "audio_sample",
        ),
        (
            "empty file",
            voice_form("x", Vec::new(), Some(MODEL)),
            400,
            "empty",
        ),
        (
            "over 10 MiB",
            voice_form("x", vec![0u8; (10 << 20) + 1], Some(MODEL)),
            413,
            "10 MiB",
        ),
        (
            "blank name",
            voice_form("  ", wav(6.0, 200.0, 24_000, 1), Some(MODEL)),
            400,
            "'name'",
        ),
        (
            "model that cannot clone",
            voice_form("x", wav(6.0, 200.0, 24_000, 1), Some("kokoro")),
            400,
            "cannot clone",
        ),
        (
            "unknown model",
            voice_form("x", wav(6.0, 200.0, 24_000, 1), Some("nope")),
            404,
            "nope",
        ),
        (
            "default model without its files",
            voice_form("x", wav(6.0, 200.0, 24_000, 1), None),
            503,
            "voxpool pull chatterbox-turbo",
        ),
        (
            "no sample",
            Form::new().text("name", "x"),
            400,
            "audio_sample",
        ),
    ];
    for (what, form, status, needle) in cases {
        let (code, body) = send_form(&server, "/v1/audio/voices", form).await;
        assert_eq!(code, status, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{what}: {message}");
    }
    assert_eq!(stored_ids(&server).await, vec![kept]);
    let (code, body) = speak_with(&server, MODEL, json!("voice_doesnotexist")).await;
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    let (code, body) = server.get("/v1/audio/voices/voice_nope").await;
    assert_eq!(code, 404, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_requests_with_different_voices_keep_their_own() {
    let server = Arc::new(cloning_server(Box::new(|_| {})).await);
    let ids = [
        create_voice(&server, "One", wav(6.0, 150.0, 24_000, 1)).await,
        create_voice(&server, "Two", wav(6.0, 450.0, 24_000, 1)).await,
    ];
    let mut alone = Vec::new();
    for id in &ids {
        alone.push(speak_with(&server, MODEL, json!(id)).await.1);
    }
    assert_ne!(alone[0], alone[1]);
    server.knobs.synth_delay_ms.store(30, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for round in 0..8 {
        let (server, id) = (server.clone(), ids[round % 2].clone());
        tasks.push(tokio::spawn(async move {
            (round % 2, speak_with(&server, MODEL, json!(id)).await)
        }));
    }
    for task in tasks {
        let (which, (code, audio)) = task.await.unwrap();
        assert_eq!(code, 200);
        assert_eq!(audio, alone[which], "voice {which} under concurrency");
    }
}

#[tokio::test]
async fn load_voice_reads_only_inside_the_voices_folder() {
    let folder = tempfile::tempdir().unwrap();
    let voices = folder.path().join("voices");
    std::fs::create_dir(&voices).unwrap();
    std::fs::write(voices.join("me.wav"), wav(6.0, 260.0, 22_050, 1)).unwrap();
    let secret = folder.path().join("secret.wav");
    std::fs::write(&secret, wav(6.0, 260.0, 22_050, 1)).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, voices.join("escape.wav")).unwrap();
    let dir = voices.clone();
    let server = cloning_server(Box::new(move |c| c.voices_dir = Some(dir))).await;

    let (code, body) = speak_with(&server, MODEL, json!("current")).await;
    assert_eq!(code, 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["message"], "No voice has been loaded");

    let load = |path: String| {
        let server = &server;
        async move {
            server
                .post("/load_voice", json!({"path": path, "model": MODEL}))
                .await
        }
    };
    let outside = [
        "../secret.wav".to_string(),
        secret.display().to_string(),
        "/etc/passwd".to_string(),
        "sub/../../secret.wav".to_string(),
        #[cfg(unix)]
        "escape.wav".to_string(),
    ];
    for path in outside {
        let (code, body) = load(path.clone()).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("outside"),
            "{path}: {body}"
        );
    }
    let (code, body) = load("missing.wav".into()).await;
    assert_eq!(code, 400);
    assert_eq!(
        body["error"]["message"],
        "Voice file not found: missing.wav"
    );
    // Nothing was loaded by the refused requests.
    assert_eq!(speak_with(&server, MODEL, json!("current")).await.0, 400);

    let (code, body) = load("me.wav".into()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["voice"], "current");
    let (code, from_file) = speak_with(&server, MODEL, json!("current")).await;
    assert_eq!(code, 200);

    // The upload variant replaces it; the same recording gives the same voice.
    let form = Form::new().text("model", MODEL).part(
        "file",
        Part::bytes(wav(6.0, 260.0, 22_050, 1)).file_name("me.wav"),
    );
    let (code, body) = send_form(&server, "/load_voice_upload", form).await;
    assert_eq!(code, 200, "{body}");
    let (_, uploaded) = speak_with(&server, MODEL, json!("current")).await;
    assert_eq!(uploaded, from_file);
    let form = Form::new().text("model", MODEL).part(
        "file",
        Part::bytes(wav(8.0, 520.0, 22_050, 1)).file_name("other.wav"),
    );
    assert_eq!(send_form(&server, "/load_voice_upload", form).await.0, 200);
    let (_, other) = speak_with(&server, MODEL, json!("current")).await;
    assert_ne!(other, from_file, "the current voice was replaced");
    let (code, body) = send_form(
        &server,
        "/load_voice_upload",
        Form::new().text("model", MODEL),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn load_voice_is_off_without_a_voices_folder() {
    let server = cloning_server(Box::new(|_| {})).await;
    let (code, body) = server
        .post("/load_voice", json!({"path": "me.wav", "model": MODEL}))
        .await;
    assert_eq!(code, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Voice file not found: me.wav"),
        "{message}"
    );
    assert!(message.contains("VOXPOOL_VOICES_DIR"), "{message}");
    server.stop().await;
}
