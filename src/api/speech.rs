//! `POST /v1/audio/speech`: OpenAI's text-to-speech endpoint.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use poem::web::Data;
use poem::Body;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ParseResult, Type};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, ResponseContent, Union};
use serde_json::Value;
use tracing::Instrument;

use super::error::ApiError;
use super::{ApiTags, AppState};
use crate::audio::{self, AudioFormat};
use crate::engine::kokoro::vocab;
use crate::engine::{
    AudioChunk, ChunkSink, ClonedVoice, EngineError, SpeechJob, TtsEngine, OPENAI_ALIASES,
};
use crate::store::NewUsage;
use crate::text::{g2p, split_sentences};

/// Longest `input` accepted, in characters (OpenAI's limit).
pub const MAX_INPUT_CHARS: usize = 4096;
const MIN_SPEED: f64 = 0.25;
const MAX_SPEED: f64 = 4.0;

/// Request body of `POST /v1/audio/speech` (as in OpenAI's API reference).
#[derive(Object)]
#[oai(rename = "CreateSpeechRequest")]
#[allow(dead_code)] // schema for the OpenAPI document; requests are parsed by `SpeechBody`
struct CreateSpeechRequest {
    /// `kokoro`, `chatterbox-turbo`, or `tts-1` / `tts-1-hd` / `gpt-4o-mini-tts` for the
    /// default model.
    model: String,
    /// The text to speak.
    #[oai(validator(min_length = 1, max_length = 4096))]
    input: String,
    /// A voice of the model (OpenAI names map to built-in voices), or `{"id": …}`.
    voice: VoiceParam,
    /// Audio format; default `mp3`.
    response_format: Option<ResponseFormat>,
    /// Speaking rate from 0.25 to 4.0; default 1.0.
    #[oai(validator(minimum(value = "0.25"), maximum(value = "4.0")))]
    speed: Option<f64>,
    /// Style instructions; used where the model can, ignored otherwise.
    instructions: Option<String>,
    /// `audio` (the whole file, chunked) or `sse` (server-sent events).
    stream_format: Option<StreamFormat>,
    /// voxpool extension: `phonemes` when `input` is already in Kokoro's phoneme
    /// alphabet (see `POST /v1/audio/phonemize`), to fix a word's pronunciation.
    /// Default `text`.
    input_format: Option<InputFormat>,
}

#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
enum InputFormat {
    Text,
    Phonemes,
}

#[derive(Union)]
#[oai(one_of)]
#[allow(dead_code)]
enum VoiceParam {
    Name(String),
    Id(VoiceRef),
}

/// A stored voice by id.
#[derive(Object)]
#[allow(dead_code)]
struct VoiceRef {
    id: String,
}

#[derive(Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
enum ResponseFormat {
    Mp3,
    Opus,
    Aac,
    Flac,
    Wav,
    Pcm,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
enum StreamFormat {
    Audio,
    Sse,
}

/// The JSON body as sent, described by [`CreateSpeechRequest`] in the OpenAPI document
/// and validated by [`SpeechParams::from_json`], which names the offending field.
pub struct SpeechBody(Value);

impl Type for SpeechBody {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        CreateSpeechRequest::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        CreateSpeechRequest::schema_ref()
    }

    fn register(registry: &mut Registry) {
        CreateSpeechRequest::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromJSON for SpeechBody {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Ok(Self(value.unwrap_or(Value::Null)))
    }
}

/// A validated speech request.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechParams {
    pub model: String,
    pub input: String,
    pub voice: String,
    pub format: AudioFormat,
    pub speed: f32,
    pub instructions: Option<String>,
    pub sse: bool,
    /// `input` is Kokoro phonemes rather than text.
    pub phonemes: bool,
}

const FIELDS: [&str; 8] = [
    "input_format",
    "model",
    "input",
    "voice",
    "response_format",
    "speed",
    "instructions",
    "stream_format",
];

fn string_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(
            Some(name),
            format!("'{name}' must be a string"),
        )),
    }
}

