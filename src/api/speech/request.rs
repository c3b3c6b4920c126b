//! The body of `POST /v1/audio/speech`, parsed by poem-openapi into
//! [`CreateSpeechRequest`]. Each field has a type that holds its rule once: the
//! schema the OpenAPI document shows and the check the server makes. A field that
//! fails names itself in the error (see [`field_error`]), so clients get OpenAI's
//! per-field `param`.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::Object;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::audio::AudioFormat;
use crate::engine::kokoro::vocab;
use crate::synthesis::{unknown_symbols, SpeechRequest};
use crate::text::{g2p, Language};

/// Longest `input` accepted, in characters (OpenAI's limit).
pub const MAX_INPUT_CHARS: usize = 4096;
/// Longest `instructions` accepted, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 4096;
const MIN_SPEED: f64 = 0.25;
const MAX_SPEED: f64 = 4.0;

/// Request body of `POST /v1/audio/speech` (as in OpenAI's API reference).
#[derive(Object, Debug)]
#[oai(rename = "CreateSpeechRequest", deny_unknown_fields)]
pub struct CreateSpeechRequest {
    /// `kokoro`, `chatterbox-turbo`, or `tts-1` / `tts-1-hd` / `gpt-4o-mini-tts` for the
    /// default model.
    model: ModelName,
    /// The text to speak.
    input: Input,
    /// A voice of the model (OpenAI names map to built-in voices), a stored voice as
    /// `{"id": "voice_…"}` or its id, or `current`.
    voice: VoiceName,
    /// Audio format; default `mp3`.
    response_format: Option<ResponseFormat>,
    /// Speaking rate from 0.25 to 4.0; default 1.0.
    speed: Option<Speed>,
    /// Style instructions. Accepted for OpenAI compatibility and ignored: neither
    /// model takes instructions.
    instructions: Option<Instructions>,
    /// `audio` (the whole file, chunked) or `sse` (server-sent events).
    stream_format: Option<StreamFormat>,
    /// voxpool extension: `phonemes` when `input` is already in Kokoro's phoneme
    /// alphabet (see `POST /v1/audio/phonemize`), to fix a word's pronunciation.
    /// Default `text`.
    input_format: Option<InputFormat>,
    /// voxpool extension: the language to read `input` in, as a Kokoro code (`a`
    /// American English, `b` British English, `e` Spanish, `f` French, `h` Hindi,
    /// `i` Italian, `j` Japanese, `p` Brazilian Portuguese, `z` Mandarin) or a tag
    /// such as `ja` or `pt-br`. Default: the voice's language (a Kokoro voice's
    /// first letter). `GET /model/status` lists the languages available here.
    language: Option<LanguageCode>,
    /// Kokoro-FastAPI's name for `language`.
    lang_code: Option<LangCode>,
    /// voxpool extension: `word` adds `speech.audio.words` events to an SSE stream,
    /// each with the words of a sentence as `{"word", "start", "end"}` (seconds from
    /// the start of the audio). Kokoro only. Default `none`.
    timestamps: Option<Timestamps>,
}

impl CreateSpeechRequest {
    /// The request as the synthesis layer takes it, and whether it asked for SSE.
    /// Phoneme input is checked against Kokoro's vocabulary here.
    pub fn validate(self) -> Result<(SpeechRequest, bool), ApiError> {
        let (request, sse) = self.validate_fields()?;
        if request.words && !sse {
            return Err(ApiError::invalid(
                Some("timestamps"),
                "Word timestamps come as server-sent events: add \"stream_format\": \"sse\", \
                 or use POST /v1/audio/speech/captions for the audio and its words at once",
            ));
        }
        Ok((request, sse))
    }

    /// The request for `POST /v1/audio/speech/captions`: the whole file, with its
    /// words.
    pub fn validate_for_captions(self) -> Result<SpeechRequest, ApiError> {
        let (mut request, sse) = self.validate_fields()?;
        if sse {
            return Err(ApiError::invalid(
                Some("stream_format"),
                "Captions come with the whole file; for words as they are spoken, use \
                 POST /v1/audio/speech with \"stream_format\": \"sse\" and \"timestamps\": \"word\"",
            ));
        }
        request.words = true;
        Ok(request)
    }

