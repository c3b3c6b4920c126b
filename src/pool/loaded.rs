//! A loaded engine and the leases that keep it in use.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::state::{idle_remaining, ModelState};
use super::PoolInner;
use crate::engine::TtsEngine;
use crate::worker::WorkerHandle;

/// Why a model leaves the pool when it is removed explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UnloadCause {
    Requested = 1,
    AfterRequest = 2,
    Shutdown = 3,
    WorkerEnded = 4,
    Budget = 5,
}

impl UnloadCause {
    fn from_u8(v: u8) -> Self {
        match v {
            2 => Self::AfterRequest,
            3 => Self::Shutdown,
            4 => Self::WorkerEnded,
            5 => Self::Budget,
            _ => Self::Requested,
        }
    }

    pub fn log_line(self) -> &'static str {
        match self {
            Self::Requested => "Unloading model on request",
            Self::AfterRequest => "Unloading model after request (idle timeout is 0)",
            Self::Shutdown => "Unloading model at shutdown",
            Self::WorkerEnded => "Unloading model: its worker process ended",
            Self::Budget => "Unloading model to stay within MODEL_MEMORY_BUDGET",
        }
    }
}

/// One loaded instance of a model. Dropping the last reference frees the weights
/// (see `Drop`), so a model evicted while requests run stays usable until they end.
pub struct Loaded {
    pub(crate) state: Arc<ModelState>,
    engine: Option<Box<dyn TtsEngine>>,
    /// The worker process the engine runs in, if it does.
    worker: Option<WorkerHandle>,
    memory_bytes: u64,
    leases: AtomicUsize,
    cause: AtomicU8,
    clear_device_cache: bool,
    /// Dropped after the weights are freed: receivers learn the memory is back.
    released: Option<watch::Sender<()>>,
}

impl Loaded {
    pub(crate) fn new(
        engine: Box<dyn TtsEngine>,
        worker: Option<WorkerHandle>,
        state: Arc<ModelState>,
        clear_device_cache: bool,
    ) -> Self {
        let memory_bytes = engine.memory_bytes();
        state.instance_created(memory_bytes);
        Self {
            state,
            engine: Some(engine),
            worker,
            memory_bytes,
            leases: AtomicUsize::new(0),
            cause: AtomicU8::new(UnloadCause::Requested as u8),
            clear_device_cache,
            released: Some(watch::channel(()).0),
        }
    }

    pub fn engine(&self) -> &dyn TtsEngine {
        self.engine
            .as_deref()
            .expect("the engine is only taken out when the last reference drops")
    }

    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    pub fn worker(&self) -> Option<&WorkerHandle> {
        self.worker.as_ref()
    }

    pub fn leases(&self) -> usize {
        self.leases.load(Ordering::Acquire)
    }

    pub(crate) fn idle_remaining(&self, now: Instant) -> Option<std::time::Duration> {
        idle_remaining(
            self.leases(),
            self.state.timeout(),
            self.state.clock.last_activity(),
            now,
        )
    }

    pub(crate) fn set_cause(&self, cause: UnloadCause) {
        self.cause.store(cause as u8, Ordering::Release);
    }

    pub(crate) fn cause(&self) -> UnloadCause {
        UnloadCause::from_u8(self.cause.load(Ordering::Acquire))
    }

    /// Resolves (with an error) once this instance's memory has been given back.
    pub(crate) fn released(&self) -> watch::Receiver<()> {
        self.released
            .as_ref()
            .expect("the sender is only taken out when the last reference drops")
            .subscribe()
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let engine = self.engine.take();
        let released = self.released.take();
        let clear = self.clear_device_cache;
        let state = Arc::clone(&self.state);
        let bytes = self.memory_bytes;
        let free = move || {
            if let Some(engine) = engine {
                engine.unload(clear);
            }
            super::memory::trim_heap();
            state.instance_freed(bytes);
            tracing::info!(model = %state.id(), "Model unloaded successfully");
            metrics::counter!("voxpool_model_unloads_total", "model" => state.id().to_string())
                .increment(1);
            metrics::gauge!("voxpool_models_loaded_bytes", "model" => state.id().to_string())
                .decrement(bytes as f64);
            drop(released);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(free);
            }
            Err(_) => free(),
        }
    }
}

/// A request's hold on a loaded model. While any lease is alive the model is never
/// idle-evicted; the idle clock restarts when the last one drops.
pub struct Lease {
    loaded: Arc<Loaded>,
    pool: Arc<PoolInner>,
}

impl Lease {
    pub(crate) fn new(loaded: Arc<Loaded>, pool: Arc<PoolInner>) -> Self {
        loaded.leases.fetch_add(1, Ordering::AcqRel);
        pool.leases.fetch_add(1, Ordering::AcqRel);
        loaded.state.lease_started();
        metrics::gauge!("voxpool_leases_in_flight", "model" => loaded.state.id().to_string())
            .increment(1.0);
        Self { loaded, pool }
    }

    pub fn engine(&self) -> &dyn TtsEngine {
        self.loaded.engine()
    }

    pub fn model(&self) -> &str {
        self.loaded.state.id()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.loaded.state.lease_ended();
        metrics::gauge!("voxpool_leases_in_flight", "model" => self.loaded.state.id().to_string())
            .decrement(1.0);
        let left = self.loaded.leases.fetch_sub(1, Ordering::AcqRel) - 1;
        if self.pool.leases.fetch_sub(1, Ordering::AcqRel) == 1 && self.pool.trims_when_idle() {
            self.pool.trim_pending.store(true, Ordering::Release);
        }
        let pool = Arc::clone(&self.pool);
        let instance = Arc::downgrade(&self.loaded);
        let model = self.loaded.state.id().to_string();
        pool.runtime.clone().spawn(async move {
            if left == 0 {
                pool.after_last_lease(&model, instance).await;
            }
            if pool.force_gc_after_request {
                let _ = tokio::task::spawn_blocking(super::memory::trim_heap).await;
            }
        });
    }
}