impl SpeechParams {
    pub fn from_json(value: &Value) -> Result<Self, ApiError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ApiError::invalid(None, "The request body must be a JSON object"))?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                Some(unknown),
                format!("Unrecognized request argument supplied: {unknown}"),
            ));
        }
        let model = string_field(obj, "model")?
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| ApiError::invalid(Some("model"), "you must provide a model parameter"))?
            .trim()
            .to_string();
        let input = string_field(obj, "input")?.ok_or_else(|| {
            ApiError::invalid(Some("input"), "Missing required parameter: 'input'")
        })?;
        let chars = input.chars().count();
        if input.trim().is_empty() {
            return Err(ApiError::invalid_code(
                "input",
                "string_below_min_length",
                "'input' must contain text to speak",
            ));
        }
        if chars > MAX_INPUT_CHARS {
            return Err(ApiError::invalid_code(
                "input",
                "string_above_max_length",
                format!(
                    "'input' is too long: {chars} characters, the maximum is {MAX_INPUT_CHARS}"
                ),
            ));
        }
        let voice = match obj.get("voice") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::Object(v)) => match v.get("id") {
                Some(Value::String(id)) if !id.trim().is_empty() && v.len() == 1 => {
                    id.trim().to_string()
                }
                _ => {
                    return Err(ApiError::invalid(
                        Some("voice"),
                        "'voice' must be a voice name or an object {\"id\": \"…\"}",
                    ))
                }
            },
            None | Some(Value::Null) => {
                return Err(ApiError::invalid(
                    Some("voice"),
                    "Missing required parameter: 'voice'",
                ))
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    Some("voice"),
                    "'voice' must be a voice name or an object {\"id\": \"…\"}",
                ))
            }
        };
        let format = match string_field(obj, "response_format")? {
            None => AudioFormat::Mp3,
            Some(f) => AudioFormat::from_name(f).ok_or_else(|| {
                ApiError::invalid(
                    Some("response_format"),
                    format!(
                        "'{f}' is not one of mp3, opus, aac, flac, wav, pcm - 'response_format'"
                    ),
                )
            })?,
        };
        let speed = match obj.get("speed") {
            None | Some(Value::Null) => 1.0,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(s) if (MIN_SPEED..=MAX_SPEED).contains(&s) => s,
                _ => {
                    return Err(ApiError::invalid(
                        Some("speed"),
                        format!("'speed' must be between {MIN_SPEED} and {MAX_SPEED}, got {n}"),
                    ))
                }
            },
            Some(_) => return Err(ApiError::invalid(Some("speed"), "'speed' must be a number")),
        };
        let instructions = string_field(obj, "instructions")?.map(String::from);
        if instructions
            .as_ref()
            .is_some_and(|i| i.chars().count() > MAX_INPUT_CHARS)
        {
            return Err(ApiError::invalid_code(
                "instructions",
                "string_above_max_length",
                format!("'instructions' is too long; the maximum is {MAX_INPUT_CHARS} characters"),
            ));
        }
        let sse = match string_field(obj, "stream_format")? {
            None | Some("audio") => false,
            Some("sse") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    Some("stream_format"),
                    format!("'{other}' is not one of audio, sse - 'stream_format'"),
                ))
            }
        };
        let phonemes = match string_field(obj, "input_format")? {
            None | Some("text") => false,
            Some("phonemes") => {
                if let Err(unknown) = vocab::encode(vocab::v1_0(), input) {
                    return Err(unknown_symbols("input", &unknown));
                }
                true
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    Some("input_format"),
                    format!("'{other}' is not one of text, phonemes - 'input_format'"),
                ))
            }
        };
        Ok(Self {
            phonemes,
            model,
            input: input.to_string(),
            voice,
            format,
            speed: speed as f32,
            instructions,
            sse,
        })
    }
}

fn unknown_symbols(param: &str, unknown: &[char]) -> ApiError {
    let list: Vec<String> = unknown
        .iter()
        .map(|c| format!("'{c}' (U+{:04X})", *c as u32))
        .collect();
    ApiError::invalid_code(
        param,
        "unknown_phonemes",
        format!(
            "Symbols not in Kokoro's phoneme vocabulary: {}",
            list.join(", ")
        ),
    )
}

