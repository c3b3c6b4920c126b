//! `POST /v1/audio/speech` (OpenAI's text-to-speech endpoint) and
//! `POST /v1/audio/phonemize`: parse, call the synthesis layer, answer.

mod request;
mod response;

use std::sync::Arc;
use std::time::Instant;

use poem::web::Data;
use poem::Body;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{Object, OpenApi};

use super::auth::ApiKey;
use super::error::ApiError;
use super::{ApiTags, AppState};
use crate::store::NewUsage;
use crate::synthesis::{captions, Outcome, Speech, SpeechRequest};
use crate::text::Language;

pub use request::{field_error, CreateSpeechRequest, MAX_INPUT_CHARS};
use request::{one_language, CaptionsFormat, LangCode, LanguageCode};
pub use response::{AudioBody, SpeechResponse};

/// Request body of `POST /v1/audio/phonemize`.
#[derive(Object)]
#[oai(deny_unknown_fields)]
struct PhonemizeRequest {
    /// Text to convert.
    #[oai(validator(min_length = 1, max_length = 4096))]
    input: String,
    /// The language to read `input` in: a Kokoro code (`a`, `b`, `e`, `f`, `h`,
    /// `i`, `j`, `p`, `z`) or a tag such as `ja`. Default: the voice's language,
    /// else `a` (American English).
    language: Option<LanguageCode>,
    /// Kokoro-FastAPI's name for `language`.
    lang_code: Option<LangCode>,
    /// A Kokoro voice whose language (its first letter) applies when no language
    /// is given.
    voice: Option<String>,
}

/// Kokoro phonemes for a text, and their token ids.
#[derive(Object)]
struct PhonemizeResponse {
    /// Phonemes in Kokoro's alphabet; edit and send back with `input_format: "phonemes"`.
    phonemes: String,
    /// Token ids of the phonemes in the Kokoro v1.0 vocabulary.
    tokens: Vec<u32>,
}

pub struct SpeechApi;

#[OpenApi(tag = "ApiTags::Audio")]
impl SpeechApi {
    /// Generate audio from text.
    ///
    /// OpenAI's speech endpoint. The model is loaded on first use and unloaded
    /// after its idle timeout.
    #[oai(
        path = "/v1/audio/speech",
        method = "post",
        operation_id = "createSpeech"
    )]
    async fn create_speech(
        &self,
        _key: ApiKey,
        req: &poem::Request,
        state: Data<&Arc<AppState>>,
        body: Json<CreateSpeechRequest>,
    ) -> Result<SpeechResponse, ApiError> {
        let started = Instant::now();
        let (request, sse) = body.0.validate()?;
        let peer = super::conn::peer_of(req);
        let (speech, usage) = start_speech(&state, &request, peer, started).await?;
        let streams = speech.streams;
        let (resp, finished) = respond(&state, speech, &request, sse, peer);
        let record = record_outcome(state.store.clone(), usage, finished, started);
        // A whole-file response is complete already: its row is written before it is
        // sent. A stream's row follows its last chunk.
        if streams {
            state.background.spawn(record);
        } else {
            record.await;
        }
        Ok(resp)
    }

    /// Generate audio with captions.
    ///
    /// voxpool extension. Takes the body of `POST /v1/audio/speech` (Kokoro only)
    /// and answers the whole audio file, base64, with every word and when it is
    /// spoken (seconds from the start, `speed` included); with `captions_format`
    /// `vtt` or `srt`, also captions ready for a video.
    #[oai(
        path = "/v1/audio/speech/captions",
        method = "post",
        operation_id = "createSpeechCaptions"
    )]
    async fn create_captions(
        &self,
        _key: ApiKey,
        req: &poem::Request,
        state: Data<&Arc<AppState>>,
        body: Json<CreateCaptionsRequest>,
    ) -> Result<Json<CaptionsResponse>, ApiError> {
        use base64::Engine as _;
        let started = Instant::now();
        let body = body.0;
        let captions_format = body.captions_format.unwrap_or(CaptionsFormat::Json);
        let request = body.speech.validate_for_captions()?;
        let peer = super::conn::peer_of(req);
        let (speech, usage) = start_speech(&state, &request, peer, started).await?;
        let Speech {
            first,
            mut rest,
            finished,
            ..
        } = speech;
        let (mut audio, mut words) = (first.audio, first.words);
        let mut failed = None;
        while let Some(piece) = rest.recv().await {
            match piece {
                Ok(piece) => {
                    audio.extend(piece.audio);
                    words.extend(piece.words);
                }
                Err(e) => failed = Some(ApiError::from(&*e)),
            }
        }
        let outcome = record_outcome(state.store.clone(), usage, finished, started).await;
        if let Some(e) = failed {
            return Err(e);
        }
        let captions = match captions_format {
            CaptionsFormat::Json => None,
            CaptionsFormat::Vtt => Some(captions::vtt(&words)),
            CaptionsFormat::Srt => Some(captions::srt(&words)),
        };
        Ok(Json(CaptionsResponse {
            audio: base64::engine::general_purpose::STANDARD.encode(&audio),
            format: request.format.name().to_string(),
            duration: outcome.audio_seconds,
            words: words
                .into_iter()
                .map(|w| CaptionWord {
                    word: w.word,
                    start: round_ms(w.start),
                    end: round_ms(w.end),
                })
                .collect(),
            captions,
        }))
    }
}

