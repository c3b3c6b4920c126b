//! Voices: `GET/POST /v1/audio/voices`, `GET/DELETE /v1/audio/voices/{id}` (built-in
//! voices listed from the model files on disk, cloned voices from the database), and
//! the Chatterbox servers' `POST /load_voice` and `POST /load_voice_upload`, which set
//! the server's current voice (`"voice": "current"`).

use std::path::{Component, PathBuf};
use std::sync::Arc;

use poem::web::Data;
// poem-openapi recognises path parameters by the type's name, `Path`.
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::multipart::Upload;
use poem_openapi::{Multipart, Object, OpenApi};

use super::auth::ApiKey;
use super::error::ApiError;
use super::{ApiTags, AppState};
use crate::audio::clip::{self, ReferenceClip};
use crate::store::{NewVoice, VoiceRow};
use crate::synthesis::voices::{CURRENT_VOICE, VOICE_ID_PREFIX};
use crate::synthesis::SpeechError;

/// Largest reference recording accepted.
pub const MAX_SAMPLE_BYTES: usize = 10 << 20;
/// Longest voice name.
const MAX_NAME_CHARS: usize = 64;
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
    /// The language the voice reads text in when the request names none: a Kokoro
    /// code (`a`, `j`, …) or `en`. Null for a cloned voice, which reads its model's
    /// language.
    pub language: Option<String>,
    /// Unix seconds; for built-in voices, the server's start time.
    pub created_at: i64,
}

impl From<VoiceRow> for Voice {
    fn from(row: VoiceRow) -> Self {
        Self {
            id: row.id,
            object: "audio.voice".into(),
            name: row.name,
            model: row.model,
            builtin: false,
            language: None,
            created_at: row.created_at.timestamp(),
        }
    }
}

#[derive(Object)]
pub struct VoiceList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Voice>,
}

/// What `DELETE /v1/audio/voices/{id}` answers.
#[derive(Object)]
pub struct DeletedVoice {
    pub id: String,
    /// Always `audio.voice`.
    pub object: String,
    pub deleted: bool,
}

/// `POST /v1/audio/voices`: a voice cloned from a reference recording.
#[derive(Multipart)]
struct CreateVoiceForm {
    /// A name for the voice (1 to 64 characters).
    name: String,
    /// The reference recording: wav, mp3, flac or ogg (vorbis), longer than 5 s,
    /// at most 10 MiB. 10 to 30 s of clean speech works best.
    audio_sample: Upload,
    /// The model that will speak with the voice; default: the first model that
    /// clones voices (`chatterbox-turbo`).
    model: Option<String>,
    /// Accepted for OpenAI compatibility; voxpool stores nothing of it.
    consent: Option<String>,
}

/// `POST /load_voice`.
#[derive(Object)]
struct LoadVoiceRequest {
    /// A recording inside the folder `VOXPOOL_VOICES_DIR` (relative to it, or
    /// absolute within it).
    path: String,
    /// The model; default: the first model that clones voices.
    model: Option<String>,
}

/// `POST /load_voice_upload`: the recording as a file field (`file` or `audio_sample`).
#[derive(Multipart)]
struct LoadVoiceUpload {
    file: Option<Upload>,
    audio_sample: Option<Upload>,
    model: Option<String>,
}

/// What the seed voice endpoints answer.
#[derive(Object)]
struct LoadVoiceResponse {
    message: String,
    /// `current`: the voice name that speaks with it.
    voice: String,
    model: String,
}

pub struct VoicesApi;

#[OpenApi(tag = "ApiTags::Audio")]
impl VoicesApi {
    /// List the voices of every model, or of one (`?model=`, aliases accepted):
    /// built-in voices, then cloned voices, oldest first. OpenAI voice names
    /// (`alloy`, `nova`, …) are listed where they map to a voice.
    #[oai(path = "/v1/audio/voices", method = "get", operation_id = "listVoices")]
    async fn list(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        model: Query<Option<String>>,
    ) -> Result<Json<VoiceList>, ApiError> {
        let model = match model.0.as_deref() {
            Some(name) => Some(resolve_model(&state, name)?),
            None => None,
        };
        let mut data = builtin_voices(&state, model.as_deref()).await?;
        let stored = state.store.voices(model.as_deref()).await?;
        data.extend(stored.into_iter().map(Voice::from));
        Ok(Json(VoiceList {
            object: "list".into(),
            data,
        }))
    }

