//! The sentence loop: speak a job's chunks in order and hand each one's audio on
//! as it comes. It runs on a blocking thread for the server and directly in
//! `voxpool speak`, so both produce the same audio from the same text.

use std::time::{Duration, Instant};

use crate::engine::{AudioChunk, ChunkSink, EngineError, SpeechJob, TtsEngine};

use super::SpeechError;

/// How a job's rendering ended, and how much audio it made.
#[derive(Debug)]
pub struct Rendered {
    /// Samples spoken (sent or not).
    pub samples: usize,
    /// `None` when every chunk was spoken, encoded and taken.
    pub error: Option<SpeechError>,
}

/// Speak `job` with `engine` and give each chunk's audio to `out`, which answers
/// `Ok(false)` once nobody listens (the client left) or fails the job (an encoder
/// error). `wanted` is asked while a chunk is being made. Past `limit`, no further
/// sentence is started. A panicking engine fails the job with
/// [`EngineError::Panicked`].
pub fn render(
    engine: &dyn TtsEngine,
    job: &SpeechJob,
    limit: Option<Duration>,
    wanted: &dyn Fn() -> bool,
    out: &mut dyn FnMut(AudioChunk) -> Result<bool, SpeechError>,
) -> Rendered {
    let started = Instant::now();
    let total = job.chunks.len();
    let mut samples = 0usize;
    let mut spoken = 0usize;
    let mut error: Option<SpeechError> = None;
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut sink = Sink {
            wanted,
            on_chunk: |chunk: Result<AudioChunk, EngineError>, part: bool| {
                if !part {
                    spoken += 1;
                }
                // The limit is checked where more sentences would follow.
                if let Some(limit) =
                    limit.filter(|l| !part && spoken < total && started.elapsed() > *l)
                {
                    tracing::warn!(
                        limit_s = limit.as_secs(),
                        "synthesis stopped at its time limit"
                    );
                    error = Some(SpeechError::TimedOut(limit));
                    return false;
                }
                let taken = chunk.map_err(SpeechError::Engine).and_then(|audio| {
                    samples += audio.samples.len();
                    out(audio)
                });
                match taken {
                    Ok(true) => true,
                    Ok(false) => {
                        error = Some(SpeechError::ClientGone);
                        false
                    }
                    Err(e) => {
                        error = Some(e);
                        false
                    }
                }
            },
        };
        engine.synthesize_each(job, &mut sink);
    }));
    if ran.is_err() {
        error = Some(SpeechError::Engine(EngineError::Panicked));
    }
    if error.is_none() && !wanted() {
        error = Some(SpeechError::ClientGone);
    }
    if matches!(error, Some(SpeechError::ClientGone)) {
        tracing::info!("client went away; synthesis stopped");
    }
    Rendered { samples, error }
}

/// A job's audio on its way out: each chunk, and each part of one, goes to
/// `on_chunk` (with `true` for a part); the job is wanted while `wanted` says so.
struct Sink<'a, F> {
    wanted: &'a dyn Fn() -> bool,
    on_chunk: F,
}

impl<F: FnMut(Result<AudioChunk, EngineError>, bool) -> bool> ChunkSink for Sink<'_, F> {
    fn send(&mut self, chunk: Result<AudioChunk, EngineError>) -> bool {
        (self.on_chunk)(chunk, false)
    }

    fn send_part(&mut self, part: AudioChunk) -> bool {
        (self.on_chunk)(Ok(part), true)
    }

    fn wanted(&self) -> bool {
        (self.wanted)()
    }
}
