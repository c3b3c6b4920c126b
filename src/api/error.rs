//! Every error the API sends, in OpenAI's shape:
//! `{"error":{"message","type","param","code"}}`. Status codes are chosen here only.

use std::time::Duration;

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::audio::AudioError;
use crate::engine::EngineError;
use crate::pool::{LoadError, PoolError};
use crate::store::StoreError;
use crate::synthesis::SpeechError;

/// The body of every error response.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Object)]
pub struct ErrorDetail {
    /// What went wrong, for people.
    pub message: String,
    /// Error class: `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `rate_limit_error`, `server_error`, `service_unavailable`.
    #[oai(rename = "type")]
    pub kind: String,
    /// The request field at fault, when there is one.
    #[oai(nullable)]
    pub param: Option<String>,
    /// A stable machine-readable code, when there is one.
    #[oai(nullable)]
    pub code: Option<String>,
}

pub(crate) fn body(
    message: impl Into<String>,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: ErrorDetail {
            message: message.into(),
            kind: kind.to_string(),
            param: param.map(String::from),
            code: code.map(String::from),
        },
    })
}

/// An error response. Handlers return `Result<_, ApiError>`.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or a value is out of range.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No API key, or an unknown one.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The key may not use this route.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Unknown model, voice or route.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request body is too large.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Too many requests; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// A bug on the server; the message carries the request id to report.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A feature this build does not have yet.
    #[oai(status = 501)]
    NotImplemented(Json<ErrorBody>),
    /// The model cannot be used right now (files missing, loading failed).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] Option<u64>),
    /// Synthesis ran past `SYNTHESIS_TIMEOUT`.
    #[oai(status = 504)]
    Timeout(Json<ErrorBody>),
    /// The client closed its connection first (nginx's 499): recorded in usage and
    /// logs, never read.
    #[oai(status = 499)]
    ClientClosed(Json<ErrorBody>),
}

/// `Retry-After` while a model's files download.
const DOWNLOAD_RETRY_SECS: u64 = 5;

/// Whole seconds for `Retry-After`, never zero.
fn retry_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

impl ApiError {
    /// The HTTP status this error is sent with (also what usage rows record).
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::PayloadTooLarge(_) => 413,
            Self::TooManyRequests(..) => 429,
            Self::ClientClosed(_) => 499,
            Self::Internal(_) => 500,
            Self::NotImplemented(_) => 501,
            Self::Unavailable(..) => 503,
            Self::Timeout(_) => 504,
        }
    }

    /// The message the client will read.
    pub fn message(&self) -> &str {
        match self {
            Self::BadRequest(b)
            | Self::Unauthorized(b)
            | Self::Forbidden(b)
            | Self::NotFound(b)
            | Self::PayloadTooLarge(b)
            | Self::Internal(b)
            | Self::NotImplemented(b)
            | Self::Timeout(b)
            | Self::ClientClosed(b)
            | Self::TooManyRequests(b, _)
            | Self::Unavailable(b, _) => &b.0.error.message,
        }
    }

    /// The client closed its connection before the answer; nobody reads this one.
    pub fn client_gone() -> Self {
        Self::ClientClosed(body(
            "the client closed the connection",
            "invalid_request_error",
            None,
            Some("client_closed_request"),
        ))
    }

    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        Self::BadRequest(body(message, "invalid_request_error", param, None))
    }

    pub fn invalid_code(param: &str, code: &str, message: impl Into<String>) -> Self {
        Self::BadRequest(body(
            message,
            "invalid_request_error",
            Some(param),
            Some(code),
        ))
    }

    pub fn not_found(param: Option<&str>, code: &str, message: impl Into<String>) -> Self {
        Self::NotFound(body(message, "invalid_request_error", param, Some(code)))
    }

    /// 404 for a model id or alias the registry does not know.
    pub fn unknown_model(name: &str) -> Self {
        Self::not_found(
            Some("model"),
            "model_not_found",
            format!("The model '{name}' does not exist"),
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::PayloadTooLarge(body(
            message,
            "invalid_request_error",
            None,
            Some("request_too_large"),
        ))
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        Self::TooManyRequests(
            body(
                format!(
                    "Rate limit reached; retry in {} s.",
                    retry_secs(retry_after)
                ),
                "rate_limit_error",
                None,
                Some("rate_limit_exceeded"),
            ),
            retry_secs(retry_after),
        )
    }

    pub fn unavailable(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::Unavailable(
            body(
                message,
                "service_unavailable",
                None,
                Some("model_unavailable"),
            ),
            retry_after.map(retry_secs),
        )
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::Timeout(body(message, "server_error", None, Some("timeout")))
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::NotImplemented(body(
            message,
            "invalid_request_error",
            None,
            Some("not_implemented"),
        ))
    }

    /// A server fault: `detail` is logged, the client learns only the request id
    /// (which the error middleware adds, through [`ApiError::server_error`]).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "server error");
        Self::server_error(None)
    }

    /// The one body of every 500: the request id to report, nothing of the cause.
    pub fn server_error(request_id: Option<&str>) -> Self {
        let message = match request_id {
            Some(id) => {
                format!("The server had an error while processing your request (request id {id}).")
            }
            None => "The server had an error while processing your request.".to_string(),
        };
        Self::Internal(body(message, "server_error", None, None))
    }

    /// An error response with any status, for statuses poem produces itself.
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Response {
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        };
        body(message, kind, None, None)
            .with_status(status)
            .into_response()
    }
}

