//! Stored pronunciations: `POST/GET /v1/audio/pronunciations`,
//! `GET/DELETE /v1/audio/pronunciations/{id}`. A word stored here is read with its
//! phonemes by every speech request (and `/v1/audio/phonemize`) in its language,
//! instead of an inline `[word](/phonemes/)` in each request.

use std::sync::Arc;

use poem::web::Data;
// poem-openapi recognises path parameters by the type's name, `Path`.
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::ApiKey;
use super::error::ApiError;
use super::{ApiTags, AppState};
use crate::engine::kokoro::vocab;
use crate::store::{NewPronunciation, PronunciationRow, PRONUNCIATION_ID_PREFIX};
use crate::synthesis::unknown_symbols;
use crate::text::Language;

/// Longest word, in characters.
pub const MAX_WORD_CHARS: usize = 100;
/// Longest phoneme string, in symbols (Kokoro's context holds 510 tokens).
pub const MAX_PHONEME_CHARS: usize = 510;

/// One stored pronunciation.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct Pronunciation {
    /// `pron_…`.
    pub id: String,
    /// Always `audio.pronunciation`.
    pub object: String,
    /// The word as last given; it matches whatever its case.
    pub word: String,
    /// Kokoro phonemes (v1.0 vocabulary) the word is read as.
    pub phonemes: String,
    /// The Kokoro language code the entry holds in (`a`, `b`, `e`, `f`, `h`, `i`,
    /// `j`, `p`, `z`).
    pub language: String,
    /// The model id the entry is limited to; null: every model.
    #[oai(nullable)]
    pub model: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last change of its phonemes.
    pub updated_at: i64,
}

impl From<PronunciationRow> for Pronunciation {
    fn from(row: PronunciationRow) -> Self {
        Self {
            id: row.id,
            object: "audio.pronunciation".into(),
            word: row.word,
            phonemes: row.phonemes,
            language: row.language,
            model: row.model,
            created_at: row.created_at.timestamp(),
            updated_at: row.updated_at.timestamp(),
        }
    }
}

#[derive(Object)]
pub struct PronunciationList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Pronunciation>,
}

/// What `DELETE /v1/audio/pronunciations/{id}` answers.
#[derive(Object)]
pub struct DeletedPronunciation {
    pub id: String,
    /// Always `audio.pronunciation.deleted`.
    pub object: String,
    pub deleted: bool,
}

/// Request body of `POST /v1/audio/pronunciations`.
#[derive(Object)]
#[oai(deny_unknown_fields)]
struct CreatePronunciationRequest {
    /// The word, 1 to 100 characters on one line; matched whatever its case. In
    /// Japanese and Mandarin, the written form as it appears in the text.
    word: String,
    /// Kokoro phonemes (v1.0 vocabulary, at most 510 symbols), as
    /// `POST /v1/audio/phonemize` writes them.
    phonemes: String,
    /// The language the word is read in: a Kokoro code (`a`, `b`, `e`, `f`, `h`,
    /// `i`, `j`, `p`, `z`) or a tag such as `en-us` or `ja`.
    language: String,
    /// Limit the entry to one model (an id or alias; an unknown one is refused with
    /// 400); default: every model.
    model: Option<String>,
}

/// A stored pronunciation: 201 when the word was new, 200 when the entry for the
/// same word (whatever its case), language and model was updated, keeping its id.
#[derive(ApiResponse)]
enum SavedPronunciation {
    /// A new entry.
    #[oai(status = 201)]
    Created(Json<Pronunciation>),
    /// The word's existing entry, with the new phonemes.
    #[oai(status = 200)]
    Updated(Json<Pronunciation>),
}

pub struct PronunciationsApi;

