//! `GET /metrics`: Prometheus text with the request, speech and model series.

mod common;

use common::{start, MODEL};
use serde_json::json;

#[tokio::test]
async fn metrics_count_requests_speech_and_loads() {
    let srv = start().await;
    assert_eq!(srv.speak("Counted speech.").await.0, 200);
    let (code, _) = srv
        .post(
            "/v1/audio/speech",
            json!({"model": MODEL, "input": "x", "voice": "nobody", "response_format": "wav"}),
        )
        .await;
    assert_eq!(code, 404);
    let (code, _) = srv.get("/no/such/route").await;
    assert_eq!(code, 404);

    let resp = srv.client.get(srv.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for series in [
        r#"voxpool_requests_total{route="/v1/audio/speech",status="200"}"#,
        r#"voxpool_requests_total{route="/v1/audio/speech",status="404"}"#,
        r#"voxpool_requests_total{route="other",status="404"}"#,
        &format!(r#"voxpool_model_loads_total{{model="{MODEL}",result="ok"}} 1"#),
        &format!(r#"voxpool_model_load_seconds_count{{model="{MODEL}"}} 1"#),
        &format!(r#"voxpool_time_to_first_audio_seconds_count{{model="{MODEL}"}}"#),
        &format!(r#"voxpool_synthesis_seconds_count{{model="{MODEL}"}}"#),
        &format!(r#"voxpool_models_loaded_bytes{{model="{MODEL}"}}"#),
        &format!(r#"voxpool_leases_in_flight{{model="{MODEL}"}} 0"#),
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    srv.stop().await;
}
