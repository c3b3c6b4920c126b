//! `voxpool worker`: one engine in a process of its own. It loads the engine, says
//! `Ready`, then serves requests until told to exit, until its stdin closes (the
//! server stopped or died) or until its parent changes (the server was killed).
//! Ending the process is the unload: the operating system takes back every byte.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{error, info};

use super::protocol::{codec, decode, encode, rss_of, Memory, Ready, Reply, Request};
use crate::audio::clip::ReferenceClip;
use crate::config::WorkerArgs;
use crate::engine::{
    AudioChunk, ChunkSink, EngineError, EngineLoader, LoadContext, SpeechJob, TtsEngine,
};

/// How often the worker checks that the server that started it is still there.
const PARENT_CHECK: Duration = Duration::from_millis(200);

type Outbox = mpsc::UnboundedSender<Reply>;
type Cancels = Arc<Mutex<HashMap<u64, Arc<AtomicBool>>>>;

/// `voxpool worker`: set up, load, serve; returns only when it fails to start.
pub fn main(args: &WorkerArgs) -> ExitCode {
    // Replies go to a copy of stdout; stdout itself then points at stderr, so
    // nothing any library prints can break the protocol.
    let out = match protocol_out() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("voxpool worker: cannot set up its output: {e}");
            return ExitCode::FAILURE;
        }
    };
    watch_parent();
    // Ctrl-C in a terminal, or a service manager stopping the whole group, signals
    // every process; the server drains its requests and then stops its workers, so
    // they must not leave first.
    // SAFETY: setting a signal's disposition to "ignore" has no handler to race with.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    init_tracing(args);
    let (spec, ctx) = args.resolve();
    let loader = match spec.loader() {
        Ok(loader) => loader,
        Err(e) => {
            eprintln!("voxpool worker: {e}");
            return ExitCode::from(2);
        }
    };
    run(args.model.clone(), loader, ctx, out)
}

fn init_tracing(args: &WorkerArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = if args.log_format == crate::config::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn run(model: String, loader: Box<dyn EngineLoader>, ctx: LoadContext, out: OwnedFd) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voxpool worker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(model, loader, ctx, out))
}

fn protocol_out() -> std::io::Result<OwnedFd> {
    // SAFETY: dup and dup2 on the standard descriptors; the duplicate is owned here.
    unsafe {
        let fd = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Exit as soon as the parent process changes: the server was killed and this
/// worker was handed to another parent.
fn watch_parent() {
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() };
    std::thread::spawn(move || loop {
        std::thread::sleep(PARENT_CHECK);
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            std::process::exit(0);
        }
    });
}

