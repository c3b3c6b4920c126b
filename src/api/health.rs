//! `GET /health` and `GET /metrics`.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::{Html, Json, PlainText};
use poem_openapi::{Object, OpenApi};

use super::auth::ApiKey;
use super::error::ApiError;
use super::{ApiTags, AppState};

#[derive(Object)]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
}

pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness and database reachability.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&Arc<AppState>>) -> Result<Json<Health>, ApiError> {
        state.store.ping().await.map_err(|e| {
            tracing::warn!(error = %e, "health check: database unreachable");
            ApiError::unavailable("The database is unreachable", None)
        })?;
        Ok(Json(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// The web page: speak, watch and steer the models (plain HTML and JavaScript
    /// built into the binary; it calls the public API with the key the user enters).
    #[oai(path = "/", method = "get", hidden)]
    async fn web_page(&self) -> Html<&'static str> {
        Html(include_str!("web/index.html"))
    }

    /// Prometheus metrics in the text exposition format (names in `src/telemetry.rs`).
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, _key: ApiKey) -> PlainText<String> {
        metrics::gauge!("voxpool_gateway_resident_bytes")
            .set(crate::worker::protocol::rss_of(None) as f64);
        PlainText(crate::telemetry::handle().render())
    }
}