    /// One voice by id: a cloned voice (`voice_…`) or a built-in voice's name.
    #[oai(
        path = "/v1/audio/voices/:id",
        method = "get",
        operation_id = "getVoice"
    )]
    async fn get(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<Voice>, ApiError> {
        let id = id.0;
        if id.starts_with(VOICE_ID_PREFIX) {
            if let Some(row) = state.store.voice(&id).await? {
                return Ok(Json(row.into()));
            }
        }
        builtin_voices(&state, None)
            .await?
            .into_iter()
            .find(|v| v.id == id)
            .map(Json)
            .ok_or_else(|| SpeechError::NoSuchVoice(id.clone()).into())
    }

    /// Clone a voice from a reference recording.
    ///
    /// The recording is decoded, resampled and loudness-normalised, then the model
    /// computes the voice's conditioning once; it is stored with the recording, so
    /// speaking with the voice (`"voice": "voice_…"` or `{"id": "voice_…"}`) costs
    /// nothing extra. Loads the model if needed.
    #[oai(
        path = "/v1/audio/voices",
        method = "post",
        operation_id = "createVoice"
    )]
    async fn create(
        &self,
        _key: ApiKey,
        req: &poem::Request,
        state: Data<&Arc<AppState>>,
        form: CreateVoiceForm,
    ) -> Result<Json<Voice>, ApiError> {
        let peer = super::conn::peer_of(req);
        let _ = form.consent;
        let name = form.name.trim().to_string();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                Some("name"),
                format!("'name' must be 1 to {MAX_NAME_CHARS} printable characters"),
            ));
        }
        let model = cloning_model(&state, form.model.as_deref())?;
        let sample = read_upload(form.audio_sample, "audio_sample").await?;
        let conditioning = clone_voice(&state, &model, sample.clone(), peer).await?;
        let row = state
            .store
            .create_voice(NewVoice {
                name: &name,
                model: &model,
                sample: &sample,
                conditioning: &conditioning,
            })
            .await?;
        tracing::info!(voice = %row.id, model = %model, bytes = sample.len(), "voice created");
        Ok(Json(row.into()))
    }

    /// Delete a cloned voice and its stored recording.
    #[oai(
        path = "/v1/audio/voices/:id",
        method = "delete",
        operation_id = "deleteVoice"
    )]
    async fn delete(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<DeletedVoice>, ApiError> {
        let id = id.0;
        if id.starts_with(VOICE_ID_PREFIX) && state.store.delete_voice(&id).await? {
            state.speech.voices().forget(&id).await;
            tracing::info!(voice = %id, "voice deleted");
            return Ok(Json(DeletedVoice {
                id,
                object: "audio.voice".into(),
                deleted: true,
            }));
        }
        let builtin = builtin_voices(&state, None).await?;
        if builtin.iter().any(|v| v.id == id) {
            return Err(ApiError::invalid(
                Some("id"),
                format!("'{id}' is a built-in voice; only cloned voices can be deleted"),
            ));
        }
        Err(SpeechError::NoSuchVoice(id).into())
    }
}

pub struct LoadVoiceApi;

#[OpenApi(tag = "ApiTags::Admin")]
impl LoadVoiceApi {
    /// Set the server's current voice from a recording in `VOXPOOL_VOICES_DIR`.
    ///
    /// Speak with it as `"voice": "current"`. Paths outside the folder (`..`,
    /// absolute paths elsewhere, symbolic links leading out) are refused without
    /// reading anything.
    #[oai(path = "/load_voice", method = "post", operation_id = "loadVoice")]
    async fn load_voice(
        &self,
        _key: ApiKey,
        req: &poem::Request,
        state: Data<&Arc<AppState>>,
        body: Json<LoadVoiceRequest>,
    ) -> Result<Json<LoadVoiceResponse>, ApiError> {
        let peer = super::conn::peer_of(req);
        let model = cloning_model(&state, body.0.model.as_deref())?;
        let requested = body.0.path;
        let dir = state.config.voices_dir.clone();
        let (path, size) = tokio::task::spawn_blocking({
            let requested = requested.clone();
            move || confine(dir.as_deref(), &requested)
        })
        .await
        .map_err(ApiError::internal)??;
        if size > MAX_SAMPLE_BYTES as u64 {
            return Err(too_large("path"));
        }
        let sample = tokio::fs::read(&path)
            .await
            .map_err(|_| file_not_found(&requested))?;
        let conditioning = clone_voice(&state, &model, sample, peer).await?;
        state
            .speech
            .voices()
            .set_current(model.clone(), conditioning);
        tracing::info!(model = %model, "current voice loaded from a file");
        Ok(Json(loaded(model)))
    }