#[OpenApi(tag = "ApiTags::Audio")]
impl PronunciationsApi {
    /// Store how a word is read: every later speech request (and
    /// `/v1/audio/phonemize`) in that language reads it with these phonemes, on
    /// every replica within a few seconds. Storing the same word again (whatever
    /// its case) for the same language and model replaces its phonemes. Needs an
    /// admin key where keys are in use.
    #[oai(
        path = "/v1/audio/pronunciations",
        method = "post",
        operation_id = "createPronunciation"
    )]
    async fn create(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        body: Json<CreatePronunciationRequest>,
    ) -> Result<SavedPronunciation, ApiError> {
        let body = body.0;
        let word = check_word(&body.word)?;
        let phonemes = check_phonemes(&body.phonemes)?;
        let language = parse_language(&body.language)?;
        let model = match body.model.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(
                state
                    .pool
                    .registry()
                    .resolve(name)
                    .map(|spec| spec.id.clone())
                    .ok_or_else(|| {
                        ApiError::invalid_code(
                            "model",
                            "model_not_found",
                            format!(
                                "The model '{}' does not exist",
                                name.chars().take(100).collect::<String>()
                            ),
                        )
                    })?,
            ),
        };
        let (row, created) = state
            .store
            .upsert_pronunciation(NewPronunciation {
                word,
                phonemes,
                language: language.code(),
                model: model.as_deref(),
            })
            .await?;
        tracing::info!(
            pronunciation = %row.id,
            language = %row.language,
            created,
            "pronunciation stored"
        );
        refresh(&state).await;
        Ok(if created {
            SavedPronunciation::Created(Json(row.into()))
        } else {
            SavedPronunciation::Updated(Json(row.into()))
        })
    }

    /// List stored pronunciations by word, of one language with `?language=`
    /// (a code or tag).
    #[oai(
        path = "/v1/audio/pronunciations",
        method = "get",
        operation_id = "listPronunciations"
    )]
    async fn list(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        language: Query<Option<String>>,
    ) -> Result<Json<PronunciationList>, ApiError> {
        let language = language.0.as_deref().map(parse_language).transpose()?;
        let rows = state
            .store
            .pronunciations(language.map(Language::code))
            .await?;
        Ok(Json(PronunciationList {
            object: "list".into(),
            data: rows.into_iter().map(Pronunciation::from).collect(),
        }))
    }

    /// One stored pronunciation.
    #[oai(
        path = "/v1/audio/pronunciations/:id",
        method = "get",
        operation_id = "getPronunciation"
    )]
    async fn get(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<Pronunciation>, ApiError> {
        let id = id.0;
        if !id.starts_with(PRONUNCIATION_ID_PREFIX) {
            return Err(not_found(&id));
        }
        match state.store.pronunciation(&id).await? {
            Some(row) => Ok(Json(row.into())),
            None => Err(not_found(&id)),
        }
    }

    /// Delete a stored pronunciation: the word is read by the G2P again. Needs an
    /// admin key where keys are in use.
    #[oai(
        path = "/v1/audio/pronunciations/:id",
        method = "delete",
        operation_id = "deletePronunciation"
    )]
    async fn delete(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<DeletedPronunciation>, ApiError> {
        let id = id.0;
        if !id.starts_with(PRONUNCIATION_ID_PREFIX)
            || !state.store.delete_pronunciation(&id).await?
        {
            return Err(not_found(&id));
        }
        tracing::info!(pronunciation = %id, "pronunciation deleted");
        refresh(&state).await;
        Ok(Json(DeletedPronunciation {
            id,
            object: "audio.pronunciation.deleted".into(),
            deleted: true,
        }))
    }
}

/// Re-read the table into the synthesizer's snapshot after a change here, so this
/// server's next request reads it; a failure leaves it to the periodic refresh.
async fn refresh(state: &AppState) {
    if let Err(e) = state.speech.reload_lexicon().await {
        tracing::warn!(error = %e, "cannot re-read stored pronunciations after a change");
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        Some("id"),
        "pronunciation_not_found",
        format!("No pronunciation with id '{id}'"),
    )
}

/// The word, trimmed: 1 to [`MAX_WORD_CHARS`] characters, no line break or other
/// control character.
fn check_word(word: &str) -> Result<&str, ApiError> {
    let word = word.trim();
    let chars = word.chars().count();
    if chars == 0 || chars > MAX_WORD_CHARS || word.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            Some("word"),
            format!("'word' must be 1 to {MAX_WORD_CHARS} characters on one line"),
        ));
    }
    Ok(word)
}

/// The phonemes, trimmed: 1 to [`MAX_PHONEME_CHARS`] symbols, all in Kokoro's
/// v1.0 vocabulary.
fn check_phonemes(phonemes: &str) -> Result<&str, ApiError> {
    let phonemes = phonemes.trim();
    let chars = phonemes.chars().count();
    if chars == 0 || chars > MAX_PHONEME_CHARS {
        return Err(ApiError::invalid(
            Some("phonemes"),
            format!("'phonemes' must be 1 to {MAX_PHONEME_CHARS} symbols"),
        ));
    }
    if let Err(unknown) = vocab::encode(vocab::v1_0(), phonemes) {
        return Err(ApiError::invalid_code(
            "phonemes",
            "unknown_phonemes",
            unknown_symbols(&unknown),
        ));
    }
    Ok(phonemes)
}

/// The language of a code or tag, refused as speech requests refuse it.
fn parse_language(language: &str) -> Result<Language, ApiError> {
    crate::text::g2p::parse_language(language)
        .map_err(|e| ApiError::invalid_code("language", "unsupported_language", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_phonemes_are_checked() {
        assert_eq!(check_word("  Kokoro ").unwrap(), "Kokoro");
        assert!(check_word("   ").is_err());
        assert!(check_word("two\nlines").is_err());
        assert!(check_word(&"x".repeat(MAX_WORD_CHARS + 1)).is_err());
        assert!(check_word(&"é".repeat(MAX_WORD_CHARS)).is_ok());
        assert_eq!(check_phonemes("kˈOkəɹO").unwrap(), "kˈOkəɹO");
        assert!(check_phonemes("").is_err());
        assert!(check_phonemes(&"a".repeat(MAX_PHONEME_CHARS + 1)).is_err());
        let e = check_phonemes("k#O§").unwrap_err();
        assert!(
            e.message().contains("'#' (U+0023), '§' (U+00A7)"),
            "{}",
            e.message()
        );
        assert_eq!(parse_language("en-US").unwrap().code(), "a");
        assert!(parse_language("xx").is_err());
    }
}
