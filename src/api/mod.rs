//! The HTTP API: one file per OpenAPI tag, errors in `error.rs`, and the routes,
//! middleware, Swagger UI (`/docs`) and spec (`/openapi.json`) here.

pub mod admin;
pub mod auth;
pub mod conn;
pub mod error;
pub mod health;
pub mod models;
pub mod speech;
pub mod voices;

use std::sync::Arc;
use std::time::Instant;

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::middleware::CatchPanic;
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::{OpenApiService, Tags};
use tracing::Instrument;

use crate::config::Config;
use crate::limit::{ClientRateLimit, RateLimited, RateLimiter};
use crate::pool::ModelPool;
use crate::store::Store;
use crate::synthesis::{ClientGone, Synthesizer};
use error::ApiError;

/// Largest request body on any route (voice uploads are up to 10 MiB).
pub const MAX_BODY_BYTES: usize = 12 << 20;
/// Largest JSON body on the JSON routes.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Routes never rate limited.
const UNLIMITED_PATHS: &[&str] = &["/health"];
/// POST routes whose body is JSON.
const JSON_ROUTES: &[&str] = &[
    "/v1/audio/speech",
    "/v1/audio/speech/captions",
    "/v1/audio/phonemize",
    "/model/unload",
    "/model/load",
    "/model/timeout",
    "/load_voice",
];

/// What handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: ModelPool,
    pub store: Store,
    /// API keys and their scopes.
    pub auth: Arc<auth::Auth>,
    /// Server start, Unix seconds (the `created` of `/v1/models`).
    pub started_unix: i64,
    /// Work that outlives its request (a stream's usage row): shutdown waits for it.
    pub background: tokio_util::task::TaskTracker,
    /// The request path: resolve, admit, lease, speak.
    pub speech: Synthesizer,
    /// Open client connections, to notice a client that hangs up while queued.
    pub connections: conn::Connections,
}

impl AppState {
    /// Whether the client at `peer` has hung up, for the synthesis layer to ask
    /// while a request waits or speaks.
    pub fn client_gone(&self, peer: Option<std::net::SocketAddr>) -> ClientGone {
        let connections = self.connections.clone();
        Arc::new(move || peer.is_some_and(|p| connections.closed(p)))
    }
}

#[derive(Tags)]
pub enum ApiTags {
    /// OpenAI's audio API.
    Audio,
    /// OpenAI's models API.
    Models,
    /// Model lifecycle: status, load, unload, idle timeout.
    Admin,
    /// Health and metrics.
    Health,
}

type Apis = (
    speech::SpeechApi,
    speech::PhonemizeApi,
    voices::VoicesApi,
    voices::LoadVoiceApi,
    models::ModelsApi,
    admin::AdminApi,
    health::HealthApi,
);

/// The OpenAPI service (also what `openapi/openapi.json` is generated from).
pub fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            speech::SpeechApi,
            speech::PhonemizeApi,
            voices::VoicesApi,
            voices::LoadVoiceApi,
            models::ModelsApi,
            admin::AdminApi,
            health::HealthApi,
        ),
        "voxpool",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Self-hosted, OpenAI-compatible speech server: `POST /v1/audio/speech` from a pool \
         of native text-to-speech models that load on first use and unload when idle.",
    )
}

/// The OpenAPI document as pretty JSON.
pub fn spec_json() -> String {
    api_service().spec()
}

/// The whole HTTP application.
pub fn app(state: Arc<AppState>, limiter: Option<RateLimiter>) -> impl Endpoint {
    let service = api_service();
    let docs = service.swagger_ui();
    let spec = service.spec_endpoint();
    Route::new()
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .nest("/", service)
        .around(auth::require_key)
        .with(ClientRateLimit::new(limiter, UNLIMITED_PATHS))
        .around(json_body)
        .with(CatchPanic::new())
        .around(openai_errors)
        .data(state)
}

/// Tag each request with an id, answer every error in OpenAI's JSON shape, and
/// never let a server fault's detail reach the client.
async fn openai_errors<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %path,
        status = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        let mut resp = match ep.call(req).await {
            Ok(resp) => resp.into_response(),
            Err(err) => error_response(err, &method, &path),
        };
        if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("request failed with a server error");
            resp = ApiError::server_error(Some(&request_id)).into_response();
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let status = resp.status().as_u16();
        tracing::Span::current().record("status", status);
        metrics::counter!(
            "voxpool_requests_total",
            "route" => crate::telemetry::route_label(&path),
            "status" => status.to_string()
        )
        .increment(1);
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request done"
        );
        Ok(resp)
    }
    .instrument(span)
    .await
}

fn error_response(err: poem::Error, method: &Method, path: &str) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    if let Some(limited) = err.downcast_ref::<RateLimited>() {
        metrics::counter!("voxpool_rate_limited_total").increment(1);
        return ApiError::rate_limited(limited.retry_after).into_response();
    }
    if let Some(parse) = err.downcast_ref::<ParseRequestPayloadError>() {
        return speech::field_error(&parse.reason).into_response();
    }
    let status = err.status();
    match status {
        StatusCode::NOT_FOUND => {
            ApiError::with_status(status, format!("Invalid URL ({method} {path})"))
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::with_status(status, format!("Method {method} is not allowed for {path}"))
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large("The request body is too large").into_response()
        }
        // Declared as 400 in the spec, as OpenAI answers a body it cannot read.
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::invalid(
            None,
            format!("The request body must be JSON (Content-Type: application/json): {err}"),
        )
        .into_response(),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled error");
            ApiError::with_status(StatusCode::INTERNAL_SERVER_ERROR, "server error")
        }
        s => ApiError::with_status(s, err.to_string()),
    }
}

/// Accept JSON the way curl users send it: an empty POST to `/model/*` means `{}`,
/// and a JSON object posted without `Content-Type` (or as a form) is read as JSON.
/// Bodies announced larger than [`MAX_BODY_BYTES`] are refused before they are read.
async fn json_body<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let path = req.uri().path();
    if req.method() == Method::POST && JSON_ROUTES.contains(&path) {
        let admin = path.starts_with("/model/");
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let is_json = content_type.starts_with("application/json");
        let may_coerce = content_type.is_empty()
            || content_type.starts_with("application/x-www-form-urlencoded");
        if is_json || may_coerce {
            let bytes = req
                .take_body()
                .into_bytes_limit(MAX_JSON_BYTES)
                .await
                .map_err(|_| poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE))?;
            let starts_object = bytes.trim_ascii_start().first() == Some(&b'{');
            let body = if bytes.trim_ascii().is_empty() && admin {
                Body::from_string("{}".to_string())
            } else {
                Body::from_bytes(bytes)
            };
            if !is_json && (admin || starts_object) {
                req.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            req.set_body(body);
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}