    fn validate_fields(self) -> Result<(SpeechRequest, bool), ApiError> {
        let phonemes = matches!(self.input_format, Some(InputFormat::Phonemes));
        if phonemes {
            if let Err(unknown) = vocab::encode(vocab::v1_0(), &self.input.0) {
                return Err(ApiError::invalid_code(
                    "input",
                    "unknown_phonemes",
                    unknown_symbols(&unknown),
                ));
            }
        }
        let sse = matches!(self.stream_format, Some(StreamFormat::Sse));
        let language = one_language(self.language, self.lang_code)?;
        let request = SpeechRequest {
            open_length: sse,
            model: self.model.0,
            input: self.input.0,
            voice: self.voice.0,
            format: self.response_format.map_or(AudioFormat::Mp3, |f| f.0),
            speed: self.speed.map_or(1.0, |s| s.0),
            phonemes,
            language,
            words: matches!(self.timestamps, Some(Timestamps::Word)),
        };
        Ok((
            request,
            matches!(self.stream_format, Some(StreamFormat::Sse)),
        ))
    }
}

/// What a field's type reports when its value is refused, carried through poem's
/// parse error to [`field_error`].
struct Refused<'a> {
    param: &'a str,
    code: Option<&'a str>,
    message: String,
}

/// Separates the parts of a refusal inside poem's error message.
const MARK: char = '\u{1f}';

impl Refused<'_> {
    fn into_error<T: Type>(self) -> ParseError<T> {
        ParseError::custom(format!(
            "{MARK}{}{MARK}{}{MARK}{}{MARK}",
            self.param,
            self.code.unwrap_or_default(),
            self.message
        ))
    }
}

fn refuse<T: Type>(param: &str, message: impl Into<String>) -> ParseError<T> {
    Refused {
        param,
        code: None,
        message: message.into(),
    }
    .into_error()
}

fn refuse_code<T: Type>(param: &str, code: &str, message: impl Into<String>) -> ParseError<T> {
    Refused {
        param,
        code: Some(code),
        message: message.into(),
    }
    .into_error()
}

/// The OpenAI error for a body that poem could not parse into its type: the field's
/// own refusal when a field refused, the unknown field's name, or the reason as is.
pub fn field_error(reason: &str) -> ApiError {
    let mut parts = reason.split(MARK);
    if let (Some(_), Some(param), Some(code), Some(message)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        return match code {
            "" => ApiError::invalid(Some(param), message),
            code => ApiError::invalid_code(param, code, message),
        };
    }
    if let Some(name) = reason
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name)
    {
        return ApiError::invalid(
            Some(name),
            format!("Unrecognized request argument supplied: {name}"),
        );
    }
    if reason.contains("Expected input type \"object\"")
        || reason.contains(r#"Expected input type "CreateSpeechRequest""#)
    {
        return ApiError::invalid(None, "The request body must be a JSON object");
    }
    ApiError::invalid(None, reason)
}

/// A string field, or the refusal naming it.
fn string<T: Type>(param: &str, value: Option<Value>) -> Result<Option<String>, ParseError<T>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(refuse(param, format!("'{param}' must be a string"))),
    }
}

fn string_schema(min: Option<usize>, max: Option<usize>) -> MetaSchema {
    MetaSchema {
        min_length: min,
        max_length: max,
        ..MetaSchema::new("string")
    }
}

fn enum_schema(names: &[&str], default: &str) -> MetaSchema {
    MetaSchema {
        enum_items: names.iter().map(|n| Value::from(*n)).collect(),
        default: Some(Value::from(default)),
        ..MetaSchema::new("string")
    }
}

/// `Type` and `ToJSON` for a field type: its name, its schema, and its value as JSON.
macro_rules! field_type {
    ($ty:ident, $name:literal, $schema:expr, |$this:ident| $json:expr) => {
        impl Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                $name.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(std::iter::once(self))
            }
        }

        impl ToJSON for $ty {
            fn to_json(&self) -> Option<Value> {
                let $this = self;
                Some($json)
            }
        }
    };
}

