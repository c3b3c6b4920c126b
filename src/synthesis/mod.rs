//! The request path, without HTTP: from a validated speech request to a stream of
//! encoded audio, or a domain error.
//!
//! [`Synthesizer::speak`] resolves the model and the voice, waits for a place among
//! the model's requests (admission), leases the model from the pool (loading it on a
//! miss, in its worker process), then runs [`render`] on a blocking thread: the
//! sentence loop with its time limit, panic recovery and cancellation. The HTTP
//! handler parses, calls it, and maps [`SpeechError`] to a status; `voxpool speak`
//! runs the same [`render`] on a model it loads itself.

pub mod captions;
pub mod lexicon;
mod render;
pub mod voices;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::audio::clip::ReferenceClip;
use crate::audio::stream::StreamEncoder;
use crate::audio::{AudioError, AudioFormat};
use crate::engine::kokoro::vocab;
use crate::engine::{AudioChunk, ClonedVoice, EngineError, SpeechJob, TtsEngine, OPENAI_ALIASES};
use crate::pool::{Admitted, ModelPool, PoolError};
use crate::store::StoreError;
use crate::text::split_sentences;
use crate::text::Language;

pub use lexicon::{LexiconBook, LexiconEntry};
pub use render::{render, Rendered};
pub use voices::{ResolvedVoice, VoiceBook};

/// A validated speech request.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    /// A model id or alias.
    pub model: String,
    pub input: String,
    /// A voice of the model, an OpenAI voice name, a stored voice id or `current`.
    pub voice: String,
    pub format: AudioFormat,
    /// 0.25 to 4.0.
    pub speed: f32,
    /// `input` is Kokoro phonemes rather than text.
    pub phonemes: bool,
    /// Read `input` in this language; `None` lets the voice decide.
    pub language: Option<Language>,
    /// The client takes the audio in pieces anyway (SSE): `wav` and `flac` may then
    /// stream with their length left open; otherwise they come whole, exact.
    pub open_length: bool,
    /// Time each word ([`Piece::words`]); models without an alignment refuse.
    pub words: bool,
}

/// A word and when it is spoken, in seconds from the start of the audio.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WordTime {
    pub word: String,
    pub start: f64,
    pub end: f64,
}

/// The next piece of a request's answer: encoded audio, and the words whose audio
/// has been made by then (where the request asked for them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Piece {
    pub audio: Vec<u8>,
    pub words: Vec<WordTime>,
}

/// Why a request got no (or not all its) audio.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("The model '{0}' does not exist")]
    UnknownModel(String),
    /// The model has no such voice; `some` lists a few it has.
    #[error("Voice '{voice}' is not available for model {model}; available voices include: {}", some.join(", "))]
    UnknownVoice {
        model: String,
        voice: String,
        some: Vec<String>,
    },
    /// No stored voice has this id.
    #[error("Voice '{0}' does not exist")]
    NoSuchVoice(String),
    #[error("No voice has been loaded")]
    NoCurrentVoice,
    #[error("Voice '{voice}' was cloned for model {model}; use that model (or tts-1)")]
    VoiceOfAnotherModel { voice: String, model: String },
    #[error("{0}")]
    BadPhonemes(String),
    /// The model does not speak the language asked for; the text says why and
    /// which languages it speaks.
    #[error("{0}")]
    Language(String),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Engine(EngineError),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Synthesis ran past `SYNTHESIS_TIMEOUT`.
    #[error("Synthesis took longer than the server's limit of {} s (SYNTHESIS_TIMEOUT); send shorter input.", .0.as_secs())]
    TimedOut(Duration),
    /// The client closed its connection; nobody reads the answer.
    #[error("the client closed the connection")]
    ClientGone,
    /// A task of the request path died (a bug); the detail is logged.
    #[error("{0}")]
    Internal(String),
}

impl From<EngineError> for SpeechError {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}