/// Seconds to the millisecond.
fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Request body of `POST /v1/audio/speech/captions`.
#[derive(Object)]
struct CreateCaptionsRequest {
    /// `json` (the words only, default), `vtt` (WebVTT) or `srt` (SubRip) for
    /// `captions` in the answer too.
    captions_format: Option<CaptionsFormat>,
    #[oai(flatten)]
    speech: CreateSpeechRequest,
}

/// A word and when it is spoken.
#[derive(Object)]
struct CaptionWord {
    word: String,
    /// Seconds from the start of the audio.
    start: f64,
    end: f64,
}

/// Audio with its words.
#[derive(Object)]
struct CaptionsResponse {
    /// The audio file in `format`, base64.
    audio: String,
    /// The audio's format (`response_format`).
    format: String,
    /// Seconds of audio.
    duration: f64,
    /// Every word in order, with its times.
    words: Vec<CaptionWord>,
    /// WebVTT or SRT, with `captions_format` `vtt` or `srt`.
    captions: Option<String>,
}

/// Speak `request`: its speech, and its usage row to finish. A request that fails
/// before its first audio leaves its row now.
async fn start_speech(
    state: &AppState,
    request: &SpeechRequest,
    peer: Option<std::net::SocketAddr>,
    started: Instant,
) -> Result<(Speech, NewUsage), ApiError> {
    let mut usage = NewUsage {
        key_id: None,
        model: request.model.clone(),
        voice: request.voice.chars().take(200).collect(),
        characters: request.input.chars().count(),
        audio_seconds: 0.0,
        latency_ms: 0,
        status: 200,
    };
    // Every request that reached the synthesis layer leaves a usage row, failures
    // included; a streamed response's row is written when its last chunk is spoken.
    match state.speech.speak(request, state.client_gone(peer)).await {
        Ok(speech) => {
            usage.model = speech.model.clone();
            Ok((speech, usage))
        }
        Err(e) => {
            let err = ApiError::from(&*e);
            usage.status = err.status();
            usage.latency_ms = millis_since(started);
            if let Err(e) = state.store.record_usage(&usage).await {
                tracing::error!(error = %e, "could not record usage");
            }
            Err(err)
        }
    }
}

/// Write the usage row of speech that has started, once it has ended.
async fn record_outcome(
    store: crate::store::Store,
    mut usage: NewUsage,
    finished: tokio::task::JoinHandle<Outcome>,
    started: Instant,
) -> Outcome {
    let outcome = finished.await.unwrap_or_else(|e| Outcome {
        audio_seconds: 0.0,
        error: Some(Arc::new(crate::synthesis::SpeechError::Internal(
            e.to_string(),
        ))),
    });
    usage.audio_seconds = outcome.audio_seconds;
    usage.status = outcome
        .error
        .as_deref()
        .map_or(200, |e| ApiError::from(e).status());
    usage.latency_ms = millis_since(started);
    if let Err(e) = store.record_usage(&usage).await {
        tracing::error!(error = %e, "could not record usage");
    }
    outcome
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The response for speech under way, and the synthesis task.
fn respond(
    state: &AppState,
    speech: Speech,
    request: &SpeechRequest,
    sse: bool,
    peer: Option<std::net::SocketAddr>,
) -> (SpeechResponse, tokio::task::JoinHandle<Outcome>) {
    let Speech {
        first,
        rest,
        outcome,
        finished,
        ..
    } = speech;
    if sse {
        let input_tokens = request.input.chars().count();
        let body = response::sse_events(first, rest, outcome, input_tokens);
        let resp = SpeechResponse::Audio(AudioBody::Events(Binary(Body::from_bytes_stream(body))));
        return (resp, finished);
    }
    drop(outcome);
    let connections = state.connections.clone();
    let cut = move || {
        if let Some(peer) = peer {
            connections.abort(peer);
        }
    };
    let body = response::audio_stream(first, rest, cut);
    let resp = SpeechResponse::Audio(AudioBody::new(
        request.format,
        Body::from_bytes_stream(body),
    ));
    (resp, finished)
}

pub struct PhonemizeApi;

#[OpenApi(tag = "ApiTags::Audio")]
impl PhonemizeApi {
    /// Convert text to Kokoro phonemes.
    ///
    /// Shows how a text will be pronounced; the phonemes can be edited and spoken
    /// with `input_format: "phonemes"` on `/v1/audio/speech`.
    #[oai(
        path = "/v1/audio/phonemize",
        method = "post",
        operation_id = "phonemize"
    )]
    async fn phonemize(
        &self,
        _key: ApiKey,
        state: Data<&Arc<AppState>>,
        body: Json<PhonemizeRequest>,
    ) -> Result<Json<PhonemizeResponse>, ApiError> {
        let body = body.0;
        let language = one_language(body.language, body.lang_code)?
            .or_else(|| body.voice.as_deref().and_then(Language::of_voice))
            .unwrap_or(Language::AmericanEnglish);
        let (phonemes, tokens) = state
            .speech
            .phonemize(body.input, language)
            .await
            .map_err(|e| ApiError::from(&e))?;
        Ok(Json(PhonemizeResponse { phonemes, tokens }))
    }
}