/// A model id or alias, trimmed.
#[derive(Debug)]
struct ModelName(String);
field_type!(ModelName, "ModelName", string_schema(Some(1), None), |m| {
    Value::from(m.0.clone())
});

impl ParseFromJSON for ModelName {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match string::<Self>("model", value)? {
            Some(m) if !m.trim().is_empty() => Ok(Self(m.trim().to_string())),
            _ => Err(refuse("model", "you must provide a model parameter")),
        }
    }
}

/// The text: 1 to 4096 characters, not only whitespace.
#[derive(Debug)]
struct Input(String);
field_type!(
    Input,
    "SpeechInput",
    string_schema(Some(1), Some(MAX_INPUT_CHARS)),
    |i| Value::from(i.0.clone())
);

impl ParseFromJSON for Input {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let input = string::<Self>("input", value)?
            .ok_or_else(|| refuse("input", "Missing required parameter: 'input'"))?;
        let chars = input.chars().count();
        if input.trim().is_empty() {
            return Err(refuse_code(
                "input",
                "string_below_min_length",
                "'input' must contain text to speak",
            ));
        }
        if chars > MAX_INPUT_CHARS {
            return Err(refuse_code(
                "input",
                "string_above_max_length",
                format!(
                    "'input' is too long: {chars} characters, the maximum is {MAX_INPUT_CHARS}"
                ),
            ));
        }
        Ok(Self(input))
    }
}

/// A voice name, or `{"id": "…"}`.
#[derive(Debug)]
struct VoiceName(String);
field_type!(
    VoiceName,
    "VoiceParam",
    MetaSchema {
        one_of: vec![
            MetaSchemaRef::Inline(Box::new(string_schema(Some(1), None))),
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                title: Some("VoiceRef".into()),
                description: Some("A stored voice by id."),
                required: vec!["id"],
                properties: vec![(
                    "id",
                    MetaSchemaRef::Inline(Box::new(string_schema(Some(1), None)))
                )],
                ..MetaSchema::new("object")
            })),
        ],
        ..MetaSchema::ANY
    },
    |v| Value::from(v.0.clone())
);

impl ParseFromJSON for VoiceName {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        const SHAPE: &str = "'voice' must be a voice name or an object {\"id\": \"…\"}";
        match value {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Self(s.trim().to_string())),
            Some(Value::Object(v)) => match v.get("id") {
                Some(Value::String(id)) if !id.trim().is_empty() && v.len() == 1 => {
                    Ok(Self(id.trim().to_string()))
                }
                _ => Err(refuse("voice", SHAPE)),
            },
            None | Some(Value::Null) => Err(refuse("voice", "Missing required parameter: 'voice'")),
            Some(_) => Err(refuse("voice", SHAPE)),
        }
    }
}

/// One of the six formats.
#[derive(Debug)]
struct ResponseFormat(AudioFormat);
field_type!(
    ResponseFormat,
    "ResponseFormat",
    enum_schema(&["mp3", "opus", "aac", "flac", "wav", "pcm"], "mp3"),
    |f| Value::from(f.0.name())
);

impl ParseFromJSON for ResponseFormat {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let name = string::<Self>("response_format", value)?.unwrap_or_default();
        AudioFormat::from_name(&name).map(Self).ok_or_else(|| {
            refuse(
                "response_format",
                format!(
                    "'{name}' is not one of mp3, opus, aac, flac, wav, pcm - 'response_format'"
                ),
            )
        })
    }
}

/// 0.25 to 4.0.
#[derive(Debug)]
struct Speed(f32);
field_type!(
    Speed,
    "Speed",
    MetaSchema {
        minimum: Some(MIN_SPEED),
        maximum: Some(MAX_SPEED),
        default: Some(Value::from(1.0)),
        ..MetaSchema::new_with_format("number", "double")
    },
    |s| Value::from(s.0)
);

