//! API keys, as OpenAI clients send them: `Authorization: Bearer <key>`.
//!
//! With no key configured (no `VOXPOOL_API_KEY`, no unrevoked key in the database)
//! the server is open, and says so at start; a key created later (`voxpool keys
//! create`, from any process sharing the database) closes it within a second.
//! Once closed, every route except
//! `/health` needs a valid key (401), and the admin routes (`/model/*`,
//! `/load_voice*`, `POST`/`DELETE` on `/v1/audio/pronunciations*`) need an admin
//! key (403). Keys are compared as SHA-256 digests in
//! constant time and never logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, RequestBody, Response};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::store::{hex, Store};

/// How often an open server looks for a newly created key.
const KEY_RECHECK: Duration = Duration::from_secs(1);

/// Who may call what.
pub struct Auth {
    /// SHA-256 of `VOXPOOL_API_KEY`, an admin key.
    bootstrap: Option<[u8; 32]>,
    /// Whether keys are checked; once true it stays true.
    required: AtomicBool,
    /// When an open server last looked for keys in the database.
    checked: Mutex<Instant>,
    store: Store,
}

/// What a valid key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    User,
    Admin,
}

/// The SHA-256 of a key.
pub fn sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equal digests, in time independent of where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Keys are required when `bootstrap` is set or the database holds an unrevoked key.
    pub async fn new(
        bootstrap: Option<&str>,
        store: Store,
    ) -> Result<Self, crate::store::StoreError> {
        let stored = store.active_api_key_count().await?;
        let bootstrap = bootstrap.map(sha256);
        let required = bootstrap.is_some() || stored > 0;
        if required {
            tracing::info!(
                stored_keys = stored,
                "API keys required (Authorization: Bearer)"
            );
        } else {
            tracing::warn!(
                "No API key configured: the server is open to anyone who can reach it \
                 (set VOXPOOL_API_KEY to require one)"
            );
        }
        Ok(Self {
            bootstrap,
            required: AtomicBool::new(required),
            checked: Mutex::new(Instant::now()),
            store,
        })
    }

    /// Whether requests need a key: always once any key existed; an open server
    /// looks for a new key at most once per [`KEY_RECHECK`].
    async fn required(&self) -> bool {
        if self.required.load(Ordering::Acquire) {
            return true;
        }
        {
            let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
            if checked.elapsed() < KEY_RECHECK {
                return false;
            }
            *checked = Instant::now();
        }
        match self.store.active_api_key_count().await {
            Ok(n) if n > 0 => {
                if !self.required.swap(true, Ordering::AcqRel) {
                    tracing::info!("an API key now exists: keys are required from now on");
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(error = %e, "API key lookup failed");
                false
            }
        }
    }

    async fn access(&self, req: &Request) -> Result<Access, ApiError> {
        let key = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                unauthorized("Missing API key: send it as 'Authorization: Bearer <key>'.")
            })?;
        let digest = sha256(key);
        if self.bootstrap.is_some_and(|b| same_digest(&b, &digest)) {
            return Ok(Access::Admin);
        }
        match self.store.active_api_key(&hex(&digest)).await {
            Ok(Some(row)) if row.admin => Ok(Access::Admin),
            Ok(Some(_)) => Ok(Access::User),
            Ok(None) => Err(unauthorized("Incorrect API key provided.")),
            Err(e) => {
                tracing::error!(error = %e, "API key lookup failed");
                Err(ApiError::unavailable(
                    "API keys cannot be checked right now; retry shortly.",
                    None,
                ))
            }
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::Unauthorized(super::error::body(
        message,
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
    ))
}

/// Routes open to everyone, and routes for admin keys only.
fn is_public(path: &str) -> bool {
    // The web page holds no data; its requests carry the key the user enters.
    path == "/health" || path == "/"
}

/// Admin routes: `/model/*`, `/load_voice*`, and the changes to stored
/// pronunciations (reading them needs any key).
fn is_admin_route(method: &Method, path: &str) -> bool {
    path.starts_with("/model/")
        || path.starts_with("/load_voice")
        || (path.starts_with("/v1/audio/pronunciations")
            && !matches!(*method, Method::GET | Method::HEAD))
}

/// The middleware: checks the key before the route runs.
pub async fn require_key<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let auth = req
        .data::<Arc<super::AppState>>()
        .map(|state| Arc::clone(&state.auth));
    let required = match &auth {
        Some(auth) => auth.required().await,
        None => false,
    };
    if let Some(auth) = auth.filter(|_| required) {
        let path = req.uri().path().to_string();
        if !is_public(&path) {
            match auth.access(&req).await {
                Ok(Access::Admin) => {}
                Ok(Access::User) if !is_admin_route(req.method(), &path) => {}
                Ok(Access::User) => {
                    return Ok(ApiError::with_status(
                        StatusCode::FORBIDDEN,
                        "This route needs an admin API key.",
                    ));
                }
                Err(e) => return Ok(e.into_response()),
            }
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// The bearer key in the OpenAPI document (`securitySchemes.ApiKey`), taken by every
/// operation that [`require_key`] guards. It checks nothing itself: the middleware
/// has, before the operation runs. The requirement is optional in the document
/// (`{}` beside `ApiKey`) because a server without keys is open.
pub struct ApiKey;

impl<'a> ApiExtractor<'a> for ApiKey {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            "ApiKey",
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "`Authorization: Bearer <key>`. Needed once the server has keys \
                     (`VOXPOOL_API_KEY` or `voxpool keys create`); `/model/*`, \
                     `/load_voice*` and changes to `/v1/audio/pronunciations` need an \
                     admin key.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["ApiKey"]
    }

    fn has_security_fallback() -> bool {
        true
    }

    async fn from_request(
        _request: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_by_value() {
        let a = sha256("sk-one");
        assert!(same_digest(&a, &sha256("sk-one")));
        assert!(!same_digest(&a, &sha256("sk-two")));
        assert_eq!(
            hex(&sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn routes_by_scope() {
        assert!(is_public("/health"));
        assert!(!is_public("/v1/audio/speech"));
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        assert!(is_admin_route(&post, "/model/unload"));
        assert!(is_admin_route(&get, "/model/status"));
        assert!(is_admin_route(&post, "/load_voice_upload"));
        assert!(!is_admin_route(&get, "/v1/models"));
        assert!(!is_admin_route(&post, "/v1/audio/speech"));
        assert!(!is_admin_route(&delete, "/v1/audio/voices/voice_1"));
        assert!(!is_admin_route(&get, "/v1/audio/pronunciations"));
        assert!(!is_admin_route(&get, "/v1/audio/pronunciations/pron_1"));
        assert!(is_admin_route(&post, "/v1/audio/pronunciations"));
        assert!(is_admin_route(&delete, "/v1/audio/pronunciations/pron_1"));
    }
}
