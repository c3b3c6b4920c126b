//! The model pool: loads a model on first use (one load however many requests
//! wait), lends it to requests through leases, unloads it when idle, on request
//! or to stay within the memory budget, and gives the memory back.
//!
//! Loaded models live in a `moka::future::Cache` whose per-entry expiry reads each
//! model's idle clock and timeout ([`expiry`]); a housekeeper runs the cache's
//! maintenance so idle models leave on time with no traffic.

mod error;
mod expiry;
mod listener;
mod loaded;
mod memory;
mod settings;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::policy::EvictionPolicy;
use tracing::{info, instrument, warn, Instrument};

pub use error::{LoadError, PoolError};
pub use loaded::{Lease, UnloadCause};
pub use memory::{trim_heap, tune_gateway_heap};
pub use settings::{Admission, AutoPull, IdleTimeout, PoolSettings};
pub use state::{idle_remaining, Admitted, IdleClock, ModelState, QueueFull};

use crate::engine::{EngineError, LoadContext, Registry, TtsEngine};
use crate::hub::{ProgressSnapshot, Watcher};
use crate::store::Store;
use crate::worker::WorkerHandle;
use loaded::Loaded;

/// How often the housekeeper runs the cache's pending work (expiry, eviction).
const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(500);

/// A snapshot of one model for `/model/status`.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    pub model: String,
    pub loaded: bool,
    pub is_loading: bool,
    pub timeout: IdleTimeout,
    pub idle_seconds: f64,
    pub in_flight: usize,
    pub memory_bytes: u64,
    pub last_load_seconds: Option<f64>,
    pub languages: Vec<String>,
    pub last_error: Option<String>,
    /// The process the model runs in, when it runs in a worker.
    pub worker_pid: Option<u32>,
    /// Bytes the model holds on an accelerator (0 on the CPU).
    pub device_bytes: u64,
    /// The download of the model's files, while one runs.
    pub download: Option<ProgressSnapshot>,
}

/// Cheap to clone; all clones share one pool.
#[derive(Clone)]
pub struct ModelPool {
    inner: Arc<PoolInner>,
}

pub(crate) struct PoolInner {
    cache: Cache<String, Arc<Loaded>>,
    models: HashMap<String, Arc<ModelState>>,
    registry: Registry,
    ctx: LoadContext,
    store: Store,
    clear_device_cache: bool,
    memory_budget: Option<u64>,
    pub(crate) force_gc_after_request: bool,
    pub(crate) runtime: tokio::runtime::Handle,
    /// The binary worker processes run; `None` loads every model in this process.
    worker_exe: Option<std::path::PathBuf>,
    /// Leases alive over all models: when the last one ends, the server's own heap
    /// is trimmed (the models' memory is in their workers).
    pub(crate) leases: std::sync::atomic::AtomicUsize,
    /// Set when the last lease ends; the housekeeper trims the heap then.
    pub(crate) trim_pending: std::sync::atomic::AtomicBool,
    log_level: String,
    log_json: bool,
    /// Where missing model files come from; `None`: they don't.
    auto_pull: Option<AutoPull>,
    /// The pull command as this installation spells it (`{model}` in it).
    pull_command: String,
}