/// Audio in the requested format.
#[derive(ResponseContent)]
pub enum AudioBody {
    #[oai(content_type = "audio/mpeg")]
    Mp3(Binary<Body>),
    #[oai(content_type = "audio/ogg")]
    Opus(Binary<Body>),
    #[oai(content_type = "audio/aac")]
    Aac(Binary<Body>),
    #[oai(content_type = "audio/flac")]
    Flac(Binary<Body>),
    #[oai(content_type = "audio/wav")]
    Wav(Binary<Body>),
    /// Raw 24 kHz signed 16-bit little-endian mono.
    #[oai(content_type = "audio/pcm")]
    Pcm(Binary<Body>),
    /// With `stream_format: "sse"`: `speech.audio.delta` events carrying base64 audio
    /// in the requested format, then one `speech.audio.done` with `usage`.
    #[oai(content_type = "text/event-stream")]
    Events(Binary<Body>),
}

impl AudioBody {
    fn new(format: AudioFormat, bytes: Body) -> Self {
        let b = Binary(bytes);
        match format {
            AudioFormat::Mp3 => Self::Mp3(b),
            AudioFormat::Opus => Self::Opus(b),
            AudioFormat::Aac => Self::Aac(b),
            AudioFormat::Flac => Self::Flac(b),
            AudioFormat::Wav => Self::Wav(b),
            AudioFormat::Pcm => Self::Pcm(b),
        }
    }
}

#[derive(ApiResponse)]
pub enum SpeechResponse {
    /// The audio file.
    #[oai(status = 200)]
    Audio(AudioBody),
}

/// Request body of `POST /v1/audio/phonemize`.
#[derive(Object)]
#[oai(deny_unknown_fields)]
struct PhonemizeRequest {
    /// Text to convert.
    #[oai(validator(min_length = 1, max_length = 4096))]
    input: String,
    /// `a` (American English, default) or `b` (British English).
    language: Option<String>,
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
        req: &poem::Request,
        state: Data<&Arc<AppState>>,
        body: Json<SpeechBody>,
    ) -> Result<SpeechResponse, ApiError> {
        let started = Instant::now();
        let raw = &body.0 .0;
        let peer = super::conn::peer_of(req);
        let result = match SpeechParams::from_json(raw) {
            Ok(params) => synthesize_request(&state, &params, peer).await,
            Err(e) => Err(e),
        };
        let complete = matches!(&result, Ok((_, Done::Ready(_), _)));
        // Every request that reached the handler leaves a usage row, failures included;
        // a streamed response's row is written when its last chunk is spoken.
        let field = |name: &str| raw.get(name).and_then(Value::as_str).unwrap_or_default();
        let voice = match raw.get("voice") {
            Some(Value::Object(v)) => v.get("id").and_then(Value::as_str).unwrap_or_default(),
            _ => field("voice"),
        };
        let mut usage = NewUsage {
            key_id: None,
            model: field("model").to_string(),
            voice: voice.chars().take(200).collect(),
            characters: field("input").chars().count(),
            audio_seconds: 0.0,
            latency_ms: 0,
            status: 200,
        };
        match result {
            Ok((resp, done, model)) => {
                let done = async move {
                    match done {
                        Done::Ready(outcome) => outcome,
                        Done::Streaming(handle) => handle.await.unwrap_or(Outcome::FAILED),
                    }
                };
                usage.model = model;
                let store = state.store.clone();
                let record = async move {
                    let outcome = done.await;
                    usage.audio_seconds = outcome.audio_seconds;
                    usage.status = outcome.status;
                    usage.latency_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    if let Err(e) = store.record_usage(&usage).await {
                        tracing::error!(error = %e, "could not record usage");
                    }
                };
                // A whole-file response is complete already: its row is written before
                // it is sent. A stream's row follows its last chunk.
                if complete {
                    record.await;
                } else {
                    state.background.spawn(record);
                }
                Ok(resp)
            }
            Err(e) => {
                usage.status = error_status(&e);
                usage.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                if let Err(e) = state.store.record_usage(&usage).await {
                    tracing::error!(error = %e, "could not record usage");
                }
                Err(e)
            }
        }
    }
}

/// How a response ended: seconds of audio spoken, and the status for the usage row
/// (200; 499 when the client left early; 500 when synthesis failed mid-stream).
#[derive(Debug, Clone, Copy)]
struct Outcome {
    audio_seconds: f64,
    status: u16,
}

