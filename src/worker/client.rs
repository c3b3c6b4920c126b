//! The gateway's side of a worker: starts the process, waits for its engine, and
//! stands for that engine in the pool ([`WorkerEngine`] is a [`TtsEngine`]).
//!
//! Three tasks per worker: a writer sends requests to its stdin, a reader hands
//! each reply to the request waiting for it, and a supervisor owns the child
//! process: it stops it when asked (`Exit`, then a kill after [`EXIT_GRACE`]),
//! notices when it ends on its own, fails whatever was still waiting and reaps it.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{info, warn, Instrument};

use super::protocol::{codec, decode, encode, rss_of, Memory, Ready, Reply, Request};
use crate::engine::{
    AudioChunk, ChunkSink, EngineError, LoadContext, SpeechJob, SynthRequest, TtsEngine, WorkerSpec,
};
use crate::text::lexicon::Pronunciation;

/// How long a worker asked to exit may take before it is killed.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);

/// How long `/model/status` waits for a busy worker's own memory figures.
const MEMORY_QUERY_LIMIT: Duration = Duration::from_millis(500);

/// Called once when a worker ends without being asked to: its pid and why.
pub type ExitNotice = Box<dyn FnOnce(u32, String) + Send>;

/// Everything needed to start one worker.
pub struct Launch {
    /// The voxpool binary.
    pub exe: PathBuf,
    /// The model id the pool knows it by.
    pub model: String,
    pub spec: WorkerSpec,
    pub ctx: LoadContext,
    pub log_level: String,
    pub log_json: bool,
    pub on_exit: ExitNotice,
}

/// How often a request waiting for its next chunk checks that its client is
/// still there.
const WANTED_CHECK: Duration = Duration::from_millis(50);

enum Pending {
    /// A job's audio: each chunk's samples, or a part of one (`true`).
    Audio(std::sync::mpsc::Sender<Result<(AudioChunk, bool), EngineError>>),
    Call(oneshot::Sender<Result<Reply, EngineError>>),
}

#[derive(Default)]
struct Table {
    pending: HashMap<u64, Pending>,
    /// Why the worker ended, once it has: later requests fail at once.
    ended: Option<String>,
}

struct Shared {
    model: String,
    pid: u32,
    ready: Ready,
    requests: mpsc::UnboundedSender<Request>,
    table: Mutex<Table>,
    next_id: AtomicU64,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gone(&self, reason: &str) -> EngineError {
        EngineError::Worker {
            model: self.model.clone(),
            reason: reason.to_string(),
        }
    }

    /// Register a waiter and send the request it waits for.
    fn start(
        &self,
        waiter: Pending,
        request: impl FnOnce(u64) -> Request,
    ) -> Result<u64, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut table = self.table();
            if let Some(reason) = &table.ended {
                return Err(self.gone(reason));
            }
            table.pending.insert(id, waiter);
        }
        if self.requests.send(request(id)).is_err() {
            self.table().pending.remove(&id);
            return Err(self.gone("is not running"));
        }
        Ok(id)
    }

    /// Hand a reply to the request waiting for it (replies to cancelled requests
    /// find nobody and are dropped).
    fn dispatch(&self, reply: Reply) {
        let Some(id) = reply.id() else { return };
        let mut table = self.table();
        match reply {
            Reply::Audio {
                samples,
                part,
                words,
                ..
            } => {
                if let Some(Pending::Audio(tx)) = table.pending.get(&id) {
                    let audio = AudioChunk {
                        samples,
                        sample_rate: self.ready.sample_rate,
                        words,
                    };
                    let _ = tx.send(Ok((audio, part)));
                }
            }
            // Dropping the sender ends the request's stream.
            Reply::Done { .. } => drop(table.pending.remove(&id)),
            Reply::Failed { error, .. } => match table.pending.remove(&id) {
                Some(Pending::Audio(tx)) => drop(tx.send(Err(error))),
                Some(Pending::Call(tx)) => drop(tx.send(Err(error))),
                None => {}
            },
            other => {
                if let Some(Pending::Call(tx)) = table.pending.remove(&id) {
                    let _ = tx.send(Ok(other));
                }
            }
        }
    }

    /// The worker has ended: everything still waiting fails with `reason`.
    fn end(&self, reason: &str) {
        let pending = {
            let mut table = self.table();
            table.ended = Some(reason.to_string());
            std::mem::take(&mut table.pending)
        };
        for waiter in pending.into_values() {
            let error = self.gone(reason);
            match waiter {
                Pending::Audio(tx) => drop(tx.send(Err(error))),
                Pending::Call(tx) => drop(tx.send(Err(error))),
            }
        }
    }

    fn cancel(&self, id: u64) {
        if self.table().pending.remove(&id).is_some() {
            let _ = self.requests.send(Request::Cancel { id });
        }
    }

    /// A request answered by one reply, waited for on a blocking thread.
    fn call_blocking(&self, request: impl FnOnce(u64) -> Request) -> Result<Reply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.start(Pending::Call(tx), request)?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(self.gone("ended")))
    }
}

