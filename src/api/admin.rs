//! `/model/*`: watch and steer the model lifecycle (the seed's admin API, kept
//! byte-for-byte compatible, plus per-model fields).

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::auth::ApiKey;
use super::error::ApiError;
use super::{ApiTags, AppState};
use crate::hub::ProgressSnapshot;
use crate::pool::IdleTimeout;
use crate::pool::ModelStatus;

/// Smallest timeout `POST /model/timeout` accepts, in seconds.
pub const MIN_TIMEOUT_SECONDS: i64 = 60;

/// One model's lifecycle state.
#[derive(Object)]
pub struct ModelLifecycle {
    /// Model id.
    pub model: String,
    pub model_loaded: bool,
    pub is_loading: bool,
    /// Idle seconds before unloading; `-1` never.
    pub unload_timeout: i64,
    /// Seconds since the last request started or ended.
    pub time_since_last_activity: f64,
    /// Requests holding the model now.
    pub in_flight: u64,
    /// Bytes held by the loaded model (0 when not loaded).
    pub memory_bytes: u64,
    /// Seconds the last successful load took.
    #[oai(nullable)]
    pub last_load_seconds: Option<f64>,
    /// Languages this build can speak with the model.
    pub available_languages: Vec<String>,
    /// Why the last load failed, if it did.
    #[oai(nullable)]
    pub last_error: Option<String>,
    /// The process the model runs in while loaded (each model has its own).
    #[oai(nullable)]
    pub worker_pid: Option<u32>,
    /// The download of the model's files from the hub, while it runs.
    #[oai(nullable)]
    pub download: Option<DownloadStatus>,
}

/// A download under way.
#[derive(Object, Clone)]
pub struct DownloadStatus {
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The file being fetched.
    pub file: String,
}

impl From<&ProgressSnapshot> for DownloadStatus {
    fn from(p: &ProgressSnapshot) -> Self {
        Self {
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            file: p.file.clone(),
        }
    }
}

/// The server's own process, which holds no model.
#[derive(Object)]
pub struct GatewayStatus {
    pub pid: u32,
    /// Resident memory of the server process, bytes.
    pub rss_bytes: u64,
}

/// `GET /model/status`: the seed's eight fields for the selected model, then additions.
#[derive(Object)]
pub struct StatusResponse {
    pub model_loaded: bool,
    /// `cpu`, `cuda`, `cuda:N` or `metal`.
    pub device: String,
    pub unload_timeout: i64,
    pub time_since_last_activity: f64,
    pub is_loading: bool,
    pub available_languages: Vec<String>,
    /// Device memory allocated by loaded models, bytes (0 on CPU).
    pub gpu_memory_allocated: u64,
    /// Device memory reserved by the allocator, bytes (0 on CPU).
    pub gpu_memory_reserved: u64,
    /// The model these fields describe.
    pub model: String,
    pub memory_bytes: u64,
    pub in_flight: u64,
    #[oai(nullable)]
    pub last_load_seconds: Option<f64>,
    #[oai(nullable)]
    pub last_error: Option<String>,
    /// The worker process of the model, while loaded.
    #[oai(nullable)]
    pub worker_pid: Option<u32>,
    /// The download of the model's files from the hub, while it runs.
    #[oai(nullable)]
    pub download: Option<DownloadStatus>,
    /// Every model of the pool.
    pub models: Vec<ModelLifecycle>,
    pub gateway: GatewayStatus,
}

