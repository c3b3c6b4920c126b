//! The HTTP contract, end to end: a real server on a random port, a real SQLite file.

mod common;

use std::time::Duration;

use common::{expected_samples, start, start_with, wav_samples, Options, MODEL};
use serde_json::{json, Value};
use voxpool::config::RateLimit;

fn assert_openai_error(body: &Value, param: Option<&str>) {
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(err["type"].is_string(), "{body}");
    assert!(err.as_object().unwrap().contains_key("param"), "{body}");
    assert!(err.as_object().unwrap().contains_key("code"), "{body}");
    if let Some(p) = param {
        assert_eq!(err["param"], p, "{body}");
    }
}

#[tokio::test]
async fn status_has_the_seed_fields_with_their_types() {
    let srv = start().await;
    let (code, body) = srv.get("/model/status").await;
    assert_eq!(code, 200);
    let obj = body.as_object().unwrap();
    for key in [
        "model_loaded",
        "device",
        "unload_timeout",
        "time_since_last_activity",
        "is_loading",
        "available_languages",
        "gpu_memory_allocated",
        "gpu_memory_reserved",
    ] {
        assert!(obj.contains_key(key), "missing {key}: {body}");
    }
    assert_eq!(body["model_loaded"], false);
    assert_eq!(body["device"], "cpu");
    assert_eq!(body["unload_timeout"], 300);
    assert!(body["unload_timeout"].is_i64());
    assert!(body["time_since_last_activity"].is_f64());
    assert_eq!(body["is_loading"], false);
    assert_eq!(body["available_languages"], json!(["a"]));
    assert_eq!(body["gpu_memory_allocated"], 0);
    assert_eq!(body["gpu_memory_reserved"], 0);
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["in_flight"], 0);
    assert_eq!(body["memory_bytes"], 0);
    let models: Vec<&str> = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, vec!["kokoro", "chatterbox-turbo", MODEL]);
    // Only what this build can speak on this machine: Kokoro's English always, its
    // other languages with their packs or espeak-ng; Chatterbox Turbo's English.
    let (_, kokoro) = srv.get("/model/status?model=kokoro").await;
    let here: Vec<&str> = voxpool::text::g2p::available_languages()
        .iter()
        .map(|l| l.code())
        .collect();
    assert!(here.starts_with(&["a", "b"]), "{here:?}");
    assert_eq!(kokoro["available_languages"], json!(here));
    let (_, chatterbox) = srv.get("/model/status?model=chatterbox-turbo").await;
    assert_eq!(chatterbox["available_languages"], json!(["en"]));
    let (code, body) = srv.get("/model/status?model=nope").await;
    assert_eq!(code, 404);
    assert_openai_error(&body, Some("model"));
    srv.stop().await;
}