    /// Set the server's current voice from an uploaded recording (multipart field
    /// `file` or `audio_sample`). Speak with it as `"voice": "current"`.
    #[oai(
        path = "/load_voice_upload",
        method = "post",
        operation_id = "loadVoiceUpload"
    )]
    async fn load_voice_upload(
        &self,
        _key: ApiKey,
        req: &poem::Request,
        state: Data<&Arc<AppState>>,
        form: LoadVoiceUpload,
    ) -> Result<Json<LoadVoiceResponse>, ApiError> {
        let peer = super::conn::peer_of(req);
        let model = cloning_model(&state, form.model.as_deref())?;
        let upload = form.file.or(form.audio_sample).ok_or_else(|| {
            ApiError::invalid(
                Some("file"),
                "Missing required file field: 'file' (or 'audio_sample')",
            )
        })?;
        let sample = read_upload(upload, "file").await?;
        let conditioning = clone_voice(&state, &model, sample, peer).await?;
        state
            .speech
            .voices()
            .set_current(model.clone(), conditioning);
        tracing::info!(model = %model, "current voice loaded from an upload");
        Ok(Json(loaded(model)))
    }
}

fn loaded(model: String) -> LoadVoiceResponse {
    LoadVoiceResponse {
        message: "Voice loaded successfully".into(),
        voice: CURRENT_VOICE.into(),
        model,
    }
}

fn file_not_found(path: &str) -> ApiError {
    ApiError::invalid(Some("path"), format!("Voice file not found: {path}"))
}

fn too_large(param: &str) -> ApiError {
    ApiError::too_large(format!(
        "'{param}' is larger than {} MiB",
        MAX_SAMPLE_BYTES >> 20
    ))
}

/// The file `requested` names inside `dir`, and its size. Refuses, before touching
/// the file system, absolute paths outside `dir` and any `..`; then refuses what
/// resolves outside `dir` through symbolic links. Reads no file content.
fn confine(dir: Option<&std::path::Path>, requested: &str) -> Result<(PathBuf, u64), ApiError> {
    let outside = || {
        ApiError::invalid(
            Some("path"),
            format!("Voice path is outside the voices folder: {requested}"),
        )
    };
    let Some(dir) = dir else {
        return Err(ApiError::invalid(
            Some("path"),
            format!(
                "Voice file not found: {requested} (loading voices by path is off: \
                 set VOXPOOL_VOICES_DIR to the folder that holds them)"
            ),
        ));
    };
    if requested.is_empty() || requested.contains('\0') {
        return Err(file_not_found(requested));
    }
    let candidate = std::path::Path::new(requested);
    if candidate
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(outside());
    }
    let joined = if candidate.is_absolute() {
        if !candidate.starts_with(dir) {
            return Err(outside());
        }
        candidate.to_path_buf()
    } else {
        dir.join(candidate)
    };
    let root = dir.canonicalize().map_err(|_| file_not_found(requested))?;
    let real = joined
        .canonicalize()
        .map_err(|_| file_not_found(requested))?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    let meta = std::fs::metadata(&real).map_err(|_| file_not_found(requested))?;
    if !meta.is_file() {
        return Err(file_not_found(requested));
    }
    Ok((real, meta.len()))
}

/// An upload's bytes, refusing more than [`MAX_SAMPLE_BYTES`] (413) and empty files.
async fn read_upload(upload: Upload, param: &str) -> Result<Vec<u8>, ApiError> {
    if upload.size() > MAX_SAMPLE_BYTES {
        return Err(too_large(param));
    }
    let bytes = upload
        .into_vec()
        .await
        .map_err(|_| ApiError::invalid(Some(param), format!("'{param}' could not be read")))?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            Some(param),
            format!("'{param}' is empty; upload {}", clip::ACCEPTED_FORMATS),
        ));
    }
    Ok(bytes)
}