impl ModelPool {
    /// Build the pool for `registry`, restoring persisted per-model timeouts.
    /// Must be called inside a Tokio runtime.
    pub async fn new(
        settings: PoolSettings,
        registry: Registry,
        store: Store,
    ) -> Result<Self, PoolError> {
        let persisted = store.timeouts().await?;
        let epoch = Instant::now();
        let models = registry
            .models()
            .iter()
            .map(|spec| {
                let timeout = persisted
                    .get(&spec.id)
                    .copied()
                    .map(IdleTimeout::from_seconds)
                    .unwrap_or(settings.unload_timeout);
                let state = ModelState::new(spec.clone(), timeout, epoch, settings.admission);
                (spec.id.clone(), Arc::new(state))
            })
            .collect();
        let mut builder = Cache::builder()
            .name("models")
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(expiry::IdleExpiry)
            .eviction_listener(listener::on_evict);
        if let Some(budget) = settings.memory_budget {
            // moka weighs in u32: count KiB so budgets and models of terabytes fit.
            builder = builder
                .max_capacity(budget / 1024)
                .weigher(|_, loaded: &Arc<Loaded>| {
                    u32::try_from(loaded.memory_bytes().div_ceil(1024)).unwrap_or(u32::MAX)
                });
        }
        Ok(Self {
            inner: Arc::new(PoolInner {
                cache: builder.build(),
                models,
                ctx: settings.load.clone(),
                registry,
                store,
                clear_device_cache: settings.clear_device_cache,
                memory_budget: settings.memory_budget,
                force_gc_after_request: settings.force_gc_after_request,
                runtime: tokio::runtime::Handle::current(),
                worker_exe: settings.worker_exe.clone(),
                leases: std::sync::atomic::AtomicUsize::new(0),
                trim_pending: std::sync::atomic::AtomicBool::new(false),
                log_level: settings.log_level.clone(),
                log_json: settings.log_json,
                auto_pull: settings.auto_pull.clone(),
                pull_command: settings.pull_command.clone(),
            }),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Where and on what models are loaded.
    pub fn load_context(&self) -> &LoadContext {
        &self.inner.ctx
    }

    /// Run the cache's maintenance periodically so idle models leave within about a
    /// second of their deadline even when no request arrives.
    pub fn spawn_housekeeper(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.cache.run_pending_tasks().await;
                // At most one trim per period, and only while nothing is in flight.
                if inner
                    .trim_pending
                    .swap(false, std::sync::atomic::Ordering::AcqRel)
                    && inner.leases.load(std::sync::atomic::Ordering::Acquire) == 0
                {
                    let _ = tokio::task::spawn_blocking(trim_heap).await;
                }
            }
        })
    }

    fn state(&self, model: &str) -> Result<&Arc<ModelState>, PoolError> {
        self.inner
            .models
            .get(model)
            .ok_or_else(|| PoolError::UnknownModel(model.to_string()))
    }

    /// Lend `model` to a request, loading it first if needed. Concurrent callers
    /// share one load; a failed load is reported to all of them, and callers within
    /// the cooldown that follows get the same error at once.
    #[instrument(skip_all, fields(model = %model))]
    pub async fn lease(&self, model: &str) -> Result<Lease, PoolError> {
        let state = Arc::clone(self.state(model)?);
        state.clock.touch();
        if let Some(error) = state.cooling_down(Instant::now()) {
            return Err(error.into());
        }
        // The load runs in its own task so that a caller who goes away mid-load
        // neither cancels it nor makes the next caller start another.
        let inner = Arc::clone(&self.inner);
        let key = model.to_string();
        let span = tracing::Span::current();
        let waiting = Arc::clone(&state);
        let mut loading = tokio::spawn(
            async move {
                let init = PoolInner::load(Arc::clone(&inner), Arc::clone(&state));
                inner.cache.try_get_with(key, init).await
            }
            .instrument(span),
        );
        // A download can take long: past the wait, the request learns how far it is
        // (the download goes on). A load alone is waited for.
        let wait = self.inner.auto_pull.as_ref().map(|a| a.wait);
        let loaded = match wait {
            Some(wait) => match tokio::time::timeout(wait, &mut loading).await {
                Ok(done) => done,
                Err(_) => match waiting.download() {
                    Some(progress) => {
                        return Err(PoolError::Downloading {
                            model: model.to_string(),
                            progress,
                        })
                    }
                    None => loading.await,
                },
            },
            None => loading.await,
        };
        let loaded = loaded
            .map_err(|_| LoadError::Crashed {
                model: model.to_string(),
                retry_after: Duration::from_secs(1),
            })?
            .map_err(|e| PoolError::Load((*e).clone()))?;
        let lease = Lease::new(loaded, Arc::clone(&self.inner));
        // Re-read with the lease held: the entry now has no deadline while in use.
        let _ = self.inner.cache.get(model).await;
        Ok(lease)
    }

    /// A place among the requests `model` serves at once (`MODEL_MAX_CONCURRENCY`),
    /// waiting in its bounded queue (`MODEL_MAX_QUEUE`) if need be. Hold it for as
    /// long as the request synthesises or streams.
    pub async fn admit(&self, model: &str) -> Result<Admitted, PoolError> {
        let state = self.state(model)?;
        state.admit().await.map_err(|full| {
            metrics::counter!("voxpool_admission_rejections_total", "model" => model.to_string())
                .increment(1);
            PoolError::Busy {
                model: model.to_string(),
                serving: full.serving,
                queued: full.queued,
            }
        })
    }

    /// Load `model` now (for `/model/load` and `MODEL_PRELOAD`).
    pub async fn load(&self, model: &str) -> Result<(), PoolError> {
        self.lease(model).await.map(drop)
    }