impl Outcome {
    /// What a synthesis task that died (a panic) leaves for the usage row.
    const FAILED: Self = Self {
        audio_seconds: 0.0,
        status: 500,
    };
}

/// After the headers, a failure can only cut the body short: the error the body
/// stream ends with.
fn mid_stream_error(e: &ApiError) -> std::io::Error {
    std::io::Error::other(format!(
        "synthesis failed mid-stream (status {})",
        error_status(e)
    ))
}

/// How a response ends: already known (a whole file), or when its stream does.
enum Done {
    Ready(Outcome),
    Streaming(tokio::task::JoinHandle<Outcome>),
}

/// Resolve the model and speak: the response, what its end will report, the model id.
async fn synthesize_request(
    state: &AppState,
    params: &SpeechParams,
    peer: Option<std::net::SocketAddr>,
) -> Result<(SpeechResponse, Done, String), ApiError> {
    let spec = state
        .pool
        .registry()
        .resolve(&params.model)
        .ok_or_else(|| ApiError::unknown_model(&params.model))?;
    let mut model = spec.id.clone();
    // A cloned voice belongs to the model that cloned it; OpenAI's model names
    // follow the voice.
    let cloned = state.voices.resolve(state, &params.voice).await?;
    if let Some(voice) = &cloned {
        if OPENAI_ALIASES.contains(&params.model.as_str()) {
            model = voice.model.clone();
        } else if voice.model != model {
            return Err(ApiError::invalid(
                Some("voice"),
                format!(
                    "Voice '{}' was cloned for model {}; use that model (or tts-1)",
                    params.voice, voice.model
                ),
            ));
        }
    }
    let cloned = cloned.map(|v| v.cloned);
    let span = tracing::info_span!(
        "speech",
        model = %model,
        voice = %params.voice,
        characters = params.input.chars().count(),
        format = params.format.name(),
        audio_seconds = tracing::field::Empty,
    );
    let (resp, done) = speak(state, &model, params, cloned, peer)
        .instrument(span.clone())
        .await?;
    Ok((resp, done, model))
}

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
        state: Data<&Arc<AppState>>,
        body: Json<PhonemizeRequest>,
    ) -> Result<Json<PhonemizeResponse>, ApiError> {
        let language = body.0.language.unwrap_or_else(|| "a".into());
        if !g2p::LANGUAGES.contains(&language.as_str()) {
            return Err(ApiError::invalid(
                Some("language"),
                g2p::TextError::UnsupportedLanguage(language).to_string(),
            ));
        }
        let input = body.0.input;
        // The phonemizer's tables belong to Kokoro and live in its worker.
        let lease = state.pool.lease(PHONEMIZER_MODEL).await?;
        let phonemes =
            tokio::task::spawn_blocking(move || lease.engine().phonemize(&input, &language))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "phonemizer task failed");
                    ApiError::internal("-")
                })?
                .map_err(ApiError::from)?;
        let tokens =
            crate::engine::kokoro::vocab::encode(crate::engine::kokoro::vocab::v1_0(), &phonemes)
                .unwrap_or_default();
        Ok(Json(PhonemizeResponse { phonemes, tokens }))
    }
}

pub struct PhonemizeApi;

/// The model whose engine phonemizes.
const PHONEMIZER_MODEL: &str = "kokoro";