async fn serve(
    model: String,
    loader: Box<dyn EngineLoader>,
    ctx: LoadContext,
    out: OwnedFd,
) -> ExitCode {
    let (outbox, mut replies) = mpsc::unbounded_channel::<Reply>();
    let sender = match tokio::net::unix::pipe::Sender::from_owned_fd(out) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("voxpool worker: its stdout must be a pipe from the server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let writer = tokio::spawn(async move {
        let mut sink = FramedWrite::new(sender, codec());
        while let Some(reply) = replies.recv().await {
            if sink.send(encode(&reply)).await.is_err() {
                // The server is gone.
                std::process::exit(0);
            }
        }
    });
    let mut requests = FramedRead::new(tokio::io::stdin(), codec());
    let on_accelerator = ctx.device.is_accelerator();
    let load = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader.load(&ctx)))
    });
    tokio::pin!(load);
    // Watch stdin while loading: a server that stops meanwhile ends the load too.
    let loaded = loop {
        tokio::select! {
            loaded = &mut load => break loaded,
            request = requests.next() => match request {
                Some(Ok(frame)) if !matches!(decode::<Request>(&frame), Ok(Request::Exit)) => {}
                _ => std::process::exit(0),
            },
        }
    };
    let engine: Arc<dyn TtsEngine> = match loaded {
        Ok(Ok(Ok(engine))) => Arc::from(engine),
        failed => {
            let error = match failed {
                Ok(Ok(Err(error))) => error,
                _ => EngineError::Worker {
                    model: model.clone(),
                    reason: "panicked while loading; see the log above".into(),
                },
            };
            let _ = outbox.send(Reply::LoadFailed(error));
            drop(outbox);
            let _ = writer.await;
            // Exit here rather than return: the runtime would wait for its thread
            // blocked reading stdin, which the server keeps open.
            std::process::exit(1);
        }
    };
    let device_bytes = if on_accelerator {
        engine.memory_bytes()
    } else {
        0
    };
    let _ = outbox.send(Reply::Ready(Ready {
        sample_rate: engine.sample_rate(),
        voices: engine.voices(),
        languages: engine.languages(),
        engine_bytes: engine.memory_bytes(),
        device_bytes,
    }));
    info!(model = %model, "Worker ready");
    let cancels: Cancels = Arc::default();
    while let Some(Ok(frame)) = requests.next().await {
        let request = match decode::<Request>(&frame) {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "unreadable request; exiting");
                break;
            }
        };
        match request {
            Request::Synthesize { id, job } => {
                let cancelled = Arc::new(AtomicBool::new(false));
                lock(&cancels).insert(id, Arc::clone(&cancelled));
                let (engine, outbox, cancels) =
                    (Arc::clone(&engine), outbox.clone(), Arc::clone(&cancels));
                let model = model.clone();
                tokio::task::spawn_blocking(move || {
                    let reply = synthesize(&*engine, &model, id, &job, &cancelled, &outbox);
                    lock(&cancels).remove(&id);
                    let _ = outbox.send(reply);
                });
            }
            Request::Cancel { id } => {
                if let Some(flag) = lock(&cancels).get(&id) {
                    flag.store(true, Ordering::Release);
                }
            }
            Request::CloneVoice {
                id,
                wav_24k,
                wav_16k,
            } => {
                let (engine, outbox) = (Arc::clone(&engine), outbox.clone());
                tokio::task::spawn_blocking(move || {
                    let clip = ReferenceClip { wav_24k, wav_16k };
                    let reply = match guarded(|| engine.clone_voice(&clip)) {
                        Ok(bytes) => Reply::Conditioning { id, bytes },
                        Err(error) => Reply::Failed { id, error },
                    };
                    let _ = outbox.send(reply);
                });
            }
            Request::Phonemize {
                id,
                text,
                language,
                lexicon,
            } => {
                let (engine, outbox) = (Arc::clone(&engine), outbox.clone());
                tokio::task::spawn_blocking(move || {
                    let reply = match guarded(|| engine.phonemize(&text, &language, &lexicon)) {
                        Ok(phonemes) => Reply::Phonemes { id, phonemes },
                        Err(error) => Reply::Failed { id, error },
                    };
                    let _ = outbox.send(reply);
                });
            }
            Request::Memory { id } => {
                let memory = Memory {
                    rss_bytes: rss_of(None),
                    device_bytes,
                };
                let _ = outbox.send(Reply::Memory { id, memory });
            }
            Request::Exit => break,
        }
    }
    // Asked to exit, or the server closed the pipe: the process ends here, and
    // with it everything the engine held.
    std::process::exit(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `f`, turning a panic into [`EngineError::Panicked`].
fn guarded<T>(f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        error!("the engine panicked");
        Err(EngineError::Panicked)
    })
}

/// Speak `job`, sending each chunk's audio as it is made; the final reply.
fn synthesize(
    engine: &dyn TtsEngine,
    model: &str,
    id: u64,
    job: &SpeechJob,
    cancelled: &AtomicBool,
    outbox: &Outbox,
) -> Reply {
    if job.cloned.is_none() && !engine.accepts_voice(&job.voice) {
        return Reply::Failed {
            id,
            error: EngineError::UnknownVoice {
                model: model.to_string(),
                voice: job.voice.clone(),
            },
        };
    }
    /// Each chunk and part goes out as a reply; a cancel stops the job there, and
    /// an engine that asks learns of it while it speaks.
    struct Replies<'a> {
        id: u64,
        outbox: &'a Outbox,
        cancelled: &'a AtomicBool,
        failure: Option<EngineError>,
    }
    impl Replies<'_> {
        fn audio(&mut self, audio: AudioChunk, part: bool) -> bool {
            let id = self.id;
            let sent = self.outbox.send(Reply::Audio {
                id,
                samples: audio.samples,
                part,
                words: audio.words,
            });
            sent.is_ok() && self.wanted()
        }
    }
    impl ChunkSink for Replies<'_> {
        fn send(&mut self, chunk: Result<AudioChunk, EngineError>) -> bool {
            match chunk {
                Ok(audio) => self.audio(audio, false),
                Err(e) => {
                    self.failure = Some(e);
                    false
                }
            }
        }

        fn send_part(&mut self, part: AudioChunk) -> bool {
            self.audio(part, true)
        }

        fn wanted(&self) -> bool {
            !self.cancelled.load(Ordering::Acquire)
        }
    }
    let mut replies = Replies {
        id,
        outbox,
        cancelled,
        failure: None,
    };
    let spoken = guarded(|| {
        engine.synthesize_each(job, &mut replies);
        Ok(())
    });
    let failure = replies.failure;
    match spoken.err().or(failure) {
        Some(error) => Reply::Failed { id, error },
        None => Reply::Done { id },
    }
}