    /// Unload `model`. New requests load a fresh copy; this returns once the
    /// requests still holding the old one have finished and its memory is back.
    #[instrument(skip_all, fields(model = %model))]
    pub async fn unload(&self, model: &str) -> Result<(), PoolError> {
        self.state(model)?;
        self.inner.remove(model, UnloadCause::Requested).await;
        Ok(())
    }

    /// Unload every model (at shutdown), waiting for requests in flight.
    pub async fn unload_all(&self) {
        for model in self.inner.models.keys() {
            self.inner.remove(model, UnloadCause::Shutdown).await;
        }
    }

    /// Change and persist `model`'s idle timeout; the running idle clock is
    /// re-evaluated at once, so a model already idle longer than the new timeout leaves.
    #[instrument(skip_all, fields(model = %model))]
    pub async fn set_timeout(&self, model: &str, timeout: IdleTimeout) -> Result<(), PoolError> {
        let state = self.state(model)?;
        self.inner
            .store
            .save_timeout(model, timeout.as_seconds())
            .await?;
        state.set_timeout(timeout);
        info!(
            model,
            timeout = timeout.as_seconds(),
            "Unload timeout updated"
        );
        let _ = self.inner.cache.get(model).await;
        self.inner.cache.run_pending_tasks().await;
        Ok(())
    }

    /// Status of one model.
    pub async fn status(&self, model: &str) -> Result<ModelStatus, PoolError> {
        let state = self.state(model)?;
        let loaded = self.inner.cache.get(model).await;
        let languages = match &loaded {
            Some(l) => l.engine().languages(),
            None => state
                .spec
                .loader
                .languages()
                .unwrap_or_else(|| state.spec.languages.clone()),
        };
        // A worker's figures are its own, measured now.
        let worker = loaded.as_ref().and_then(|l| l.worker().cloned());
        drop(loaded);
        let (memory_bytes, device_bytes, worker_pid) = match worker {
            Some(w) => {
                let memory = w.memory().await;
                (
                    memory.rss_bytes + memory.device_bytes,
                    memory.device_bytes,
                    Some(w.pid()),
                )
            }
            None => (state.resident_bytes(), 0, None),
        };
        // "Loaded" means holding memory: a model stays loaded until its weights are
        // really freed, even after it left the cache.
        Ok(ModelStatus {
            model: model.to_string(),
            loaded: state.is_resident(),
            is_loading: state.is_loading(),
            timeout: state.timeout(),
            idle_seconds: state.clock.idle_for(Instant::now()).as_secs_f64(),
            in_flight: state.in_flight(),
            memory_bytes,
            last_load_seconds: state.last_load_seconds(),
            languages,
            last_error: state.last_error(),
            worker_pid,
            device_bytes,
            download: state.download(),
        })
    }

    /// Status of every model, in registry order.
    pub async fn statuses(&self) -> Vec<ModelStatus> {
        let mut out = Vec::new();
        for spec in self.inner.registry.models() {
            if let Ok(s) = self.status(&spec.id).await {
                out.push(s);
            }
        }
        out
    }
}

impl PoolInner {
    async fn load(inner: Arc<Self>, state: Arc<ModelState>) -> Result<Arc<Loaded>, LoadError> {
        let _loading = state.begin_loading();
        let model = state.id().to_string();
        info!(model = %model, device = %inner.ctx.device, "Loading model");
        let started = Instant::now();
        let mut result = Self::start_engine(&inner, &state).await?;
        // Files missing: fetch them (one download, whoever waits), then load again.
        if let Err(EngineError::FilesMissing { .. }) = &result {
            match &inner.auto_pull {
                Some(auto) if crate::hub::has_files(&model) => {
                    Self::fetch_files(&state, auto, &inner.ctx.models_dir).await?;
                    result = Self::start_engine(&inner, &state).await?;
                }
                _ => {
                    return Err(Self::failed(
                        &state,
                        LoadError::FilesMissing {
                            model: model.clone(),
                            pull: crate::hub::pull_command_for(&inner.pull_command, &model),
                            retry_after: Duration::ZERO,
                        },
                    ))
                }
            }
        }
        match result {
            Ok((engine, worker)) => {
                let took = started.elapsed();
                state.load_succeeded(took);
                info!(model = %model, "Model loaded successfully in {:.2}s", took.as_secs_f64());
                metrics::counter!("voxpool_model_loads_total", "model" => model.clone(), "result" => "ok")
                    .increment(1);
                metrics::histogram!("voxpool_model_load_seconds", "model" => model.clone())
                    .record(took.as_secs_f64());
                metrics::gauge!("voxpool_models_loaded_bytes", "model" => model.clone())
                    .increment(engine.memory_bytes() as f64);
                Ok(Arc::new(Loaded::new(
                    engine,
                    worker,
                    Arc::clone(&state),
                    inner.clear_device_cache,
                )))
            }
            Err(error) => Err(Self::failed(
                &state,
                LoadError::Failed {
                    model,
                    source: error,
                    retry_after: Duration::ZERO,
                },
            )),
        }
    }