#[tokio::test]
async fn admin_endpoints_answer_the_seed_messages() {
    let srv = start().await;
    // The seed's curl: POST with no body and no content type.
    let resp = srv
        .client
        .post(srv.url("/model/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"message": "Model loaded successfully"})
    );
    let status = srv.status().await;
    assert_eq!(status["model_loaded"], true);
    assert_eq!(status["memory_bytes"], 1 << 20);
    assert!(status["last_load_seconds"].is_f64());

    let resp = srv
        .client
        .post(srv.url("/model/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"message": "Model unloaded successfully"})
    );
    assert_eq!(srv.status().await["model_loaded"], false);
    assert_eq!(
        srv.knobs.unloads.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let (code, body) = srv
        .post("/model/timeout", json!({"timeout_seconds": 600}))
        .await;
    assert_eq!(
        (code, body),
        (200, json!({"message": "Timeout updated to 600 seconds"}))
    );
    assert_eq!(srv.status().await["unload_timeout"], 600);

    // curl -d without a content type still works.
    let resp = srv
        .client
        .post(srv.url("/model/timeout"))
        .body(r#"{"timeout_seconds": 120}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(srv.status().await["unload_timeout"], 120);

    for bad in [
        json!({"timeout_seconds": 59}),
        json!({"timeout_seconds": 0}),
        json!({"timeout_seconds": -1}),
    ] {
        let (code, body) = srv.post("/model/timeout", bad).await;
        assert_eq!(code, 400);
        assert_openai_error(&body, Some("timeout_seconds"));
        assert_eq!(
            body["error"]["message"],
            "Timeout must be at least 60 seconds"
        );
    }
    assert_eq!(
        srv.status().await["unload_timeout"],
        120,
        "bad input changes nothing"
    );
    let (code, body) = srv
        .post("/model/timeout", json!({"timeout_seconds": "soon"}))
        .await;
    assert_eq!(code, 400);
    assert_openai_error(&body, None);
    let (code, body) = srv.post("/model/unload", json!({"model": "nope"})).await;
    assert_eq!(code, 404);
    assert_openai_error(&body, Some("model"));
    let (code, body) = srv.post("/model/unload", json!({"modle": MODEL})).await;
    assert_eq!(code, 400, "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn timeout_survives_restart() {
    let srv = start().await;
    let (code, _) = srv
        .post(
            "/model/timeout",
            json!({"timeout_seconds": 900, "model": MODEL}),
        )
        .await;
    assert_eq!(code, 200);
    let dir = srv.stop().await;
    let srv = start_with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    assert_eq!(srv.status().await["unload_timeout"], 900);
    // Other models keep the configured default.
    let (_, kokoro) = srv.get("/model/status?model=kokoro").await;
    assert_eq!(kokoro["unload_timeout"], 300);
    srv.stop().await;
}

#[tokio::test]
async fn speech_returns_wav_and_pcm_and_records_usage() {
    let srv = start().await;
    let text = "Hello world. This is voxpool!";
    let (code, wav) = srv.speak(text).await;
    assert_eq!(code, 200);
    let (rate, n) = wav_samples(&wav);
    assert_eq!(rate, 24_000);
    // Sentences are spoken one by one; the test engine gives 240 samples a character.
    let expected =
        expected_samples("Hello world.", 1.0) + expected_samples("This is voxpool!", 1.0);
    assert_eq!(n, expected);

    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": "tts-1", "input": "Slow", "voice": {"id": "alloy"}, "response_format": "pcm", "speed": 0.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/pcm");
    let pcm = resp.bytes().await.unwrap();
    assert_eq!(pcm.len(), 2 * expected_samples("Slow", 0.5));

    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": MODEL, "input": "Hi", "voice": "alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    assert!(resp.headers().contains_key("x-request-id"));

    let (code, _) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": MODEL, "input": "Hi", "voice": "nobody", "response_format": "wav"}),
        )
        .await;
    assert_eq!(code, 404);

    // A response's row is written once its audio is complete, just after the last
    // byte: wait for all four.
    let store = srv.server.as_ref().unwrap().store();
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = store.recent_usage(10).await.unwrap();
        if rows.len() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rows.len(), 4);
    let ok: Vec<_> = rows.iter().filter(|r| r.usage.status == 200).collect();
    assert_eq!(ok.len(), 3);
    let first = rows
        .iter()
        .find(|r| r.usage.characters == text.chars().count())
        .expect("the first request's row");
    assert_eq!(first.usage.model, MODEL);
    assert_eq!(first.usage.status, 200);
    assert!((first.usage.audio_seconds - expected as f64 / 24_000.0).abs() < 1e-9);
    assert_eq!(rows.iter().filter(|r| r.usage.status == 404).count(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors_and_change_nothing() {
    let srv = start().await;
    let speech = srv.url("/v1/audio/speech");
    let ok = json!({"model": MODEL, "input": "Hi", "voice": "alloy", "response_format": "wav"});
    let with = |k: &str, v: Value| {
        let mut o = ok.clone();
        o[k] = v;
        o
    };
    let cases = [
        (with("input", json!("x".repeat(4097))), 400, Some("input")),
        (with("input", json!("")), 400, Some("input")),
        (with("speed", json!(4.5)), 400, Some("speed")),
        (with("speed", json!(0.1)), 400, Some("speed")),
        (
            with("response_format", json!("ogg")),
            400,
            Some("response_format"),
        ),
        (
            with("response_format", json!("OPUS")),
            400,
            Some("response_format"),
        ),
        (
            with("stream_format", json!("websocket")),
            400,
            Some("stream_format"),
        ),
        (with("unknown_field", json!(1)), 400, Some("unknown_field")),
        (with("voice", json!(42)), 400, Some("voice")),
        (with("model", json!("whisper-1")), 404, Some("model")),
        (json!({"input": "Hi", "voice": "alloy"}), 400, Some("model")),
        (json!("just a string"), 400, None),
    ];
    for (body, status, param) in cases {
        let (code, resp) = srv.post("/v1/audio/speech", body.clone()).await;
        assert_eq!(code, status, "{body} -> {resp}");
        assert_openai_error(&resp, param);
    }
    // Malformed JSON, wrong content type, oversized body: JSON errors, never HTML or 500.
    for (ct, body) in [
        ("application/json", r#"{"model": "#.to_string()),
        ("text/plain", "hello".to_string()),
        ("application/json", "x".repeat(13 << 20)),
    ] {
        let resp = srv
            .client
            .post(&speech)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        assert!((400..500).contains(&code), "{ct}: {code}");
        let body: Value = resp.json().await.unwrap();
        assert_openai_error(&body, None);
    }
    let (code, body) = srv.get("/v1/nothing/here").await;
    assert_eq!(code, 404);
    assert_openai_error(&body, None);
    assert_eq!(
        body["error"]["message"],
        "Invalid URL (GET /v1/nothing/here)"
    );
    let resp = srv
        .client
        .delete(srv.url("/model/status"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
    assert_openai_error(&resp.json::<Value>().await.unwrap(), None);
    // Nothing was loaded by all that.
    assert_eq!(srv.knobs.loads.load(std::sync::atomic::Ordering::SeqCst), 0);
    srv.stop().await;
}

#[tokio::test]
async fn engines_not_built_answer_503_with_the_pull_message() {
    let srv = start().await;
    let (code, body) = srv
        .post("/v1/audio/speech", json!({"model": "kokoro", "input": "Hi", "voice": "af_bella", "response_format": "wav"}))
        .await;
    assert_eq!(code, 503);
    assert_eq!(
        body["error"]["message"],
        "Model files not found in cache. Run: voxpool pull kokoro"
    );
    let resp = srv
        .client
        .post(srv.url("/model/load"))
        .json(&json!({"model": "chatterbox-turbo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Model files not found in cache. Run: voxpool pull chatterbox-turbo"
    );
    srv.stop().await;
}

#[tokio::test]
async fn models_list_in_openai_shape() {
    let srv = start().await;
    let (code, body) = srv.get("/v1/models").await;
    assert_eq!(code, 200);
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "kokoro",
        "chatterbox-turbo",
        MODEL,
        "tts-1",
        "tts-1-hd",
        "gpt-4o-mini-tts",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let (code, m) = srv.get("/v1/models/tts-1").await;
    assert_eq!(code, 200);
    assert_eq!(m["object"], "model");
    assert!(m["created"].is_i64());
    let (code, body) = srv.get("/v1/models/nope").await;
    assert_eq!(code, 404);
    assert_openai_error(&body, Some("model"));
    let (code, body) = srv.get("/health").await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));
    let resp = srv.client.get(srv.url("/docs")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("swagger"));
    let (code, spec) = srv.get("/openapi.json").await;
    assert_eq!(code, 200);
    assert!(spec["paths"]["/v1/audio/speech"].is_object());
    // The web page is served at / (driven in Chromium by .ci/web-check.sh), and is
    // not an API operation.
    let resp = srv.client.get(srv.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("<title>voxpool</title>"));
    assert!(spec["paths"].get("/").is_none());
    srv.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let srv = start_with(Options {
        configure: Box::new(|c| {
            c.rate_limit = Some(RateLimit {
                per_minute: 2,
                burst: 2,
            })
        }),
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(srv.get("/v1/models").await.0, 200);
    }
    let resp = srv.client.get(srv.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert_openai_error(&body, None);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    // A different API key is a different client; /health is never limited.
    let resp = srv
        .client
        .get(srv.url("/v1/models"))
        .bearer_auth("other-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(srv.get("/health").await.0, 200);
    srv.stop().await;
}

#[tokio::test]
async fn timeout_never_keeps_the_model() {
    let srv = start_with(Options {
        timeout: voxpool::config::IdleTimeout::Never,
        ..Options::default()
    })
    .await;
    assert_eq!(srv.speak("Hi.").await.0, 200);
    assert_eq!(srv.status().await["unload_timeout"], -1);
    assert!(
        srv.holds_for(Duration::from_millis(1500), |s| s["model_loaded"] == true)
            .await
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_same_server_runs_on_postgres() {
    let Ok(url) = std::env::var("DATABASE_URL_TEST") else {
        eprintln!("DATABASE_URL_TEST not set: PostgreSQL server test skipped");
        return;
    };
    let url = voxpool::config::normalize_db_url(&url).unwrap();
    let configure = move |c: &mut voxpool::config::Config| c.db_url = url;
    let srv = start_with(Options {
        configure: Box::new(configure.clone()),
        ..Options::default()
    })
    .await;
    let (code, _) = srv
        .post("/model/timeout", json!({"timeout_seconds": 777}))
        .await;
    assert_eq!(code, 200);
    assert_eq!(srv.speak("Stored in PostgreSQL.").await.0, 200);
    let rows = srv
        .server
        .as_ref()
        .unwrap()
        .store()
        .recent_usage(1)
        .await
        .unwrap();
    assert_eq!(rows[0].usage.characters, "Stored in PostgreSQL.".len());
    srv.stop().await;
    let srv = start_with(Options {
        configure: Box::new(configure),
        ..Options::default()
    })
    .await;
    assert_eq!(srv.status().await["unload_timeout"], 777);
    // Leave the shared database as the other tests expect it.
    let (code, _) = srv
        .post("/model/timeout", json!({"timeout_seconds": 300}))
        .await;
    assert_eq!(code, 200);
    srv.stop().await;
}

#[tokio::test]
async fn phonemize_and_speak_phonemes() {
    let srv = start().await;
    // The phonemizer runs in Kokoro's worker: a tiny checkpoint is enough.
    common::install_tiny_kokoro(&srv.dir.path().join("models"));
    let (code, body) = srv
        .post(
            "/v1/audio/phonemize",
            json!({"input": "They record a record every week."}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["phonemes"], "ðˌA ɹəkˈɔɹd ɐ ɹˈɛkəɹd ˈɛvəɹi wˈik.");
    let tokens = body["tokens"].as_array().unwrap();
    assert_eq!(
        tokens.len(),
        body["phonemes"].as_str().unwrap().chars().count()
    );
    let (code, body) = srv
        .post(
            "/v1/audio/phonemize",
            json!({"input": "Hi", "language": "xx"}),
        )
        .await;
    assert_eq!(code, 400);
    assert_openai_error(&body, Some("language"));
    // Phonemes instead of text: checked against the vocabulary before anything loads.
    let (code, body) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": MODEL, "input": "hˈ#I§", "voice": "alloy", "response_format": "wav", "input_format": "phonemes"}),
        )
        .await;
    assert_eq!(code, 400);
    assert_openai_error(&body, Some("input"));
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("'#'") && msg.contains("'§'"), "{msg}");
    let (code, _) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": MODEL, "input": "hˈI", "voice": "alloy", "response_format": "wav", "input_format": "phonemes"}),
        )
        .await;
    assert_eq!(code, 200);
    srv.stop().await;
}

#[tokio::test]
async fn languages_by_code_alias_and_voice() {
    let srv = start().await;
    common::install_tiny_kokoro(&srv.dir.path().join("models"));
    let phonemes = |body: Value| {
        let srv = &srv;
        async move {
            let (code, body) = srv.post("/v1/audio/phonemize", body).await;
            assert_eq!(code, 200, "{body}");
            body["phonemes"].as_str().unwrap().to_string()
        }
    };
    let text = "The schedule is on the tomato.";
    let us = phonemes(json!({"input": text})).await;
    let gb = phonemes(json!({"input": text, "language": "en-gb"})).await;
    assert_ne!(us, gb, "British English reads differently");
    assert_eq!(phonemes(json!({"input": text, "lang_code": "b"})).await, gb);
    assert_eq!(phonemes(json!({"input": text, "language": "B"})).await, gb);
    // Without a language, the voice's first letter decides.
    assert_eq!(
        phonemes(json!({"input": text, "voice": "bf_emma"})).await,
        gb
    );
    assert_eq!(
        phonemes(json!({"input": text, "voice": "af_heart"})).await,
        us
    );
    // Explicit beats the voice.
    assert_eq!(
        phonemes(json!({"input": text, "voice": "bf_emma", "language": "a"})).await,
        us
    );

    // Unknown codes name the parameter and list what is available here.
    for (path, body, param) in [
        (
            "/v1/audio/phonemize",
            json!({"input": text, "language": "xx"}),
            "language",
        ),
        (
            "/v1/audio/phonemize",
            json!({"input": text, "lang_code": "klingon"}),
            "lang_code",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "kokoro", "input": text, "voice": "tiny_a", "language": "xx"}),
            "language",
        ),
    ] {
        let (code, err) = srv.post(path, body).await;
        assert_eq!(code, 400, "{err}");
        assert_openai_error(&err, Some(param));
        assert_eq!(err["error"]["code"], "unsupported_language");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("a (American English), b (British English)"),
            "{msg}"
        );
    }
    let (code, err) = srv
        .post(
            "/v1/audio/phonemize",
            json!({"input": text, "language": "a", "lang_code": "b"}),
        )
        .await;
    assert_eq!(code, 400);
    assert_openai_error(&err, Some("lang_code"));

    // A language this machine lacks (no language packs in this server's folder) is
    // refused with the reason and the way to get it, before anything is spoken.
    let (code, err) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": "kokoro", "input": "こんにちは", "voice": "tiny_a", "language": "ja", "response_format": "wav"}),
        )
        .await;
    let status = srv.get("/model/status?model=kokoro").await.1;
    let available = common::strings(&status["available_languages"]);
    assert!(available.starts_with(&["a", "b"]), "{available:?}");
    if available.contains(&"j") {
        assert_eq!(code, 200, "{err}");
    } else {
        assert_eq!(code, 400, "{err}");
        assert_openai_error(&err, Some("language"));
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains("Japanese (j) is not available here"), "{msg}");
        assert!(msg.contains("voxpool pull kokoro"), "{msg}");
    }
    // Speaking English text with the language given works on any voice.
    let (code, _) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": "kokoro", "input": "Hello.", "voice": "tiny_a", "lang_code": "a", "response_format": "wav"}),
        )
        .await;
    assert_eq!(code, 200);

    // Voices carry their language: a Kokoro voice's first letter, or the model's one.
    let (code, voices) = srv.get("/v1/audio/voices").await;
    assert_eq!(code, 200);
    for v in voices["data"].as_array().unwrap() {
        let want = match v["model"].as_str().unwrap() {
            "kokoro" => "a",
            _ => continue,
        };
        assert_eq!(v["language"], want, "{v}");
    }
    srv.stop().await;
}
