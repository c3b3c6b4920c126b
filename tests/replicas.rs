//! Two voxpool replicas on one PostgreSQL database (when `DATABASE_URL_TEST` names
//! one; `.ci/run` starts one): what one writes the other reads — a timeout set on
//! one replica is the other's after its restart, a voice cloned on one speaks on the
//! other, and both write usage rows to the same table. Loaded models stay per replica.

mod common;

use common::{start_with, Options};
use serde_json::json;

#[tokio::test]
async fn two_replicas_share_settings_and_usage_through_postgres() {
    let Ok(url) = std::env::var("DATABASE_URL_TEST") else {
        eprintln!("DATABASE_URL_TEST not set: two-replica PostgreSQL test skipped");
        return;
    };
    let url = voxpool::config::normalize_db_url(&url).unwrap();
    // A model id of its own, so other tests on the same database are not disturbed.
    let model = format!("replica-{}", uuid::Uuid::new_v4().simple());
    let replica = || {
        let (url, model) = (url.clone(), model.clone());
        start_with(Options {
            extra_models: vec![(model, 1 << 20)],
            configure: Box::new(move |c| c.db_url = url),
            ..Options::default()
        })
    };
    let a = replica().await;
    let b = replica().await;
    let path = format!("/model/status?model={model}");
    assert_eq!(b.get(&path).await.1["unload_timeout"], 300);

    let (code, body) = a
        .post(
            "/model/timeout",
            json!({"timeout_seconds": 901, "model": model}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    // Loaded models are per replica.
    let (code, _) = a
        .post(
            "/v1/audio/speech",
            json!({"model": model, "input": "From replica A.", "voice": "alloy", "response_format": "wav"}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(a.get(&path).await.1["model_loaded"], true);
    assert_eq!(b.get(&path).await.1["model_loaded"], false);

    // B restarts and reads the timeout A stored.
    let _ = b.stop().await;
    let b = replica().await;
    assert_eq!(b.get(&path).await.1["unload_timeout"], 901);
    let (code, _) = b
        .post(
            "/v1/audio/speech",
            json!({"model": model, "input": "From replica B.", "voice": "alloy", "response_format": "wav"}),
        )
        .await;
    assert_eq!(code, 200);

    // A voice cloned on A speaks on B, the same as on A; deleted on B, it is gone
    // for A's listing at once.
    a.knobs
        .clones
        .store(true, std::sync::atomic::Ordering::SeqCst);
    b.knobs
        .clones
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let wav = {
        let tone: Vec<f32> = (0..24_000 * 6)
            .map(|i| 0.2 * (i as f32 * 0.04).sin())
            .collect();
        voxpool::audio::encode(voxpool::audio::AudioFormat::Wav, &tone, 24_000).unwrap()
    };
    let form = reqwest::multipart::Form::new()
        .text("name", "Shared")
        .text("model", common::MODEL)
        .part(
            "audio_sample",
            reqwest::multipart::Part::bytes(wav).file_name("s.wav"),
        );
    let created: serde_json::Value = a
        .client
        .post(a.url("/v1/audio/voices"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let voice = created["id"].as_str().expect("voice created").to_string();
    let speak = |server: &common::TestServer| {
        let req = server
            .client
            .post(server.url("/v1/audio/speech"))
            .json(&json!({"model": common::MODEL, "input": "Shared voice.", "voice": voice, "response_format": "wav"}));
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap()
        }
    };
    assert_eq!(speak(&a).await, speak(&b).await);
    let deleted = b
        .client
        .delete(b.url(&format!("/v1/audio/voices/{voice}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(a.get(&format!("/v1/audio/voices/{voice}")).await.0, 404);

    // Both replicas' usage rows are in the one table.
    let rows = a
        .server
        .as_ref()
        .unwrap()
        .store()
        .recent_usage(50)
        .await
        .unwrap();
    let ours: Vec<_> = rows.iter().filter(|r| r.usage.model == model).collect();
    let voiced = rows.iter().filter(|r| r.usage.voice == voice).count();
    assert_eq!(voiced, 2, "both replicas spoke with the shared voice");
    assert_eq!(ours.len(), 2, "{ours:?}");
    a.stop().await;
    b.stop().await;
}
