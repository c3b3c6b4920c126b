//! Pool semantics over HTTP: single-flight loading, idle unload with no traffic,
//! leases across deadlines, unload during requests, load failures, memory budget.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{start_with, Options, MODEL};
use serde_json::json;
use voxpool::config::IdleTimeout;

fn secs(n: u64) -> IdleTimeout {
    IdleTimeout::After(Duration::from_secs(n))
}

#[tokio::test]
async fn fifty_concurrent_first_requests_share_one_load() {
    let srv = start_with(Options::default()).await;
    srv.knobs.load_delay_ms.store(800, Ordering::SeqCst);
    let srv = std::sync::Arc::new(srv);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move {
            srv.speak(&format!("Request {i}.")).await.0
        }));
    }
    // While the load runs, status says so.
    assert!(
        srv.wait_status(Duration::from_secs(5), |s| s["is_loading"] == true)
            .await,
        "is_loading never became true"
    );
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 1);
    let status = srv.status().await;
    assert_eq!(status["is_loading"], false);
    assert_eq!(status["model_loaded"], true);
    assert_eq!(status["in_flight"], 0);
}

#[tokio::test]
async fn idle_model_is_unloaded_by_the_housekeeper_without_traffic() {
    let srv = start_with(Options {
        timeout: secs(1),
        ..Options::default()
    })
    .await;
    assert_eq!(srv.speak("Hello.").await.0, 200);
    assert_eq!(srv.status().await["model_loaded"], true);
    // Status reads are not activity: polling does not keep the model alive.
    assert!(
        srv.wait_status(Duration::from_secs(10), |s| s["model_loaded"] == false)
            .await,
        "model still loaded long after its idle timeout"
    );
    assert_eq!(srv.knobs.unloads.load(Ordering::SeqCst), 1);
    // The next request loads it again.
    assert_eq!(srv.speak("Again.").await.0, 200);
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 2);
    srv.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_across_the_deadline_keeps_the_model() {
    let srv = std::sync::Arc::new(
        start_with(Options {
            timeout: secs(1),
            ..Options::default()
        })
        .await,
    );
    srv.client
        .post(srv.url("/model/load"))
        .send()
        .await
        .unwrap();
    srv.knobs.synth_delay_ms.store(3000, Ordering::SeqCst);
    let req = {
        let srv = srv.clone();
        tokio::spawn(async move { srv.speak("Slow one.").await })
    };
    // Once the request runs, and until well past the 1 s deadline, the model is
    // there and busy.
    assert!(
        srv.wait_status(Duration::from_secs(5), |s| s["in_flight"] == 1)
            .await
    );
    assert!(
        srv.holds_for(Duration::from_millis(2200), |s| s["model_loaded"] == true
            && s["in_flight"] == 1)
            .await
    );
    let (code, wav) = req.await.unwrap();
    assert_eq!(code, 200);
    assert!(common::wav_samples(&wav).1 > 0);
    assert_eq!(srv.knobs.unloads.load(Ordering::SeqCst), 0);
    // The idle clock starts when the request ends.
    assert_eq!(srv.status().await["model_loaded"], true);
    assert!(
        srv.wait_status(Duration::from_secs(10), |s| s["model_loaded"] == false)
            .await
    );
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unload_during_twenty_requests_fails_none() {
    // All twenty are served at once (not queued) so that all hold the model.
    let srv = std::sync::Arc::new(
        start_with(Options {
            configure: Box::new(|c| c.admission.concurrency = 20),
            ..Options::default()
        })
        .await,
    );
    srv.client
        .post(srv.url("/model/load"))
        .send()
        .await
        .unwrap();
    srv.knobs.synth_delay_ms.store(700, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move {
            srv.speak(&format!("Busy {i}.")).await.0
        }));
    }
    assert!(
        srv.wait_status(Duration::from_secs(5), |s| s["in_flight"] == 20)
            .await
    );
    let (code, body) = srv.post("/model/unload", json!({})).await;
    assert_eq!(
        (code, body),
        (200, json!({"message": "Model unloaded successfully"}))
    );
    // The unload answered only once the memory was back, i.e. after the requests.
    assert_eq!(srv.knobs.unloads.load(Ordering::SeqCst), 1);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(srv.status().await["model_loaded"], false);
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failed_load_reaches_every_waiter_and_is_not_retried_in_a_loop() {
    let srv = std::sync::Arc::new(start_with(Options::default()).await);
    srv.knobs.fail_loads.store(true, Ordering::SeqCst);
    srv.knobs.load_delay_ms.store(300, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move { srv.speak("Hi.").await }));
    }
    for t in tasks {
        let (code, body) = t.await.unwrap();
        assert_eq!(code, 503);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("weights.bin"),
            "{body}"
        );
    }
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 1);
    // Straight after, callers get the error at once with Retry-After, and no new load.
    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": MODEL, "input": "Hi", "voice": "alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 1);
    let status = srv.status().await;
    assert!(
        status["last_error"].as_str().unwrap().contains("truncated"),
        "{status}"
    );
    // Once the files are fixed and the cooldown is over, it loads.
    srv.knobs.fail_loads.store(false, Ordering::SeqCst);
    let mut code = 0;
    for _ in 0..40 {
        code = srv.speak("Hi.").await.0;
        if code == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, 200);
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn zero_timeout_unloads_after_each_request() {
    let srv = start_with(Options {
        timeout: secs(0),
        ..Options::default()
    })
    .await;
    assert_eq!(srv.speak("One.").await.0, 200);
    assert!(
        srv.wait_status(Duration::from_secs(5), |s| s["model_loaded"] == false)
            .await
    );
    assert_eq!(srv.speak("Two.").await.0, 200);
    assert!(
        srv.wait_status(Duration::from_secs(5), |s| s["model_loaded"] == false)
            .await
    );
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 2);
    assert_eq!(srv.knobs.unloads.load(Ordering::SeqCst), 2);
    srv.stop().await;
}