/// What the pool keeps of a worker to report on it.
#[derive(Clone)]
pub struct WorkerHandle(Arc<Shared>);

impl WorkerHandle {
    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    /// The worker's memory as it reports it; read from `/proc` when it does not
    /// answer in time (busy, or gone).
    pub async fn memory(&self) -> Memory {
        let (tx, rx) = oneshot::channel();
        let asked = self.0.start(Pending::Call(tx), |id| Request::Memory { id });
        if asked.is_ok() {
            if let Ok(Ok(Ok(Reply::Memory { memory, .. }))) =
                tokio::time::timeout(MEMORY_QUERY_LIMIT, rx).await
            {
                return memory;
            }
        }
        Memory {
            rss_bytes: rss_of(Some(self.0.pid)),
            device_bytes: self.0.ready.device_bytes,
        }
    }
}

/// A model running in a worker process, as the pool sees it.
pub struct WorkerEngine {
    shared: Arc<Shared>,
    /// What the pool charges the model: the larger of what the engine says it holds
    /// and the worker's resident set once loaded.
    charged_bytes: u64,
    /// Sent (or dropped) to stop the worker.
    stop: Option<oneshot::Sender<()>>,
    /// Ends when the worker has been reaped.
    reaped: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl WorkerEngine {
    /// Start a worker and wait until its engine is loaded. A load error is the
    /// engine's own; a worker that dies while loading is reported with how it ended.
    pub async fn spawn(launch: Launch) -> Result<(Self, WorkerHandle), EngineError> {
        let Launch {
            exe,
            model,
            spec,
            ctx,
            log_level,
            log_json,
            on_exit,
        } = launch;
        let failed = |reason: String| EngineError::Worker {
            model: model.clone(),
            reason,
        };
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("worker")
            .args(["--engine", &spec.engine, "--model", &model])
            .arg("--models-dir")
            .arg(&ctx.models_dir)
            .args(["--device", &ctx.device.to_string()])
            .args(["--log-level", &log_level])
            .args(["--log-format", if log_json { "json" } else { "text" }]);
        if let Some(quant) = ctx.t3_quant {
            cmd.args(["--t3-quant", &quant.to_string()]);
        }
        if let Some(quant) = ctx.s3gen_quant {
            cmd.args(["--s3gen-quant", &quant.to_string()]);
        }
        for (key, value) in &spec.options {
            cmd.arg("--option").arg(format!("{key}={value}"));
        }
        // The worker's G2P reads the same language packs and espeak-ng as this process.
        let text = crate::text::settings::settings();
        cmd.arg("--language-packs").arg(&text.packs_dir);
        if let Some(library) = &text.espeak_library {
            cmd.arg("--espeak-library").arg(library);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("could not start ({}): {e}", exe.display())))?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(failed("has no pipes".into()));
        };
        let mut replies = FramedRead::new(stdout, codec());
        let ready = match replies.next().await {
            Some(Ok(frame)) => match decode::<Reply>(&frame) {
                Ok(Reply::Ready(ready)) => ready,
                Ok(Reply::LoadFailed(error)) => {
                    reap(&mut child).await;
                    return Err(error);
                }
                _ => {
                    let _ = child.kill().await;
                    return Err(failed(format!(
                        "did not speak the worker protocol ({} worker --engine {})",
                        exe.display(),
                        spec.engine
                    )));
                }
            },
            _ => {
                let status = child.wait().await;
                return Err(failed(format!(
                    "ended while loading ({})",
                    describe(&status)
                )));
            }
        };
        let (requests, mut outbox) = mpsc::unbounded_channel::<Request>();
        let span = tracing::info_span!("worker", model = %model, pid);
        tokio::spawn(
            async move {
                let mut sink = FramedWrite::new(stdin, codec());
                while let Some(request) = outbox.recv().await {
                    if sink.send(encode(&request)).await.is_err() {
                        break;
                    }
                }
            }
            .instrument(span.clone()),
        );
        let shared = Arc::new(Shared {
            model: model.clone(),
            pid,
            ready,
            requests,
            table: Mutex::new(Table::default()),
            next_id: AtomicU64::new(1),
        });
        let (reader_done, mut reader_ended) = oneshot::channel::<()>();
        let reader = Arc::clone(&shared);
        tokio::spawn(
            async move {
                while let Some(frame) = replies.next().await {
                    let reply = frame
                        .map_err(|e| e.to_string())
                        .and_then(|f| decode::<Reply>(&f).map_err(|e| e.to_string()));
                    match reply {
                        Ok(reply) => reader.dispatch(reply),
                        Err(e) => {
                            warn!(error = %e, "unreadable reply from the worker; stopping it");
                            break;
                        }
                    }
                }
                drop(reader_done);
            }
            .instrument(span.clone()),
        );
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (reaped_tx, reaped) = std::sync::mpsc::channel::<()>();
        let supervisor = Arc::clone(&shared);
        tokio::spawn(
            async move {
                let (status, asked) = tokio::select! {
                    status = child.wait() => (status, false),
                    _ = &mut reader_ended => {
                        let _ = child.start_kill();
                        (child.wait().await, false)
                    }
                    _ = stop_rx => {
                        let _ = supervisor.requests.send(Request::Exit);
                        match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                            Ok(status) => (status, true),
                            Err(_) => {
                                warn!("the worker did not exit within {EXIT_GRACE:?}; killing it");
                                let _ = child.start_kill();
                                (child.wait().await, true)
                            }
                        }
                    }
                };
                let how = describe(&status);
                supervisor.end(&format!("ended ({how})"));
                drop(reaped_tx);
                if asked {
                    info!("Worker stopped ({how})");
                } else {
                    warn!("Worker ended on its own ({how})");
                    on_exit(pid, how);
                }
            }
            .instrument(span),
        );
        let charged_bytes = shared.ready.engine_bytes.max(rss_of(Some(pid)));
        let handle = WorkerHandle(Arc::clone(&shared));
        Ok((
            Self {
                shared,
                charged_bytes,
                stop: Some(stop),
                reaped: Mutex::new(reaped),
            },
            handle,
        ))
    }
}