/// Lease the model, then speak sentence by sentence on a blocking thread, encoding
/// as it goes: the request path without HTTP. The response is returned once the first
/// bytes exist (an error in the first sentence is still an HTTP error); the rest
/// follows as it is spoken. A client that leaves stops the synthesis at the next
/// sentence, which releases the lease.
async fn speak(
    state: &AppState,
    model: &str,
    params: &SpeechParams,
    cloned: Option<ClonedVoice>,
    peer: Option<std::net::SocketAddr>,
) -> Result<(SpeechResponse, Done), ApiError> {
    if !params.format.is_supported() {
        return Err(audio::AudioError::Unsupported(params.format).into());
    }
    let started = Instant::now();
    let chunks = split_sentences(&params.input);
    // A place among the requests the model serves at once (or 429 when its queue
    // is full), held until the synthesis ends.
    let admitted = state.admit(model, peer).await?;
    let lease = state.pool.lease(model).await?;
    if cloned.is_none() && !lease.engine().accepts_voice(&params.voice) {
        return Err(unknown_voice(model, &params.voice, lease.engine()));
    }
    let (voice, speed, format, phonemes) = (
        params.voice.clone(),
        params.speed,
        params.format,
        params.phonemes,
    );
    let span = tracing::Span::current();
    let mut encoder =
        audio::stream::StreamEncoder::new(format, lease.engine().sample_rate(), chunks.len())
            .map_err(ApiError::from)?;
    let streams = encoder.streams();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, ApiError>>(1);
    // The outcome, for the final SSE event (sent before the bytes channel closes).
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Outcome>();
    // Synthesis is CPU-bound: keep it off the async reactor. The lease moves along and
    // is dropped when the last chunk is sent or the client is gone.
    let model_label = model.to_string();
    let time_limit = state.config.synthesis_timeout;
    let pool = state.pool.clone();
    let done = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let _admitted = admitted;
        let synthesis_started = Instant::now();
        let engine = lease.engine();
        let rate = engine.sample_rate();
        let mut samples = 0usize;
        let mut done_tx = Some(done_tx);
        let mut outcome = |samples: usize, status: u16| {
            let audio_seconds = samples as f64 / f64::from(rate.max(1));
            tracing::Span::current().record("audio_seconds", audio_seconds);
            metrics::counter!("voxpool_speech_audio_seconds_total", "model" => model_label.clone())
                .increment(audio_seconds.round() as u64);
            metrics::histogram!("voxpool_synthesis_seconds", "model" => model_label.clone())
                .record(synthesis_started.elapsed().as_secs_f64());
            let outcome = Outcome {
                audio_seconds,
                status,
            };
            if let Some(tx) = done_tx.take() {
                let _ = tx.send(outcome);
            }
            outcome
        };
        let job = SpeechJob {
            chunks,
            voice,
            speed,
            phonemes,
            cloned,
        };
        let total = job.chunks.len();
        let mut spoken_chunks = 0usize;
        // Set when the sink stops the job: the status the request ends with.
        let mut ended: Option<u16> = None;
        // A panic in an engine in this process fails this request only (one in a
        // worker comes back as `Panicked`); the model is reloaded for the next
        // ones in case the panic left it in a bad state.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut sink = ClientSink {
                client: &tx,
                on_chunk: |chunk: Result<AudioChunk, EngineError>| {
                    spoken_chunks += 1;
                    // The time limit is checked where more sentences would follow:
                    // before anything is sent it is a 504, later the stream is cut.
                    let more = spoken_chunks < total;
                    if let Some(limit) =
                        time_limit.filter(|l| more && synthesis_started.elapsed() > *l)
                    {
                        tracing::warn!(
                            limit_s = limit.as_secs(),
                            "synthesis stopped at its time limit"
                        );
                        let _ = tx.blocking_send(Err(ApiError::timeout(limit)));
                        ended = Some(504);
                        return false;
                    }
                    let bytes = chunk
                        .map_err(|e| speech_error(e, &pool, &model_label, &job.voice, engine))
                        .and_then(|audio| {
                            samples += audio.samples.len();
                            encoder.push(&audio.samples).map_err(ApiError::from)
                        });
                    match bytes {
                        Ok(bytes) if bytes.is_empty() => {}
                        Ok(bytes) => {
                            if tx.blocking_send(Ok(bytes)).is_err() {
                                tracing::info!("client went away; synthesis stopped");
                                ended = Some(499);
                                return false;
                            }
                        }
                        Err(e) => {
                            ended = Some(error_status(&e));
                            let _ = tx.blocking_send(Err(e));
                            return false;
                        }
                    }
                    true
                },
            };
            engine.synthesize_each(&job, &mut sink);
        }));
        if ended.is_none() && tx.is_closed() {
            tracing::info!("client went away; synthesis stopped");
            ended = Some(499);
        }
        if ran.is_err() {
            let e = speech_error(
                EngineError::Panicked,
                &pool,
                &model_label,
                &job.voice,
                engine,
            );
            ended = Some(error_status(&e));
            let _ = tx.blocking_send(Err(e));
        }
        if let Some(status) = ended {
            return outcome(samples, status);
        }
        match encoder.finish() {
            Ok(bytes) => {
                if !bytes.is_empty() && tx.blocking_send(Ok(bytes)).is_err() {
                    return outcome(samples, 499);
                }
                outcome(samples, 200)
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                outcome(samples, 500)
            }
        }
    });
    // The first bytes decide the status: an error before them is the response.
    let first = match rx.recv().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(e),
        None => Vec::new(),
    };
    metrics::histogram!("voxpool_time_to_first_audio_seconds", "model" => model.to_string())
        .record(started.elapsed().as_secs_f64());
    let done = if streams {
        Done::Streaming(done)
    } else {
        // A whole file is sent in one piece: synthesis has ended with it.
        Done::Ready(done.await.unwrap_or(Outcome::FAILED))
    };
    if params.sse {
        let input_tokens = params.input.chars().count();
        let body = sse_events(first, rx, done_rx, input_tokens);
        return Ok((
            SpeechResponse::Audio(AudioBody::Events(Binary(Body::from_bytes_stream(body)))),
            done,
        ));
    }
    drop(done_rx);
    // A failure after the status was sent cuts the connection: the client sees an
    // incomplete body, not a shorter file that looks whole.
    let connections = state.connections.clone();
    let rest = futures_util::stream::unfold(rx, move |mut rx| {
        let connections = connections.clone();
        async move {
            let item = rx.recv().await?.map_err(|e| {
                if let Some(peer) = peer {
                    connections.abort(peer);
                }
                mid_stream_error(&e)
            });
            Some((item, rx))
        }
    });
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    Ok((
        SpeechResponse::Audio(AudioBody::new(format, Body::from_bytes_stream(body))),
        done,
    ))
}