/// How a request's audio ended: seconds spoken, and the error that ended it early.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub audio_seconds: f64,
    pub error: Option<Arc<SpeechError>>,
}

/// A request's audio as it is spoken: the first bytes (already there), then the rest.
pub struct Speech {
    /// The model that speaks (an alias resolved; a cloned voice's model).
    pub model: String,
    /// Whether the format streams; a whole-file format's bytes all come at once.
    pub streams: bool,
    pub first: Piece,
    /// The following pieces; an error ends the stream (the response is cut).
    pub rest: mpsc::Receiver<Result<Piece, Arc<SpeechError>>>,
    /// The outcome, sent just before `rest` closes.
    pub outcome: oneshot::Receiver<Outcome>,
    /// The outcome, once the synthesis task has ended.
    pub finished: tokio::task::JoinHandle<Outcome>,
}

/// Refuse `language` unless the model (speaking `languages`, codes such as `a` or
/// `en`) speaks it; Kokoro's refusal says what to install.
fn check_language(
    model: &str,
    languages: &[String],
    language: Language,
) -> Result<(), SpeechError> {
    let speaks = |code: &String| {
        code == language.code()
            || (code == "en"
                && matches!(
                    language,
                    Language::AmericanEnglish | Language::BritishEnglish
                ))
    };
    if languages.iter().any(speaks) {
        return Ok(());
    }
    let listed: Vec<Language> = languages
        .iter()
        .filter_map(|c| Language::parse(c))
        .collect();
    let reason = match crate::text::g2p::availability(language) {
        Err(why) if model == PHONEMIZER_MODEL => format!("{why}. "),
        _ => format!(
            "Model {model} does not speak {} ({}). ",
            language.name(),
            language.code()
        ),
    };
    Err(SpeechError::Language(format!(
        "{reason}Languages available: {}",
        crate::text::g2p::describe(&listed)
    )))
}

/// Whether the client is gone; asked while a request waits and while it speaks.
pub type ClientGone = Arc<dyn Fn() -> bool + Send + Sync>;

/// The request path. Cheap to clone.
#[derive(Clone)]
pub struct Synthesizer {
    pool: ModelPool,
    store: crate::store::Store,
    voices: Arc<VoiceBook>,
    lexicon: Arc<LexiconBook>,
    time_limit: Option<Duration>,
}

/// How often a queued request checks that its client is still there.
const CLIENT_CHECK: Duration = Duration::from_millis(100);

impl Synthesizer {
    pub fn new(
        pool: ModelPool,
        store: crate::store::Store,
        voices: Arc<VoiceBook>,
        time_limit: Option<Duration>,
    ) -> Self {
        Self {
            pool,
            store,
            voices,
            lexicon: Arc::default(),
            time_limit,
        }
    }

    /// Read the pronunciations table into the snapshot requests read; whether it
    /// changed. On an error the snapshot stays as it was.
    pub async fn reload_lexicon(&self) -> Result<bool, StoreError> {
        let rows = self.store.pronunciations(None).await?;
        let entries = rows
            .into_iter()
            .filter_map(LexiconEntry::from_row)
            .collect();
        Ok(self.lexicon.update(entries))
    }