impl From<&LoadError> for ApiError {
    fn from(err: &LoadError) -> Self {
        let retry = Some(err.retry_after());
        match err {
            LoadError::Failed { source, .. } => Self::unavailable(source.to_string(), retry),
            LoadError::Crashed { model, .. } => Self::unavailable(
                format!("The model {model} failed to load; see the server log."),
                retry,
            ),
            LoadError::FilesMissing { .. } | LoadError::Download { .. } => {
                Self::unavailable(err.to_string(), retry)
            }
        }
    }
}

impl From<&PoolError> for ApiError {
    fn from(err: &PoolError) -> Self {
        match err {
            PoolError::UnknownModel(model) => Self::unknown_model(model),
            PoolError::Load(load) => load.into(),
            PoolError::Busy { .. } => Self::TooManyRequests(
                body(
                    err.to_string(),
                    "rate_limit_error",
                    Some("model"),
                    Some("model_busy"),
                ),
                1,
            ),
            PoolError::Store(store) => store.into(),
            PoolError::Downloading { .. } => Self::unavailable(
                err.to_string(),
                Some(Duration::from_secs(DOWNLOAD_RETRY_SECS)),
            ),
        }
    }
}

impl From<&StoreError> for ApiError {
    fn from(err: &StoreError) -> Self {
        Self::internal(format_args!("database error: {err}"))
    }
}

impl From<&EngineError> for ApiError {
    fn from(err: &EngineError) -> Self {
        match err {
            EngineError::UnknownVoice { .. } => {
                Self::not_found(Some("voice"), "voice_not_found", err.to_string())
            }
            EngineError::InvalidInput(_) => Self::invalid(Some("input"), err.to_string()),
            EngineError::Unsupported { param, .. } => {
                Self::invalid(Some(param.as_ref()), err.to_string())
            }
            // The next request starts a new worker.
            EngineError::Worker { .. } => {
                tracing::warn!(error = %err, "request failed with its worker");
                Self::unavailable(err.to_string(), Some(Duration::from_secs(1)))
            }
            EngineError::FilesMissing { .. }
            | EngineError::BadFile { .. }
            | EngineError::Device { .. }
            | EngineError::OverBudget { .. } => Self::unavailable(err.to_string(), None),
            EngineError::Compute { .. } | EngineError::Synthesis(_) | EngineError::Panicked => {
                Self::internal(format_args!("synthesis failed: {err}"))
            }
        }
    }
}

impl From<&AudioError> for ApiError {
    fn from(err: &AudioError) -> Self {
        match err {
            AudioError::Unsupported(_) => {
                Self::invalid_code("response_format", "unsupported_format", err.to_string())
            }
            AudioError::Encode(_) => Self::internal(format_args!("encoding failed: {err}")),
        }
    }
}

impl From<&SpeechError> for ApiError {
    fn from(err: &SpeechError) -> Self {
        let message = err.to_string();
        match err {
            SpeechError::UnknownModel(model) => Self::unknown_model(model),
            SpeechError::UnknownVoice { .. } | SpeechError::NoSuchVoice(_) => {
                Self::not_found(Some("voice"), "voice_not_found", message)
            }
            SpeechError::NoCurrentVoice | SpeechError::VoiceOfAnotherModel { .. } => {
                Self::invalid(Some("voice"), message)
            }
            SpeechError::BadPhonemes(_) => Self::invalid_code("input", "unknown_phonemes", message),
            SpeechError::Language(_) => {
                Self::invalid_code("language", "unsupported_language", message)
            }
            SpeechError::Pool(e) => e.into(),
            SpeechError::Engine(e) => e.into(),
            SpeechError::Audio(e) => e.into(),
            SpeechError::Store(e) => e.into(),
            SpeechError::TimedOut(_) => Self::timeout(message),
            SpeechError::ClientGone => Self::client_gone(),
            SpeechError::Internal(detail) => Self::internal(detail),
        }
    }
}

/// `?` on the domain errors: each maps as its reference does.
macro_rules! from_owned {
    ($($ty:ty),*) => {$(
        impl From<$ty> for ApiError {
            fn from(err: $ty) -> Self {
                Self::from(&err)
            }
        }
    )*};
}
from_owned!(
    LoadError,
    PoolError,
    StoreError,
    EngineError,
    AudioError,
    SpeechError
);

#[cfg(test)]
mod tests {
    use super::*;

    async fn json_of(err: ApiError) -> (u16, serde_json::Value, Option<String>) {
        let resp = err.into_response();
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.into_body().into_json().await.unwrap();
        (status, body, retry)
    }

    #[tokio::test]
    async fn errors_have_the_openai_shape() {
        let (status, body, _) = json_of(ApiError::invalid(Some("speed"), "bad speed")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "bad speed", "type": "invalid_request_error", "param": "speed", "code": null}})
        );
    }

    #[tokio::test]
    async fn pool_errors_map_to_statuses() {
        let (status, body, _) = json_of(PoolError::UnknownModel("x".into()).into()).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "model_not_found");
        let missing = LoadError::Failed {
            model: "kokoro".into(),
            source: EngineError::FilesMissing {
                model: "kokoro".into(),
            },
            retry_after: Duration::from_millis(1500),
        };
        let (status, body, retry) = json_of(PoolError::Load(missing).into()).await;
        assert_eq!(status, 503);
        assert_eq!(
            body["error"]["message"],
            "Model files not found in cache. Run: voxpool pull kokoro"
        );
        assert_eq!(retry.as_deref(), Some("2"));
        let (status, _, retry) = json_of(ApiError::rate_limited(Duration::from_millis(10))).await;
        assert_eq!((status, retry.as_deref()), (429, Some("1")));
    }
}