/// A speech request's audio on its way to the client: each chunk is encoded and
/// sent by `on_chunk`; the job is wanted while the client still listens.
struct ClientSink<'a, F> {
    client: &'a tokio::sync::mpsc::Sender<Result<Vec<u8>, ApiError>>,
    on_chunk: F,
}

impl<F: FnMut(Result<AudioChunk, EngineError>) -> bool> ChunkSink for ClientSink<'_, F> {
    fn send(&mut self, chunk: Result<AudioChunk, EngineError>) -> bool {
        (self.on_chunk)(chunk)
    }

    fn wanted(&self) -> bool {
        !self.client.is_closed()
    }
}

/// 404 for a voice the model does not have, naming some it has.
fn unknown_voice(model: &str, voice: &str, engine: &dyn TtsEngine) -> ApiError {
    let mut some = engine.voices();
    some.truncate(8);
    ApiError::not_found(
        Some("voice"),
        "voice_not_found",
        format!(
            "Voice '{voice}' is not available for model {model}; available voices include: {}",
            some.join(", ")
        ),
    )
}

/// What a failed chunk answers. A panic also has the model reloaded: the engine
/// may be left in a bad state.
fn speech_error(
    error: EngineError,
    pool: &crate::pool::ModelPool,
    model: &str,
    voice: &str,
    engine: &dyn TtsEngine,
) -> ApiError {
    match error {
        EngineError::UnknownVoice { .. } => unknown_voice(model, voice, engine),
        EngineError::Panicked => {
            tracing::error!("the engine panicked; the model will be reloaded");
            let (pool, model) = (pool.clone(), model.to_string());
            tokio::runtime::Handle::current().spawn(async move {
                let _ = pool.unload(&model).await;
            });
            ApiError::from(error)
        }
        other => ApiError::from(other),
    }
}

/// Output tokens reported in SSE `usage`: one per 20 ms of audio.
const AUDIO_TOKEN_SECONDS: f64 = 0.02;

/// `data: {json}\n\n`.
fn sse_event(value: &Value) -> Vec<u8> {
    format!("data: {value}\n\n").into_bytes()
}

