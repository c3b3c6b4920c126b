//! Two voxpool replicas on one PostgreSQL database (when `DATABASE_URL_TEST` names
//! one; `.ci/run` starts one): what one writes the other reads — a timeout set on
//! one replica is the other's after its restart, and both write usage rows to the
//! same table. Loaded models stay per replica.

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
    assert_eq!(ours.len(), 2, "{ours:?}");
    a.stop().await;
    b.stop().await;
}