/// Selects a model; the default model when absent.
#[derive(Object, Default)]
#[oai(deny_unknown_fields)]
pub struct ModelSelector {
    pub model: Option<String>,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct TimeoutRequest {
    /// New idle timeout in seconds, at least 60.
    pub timeout_seconds: i64,
    pub model: Option<String>,
}

#[derive(Object)]
pub struct MessageResponse {
    pub message: String,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl From<&ModelStatus> for ModelLifecycle {
    fn from(s: &ModelStatus) -> Self {
        Self {
            model: s.model.clone(),
            model_loaded: s.loaded,
            is_loading: s.is_loading,
            unload_timeout: s.timeout.as_seconds(),
            time_since_last_activity: round1(s.idle_seconds),
            in_flight: s.in_flight as u64,
            memory_bytes: s.memory_bytes,
            last_load_seconds: s.last_load_seconds,
            available_languages: s.languages.clone(),
            last_error: s.last_error.clone(),
            worker_pid: s.worker_pid,
            download: s.download.as_ref().map(DownloadStatus::from),
        }
    }
}

pub struct AdminApi;

impl AdminApi {
    /// The canonical id of the selected model (aliases accepted).
    fn select(state: &AppState, model: Option<&str>) -> Result<String, ApiError> {
        let registry = state.pool.registry();
        let name = model.map(str::trim).filter(|m| !m.is_empty());
        let name = name.unwrap_or(registry.default_model());
        registry
            .resolve(name)
            .map(|spec| spec.id.clone())
            .ok_or_else(|| ApiError::unknown_model(name))
    }
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// Model state and memory.
    #[oai(path = "/model/status", method = "get", operation_id = "modelStatus")]
    async fn status(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        /// Model to describe; the default model when absent.
        model: Query<Option<String>>,
    ) -> Result<Json<StatusResponse>, ApiError> {
        let id = Self::select(&state, model.0.as_deref())?;
        let all = state.pool.statuses().await;
        let me = all
            .iter()
            .find(|s| s.model == id)
            .map(ModelLifecycle::from)
            .ok_or_else(|| {
                ApiError::internal(format_args!("{id} is missing from the pool's statuses"))
            })?;
        // What the workers hold on the device (models in this process count their
        // own bytes when on an accelerator).
        let on_device = state.config.device.is_accelerator();
        let device_bytes: u64 = all
            .iter()
            .map(|s| match s.worker_pid {
                Some(_) => s.device_bytes,
                None if on_device => s.memory_bytes,
                None => 0,
            })
            .sum();
        Ok(Json(StatusResponse {
            model_loaded: me.model_loaded,
            device: state.config.device.to_string(),
            unload_timeout: me.unload_timeout,
            time_since_last_activity: me.time_since_last_activity,
            is_loading: me.is_loading,
            available_languages: me.available_languages,
            gpu_memory_allocated: device_bytes,
            gpu_memory_reserved: device_bytes,
            model: me.model,
            memory_bytes: me.memory_bytes,
            in_flight: me.in_flight,
            last_load_seconds: me.last_load_seconds,
            last_error: me.last_error,
            worker_pid: me.worker_pid,
            download: me.download.clone(),
            models: all.iter().map(ModelLifecycle::from).collect(),
            gateway: GatewayStatus {
                pid: std::process::id(),
                rss_bytes: crate::worker::protocol::rss_of(None),
            },
        }))
    }

    /// Unload a model now.
    ///
    /// A model serving requests unloads when they finish (this call waits for that);
    /// requests arriving meanwhile load it again.
    #[oai(path = "/model/unload", method = "post", operation_id = "unloadModel")]
    async fn unload(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        body: Json<ModelSelector>,
    ) -> Result<Json<MessageResponse>, ApiError> {
        let id = Self::select(&state, body.0.model.as_deref())?;
        state.pool.unload(&id).await?;
        Ok(Json(MessageResponse {
            message: "Model unloaded successfully".into(),
        }))
    }

    /// Load a model now, so the first request does not wait.
    #[oai(path = "/model/load", method = "post", operation_id = "loadModel")]
    async fn load(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        body: Json<ModelSelector>,
    ) -> Result<Json<MessageResponse>, ApiError> {
        let id = Self::select(&state, body.0.model.as_deref())?;
        state.pool.load(&id).await?;
        Ok(Json(MessageResponse {
            message: "Model loaded successfully".into(),
        }))
    }

    /// Change a model's idle timeout (at least 60 seconds).
    ///
    /// Persisted across restarts; applies to the running idle clock at once.
    #[oai(
        path = "/model/timeout",
        method = "post",
        operation_id = "setModelTimeout"
    )]
    async fn timeout(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        body: Json<TimeoutRequest>,
    ) -> Result<Json<MessageResponse>, ApiError> {
        let secs = body.0.timeout_seconds;
        if secs < MIN_TIMEOUT_SECONDS {
            return Err(ApiError::invalid(
                Some("timeout_seconds"),
                format!("Timeout must be at least {MIN_TIMEOUT_SECONDS} seconds"),
            ));
        }
        let id = Self::select(&state, body.0.model.as_deref())?;
        state
            .pool
            .set_timeout(&id, IdleTimeout::from_seconds(secs))
            .await?;
        Ok(Json(MessageResponse {
            message: format!("Timeout updated to {secs} seconds"),
        }))
    }
}