    /// Re-read the pronunciations table every `every`, so that what another replica
    /// stores (or deletes) is read here within that time. The table is small: it is
    /// read whole, and the snapshot replaced only when it differs.
    pub fn spawn_lexicon_refresher(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match this.reload_lexicon().await {
                    Ok(true) => tracing::info!(
                        entries = this.lexicon.len(),
                        "stored pronunciations changed"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cannot read stored pronunciations; keeping the previous ones"
                    ),
                }
            }
        })
    }

    pub fn voices(&self) -> &VoiceBook {
        &self.voices
    }

    /// The model id `name` resolves to, and the cloned voice when `voice` names one.
    /// A cloned voice belongs to the model that cloned it; OpenAI's model names
    /// follow the voice.
    pub async fn resolve(
        &self,
        name: &str,
        voice: &str,
    ) -> Result<(String, Option<ClonedVoice>), SpeechError> {
        let spec = self
            .pool
            .registry()
            .resolve(name)
            .ok_or_else(|| SpeechError::UnknownModel(name.to_string()))?;
        let mut model = spec.id.clone();
        let cloned = self.voices.resolve(&self.store, voice).await?;
        if let Some(resolved) = &cloned {
            if OPENAI_ALIASES.contains(&name) {
                model = resolved.model.clone();
            } else if resolved.model != model {
                return Err(SpeechError::VoiceOfAnotherModel {
                    voice: voice.to_string(),
                    model: resolved.model.clone(),
                });
            }
        }
        Ok((model, cloned.map(|v| v.cloned)))
    }

    /// A place among the requests `model` serves at once (`Busy` when its queue is
    /// full). A request whose client hangs up while it waits gives its place up.
    pub async fn admit(&self, model: &str, gone: &ClientGone) -> Result<Admitted, SpeechError> {
        let admit = self.pool.admit(model);
        tokio::pin!(admit);
        let mut check = tokio::time::interval(CLIENT_CHECK);
        check.tick().await;
        loop {
            tokio::select! {
                admitted = &mut admit => return Ok(admitted?),
                _ = check.tick() => {
                    if gone() {
                        metrics::counter!("voxpool_admission_abandoned_total", "model" => model.to_string())
                            .increment(1);
                        tracing::info!("client went away while queued; place given up");
                        return Err(SpeechError::ClientGone);
                    }
                }
            }
        }
    }

    /// Speak `request`. Returns once the first bytes exist (an error in the first
    /// sentence is still the request's error); the rest follows as it is spoken. A
    /// client that leaves stops the synthesis, which releases the model.
    pub async fn speak(
        &self,
        request: &SpeechRequest,
        gone: ClientGone,
    ) -> Result<Speech, Arc<SpeechError>> {
        let (model, cloned) = self.resolve(&request.model, &request.voice).await?;
        let span = tracing::info_span!(
            "speech",
            model = %model,
            voice = %request.voice,
            characters = request.input.chars().count(),
            format = request.format.name(),
            audio_seconds = tracing::field::Empty,
        );
        self.speak_with(model, request, cloned, gone)
            .instrument(span)
            .await
    }

    async fn speak_with(
        &self,
        model: String,
        request: &SpeechRequest,
        cloned: Option<ClonedVoice>,
        gone: ClientGone,
    ) -> Result<Speech, Arc<SpeechError>> {
        if !request.format.is_supported() {
            return Err(SpeechError::Audio(AudioError::Unsupported(request.format)).into());
        }
        if request.words {
            let times = self
                .pool
                .registry()
                .resolve(&model)
                .is_some_and(|spec| spec.loader.times_words());
            if !times {
                return Err(SpeechError::Engine(EngineError::Unsupported {
                    param: "timestamps".into(),
                    message: format!(
                        "Model {model} cannot time words: it has no alignment between text \
                         and audio. Use kokoro for word timestamps."
                    ),
                })
                .into());
            }
        }
        let started = Instant::now();
        let admitted = self.admit(&model, &gone).await?;
        let lease = self.pool.lease(&model).await.map_err(SpeechError::from)?;
        if cloned.is_none() && !lease.engine().accepts_voice(&request.voice) {
            return Err(unknown_voice(&model, &request.voice, lease.engine()).into());
        }
        if let Some(language) = request.language.filter(|_| !request.phonemes) {
            check_language(&model, &lease.engine().languages(), language)?;
        }
        let mut job = SpeechJob {
            chunks: plan(&request.input),
            voice: request.voice.clone(),
            speed: request.speed,
            phonemes: request.phonemes,
            cloned,
            language: request.language,
            incremental: false,
            lexicon: if request.phonemes {
                Vec::new()
            } else {
                self.lexicon.for_input(&model, &request.input)
            },
            words: request.words,
        };
        let encoder = StreamEncoder::new(
            request.format,
            lease.engine().sample_rate(),
            job.chunks.len(),
            request.open_length,
        )
        .map_err(SpeechError::from)?;
        let streams = encoder.streams();
        // A streamed response gets each sentence's audio as it is made.
        job.incremental = streams;
        let (tx, mut rx) = mpsc::channel::<Result<Piece, Arc<SpeechError>>>(1);
        let (outcome_tx, outcome_rx) = oneshot::channel::<Outcome>();
        let time_limit = self.time_limit;
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        let label = model.clone();
        // Synthesis is CPU-bound (or waits on a worker): keep it off the async
        // reactor. The lease moves along and is dropped when the job ends.
        let finished = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let _admitted = admitted;
            let engine = lease.engine();
            let synthesis_started = Instant::now();
            let wanted = || !tx.is_closed() && !gone();
            let send =
                |piece: Piece| piece == Piece::default() || tx.blocking_send(Ok(piece)).is_ok();
            let mut encoder = encoder;
            let rate = f64::from(engine.sample_rate().max(1));
            let mut spoken = 0usize;
            let mut out = |audio: AudioChunk| {
                let words = audio
                    .words
                    .iter()
                    .map(|w| WordTime {
                        word: w.word.clone(),
                        start: (spoken + w.start) as f64 / rate,
                        end: (spoken + w.end) as f64 / rate,
                    })
                    .collect();
                spoken += audio.samples.len();
                let audio = encoder.push(&audio.samples)?;
                Ok(send(Piece { audio, words }))
            };
            let mut rendered = render(engine, &job, time_limit, &wanted, &mut out);
            if rendered.error.is_none() {
                rendered.error = match encoder.finish() {
                    Ok(audio) => (!send(Piece {
                        audio,
                        words: Vec::new(),
                    }))
                    .then_some(SpeechError::ClientGone),
                    Err(e) => Some(e.into()),
                };
            }
            let error = rendered.error.map(|e| {
                let e = Arc::new(explain(e, &pool, &label, &job.voice, engine));
                if !matches!(*e, SpeechError::ClientGone) {
                    let _ = tx.blocking_send(Err(e.clone()));
                }
                e
            });
            let audio_seconds = rendered.samples as f64 / f64::from(engine.sample_rate().max(1));
            tracing::Span::current().record("audio_seconds", audio_seconds);
            metrics::histogram!("voxpool_speech_audio_seconds", "model" => label.clone())
                .record(audio_seconds);
            metrics::histogram!("voxpool_synthesis_seconds", "model" => label)
                .record(synthesis_started.elapsed().as_secs_f64());
            let outcome = Outcome {
                audio_seconds,
                error,
            };
            let _ = outcome_tx.send(outcome.clone());
            outcome
        });
        // The first bytes decide the request's fate: an error before them is its error.
        let first = match rx.recv().await {
            Some(Ok(piece)) => piece,
            Some(Err(e)) => return Err(e),
            None => Piece::default(),
        };
        metrics::histogram!("voxpool_time_to_first_audio_seconds", "model" => model.clone())
            .record(started.elapsed().as_secs_f64());
        Ok(Speech {
            model,
            streams,
            first,
            rest: rx,
            outcome: outcome_rx,
            finished,
        })
    }

    /// Kokoro phonemes for `input` in `language`, as the model reads them, and their
    /// token ids. The phonemizer's tables belong to Kokoro and live in its worker.
    pub async fn phonemize(
        &self,
        input: String,
        language: Language,
    ) -> Result<(String, Vec<u32>), SpeechError> {
        crate::text::g2p::availability(language).map_err(SpeechError::Language)?;
        let language = language.code();
        let lexicon = self.lexicon.for_input(PHONEMIZER_MODEL, &input);
        let lease = self.pool.lease(PHONEMIZER_MODEL).await?;
        let phonemes = tokio::task::spawn_blocking(move || {
            lease.engine().phonemize(&input, language, &lexicon)
        })
        .await
        .map_err(|e| SpeechError::Internal(format!("phonemizer task failed: {e}")))??;
        // What the model reads: symbols outside its vocabulary (Spanish ¿ and ¡, which
        // espeak-ng keeps) are dropped, as the model drops them, so the phonemes can be
        // sent back as `input_format: "phonemes"` unchanged.
        let vocab = vocab::v1_0();
        let phonemes: String = phonemes
            .chars()
            .filter(|c| vocab.contains_key(c.encode_utf8(&mut [0; 4]) as &str))
            .collect();
        let phonemes = phonemes.split_whitespace().collect::<Vec<_>>().join(" ");
        if phonemes.is_empty() {
            return Err(SpeechError::Engine(EngineError::InvalidInput(
                crate::text::g2p::TextError::Empty.to_string(),
            )));
        }
        let tokens = vocab::tokens_lossy(vocab, &phonemes);
        Ok((phonemes, tokens))
    }

    /// Have `model` compute a voice's conditioning from a prepared recording
    /// (admitted like a speech request, on a blocking thread).
    pub async fn clone_voice(
        &self,
        model: &str,
        clip: ReferenceClip,
        gone: &ClientGone,
    ) -> Result<Vec<u8>, SpeechError> {
        let admitted = self.admit(model, gone).await?;
        let lease = self.pool.lease(model).await?;
        let started = Instant::now();
        let conditioning = tokio::task::spawn_blocking(move || {
            let _admitted = admitted;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                lease.engine().clone_voice(&clip)
            }))
        })
        .await
        .map_err(|e| SpeechError::Internal(format!("voice cloning task failed: {e}")))?
        .map_err(|_| SpeechError::Engine(EngineError::Panicked))??;
        metrics::histogram!("voxpool_voice_clone_seconds", "model" => model.to_string())
            .record(started.elapsed().as_secs_f64());
        Ok(conditioning)
    }
}