    /// Record a failed load (its cooldown starts) and count it.
    fn failed(state: &ModelState, error: LoadError) -> LoadError {
        metrics::counter!("voxpool_model_loads_total", "model" => state.id().to_string(), "result" => "error")
            .increment(1);
        let error = state.load_failed(error);
        warn!(model = %state.id(), error = %error, "Model failed to load");
        error
    }

    /// Fetch the model's files from the hub, showing the progress in its status.
    async fn fetch_files(
        state: &Arc<ModelState>,
        auto: &AutoPull,
        models_dir: &std::path::Path,
    ) -> Result<(), LoadError> {
        let model = state.id().to_string();
        let progress = Arc::new(crate::hub::Progress::default());
        let _shown = state.downloading(Arc::clone(&progress));
        info!(model = %model, hub = %auto.source.endpoint, "Model files missing; downloading them");
        let started = Instant::now();
        let (source, dir) = (auto.source.clone(), models_dir.to_path_buf());
        let (id, watched) = (model.clone(), Arc::clone(&progress));
        let span = tracing::Span::current();
        let fetched = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            crate::hub::fetch(&id, &dir, &source, &watched, &LogWatcher)
        })
        .await
        .unwrap_or_else(|e| Err(crate::hub::HubError::Other(e.to_string())));
        match fetched {
            Ok(done) => {
                info!(
                    model = %model,
                    files = done.files,
                    mib = done.downloaded as f64 / f64::from(1 << 20),
                    "Model files downloaded in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Err(e) => Err(Self::failed(
                state,
                LoadError::Download {
                    model,
                    source: Arc::new(e),
                    retry_after: Duration::ZERO,
                },
            )),
        }
    }

    /// Start the model's engine: in a worker process, or in this one. The engine's
    /// own error is the inner one; the outer is a loader that panicked.
    async fn start_engine(
        inner: &Arc<Self>,
        state: &Arc<ModelState>,
    ) -> Result<Result<(Box<dyn TtsEngine>, Option<WorkerHandle>), EngineError>, LoadError> {
        let model = state.id().to_string();
        let loader = Arc::clone(&state.spec.loader);
        let ctx = inner.ctx.clone();
        inner.make_room(&model, &loader).await;
        let result = match (loader.worker(), &inner.worker_exe) {
            (Some(spec), Some(exe)) => {
                let launch = crate::worker::Launch {
                    exe: exe.clone(),
                    model: model.clone(),
                    spec,
                    ctx,
                    log_level: inner.log_level.clone(),
                    log_json: inner.log_json,
                    on_exit: Self::exit_notice(inner, &model),
                };
                crate::worker::WorkerEngine::spawn(launch)
                    .await
                    .map(|(engine, handle)| (Box::new(engine) as Box<dyn TtsEngine>, Some(handle)))
            }
            _ => {
                let span = tracing::Span::current();
                let loading = tokio::task::spawn_blocking(move || {
                    let _entered = span.enter();
                    loader.load(&ctx)
                });
                match loading.await {
                    Ok(loaded) => loaded.map(|engine| (engine, None)),
                    // The loader panicked (a bug in an engine): reported, not propagated.
                    Err(join_error) => {
                        warn!(model = %model, "Model loader crashed: {join_error}");
                        return Err(Self::failed(
                            state,
                            LoadError::Crashed {
                                model,
                                retry_after: Duration::ZERO,
                            },
                        ));
                    }
                }
            }
        };
        // A model heavier than the whole budget would be evicted as soon as it is
        // in the cache and loaded again by every request: refused instead.
        Ok(match (result, inner.memory_budget) {
            (Ok((engine, _)), Some(budget)) if engine.memory_bytes() > budget => {
                let bytes = engine.memory_bytes();
                tokio::task::spawn_blocking(move || {
                    engine.unload(false);
                    memory::trim_heap();
                })
                .await
                .ok();
                Err(EngineError::OverBudget {
                    model,
                    bytes,
                    budget,
                })
            }
            (result, _) => result,
        })
    }

    /// Whether the server's heap is trimmed once no request holds a model (by the
    /// housekeeper, at most twice a second): when models run in workers, what
    /// requests leave here is small and the trim cheap.
    pub(crate) fn trims_when_idle(&self) -> bool {
        self.worker_exe.is_some()
    }

    /// Before `model` loads, unload the least recently used idle models until the
    /// files it reads fit the budget beside the models that stay, so the load does
    /// not first take the memory and then evict. Models serving requests stay; if
    /// they alone leave no room, the cache evicts once the model is in.
    async fn make_room(&self, model: &str, loader: &Arc<dyn crate::engine::EngineLoader>) {
        let Some(budget) = self.memory_budget else {
            return;
        };
        let needed = {
            let (loader, ctx) = (Arc::clone(loader), self.ctx.clone());
            tokio::task::spawn_blocking(move || loader.file_bytes(&ctx))
                .await
                .unwrap_or(0)
        };
        loop {
            let mut used = 0u64;
            let mut victim: Option<(Instant, String)> = None;
            for (id, loaded) in self.cache.iter() {
                if id.as_str() == model {
                    continue;
                }
                used += loaded.memory_bytes();
                let idle_since = loaded.state.clock.last_activity();
                if loaded.leases() == 0 && victim.as_ref().is_none_or(|(t, _)| idle_since < *t) {
                    victim = Some((idle_since, id.to_string()));
                }
            }
            let Some((_, victim)) = victim.filter(|_| used + needed > budget) else {
                return;
            };
            self.remove(&victim, UnloadCause::Budget).await;
        }
    }

    /// What a worker that ends on its own calls: the pool forgets that instance.
    fn exit_notice(inner: &Arc<Self>, model: &str) -> crate::worker::ExitNotice {
        let weak = Arc::downgrade(inner);
        let model = model.to_string();
        Box::new(move |pid, how| {
            if let Some(inner) = weak.upgrade() {
                let runtime = inner.runtime.clone();
                runtime.spawn(async move { inner.worker_ended(&model, pid, &how).await });
            }
        })
    }

    /// A worker ended without being asked (crash, signal, out of memory): its
    /// requests have failed already; the model counts as unloaded, and the next
    /// request starts a new worker.
    async fn worker_ended(&self, model: &str, pid: u32, how: &str) {
        metrics::counter!("voxpool_worker_crashes_total", "model" => model.to_string())
            .increment(1);
        let Some(current) = self.cache.get(model).await else {
            return;
        };
        if current.worker().map(|w| w.pid()) != Some(pid) {
            return;
        }
        warn!(
            model,
            pid, "The model's worker ended on its own ({how}); the model is unloaded"
        );
        current.set_cause(UnloadCause::WorkerEnded);
        drop(current);
        self.cache.invalidate(model).await;
        self.cache.run_pending_tasks().await;
    }

    /// Take `model` out of the cache and wait until its memory has been given back.
    async fn remove(&self, model: &str, cause: UnloadCause) {
        let Some(loaded) = self.cache.get(model).await else {
            return;
        };
        loaded.set_cause(cause);
        let mut released = loaded.released();
        drop(loaded);
        self.cache.invalidate(model).await;
        self.cache.run_pending_tasks().await;
        // Errors once the sender is dropped, i.e. after the weights are freed.
        while released.changed().await.is_ok() {}
    }

    /// The last lease of `instance` ended: restart its idle clock, or unload it now
    /// when the timeout is zero.
    pub(crate) async fn after_last_lease(&self, model: &str, instance: Weak<Loaded>) {
        let Some(state) = self.models.get(model) else {
            return;
        };
        let Some(current) = self.cache.get(model).await else {
            return;
        };
        if !std::ptr::eq(Arc::as_ptr(&current), instance.as_ptr()) {
            return;
        }
        if current.leases() > 0 {
            // A request started meanwhile; make sure its "no deadline" stands.
            let _ = self.cache.get(model).await;
        } else if state.timeout() == IdleTimeout::After(Duration::ZERO) {
            drop(current);
            self.remove(model, UnloadCause::AfterRequest).await;
        }
    }
}

/// A download's progress in the log (every tenth) and in `/metrics`.
struct LogWatcher;

impl Watcher for LogWatcher {
    fn tenth(&self, model: &str, at: &ProgressSnapshot) {
        info!(model = %model, file = %at.file, "downloading {model}: {}", at.describe());
    }

    fn bytes(&self, model: &str, bytes: u64) {
        metrics::counter!("voxpool_download_bytes_total", "model" => model.to_string())
            .increment(bytes);
    }
}
