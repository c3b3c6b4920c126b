//! Stored pronunciations over HTTP: create, read, update by word, delete; what is
//! refused (400, nothing stored); keys' scopes; a restart on the same SQLite file;
//! and the snapshot speech requests read, fresh after this server's own change and
//! within seconds of another replica's (two servers on one SQLite file, and on one
//! PostgreSQL database when `DATABASE_URL_TEST` names one).

mod common;
mod packs;

use std::time::{Duration, Instant};

use common::{start, start_with, Options, TestServer, MODEL};
use serde_json::{json, Value};
use voxpool::api::auth::sha256;
use voxpool::config::Secret;
use voxpool::store::hex;

const PATH: &str = "/v1/audio/pronunciations";

async fn call(
    srv: &TestServer,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = srv.url(path);
    let mut req = match method {
        "POST" => srv.client.post(url),
        "DELETE" => srv.client.delete(url),
        _ => srv.client.get(url),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn add(srv: &TestServer, body: Value) -> (u16, Value) {
    call(srv, "POST", PATH, None, Some(body)).await
}

async fn list(srv: &TestServer, query: &str) -> Vec<Value> {
    let (code, body) = call(srv, "GET", &format!("{PATH}{query}"), None, None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["object"], "list");
    body["data"].as_array().unwrap().clone()
}

fn assert_error(code: u16, body: &Value, want: u16, param: Option<&str>) {
    assert_eq!(code, want, "{body}");
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(err["type"].is_string(), "{body}");
    let fields = err.as_object().unwrap();
    assert!(
        fields.contains_key("param") && fields.contains_key("code"),
        "{body}"
    );
    if let Some(p) = param {
        assert_eq!(err["param"], p, "{body}");
    }
}

/// Speak `input` with the test model; the words of the stored pronunciations its
/// job carried to the engine (the synthesizer's snapshot, as the engine reads it).
async fn carried(srv: &TestServer, input: &str) -> Vec<String> {
    let (code, _) = srv.speak(input).await;
    assert_eq!(code, 200);
    srv.knobs
        .last_lexicon
        .lock()
        .unwrap()
        .iter()
        .map(|p| format!("{}={}:{}", p.word, p.language.code(), p.phonemes))
        .collect()
}

/// Speak `input` until the carried words equal `want` or `limit` passes.
async fn wait_carried(srv: &TestServer, input: &str, want: &[String], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if carried(srv, input).await == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn create_read_update_delete() {
    let srv = start().await;
    assert!(list(&srv, "").await.is_empty());
    let (code, a) = add(
        &srv,
        json!({"word": "Kokoro", "phonemes": "kˈOkəɹO", "language": "a"}),
    )
    .await;
    assert_eq!(code, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("pron_"), "{a}");
    assert_eq!(a["object"], "audio.pronunciation");
    assert_eq!(
        (&a["word"], &a["phonemes"], &a["language"], &a["model"]),
        (
            &json!("Kokoro"),
            &json!("kˈOkəɹO"),
            &json!("a"),
            &Value::Null
        )
    );
    let now = chrono::Utc::now().timestamp();
    let created = a["created_at"].as_i64().unwrap();
    assert!((now - created).abs() < 60, "{a}");
    assert_eq!(a["updated_at"], a["created_at"]);
    let (code, got) = call(&srv, "GET", &format!("{PATH}/{id}"), None, None).await;
    assert_eq!((code, &got), (200, &a));
    assert_eq!(list(&srv, "").await, vec![a.clone()]);

    // The same word in another case, language given as a tag: the same entry.
    let (code, b) = add(
        &srv,
        json!({"word": "  KOKORO ", "phonemes": "kOkˈOɹO", "language": "en-us"}),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(
        (&b["id"], &b["word"], &b["phonemes"], &b["created_at"]),
        (
            &json!(id),
            &json!("KOKORO"),
            &json!("kOkˈOɹO"),
            &a["created_at"]
        )
    );
    assert_eq!(list(&srv, "").await, vec![b.clone()]);
    // Another model (an alias resolves to its id) is another entry.
    let (code, c) = add(
        &srv,
        json!({"word": "kokoro", "phonemes": "kOkOɹO", "language": "a", "model": "tts-1"}),
    )
    .await;
    assert_eq!(code, 201, "{c}");
    assert_eq!(c["model"], MODEL);
    assert_ne!(c["id"], b["id"]);
    assert_eq!(list(&srv, "").await.len(), 2);

    let (code, gone) = call(&srv, "DELETE", &format!("{PATH}/{id}"), None, None).await;
    assert_eq!(code, 200, "{gone}");
    assert_eq!(
        gone,
        json!({"id": id, "object": "audio.pronunciation.deleted", "deleted": true})
    );
    for method in ["GET", "DELETE"] {
        let (code, body) = call(&srv, method, &format!("{PATH}/{id}"), None, None).await;
        assert_error(code, &body, 404, Some("id"));
        let (code, body) = call(&srv, method, &format!("{PATH}/nonsense"), None, None).await;
        assert_error(code, &body, 404, Some("id"));
    }
    assert_eq!(list(&srv, "").await, vec![c]);
    srv.stop().await;
}

#[tokio::test]
async fn the_same_word_sent_at_once_makes_one_entry() {
    let srv = start().await;
    let words = [
        "Kokoro", "KOKORO", "kokoro", "KoKoRo", "kOKORO", "Kokoro", "koKoro", "KOKORo",
    ];
    let answers = futures_util::future::join_all(words.iter().map(|w| {
        add(
            &srv,
            json!({"word": w, "phonemes": "kˈOkəɹO", "language": "a"}),
        )
    }))
    .await;
    let mut ids: Vec<&str> = answers
        .iter()
        .map(|(code, body)| {
            assert!(*code == 200 || *code == 201, "{body}");
            body["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(answers.iter().filter(|(code, _)| *code == 201).count(), 1);
    ids.dedup();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(list(&srv, "").await.len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn bad_entries_are_refused_and_nothing_is_stored() {
    let srv = start().await;
    let ok = json!({"word": "Kokoro", "phonemes": "kˈOkəɹO", "language": "a"});
    let with = |field: &str, value: Value| {
        let mut body = ok.clone();
        body[field] = value;
        body
    };
    let (code, body) = add(&srv, with("phonemes", json!("kˈO#kə§ɹO#"))).await;
    assert_error(code, &body, 400, Some("phonemes"));
    assert_eq!(body["error"]["code"], "unknown_phonemes");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'#' (U+0023), '§' (U+00A7)") && message.contains("vocabulary"),
        "{message}"
    );
    let cases = [
        (with("phonemes", json!("")), "phonemes"),
        (with("phonemes", json!("a".repeat(511))), "phonemes"),
        (with("language", json!("xx")), "language"),
        (with("language", json!("")), "language"),
        (with("word", json!("   ")), "word"),
        (with("word", json!("two\nlines")), "word"),
        (with("word", json!("w".repeat(101))), "word"),
        (with("model", json!("no-such-model")), "model"),
        (with("colour", json!("blue")), "colour"),
    ];
    for (body, param) in cases {
        let (code, answer) = add(&srv, body.clone()).await;
        assert_error(code, &answer, 400, Some(param));
    }
    // Missing fields, wrong types, no JSON at all.
    for body in [
        json!({"word": "Kokoro", "language": "a"}),
        json!({"word": null, "phonemes": "kO", "language": "a"}),
        json!({"word": ["Kokoro"], "phonemes": "kO", "language": "a"}),
        json!(["Kokoro"]),
    ] {
        let (code, answer) = add(&srv, body.clone()).await;
        assert_error(code, &answer, 400, None);
    }
    let resp = srv
        .client
        .post(srv.url(PATH))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(list(&srv, "").await.is_empty());
    // The longest accepted values are stored.
    let (code, body) = add(
        &srv,
        json!({"word": "w".repeat(100), "phonemes": "a".repeat(510), "language": "b"}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn the_language_filter_takes_codes_and_tags() {
    let srv = start().await;
    for (word, phonemes, language) in [
        ("Kokoro", "kˈOkəɹO", "a"),
        ("東京", "tokʲˈoː", "ja"),
        ("tomato", "təmˈɑːtəʊ", "en-gb"),
    ] {
        let (code, body) = add(
            &srv,
            json!({"word": word, "phonemes": phonemes, "language": language}),
        )
        .await;
        assert_eq!(code, 201, "{body}");
    }
    let words = |entries: Vec<Value>| {
        entries
            .iter()
            .map(|e| e["word"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(words(list(&srv, "?language=j").await), ["東京"]);
    assert_eq!(words(list(&srv, "?language=ja-JP").await), ["東京"]);
    assert_eq!(words(list(&srv, "?language=b").await), ["tomato"]);
    assert_eq!(words(list(&srv, "?language=a").await), ["Kokoro"]);
    assert!(list(&srv, "?language=z").await.is_empty());
    assert_eq!(list(&srv, "").await.len(), 3);
    let (code, body) = call(&srv, "GET", &format!("{PATH}?language=xx"), None, None).await;
    assert_error(code, &body, 400, Some("language"));
    srv.stop().await;
}

#[tokio::test]
async fn entries_survive_a_restart_and_are_read_at_start() {
    let srv = start().await;
    let (code, a) = add(
        &srv,
        json!({"word": "Kokoro", "phonemes": "kˈOkəɹO", "language": "a"}),
    )
    .await;
    assert_eq!(code, 201, "{a}");
    let dir = srv.stop().await;
    let srv = start_with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    assert_eq!(list(&srv, "").await, vec![a]);
    // Loaded before the first request, not at the first refresh.
    assert_eq!(carried(&srv, "Kokoro speaks.").await, ["Kokoro=a:kˈOkəɹO"]);
    srv.stop().await;
}

#[tokio::test]
async fn speech_reads_a_change_at_once() {
    let srv = start().await;
    assert!(carried(&srv, "Kokoro speaks.").await.is_empty());
    let (code, a) = add(
        &srv,
        json!({"word": "kokoro", "phonemes": "kˈOkəɹO", "language": "a"}),
    )
    .await;
    assert_eq!(code, 201, "{a}");
    // Another model's entry, and a word the text does not hold, are not carried.
    for body in [
        json!({"word": "kokoro", "phonemes": "kO", "language": "a", "model": "kokoro"}),
        json!({"word": "tomato", "phonemes": "təmˈAtO", "language": "a"}),
    ] {
        assert_eq!(add(&srv, body).await.0, 201);
    }
    assert_eq!(carried(&srv, "KOKORO speaks.").await, ["kokoro=a:kˈOkəɹO"]);
    let (code, _) = add(
        &srv,
        json!({"word": "Kokoro", "phonemes": "kOkˈOɹO", "language": "a"}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(carried(&srv, "Kokoro speaks.").await, ["Kokoro=a:kOkˈOɹO"]);
    let id = a["id"].as_str().unwrap();
    assert_eq!(
        call(&srv, "DELETE", &format!("{PATH}/{id}"), None, None)
            .await
            .0,
        200
    );
    assert!(carried(&srv, "Kokoro speaks.").await.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn another_server_on_the_same_database_reads_a_change_within_seconds() {
    let a = start().await;
    let b = start_with(Options {
        dir: Some(a.dir.clone()),
        ..Options::default()
    })
    .await;
    let input = "Kokoro speaks.";
    assert!(carried(&b, input).await.is_empty());
    let (code, entry) = add(
        &a,
        json!({"word": "Kokoro", "phonemes": "kˈOkəɹO", "language": "a"}),
    )
    .await;
    assert_eq!(code, 201, "{entry}");
    let want = vec!["Kokoro=a:kˈOkəɹO".to_string()];
    assert!(wait_carried(&b, input, &want, Duration::from_secs(5)).await);
    let id = entry["id"].as_str().unwrap();
    assert_eq!(
        call(&a, "DELETE", &format!("{PATH}/{id}"), None, None)
            .await
            .0,
        200
    );
    assert!(wait_carried(&b, input, &[], Duration::from_secs(5)).await);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn changes_need_an_admin_key_and_reading_any_key() {
    let srv = start_with(Options {
        configure: Box::new(|c| c.api_key = Some(Secret::new("sk-admin-lexicon"))),
        ..Options::default()
    })
    .await;
    let store = srv.server.as_ref().unwrap().store();
    store
        .create_api_key("app", &hex(&sha256("sk-user-lexicon")), false)
        .await
        .unwrap();
    let entry = json!({"word": "Kokoro", "phonemes": "kˈOkəɹO", "language": "a"});
    let (user, admin) = (Some("sk-user-lexicon"), Some("sk-admin-lexicon"));

    let (code, body) = call(&srv, "POST", PATH, None, Some(entry.clone())).await;
    assert_error(code, &body, 401, None);
    let (code, body) = call(&srv, "POST", PATH, user, Some(entry.clone())).await;
    assert_error(code, &body, 403, None);
    assert_eq!(body["error"]["type"], "permission_error");
    let (code, created) = call(&srv, "POST", PATH, admin, Some(entry)).await;
    assert_eq!(code, 201, "{created}");
    let one = format!("{PATH}/{}", created["id"].as_str().unwrap());

    for key in [user, admin] {
        let (code, body) = call(&srv, "GET", PATH, key, None).await;
        assert_eq!(
            (code, body["data"].as_array().map(Vec::len)),
            (200, Some(1))
        );
        let (code, body) = call(&srv, "GET", &one, key, None).await;
        assert_eq!((code, &body), (200, &created));
    }
    let (code, body) = call(&srv, "GET", PATH, None, None).await;
    assert_error(code, &body, 401, None);
    let (code, body) = call(&srv, "DELETE", &one, user, None).await;
    assert_error(code, &body, 403, None);
    let (code, body) = call(&srv, "DELETE", &one, admin, None).await;
    assert_eq!(code, 200, "{body}");
    srv.stop().await;
}

/// Kokoro reads a stored word before its dictionaries: the phonemes show it, the
/// audio changes, the word keeps its place in the timestamps, and a delete undoes it.
#[tokio::test]
async fn speech_reads_stored_pronunciations() {
    packs::setup();
    let srv = start().await;
    common::install_tiny_kokoro(&srv.dir.path().join("models"));
    let speak = |input: &'static str, language: &'static str| {
        let srv = &srv;
        async move {
            let (code, body) = srv
                .post(
                    "/v1/audio/speech/captions",
                    json!({"model": "kokoro", "input": input, "voice": "tiny_a",
                        "language": language, "response_format": "wav"}),
                )
                .await;
            assert_eq!(code, 200, "{body}");
            body
        }
    };
    let before = phonemize(&srv, "Kokoro speaks").await;
    assert!(!before.starts_with("kˈOkəɹO"), "{before}");
    let spoken_before = speak("Kokoro speaks", "a").await;
    let (code, body) = add(
        &srv,
        json!({"word": "kokoro", "phonemes": "kˈOkəɹO", "language": "a"}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let phonemes = phonemize(&srv, "Kokoro speaks").await;
    assert!(phonemes.starts_with("kˈOkəɹO "), "{phonemes}");
    assert_eq!(phonemes, phonemize(&srv, "KOKORO speaks").await, "any case");
    let spoken = speak("Kokoro speaks", "a").await;
    assert_ne!(spoken["audio"], spoken_before["audio"], "the audio changed");
    assert_eq!(spoken["words"][0]["word"], "Kokoro");
    assert_eq!(spoken["words"][1]["word"], "speaks");
    // Not inside a longer word.
    assert!(!phonemize(&srv, "Kokoros speak")
        .await
        .starts_with("kˈOkəɹO"));
    let (code, _) = call(&srv, "DELETE", &format!("{PATH}/{id}"), None, None).await;
    assert_eq!(code, 200);
    assert_eq!(phonemize(&srv, "Kokoro speaks").await, before);

    // Japanese: the longest stored surface form wins, wherever it stands.
    if voxpool::text::g2p::availability(voxpool::text::Language::Japanese).is_ok() {
        for (word, phonemes) in [("東京", "toːkʲoː"), ("東京都", "toːkʲoːto")] {
            let (code, body) = add(
                &srv,
                json!({"word": word, "phonemes": phonemes, "language": "ja"}),
            )
            .await;
            assert_eq!(code, 201, "{body}");
        }
        let (code, body) = srv
            .post(
                "/v1/audio/phonemize",
                json!({"input": "東京都に住む", "language": "ja"}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert!(
            body["phonemes"].as_str().unwrap().starts_with("toːkʲoːto "),
            "{body}"
        );
        let spoken = speak("東京都に住む", "j").await;
        assert_eq!(spoken["words"][0]["word"], "東京都", "{spoken}");
    }
    srv.stop().await;
}

async fn phonemize(srv: &TestServer, input: &str) -> String {
    let (code, body) = srv
        .post(
            "/v1/audio/phonemize",
            json!({"input": input, "language": "a"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body["phonemes"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn two_replicas_on_postgres_read_each_others_changes() {
    let Ok(url) = std::env::var("DATABASE_URL_TEST") else {
        eprintln!("DATABASE_URL_TEST not set: two-replica PostgreSQL test skipped");
        return;
    };
    let url = voxpool::config::normalize_db_url(&url).unwrap();
    let replica = || {
        let url = url.clone();
        start_with(Options {
            configure: Box::new(move |c| c.db_url = url),
            ..Options::default()
        })
    };
    let a = replica().await;
    let b = replica().await;
    for srv in [&a, &b] {
        common::install_tiny_kokoro(&srv.dir.path().join("models"));
    }
    // A word of its own, so other runs on the same database are not disturbed.
    let word = format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let input = format!("{word} speaks.");
    let (code, entry) = add(
        &a,
        json!({"word": word, "phonemes": "kˈOkəɹO", "language": "a"}),
    )
    .await;
    assert_eq!(code, 201, "{entry}");
    let want = vec![format!("{word}=a:kˈOkəɹO")];
    assert!(wait_carried(&b, &input, &want, Duration::from_secs(5)).await);
    // Through the phonemizer too: A (which reread the table at once) applies the
    // entry, and B within seconds.
    assert!(phonemize(&a, &input).await.starts_with("kˈOkəɹO"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !phonemize(&b, &input).await.starts_with("kˈOkəɹO") {
        assert!(Instant::now() < deadline, "replica B never read the entry");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = entry["id"].as_str().unwrap();
    assert_eq!(
        call(&b, "DELETE", &format!("{PATH}/{id}"), None, None)
            .await
            .0,
        200
    );
    assert!(wait_carried(&a, &input, &[], Duration::from_secs(5)).await);
    b.stop().await;
    a.stop().await;
}