/// The model id for `name` (aliases resolve to the default model).
fn resolve_model(state: &AppState, name: &str) -> Result<String, ApiError> {
    state
        .pool
        .registry()
        .resolve(name)
        .map(|spec| spec.id.clone())
        .ok_or_else(|| ApiError::unknown_model(name))
}

/// The model that will clone: `requested`, or the first model that clones voices.
fn cloning_model(state: &AppState, requested: Option<&str>) -> Result<String, ApiError> {
    let registry = state.pool.registry();
    let Some(name) = requested.map(str::trim).filter(|n| !n.is_empty()) else {
        return registry
            .models()
            .iter()
            .find(|m| m.loader.clones_voices())
            .map(|m| m.id.clone())
            .ok_or_else(|| ApiError::not_implemented("No model of this server can clone voices"));
    };
    let spec = registry
        .resolve(name)
        .ok_or_else(|| ApiError::unknown_model(name))?;
    if !spec.loader.clones_voices() {
        let others: Vec<&str> = registry
            .models()
            .iter()
            .filter(|m| m.loader.clones_voices())
            .map(|m| m.id.as_str())
            .collect();
        return Err(ApiError::invalid(
            Some("model"),
            format!(
                "Model {} cannot clone voices; models that can: {}",
                spec.id,
                if others.is_empty() {
                    "none".to_string()
                } else {
                    others.join(", ")
                }
            ),
        ));
    }
    Ok(spec.id.clone())
}

/// Decode `sample` and have `model` compute the voice's conditioning (admitted like
/// a speech request, on a blocking thread).
async fn clone_voice(
    state: &AppState,
    model: &str,
    sample: Vec<u8>,
    peer: Option<std::net::SocketAddr>,
) -> Result<Vec<u8>, ApiError> {
    let clip: ReferenceClip = tokio::task::spawn_blocking(move || clip::prepare(&sample))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::invalid(Some("audio_sample"), e.to_string()))?;
    Ok(state
        .speech
        .clone_voice(model, clip, &state.client_gone(peer))
        .await?)
}

/// Built-in voices of one model or all, read from the model files on disk.
async fn builtin_voices(state: &AppState, model: Option<&str>) -> Result<Vec<Voice>, ApiError> {
    let registry = state.pool.registry();
    let specs = match model {
        Some(id) => registry
            .models()
            .iter()
            .filter(|m| m.id == id)
            .cloned()
            .collect(),
        None => registry.models().to_vec(),
    };
    let ctx = state.pool.load_context().clone();
    let created_at = state.started_unix;
    // Listing reads directories: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        specs
            .iter()
            .flat_map(|spec| {
                spec.loader
                    .builtin_voices(&ctx)
                    .into_iter()
                    .map(|name| Voice {
                        id: name.clone(),
                        object: "audio.voice".into(),
                        language: spec
                            .loader
                            .voice_language(&name)
                            .or_else(|| spec.languages.first().cloned()),
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
    .map_err(|e| ApiError::unavailable(format!("listing voices failed: {e}"), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_voices_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("voices");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.wav"), b"x").unwrap();
        std::fs::write(root.path().join("secret.wav"), b"x").unwrap();
        let ok = confine(Some(&dir), "a.wav").unwrap();
        assert_eq!(ok.1, 1);
        let abs = dir.join("a.wav");
        assert!(confine(Some(&dir), abs.to_str().unwrap()).is_ok());
        let refused = |p: &str| {
            let e = confine(Some(&dir), p).unwrap_err();
            e.message().to_string()
        };
        assert!(refused("../secret.wav").contains("outside"));
        assert!(refused("sub/../../secret.wav").contains("outside"));
        let secret = root.path().join("secret.wav");
        assert!(refused(secret.to_str().unwrap()).contains("outside"));
        assert!(refused("/etc/passwd").contains("outside"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&secret, dir.join("link.wav")).unwrap();
            assert!(refused("link.wav").contains("outside"));
        }
        assert_eq!(refused("missing.wav"), "Voice file not found: missing.wav");
        assert!(refused("").contains("Voice file not found"));
        assert!(confine(None, "a.wav")
            .unwrap_err()
            .message()
            .contains("VOXPOOL_VOICES_DIR"));
    }
}
