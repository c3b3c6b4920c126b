//! Stress while models come and go: 200 concurrent speech requests over three
//! models while another task unloads them every 200 ms and changes their timeouts.
//! Every request must succeed with audio of the expected length, no lease may leak,
//! and memory must come back after the final unload. (Its own test binary, so the
//! resident set is this test's alone.)

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{expected_samples, rss_bytes, start_with, Options, MODEL};
use serde_json::json;

const MODEL_BYTES: usize = 48 << 20;
const REQUESTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_requests_while_models_are_unloaded_every_200_ms() {
    let models = [MODEL.to_string(), "stress-b".into(), "stress-c".into()];
    let srv = Arc::new(
        start_with(Options {
            memory_bytes: MODEL_BYTES,
            extra_models: vec![
                (models[1].clone(), MODEL_BYTES),
                (models[2].clone(), MODEL_BYTES),
            ],
            configure: Box::new(|c| {
                c.admission.concurrency = 16;
                c.admission.queue = REQUESTS;
            }),
            ..Options::default()
        })
        .await,
    );
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    // One cycle of every model first, so threads, pools and arenas exist.
    for m in &models {
        let (code, _) = srv
            .post(
                "/v1/audio/speech",
                json!({"model": m, "input": "warm", "voice": "alloy", "response_format": "wav"}),
            )
            .await;
        assert_eq!(code, 200);
        assert_eq!(srv.post("/model/unload", json!({"model": m})).await.0, 200);
    }
    let baseline = rss_bytes();
    // 200 requests, 16 at a time per model, 250 ms each: over a second, time for
    // several unloads even in an optimised build.
    srv.knobs.synth_delay_ms.store(250, Ordering::SeqCst);

    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (srv, stop, models) = (srv.clone(), stop.clone(), models.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let m = &models[n % models.len()];
                let (code, body) = srv.post("/model/unload", json!({"model": m})).await;
                assert_eq!(code, 200, "{body}");
                let timeout = [60, 600, 120, 300][n % 4];
                let (code, body) = srv
                    .post(
                        "/model/timeout",
                        json!({"timeout_seconds": timeout, "model": m}),
                    )
                    .await;
                assert_eq!(code, 200, "{timeout}: {body}");
                n += 1;
            }
            n
        })
    };

    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let srv = srv.clone();
            let model = models[i % models.len()].clone();
            tokio::spawn(async move {
                let input = format!("Request number {i} for {model}.");
                let format = ["wav", "pcm", "mp3"][i % 3];
                let resp = srv
                    .client
                    .post(srv.url("/v1/audio/speech"))
                    .json(&json!({"model": model, "input": input, "voice": "alloy", "response_format": format}))
                    .send()
                    .await
                    .expect("request");
                let status = resp.status().as_u16();
                let body = resp.bytes().await.expect("body");
                (i, format, input, status, body)
            })
        })
        .collect();
    let mut failed = Vec::new();
    for task in tasks {
        let (i, format, input, status, body) = task.await.unwrap();
        let want = expected_samples(&input, 1.0);
        let ok = status == 200
            && match format {
                "wav" => common::wav_samples(&body) == (24_000, want),
                "pcm" => body.len() == want * 2,
                // mp3: frames of 1152 samples, the encoder's delay and padding.
                _ => body.len() > 100,
            };
        if !ok {
            failed.push(format!("#{i} {format}: {status} ({} bytes)", body.len()));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let unloads = churn.await.unwrap();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(
        unloads >= 3,
        "only {unloads} forced unloads happened during the run"
    );

    // No lease leaked; after the final unload the memory is back.
    for m in &models {
        let (_, status) = srv.get(&format!("/model/status?model={m}")).await;
        assert_eq!(status["in_flight"], 0, "{status}");
        assert_eq!(srv.post("/model/unload", json!({"model": m})).await.0, 200);
    }
    let after = rss_bytes();
    println!(
        "{REQUESTS} requests, {unloads} forced unloads; RSS {:.1} MiB before, {:.1} MiB after the final unload",
        mib(baseline),
        mib(after)
    );
    // The three models hold 144 MiB when loaded; what stays is the server's own
    // request-path state and allocator slack (measured 19-24 MiB), not a model.
    assert!(
        after <= baseline + (3 * MODEL_BYTES as u64) / 4,
        "RSS after the final unload {:.1} MiB, baseline {:.1} MiB",
        mib(after),
        mib(baseline)
    );
    Arc::try_unwrap(srv).ok().expect("sole owner").stop().await;
}