/// The SSE body: one `speech.audio.delta` per encoded piece, then `speech.audio.done`
/// with `usage` (input tokens = characters of `input`; output tokens = 20 ms units of
/// audio). A failure after the first event cuts the stream without a done event.
fn sse_events(
    first: Vec<u8>,
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, ApiError>>,
    done: tokio::sync::oneshot::Receiver<Outcome>,
    input_tokens: usize,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    use base64::Engine as _;
    let delta = |bytes: &[u8]| {
        sse_event(&serde_json::json!({
            "type": "speech.audio.delta",
            "audio": base64::engine::general_purpose::STANDARD.encode(bytes),
        }))
    };
    let head = (!first.is_empty()).then(|| Ok(delta(&first)));
    let deltas = futures_util::stream::unfold(rx, move |mut rx| async move {
        let item = rx.recv().await?;
        let item = match item {
            Ok(bytes) => Ok(delta(&bytes)),
            Err(e) => Err(mid_stream_error(&e)),
        };
        Some((item, rx))
    });
    let tail = futures_util::stream::once(async move {
        match done.await {
            Ok(outcome) if outcome.status == 200 => {
                let output_tokens = (outcome.audio_seconds / AUDIO_TOKEN_SECONDS).round() as u64;
                Ok(sse_event(&serde_json::json!({
                    "type": "speech.audio.done",
                    "usage": {
                        "input_tokens": input_tokens,
                        "output_tokens": output_tokens,
                        "total_tokens": input_tokens as u64 + output_tokens,
                    },
                })))
            }
            _ => Err(std::io::Error::other("synthesis did not finish")),
        }
    });
    futures_util::stream::iter(head).chain(deltas).chain(tail)
}

fn error_status(err: &ApiError) -> u16 {
    match err {
        ApiError::BadRequest(_) => 400,
        ApiError::Unauthorized(_) => 401,
        ApiError::Forbidden(_) => 403,
        ApiError::NotFound(_) => 404,
        ApiError::PayloadTooLarge(_) => 413,
        ApiError::TooManyRequests(..) => 429,
        ApiError::Internal(_) => 500,
        ApiError::NotImplemented(_) => 501,
        ApiError::Unavailable(..) => 503,
        ApiError::Timeout(_) => 504,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param_of(v: Value) -> Option<String> {
        match SpeechParams::from_json(&v) {
            Err(ApiError::BadRequest(b)) => b.0.error.param,
            Err(_) => Some("<other status>".into()),
            Ok(_) => None,
        }
    }

    #[test]
    fn valid_request_with_defaults() {
        let p =
            SpeechParams::from_json(&json!({"model": "tts-1", "input": "Hi", "voice": "alloy"}))
                .unwrap();
        assert_eq!(p.format, AudioFormat::Mp3);
        assert_eq!(p.speed, 1.0);
        assert!(!p.sse);
        let p = SpeechParams::from_json(
            &json!({"model": "kokoro", "input": "Hi", "voice": {"id": "voice_1"}, "speed": 4}),
        )
        .unwrap();
        assert_eq!(p.voice, "voice_1");
        assert_eq!(p.speed, 4.0);
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = json!({"model": "m", "input": "Hi", "voice": "v"});
        let with = |k: &str, v: Value| {
            let mut o = ok.clone();
            o[k] = v;
            o
        };
        assert_eq!(param_of(with("speed", json!(5))), Some("speed".into()));
        assert_eq!(param_of(with("speed", json!(0.2))), Some("speed".into()));
        assert_eq!(param_of(with("speed", json!("fast"))), Some("speed".into()));
        assert_eq!(
            param_of(with("input", json!("x".repeat(4097)))),
            Some("input".into())
        );
        assert_eq!(param_of(with("input", json!("   "))), Some("input".into()));
        assert_eq!(param_of(with("input", json!(3))), Some("input".into()));
        assert_eq!(
            param_of(with("response_format", json!("ogg"))),
            Some("response_format".into())
        );
        assert_eq!(
            param_of(with("stream_format", json!("ws"))),
            Some("stream_format".into())
        );
        assert_eq!(
            param_of(with("voice", json!({"name": "x"}))),
            Some("voice".into())
        );
        assert_eq!(param_of(with("bogus", json!(1))), Some("bogus".into()));
        assert_eq!(
            param_of(json!({"input": "Hi", "voice": "v"})),
            Some("model".into())
        );
        assert!(SpeechParams::from_json(&json!([1, 2])).is_err());
        assert_eq!(param_of(with("input", json!("x".repeat(4096)))), None);
    }
}
