//! What `POST /v1/audio/speech` answers: the audio in the requested format as it is
//! spoken, or server-sent events carrying it.

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use poem::Body;
use poem_openapi::payload::Binary;
use poem_openapi::{ApiResponse, ResponseContent};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::api::error::ApiError;
use crate::audio::AudioFormat;
use crate::synthesis::{Outcome, Piece, SpeechError};

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
    /// in the requested format (with `timestamps: "word"`, `speech.audio.words` events
    /// carrying each sentence's words), then one `speech.audio.done` with `usage`.
    #[oai(content_type = "text/event-stream")]
    Events(Binary<Body>),
}

impl AudioBody {
    pub fn new(format: AudioFormat, bytes: Body) -> Self {
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

type Pieces = mpsc::Receiver<Result<Piece, Arc<SpeechError>>>;

/// After the headers, a failure can only cut the body short: the error the body
/// stream ends with.
pub fn mid_stream_error(e: &SpeechError) -> std::io::Error {
    std::io::Error::other(format!(
        "synthesis failed mid-stream (status {})",
        ApiError::from(e).status()
    ))
}

/// The audio body: `first`, then each piece as it comes. A failure calls `on_failure`
/// (which cuts the connection) and ends the body with an error, so the client sees
/// an incomplete body, not a shorter file that looks whole.
pub fn audio_stream(
    first: Piece,
    rest: Pieces,
    on_failure: impl Fn() + Clone + Send + Sync + 'static,
) -> impl Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let rest = futures_util::stream::unfold(rest, move |mut rx| {
        let on_failure = on_failure.clone();
        async move {
            let item = rx.recv().await?.map(|piece| piece.audio).map_err(|e| {
                on_failure();
                mid_stream_error(&e)
            });
            Some((item, rx))
        }
    });
    futures_util::stream::once(async move { Ok::<_, std::io::Error>(first.audio) }).chain(rest)
}

/// Output tokens reported in SSE `usage`: one per 20 ms of audio.
const AUDIO_TOKEN_SECONDS: f64 = 0.02;

/// `data: {json}\n\n`.
fn sse_event(value: &Value) -> Vec<u8> {
    format!("data: {value}\n\n").into_bytes()
}

/// A piece's events: `speech.audio.delta` with its audio, then `speech.audio.words`
/// with its words (each only when there is something to carry).
fn piece_events(piece: &Piece) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = Vec::new();
    if !piece.audio.is_empty() {
        out.extend(sse_event(&serde_json::json!({
            "type": "speech.audio.delta",
            "audio": base64::engine::general_purpose::STANDARD.encode(&piece.audio),
        })));
    }
    if !piece.words.is_empty() {
        out.extend(sse_event(&serde_json::json!({
            "type": "speech.audio.words",
            "words": piece.words,
        })));
    }
    out
}

/// The SSE body: one `speech.audio.delta` per encoded piece (and, when asked, one
/// `speech.audio.words` per sentence), then `speech.audio.done` with `usage` (input
/// tokens = characters of `input`; output tokens = 20 ms units of audio). A failure
/// after the first event cuts the stream without a done event.
pub fn sse_events(
    first: Piece,
    rest: Pieces,
    done: oneshot::Receiver<Outcome>,
    input_tokens: usize,
) -> impl Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let head = Some(piece_events(&first))
        .filter(|events| !events.is_empty())
        .map(Ok);
    let deltas = futures_util::stream::unfold(rest, move |mut rx| async move {
        let item = match rx.recv().await? {
            Ok(piece) => Ok(piece_events(&piece)),
            Err(e) => Err(mid_stream_error(&e)),
        };
        Some((item, rx))
    });
    let tail = futures_util::stream::once(async move {
        match done.await {
            Ok(outcome) if outcome.error.is_none() => {
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