/// Wait for a worker that is about to exit; kill it if it does not within the grace.
async fn reap(child: &mut tokio::process::Child) {
    if tokio::time::timeout(EXIT_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// How a process ended, for logs and error messages.
fn describe(status: &std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}{}", signal_name(signal)),
            _ => s.to_string(),
        },
        Err(e) => format!("status unknown: {e}"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => " (SIGKILL: killed, e.g. by the out-of-memory killer)",
        libc::SIGSEGV => " (SIGSEGV: invalid memory access)",
        libc::SIGABRT => " (SIGABRT: aborted)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGBUS => " (SIGBUS)",
        _ => "",
    }
}

impl TtsEngine for WorkerEngine {
    fn synthesize(&self, req: &SynthRequest<'_>) -> Result<AudioChunk, EngineError> {
        let job = SpeechJob {
            chunks: vec![req.text.to_string()],
            voice: req.voice.to_string(),
            speed: req.speed,
            phonemes: req.phonemes,
            cloned: req.cloned.cloned(),
            language: req.language,
            incremental: false,
            lexicon: Vec::new(),
            words: false,
        };
        crate::engine::synthesize_job(self, &job)
    }

    /// The whole job runs in the worker, which speaks the next chunk while this
    /// one is encoded and sent; a sink that wants no more cancels the rest there.
    fn synthesize_each(&self, job: &SpeechJob, sink: &mut dyn ChunkSink) {
        let (tx, rx) = std::sync::mpsc::channel();
        let id = match self
            .shared
            .start(Pending::Audio(tx), |id| Request::Synthesize {
                id,
                job: job.clone(),
            }) {
            Ok(id) => id,
            Err(e) => {
                sink.send(Err(e));
                return;
            }
        };
        loop {
            let chunk = match rx.recv_timeout(WANTED_CHECK) {
                Ok(chunk) => chunk,
                // The client left while the worker speaks: it stops at the chunk's end.
                Err(RecvTimeoutError::Timeout) if !sink.wanted() => {
                    self.shared.cancel(id);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match chunk {
                Ok((audio, part)) => {
                    let taken = if part {
                        sink.send_part(audio)
                    } else {
                        sink.send(Ok(audio))
                    };
                    if !taken {
                        self.shared.cancel(id);
                        return;
                    }
                }
                Err(e) => {
                    sink.send(Err(e));
                    return;
                }
            }
        }
    }

    fn phonemize(
        &self,
        text: &str,
        language: &str,
        lexicon: &[Pronunciation],
    ) -> Result<String, EngineError> {
        match self.shared.call_blocking(|id| Request::Phonemize {
            id,
            text: text.to_string(),
            language: language.to_string(),
            lexicon: lexicon.to_vec(),
        })? {
            Reply::Phonemes { phonemes, .. } => Ok(phonemes),
            other => Err(unexpected(&other)),
        }
    }

    fn clone_voice(
        &self,
        clip: &crate::audio::clip::ReferenceClip,
    ) -> Result<Vec<u8>, EngineError> {
        match self.shared.call_blocking(|id| Request::CloneVoice {
            id,
            wav_24k: clip.wav_24k.clone(),
            wav_16k: clip.wav_16k.clone(),
        })? {
            Reply::Conditioning { bytes, .. } => Ok(bytes),
            other => Err(unexpected(&other)),
        }
    }

    fn sample_rate(&self) -> u32 {
        self.shared.ready.sample_rate
    }

    fn voices(&self) -> Vec<String> {
        self.shared.ready.voices.clone()
    }

    /// The worker checks the voice when the request arrives (it knows the blends
    /// its engine accepts); an unknown one fails there with `UnknownVoice`.
    fn accepts_voice(&self, _voice: &str) -> bool {
        true
    }

    fn languages(&self) -> Vec<String> {
        self.shared.ready.languages.clone()
    }

    fn memory_bytes(&self) -> u64 {
        self.charged_bytes
    }

    /// Ask the worker to exit and wait until it has been reaped: its memory is back.
    fn unload(mut self: Box<Self>, _release_device_cache: bool) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        let _ = reaped.recv_timeout(EXIT_GRACE + Duration::from_secs(5));
    }
}

fn unexpected(reply: &Reply) -> EngineError {
    EngineError::Synthesis(format!("unexpected reply from the worker: {reply:?}"))
}
