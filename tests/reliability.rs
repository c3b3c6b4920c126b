//! Admission control, synthesis time limits and panic safety, over HTTP against a
//! real server with the test engine.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{start_with, Options, MODEL};
use serde_json::{json, Value};
use voxpool::config::Admission;

#[tokio::test]
async fn a_full_queue_gets_429_with_retry_after_and_the_rest_are_served() {
    let server = start_with(Options {
        configure: Box::new(|c| {
            c.admission = Admission {
                concurrency: 1,
                queue: 2,
            }
        }),
        ..Options::default()
    })
    .await;
    // Loaded first, so that every request below waits on synthesis only.
    assert_eq!(server.speak("warm").await.0, 200);
    server.knobs.synth_delay_ms.store(1500, Ordering::SeqCst);

    let send = |i: usize| {
        let client = server.client.clone();
        let url = server.url("/v1/audio/speech");
        async move {
            let resp = client
                .post(url)
                .json(&json!({"model": MODEL, "input": format!("request {i}"), "voice": "alloy", "response_format": "wav"}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body = resp.bytes().await.unwrap();
            (status, retry, body)
        }
    };
    // One is served, two wait, the other three are turned away at once.
    let results = futures_util::future::join_all((0..6).map(send)).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let busy: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(
        (ok, busy.len()),
        (3, 3),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for (_, retry, body) in busy {
        assert_eq!(retry.as_deref(), Some("1"));
        let body: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(body["error"]["code"], "model_busy", "{body}");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("busy"));
    }
    // Nothing is left holding a place or a lease; the next request is served.
    assert!(
        server
            .wait_status(Duration::from_secs(5), |s| s["in_flight"] == 0)
            .await
    );
    server.knobs.synth_delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(server.speak("after").await.0, 200);
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The recorder is process-wide: other tests' servers may have added to it.
    let rejected: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "voxpool_admission_rejections_total{{model=\"{MODEL}\"}} "
            ))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(rejected >= 3, "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn synthesis_past_its_time_limit_gets_504() {
    let server = start_with(Options {
        configure: Box::new(|c| c.synthesis_timeout = Some(Duration::from_millis(300))),
        ..Options::default()
    })
    .await;
    assert_eq!(server.speak("warm").await.0, 200);
    let four = "One sentence. Two sentences. Three sentences. Four sentences.";
    // Each sentence takes 400 ms: past the limit before any audio is sent.
    server.knobs.synth_delay_ms.store(400, Ordering::SeqCst);
    let (status, body) = server.speak(four).await;
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("SYNTHESIS_TIMEOUT"));
    // 200 ms each: the first sentence is sent, the stream is cut at the second.
    server.knobs.synth_delay_ms.store(200, Ordering::SeqCst);
    let resp = server
        .client
        .post(server.url("/v1/audio/speech"))
        .json(&json!({"model": MODEL, "input": four, "voice": "alloy", "response_format": "pcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.bytes().await;
    assert!(
        got.is_err(),
        "the stream must end incomplete, not as a shorter whole: {:?}",
        got.map(|b| b.len())
    );
    server.knobs.synth_delay_ms.store(0, Ordering::SeqCst);
    // A short request still fits.
    assert_eq!(server.speak("Short.").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn an_engine_panic_fails_that_request_only_and_the_model_is_reloaded() {
    let server = start_with(Options::default()).await;
    assert_eq!(server.speak("warm").await.0, 200);
    server.knobs.panic_synth.store(true, Ordering::SeqCst);
    let (status, body) = server.speak("this one panics").await;
    assert_eq!(status, 500);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request id"),
        "{body}"
    );
    server.knobs.panic_synth.store(false, Ordering::SeqCst);
    // The model was unloaded after the panic and comes back for the next request.
    assert!(
        server
            .wait_status(Duration::from_secs(5), |s| s["model_loaded"] == false)
            .await
    );
    let (status, wav) = server.speak("fine again").await;
    assert_eq!(status, 200);
    assert!(common::wav_samples(&wav).1 > 0);
    assert_eq!(server.knobs.loads.load(Ordering::SeqCst), 2);
    server.stop().await;
}

#[test]
fn admission_limits_are_validated_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voxpool"))
        .args(["serve"])
        .env("MODEL_MAX_CONCURRENCY", "0")
        .env("VOXPOOL_DB_URL", "sqlite::memory:")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MODEL_MAX_CONCURRENCY"), "{err}");
}

#[tokio::test]
async fn a_client_that_leaves_the_queue_gives_up_its_place() {
    let server = start_with(Options {
        configure: Box::new(|c| {
            c.admission = Admission {
                concurrency: 1,
                queue: 1,
            }
        }),
        ..Options::default()
    })
    .await;
    assert_eq!(server.speak("warm").await.0, 200);
    server.knobs.synth_delay_ms.store(1500, Ordering::SeqCst);
    let body = |i: usize| json!({"model": MODEL, "input": format!("request {i}"), "voice": "alloy", "response_format": "wav"});
    // One request is served, one waits.
    let served = tokio::spawn({
        let (client, url, body) = (
            server.client.clone(),
            server.url("/v1/audio/speech"),
            body(0),
        );
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    assert!(
        server
            .wait_status(Duration::from_secs(5), |s| s["in_flight"] == 1)
            .await
    );
    // A raw connection, so that hanging up really closes the socket (as a killed
    // client or a closed browser tab does).
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut waiting = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let payload = body(1).to_string();
    let request = format!(
        "POST /v1/audio/speech HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut waiting, request.as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Full: one served, one waiting.
    let full = server
        .client
        .post(server.url("/v1/audio/speech"))
        .json(&body(2))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(full, 429);
    // The waiting client hangs up: its place is free for the next one.
    drop(waiting);
    let abandoned = format!("voxpool_admission_abandoned_total{{model=\"{MODEL}\"}} 1");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !server.get_text("/metrics").await.1.contains(&abandoned)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = server
        .client
        .post(server.url("/v1/audio/speech"))
        .json(&body(3))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(next, 200, "the place of the client that left was kept");
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "voxpool_admission_abandoned_total{{model=\"{MODEL}\"}} 1"
        )),
        "{metrics}"
    );
    assert_eq!(served.await.unwrap(), 200);
}