#[tokio::test]
async fn a_new_timeout_applies_to_the_running_idle_clock() {
    let srv = start_with(Options::default()).await;
    assert_eq!(srv.speak("Hi.").await.0, 200);
    // Idle for 3 s, still loaded (its timeout is longer).
    assert!(
        srv.wait_status(Duration::from_secs(10), |s| s["model_loaded"] == true
            && s["time_since_last_activity"].as_f64() >= Some(3.0))
            .await
    );
    // Idle for 3 s already: a 2 s timeout means it leaves now, not 2 s from now.
    let pool = srv.server.as_ref().unwrap().pool().clone();
    pool.set_timeout(MODEL, secs(2)).await.unwrap();
    assert!(
        srv.wait_status(Duration::from_millis(1000), |s| s["model_loaded"] == false)
            .await
    );
    srv.stop().await;
}

#[tokio::test]
async fn memory_budget_evicts_the_least_recently_used_idle_model() {
    let srv = start_with(Options {
        memory_bytes: 24 << 20,
        extra_models: vec![("second".into(), 24 << 20)],
        configure: Box::new(|c| c.memory_budget = Some(40 << 20)),
        ..Options::default()
    })
    .await;
    assert_eq!(srv.speak("First.").await.0, 200);
    let (code, _) = srv.post("/model/load", json!({"model": "second"})).await;
    assert_eq!(code, 200);
    let pool = srv.server.as_ref().unwrap().pool().clone();
    let mut evicted = false;
    for _ in 0..50 {
        let first = pool.status(MODEL).await.unwrap();
        let second = pool.status("second").await.unwrap();
        assert!(second.loaded);
        if !first.loaded {
            evicted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(evicted, "budget exceeded with both models loaded");
    assert_eq!(srv.knobs.unloads.load(Ordering::SeqCst), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_model_heavier_than_the_whole_budget_is_refused_with_a_message() {
    let srv = start_with(Options {
        memory_bytes: 48 << 20,
        configure: Box::new(|c| c.memory_budget = Some(40 << 20)),
        ..Options::default()
    })
    .await;
    let (code, body) = srv.post("/model/load", json!({"model": MODEL})).await;
    assert_eq!(code, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("48 MiB") && message.contains("MODEL_MEMORY_BUDGET allows (40 MiB)"),
        "{message}"
    );
    let (code, _) = srv.speak("Hello.").await;
    assert_eq!(code, 503);
    let status = srv.status().await;
    assert_eq!(status["model_loaded"], false, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("MODEL_MEMORY_BUDGET"),
        "{status}"
    );
    // Loaded once, freed at once; the request after it met the cooldown, not a reload.
    assert_eq!(srv.knobs.loads.load(Ordering::SeqCst), 1);
    srv.stop().await;
}