impl ParseFromJSON for Speed {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::Number(n)) => match n.as_f64() {
                Some(s) if (MIN_SPEED..=MAX_SPEED).contains(&s) => Ok(Self(s as f32)),
                _ => Err(refuse(
                    "speed",
                    format!("'speed' must be between {MIN_SPEED} and {MAX_SPEED}, got {n}"),
                )),
            },
            _ => Err(refuse("speed", "'speed' must be a number")),
        }
    }
}

/// At most 4096 characters; ignored.
#[derive(Debug)]
struct Instructions(String);
field_type!(
    Instructions,
    "Instructions",
    string_schema(None, Some(MAX_INSTRUCTIONS_CHARS)),
    |i| Value::from(i.0.clone())
);

impl ParseFromJSON for Instructions {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let text = string::<Self>("instructions", value)?.unwrap_or_default();
        if text.chars().count() > MAX_INSTRUCTIONS_CHARS {
            return Err(refuse_code(
                "instructions",
                "string_above_max_length",
                format!(
                    "'instructions' is too long; the maximum is {MAX_INSTRUCTIONS_CHARS} characters"
                ),
            ));
        }
        Ok(Self(text))
    }
}

/// The language of `language` and of its alias `lang_code`; both given must agree.
pub fn one_language(
    language: Option<LanguageCode>,
    lang_code: Option<LangCode>,
) -> Result<Option<Language>, ApiError> {
    match (language, lang_code) {
        (Some(a), Some(b)) if a.0 != b.0 => Err(ApiError::invalid(
            Some("lang_code"),
            format!(
                "'language' ({}) and 'lang_code' ({}) disagree; send one of them",
                a.0, b.0
            ),
        )),
        (a, b) => Ok(a.map(|l| l.0).or(b.map(|l| l.0))),
    }
}

/// A language code or tag the text layer knows, refused with the list of the
/// languages available here.
fn parse_language<T: Type>(param: &str, value: Option<Value>) -> Result<Language, ParseError<T>> {
    let code = string::<T>(param, value)?.unwrap_or_default();
    g2p::parse_language(&code)
        .map_err(|e| refuse_code(param, "unsupported_language", e.to_string()))
}

fn language_schema() -> MetaSchema {
    MetaSchema {
        example: Some(Value::from("j")),
        ..string_schema(Some(1), Some(8))
    }
}

/// `language`: a Kokoro language code or tag.
#[derive(Debug)]
pub struct LanguageCode(Language);
field_type!(LanguageCode, "LanguageCode", language_schema(), |l| {
    Value::from(l.0.code())
});

impl ParseFromJSON for LanguageCode {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        parse_language("language", value).map(Self)
    }
}

/// `lang_code`, Kokoro-FastAPI's name for `language`.
#[derive(Debug)]
pub struct LangCode(Language);
field_type!(LangCode, "LangCode", language_schema(), |l| Value::from(
    l.0.code()
));

impl ParseFromJSON for LangCode {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        parse_language("lang_code", value).map(Self)
    }
}

/// `audio` or `sse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamFormat {
    Audio,
    Sse,
}
field_type!(
    StreamFormat,
    "StreamFormat",
    enum_schema(&["audio", "sse"], "audio"),
    |f| Value::from(match f {
        StreamFormat::Audio => "audio",
        StreamFormat::Sse => "sse",
    })
);

impl ParseFromJSON for StreamFormat {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match string::<Self>("stream_format", value)?.as_deref() {
            Some("audio") => Ok(Self::Audio),
            Some("sse") => Ok(Self::Sse),
            other => Err(refuse(
                "stream_format",
                format!(
                    "'{}' is not one of audio, sse - 'stream_format'",
                    other.unwrap_or_default()
                ),
            )),
        }
    }
}

