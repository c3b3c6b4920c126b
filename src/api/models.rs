//! `GET /v1/models`: the models this server offers, in OpenAI's list shape.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::auth::ApiKey;
use super::error::ApiError;
use super::{ApiTags, AppState};
use crate::engine::OPENAI_ALIASES;

#[derive(Object)]
pub struct Model {
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds (the server's start time).
    pub created: i64,
    pub owned_by: String,
}

#[derive(Object)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Model>,
}

pub struct ModelsApi;

impl ModelsApi {
    fn all(state: &AppState) -> Vec<Model> {
        let registry = state.pool.registry();
        let model = |id: &str, owned_by: &str| Model {
            id: id.to_string(),
            object: "model".into(),
            created: state.started_unix,
            owned_by: owned_by.to_string(),
        };
        let mut out: Vec<Model> = registry
            .models()
            .iter()
            .map(|m| model(&m.id, &m.owned_by))
            .collect();
        if registry.resolve(registry.default_model()).is_some() {
            out.extend(OPENAI_ALIASES.iter().map(|a| model(a, "voxpool")));
        }
        out
    }
}

#[OpenApi(tag = "ApiTags::Models")]
impl ModelsApi {
    /// List models, including the OpenAI aliases of the default model.
    #[oai(path = "/v1/models", method = "get", operation_id = "listModels")]
    async fn list(&self, _key: ApiKey, state: Data<&Arc<AppState>>) -> Json<ModelList> {
        Json(ModelList {
            object: "list".into(),
            data: Self::all(&state),
        })
    }

    /// Describe one model.
    #[oai(
        path = "/v1/models/:model",
        method = "get",
        operation_id = "retrieveModel"
    )]
    async fn retrieve(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        model: Path<String>,
    ) -> Result<Json<Model>, ApiError> {
        Self::all(&state)
            .into_iter()
            .find(|m| m.id == model.0)
            .map(Json)
            .ok_or_else(|| ApiError::unknown_model(&model.0))
    }
}
