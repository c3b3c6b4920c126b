//! `GET /health` and the routes not built yet.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

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

    /// Prometheus metrics (not built yet: answers 501).
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self) -> Result<Json<Health>, ApiError> {
        Err(ApiError::not_implemented(
            "Metrics are not available in this build of voxpool yet",
        ))
    }
}
