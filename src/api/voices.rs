//! `GET /v1/audio/voices`: the voices each model can speak with, listed from the
//! model files on disk so nothing has to be loaded to answer.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::error::ApiError;
use super::{ApiTags, AppState};

/// One voice, in the shape of OpenAI's `audio.voice` objects.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct Voice {
    /// The name to pass as `voice` to `/v1/audio/speech`.
    pub id: String,
    /// Always `audio.voice`.
    pub object: String,
    pub name: String,
    /// The model that speaks with this voice.
    pub model: String,
    /// Ships with the model's files (rather than cloned from a recording).
    pub builtin: bool,
    /// Unix seconds; for built-in voices, the server's start time.
    pub created_at: i64,
}

#[derive(Object)]
pub struct VoiceList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Voice>,
}

pub struct VoicesApi;

#[OpenApi(tag = "ApiTags::Audio")]
impl VoicesApi {
    /// List the voices of every model, or of one (`?model=`, aliases accepted).
    /// OpenAI voice names (`alloy`, `nova`, …) are listed where they map to a voice.
    #[oai(path = "/v1/audio/voices", method = "get", operation_id = "listVoices")]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        model: Query<Option<String>>,
    ) -> Result<Json<VoiceList>, ApiError> {
        let registry = state.pool.registry();
        let specs = match model.0.as_deref() {
            Some(name) => vec![registry
                .resolve(name)
                .ok_or_else(|| ApiError::unknown_model(name))?
                .clone()],
            None => registry.models().to_vec(),
        };
        let ctx = state.pool.load_context().clone();
        let created_at = state.started_unix;
        // Listing reads directories: keep it off the async workers.
        let data = tokio::task::spawn_blocking(move || {
            specs
                .iter()
                .flat_map(|spec| {
                    spec.loader
                        .builtin_voices(&ctx)
                        .into_iter()
                        .map(|name| Voice {
                            id: name.clone(),
                            object: "audio.voice".into(),
                            name,
                            model: spec.id.clone(),
                            builtin: true,
                            created_at,
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ApiError::unavailable(format!("listing voices failed: {e}"), None))?;
        Ok(Json(VoiceList {
            object: "list".into(),
            data,
        }))
    }
}