/// The model whose engine phonemizes.
const PHONEMIZER_MODEL: &str = "kokoro";

/// The chunks a text is spoken in: its sentences (phoneme input too).
pub fn plan(input: &str) -> Vec<String> {
    split_sentences(input)
}

/// "Symbols not in Kokoro's phoneme vocabulary: 'x' (U+0078), …".
pub fn unknown_symbols(unknown: &[char]) -> String {
    let list: Vec<String> = unknown
        .iter()
        .map(|c| format!("'{c}' (U+{:04X})", *c as u32))
        .collect();
    format!(
        "Symbols not in Kokoro's phoneme vocabulary: {}",
        list.join(", ")
    )
}

/// The voice is not one of the model's, with some it has.
fn unknown_voice(model: &str, voice: &str, engine: &dyn TtsEngine) -> SpeechError {
    let mut some = engine.voices();
    some.truncate(8);
    SpeechError::UnknownVoice {
        model: model.to_string(),
        voice: voice.to_string(),
        some,
    }
}

/// A rendering error as the request reports it. After a panic the model is also
/// reloaded: the engine may be left in a bad state.
fn explain(
    error: SpeechError,
    pool: &ModelPool,
    model: &str,
    voice: &str,
    engine: &dyn TtsEngine,
) -> SpeechError {
    match error {
        SpeechError::Engine(EngineError::UnknownVoice { .. }) => {
            unknown_voice(model, voice, engine)
        }
        SpeechError::Engine(EngineError::Panicked) => {
            tracing::error!("the engine panicked; the model will be reloaded");
            let (pool, model) = (pool.clone(), model.to_string());
            tokio::runtime::Handle::current().spawn(async move {
                let _ = pool.unload(&model).await;
            });
            error
        }
        other => other,
    }
}