/// Which captions `POST /v1/audio/speech/captions` adds to the words: `json` (none),
/// `vtt` or `srt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptionsFormat {
    Json,
    Vtt,
    Srt,
}
field_type!(
    CaptionsFormat,
    "CaptionsFormat",
    enum_schema(&["json", "vtt", "srt"], "json"),
    |f| Value::from(match f {
        CaptionsFormat::Json => "json",
        CaptionsFormat::Vtt => "vtt",
        CaptionsFormat::Srt => "srt",
    })
);

impl ParseFromJSON for CaptionsFormat {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match string::<Self>("captions_format", value)?.as_deref() {
            Some("json") => Ok(Self::Json),
            Some("vtt") => Ok(Self::Vtt),
            Some("srt") => Ok(Self::Srt),
            other => Err(refuse(
                "captions_format",
                format!(
                    "'{}' is not one of json, vtt, srt - 'captions_format'",
                    other.unwrap_or_default()
                ),
            )),
        }
    }
}

/// `none` or `word`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timestamps {
    None,
    Word,
}
field_type!(
    Timestamps,
    "Timestamps",
    enum_schema(&["none", "word"], "none"),
    |t| Value::from(match t {
        Timestamps::None => "none",
        Timestamps::Word => "word",
    })
);

impl ParseFromJSON for Timestamps {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match string::<Self>("timestamps", value)?.as_deref() {
            Some("none") => Ok(Self::None),
            Some("word") => Ok(Self::Word),
            other => Err(refuse(
                "timestamps",
                format!(
                    "'{}' is not one of none, word - 'timestamps'",
                    other.unwrap_or_default()
                ),
            )),
        }
    }
}

/// `text` or `phonemes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputFormat {
    Text,
    Phonemes,
}
field_type!(
    InputFormat,
    "InputFormat",
    enum_schema(&["text", "phonemes"], "text"),
    |f| Value::from(match f {
        InputFormat::Text => "text",
        InputFormat::Phonemes => "phonemes",
    })
);

impl ParseFromJSON for InputFormat {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match string::<Self>("input_format", value)?.as_deref() {
            Some("text") => Ok(Self::Text),
            Some("phonemes") => Ok(Self::Phonemes),
            other => Err(refuse(
                "input_format",
                format!(
                    "'{}' is not one of text, phonemes - 'input_format'",
                    other.unwrap_or_default()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<(SpeechRequest, bool), ApiError> {
        match CreateSpeechRequest::parse_from_json(Some(v)) {
            Ok(req) => req.validate(),
            Err(e) => Err(field_error(&e.into_message())),
        }
    }

    fn param_of(v: Value) -> Option<String> {
        match parse(v) {
            Err(ApiError::BadRequest(b)) => b.0.error.param,
            Err(_) => Some("<other status>".into()),
            Ok(_) => None,
        }
    }

    #[test]
    fn valid_request_with_defaults() {
        let (r, sse) = parse(json!({"model": "tts-1", "input": "Hi", "voice": "alloy"})).unwrap();
        assert_eq!(r.format, AudioFormat::Mp3);
        assert_eq!(r.speed, 1.0);
        assert!(!sse && !r.phonemes);
        let (r, _) = parse(
            json!({"model": "kokoro", "input": "Hi", "voice": {"id": "voice_1"}, "speed": 4}),
        )
        .unwrap();
        assert_eq!(r.voice, "voice_1");
        assert_eq!(r.speed, 4.0);
        let (_, sse) = parse(json!({"model": "m", "input": "Hi", "voice": "v",
            "stream_format": "sse", "instructions": null}))
        .unwrap();
        assert!(sse);
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
            param_of(with("instructions", json!("x".repeat(4097)))),
            Some("instructions".into())
        );
        assert_eq!(
            param_of(with("input_format", json!("ipa"))),
            Some("input_format".into())
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
        assert!(parse(json!([1, 2])).is_err());
        assert_eq!(param_of(with("input", json!("x".repeat(4096)))), None);
        // Phonemes outside Kokoro's vocabulary are refused, naming the input.
        let mut phonemes = with("input_format", json!("phonemes"));
        phonemes["input"] = json!("hˈɛlo ☃");
        assert_eq!(param_of(phonemes), Some("input".into()));
    }
}
