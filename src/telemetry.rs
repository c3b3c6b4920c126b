//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`.
//!
//! Names (all prefixed `voxpool_`): `requests_total{route,status}`,
//! `speech_audio_seconds{model}` (its `_sum` is the audio spoken, to the sample),
//! `synthesis_seconds{model}` and `time_to_first_audio_seconds{model}`
//! (histograms), `model_loads_total{model,result}`,
//! `model_load_seconds{model}` (histogram), `model_unloads_total{model}`,
//! `models_loaded_bytes{model}` and `leases_in_flight{model}` (gauges),
//! `rate_limited_total`, `worker_crashes_total{model}` (workers that ended on
//! their own) and `gateway_resident_bytes` (the server process's own memory).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Seconds buckets for synthesis, first audio and loads.
const SECONDS_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The recorder, installed on first use (tests start many servers in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&SECONDS_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        handle
    })
}

/// A bounded label for a request path (unknown paths share one).
pub fn route_label(path: &str) -> &'static str {
    const ROUTES: [&str; 13] = [
        "/v1/audio/speech",
        "/v1/audio/voices",
        "/v1/audio/pronunciations",
        "/v1/audio/phonemize",
        "/v1/models",
        "/model/status",
        "/model/load",
        "/model/unload",
        "/model/timeout",
        "/health",
        "/metrics",
        "/openapi.json",
        "/docs",
    ];
    ROUTES
        .iter()
        .find(|r| {
            path.strip_prefix(**r)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_are_bounded() {
        assert_eq!(super::route_label("/v1/models/kokoro"), "/v1/models");
        assert_eq!(super::route_label("/v1/audio/speech"), "/v1/audio/speech");
        assert_eq!(
            super::route_label("/v1/audio/pronunciations/pron_1"),
            "/v1/audio/pronunciations"
        );
        assert_eq!(super::route_label("/etc/passwd"), "other");
        assert_eq!(super::route_label("/v1/modelsx"), "other");
    }
}
