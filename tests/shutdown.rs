//! Graceful shutdown: once asked to stop, the server accepts no new connection, lets
//! a stream in flight finish (all its audio), writes its usage row, unloads the
//! model and closes the database.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{expected_samples, start_with, Options, MODEL};
use serde_json::json;
use voxpool::store::Store;

#[tokio::test]
async fn a_stream_in_flight_finishes_and_is_recorded_during_shutdown() {
    let srv = start_with(Options::default()).await;
    assert_eq!(srv.speak("warm").await.0, 200);
    srv.knobs.synth_delay_ms.store(300, Ordering::SeqCst);
    let input = "First sentence here. Second sentence here. Third sentence here.";
    let request = {
        let (client, url) = (srv.client.clone(), srv.url("/v1/audio/speech"));
        tokio::spawn(async move {
            let resp = client
                .post(url)
                .json(&json!({"model": MODEL, "input": input, "voice": "alloy", "response_format": "pcm"}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (base, db_url, knobs) = (srv.base.clone(), srv.db_url.clone(), srv.knobs.clone());
    let stopping = tokio::spawn(srv.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // No new connections once stopping...
    let late = reqwest::Client::new()
        .get(format!("{base}/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        late.is_err(),
        "a new connection was accepted while stopping"
    );
    // ...but the stream in flight ends whole.
    let (status, pcm) = request.await.unwrap();
    assert_eq!(status, 200);
    let sentences = [
        "First sentence here.",
        "Second sentence here.",
        "Third sentence here.",
    ];
    let want: usize = sentences.iter().map(|s| expected_samples(s, 1.0)).sum();
    assert_eq!(pcm.len(), want * 2);
    let _dir = stopping.await.unwrap();
    assert_eq!(
        knobs.unloads.load(Ordering::SeqCst),
        1,
        "the model was not unloaded"
    );

    // The stream's usage row was written before the database closed.
    let url = voxpool::config::normalize_db_url(&db_url).unwrap();
    let store = Store::connect(&url).await.unwrap();
    let last = store.recent_usage(1).await.unwrap().remove(0).usage;
    assert_eq!((last.status, last.characters), (200, input.chars().count()));
    assert!(
        (last.audio_seconds - want as f64 / 24_000.0).abs() < 1e-3,
        "{last:?}"
    );
}
