//! voxpool: a self-hosted, OpenAI-compatible speech server.
//!
//! The layers, calls going down only:
//!
//! ```text
//!   main.rs, cmd/      CLI; config/ parses flags and environment into typed settings
//!        |
//!   api/               HTTP: typed requests, auth, rate limit (limit/), errors -> statuses
//!        |
//!   synthesis/         the request path: resolve model and voice, admit, lease,
//!        |             sentence loop (render), time limit, panics, cancellation, metrics
//!   pool/              load on a miss, idle clock, unload, memory budget
//!        |
//!   worker/            one process per loaded model, framed messages over stdin/stdout
//!        |
//!   engine/            TtsEngine, registry, kokoro/, chatterbox/, nn/ (shared tensor code)
//!
//!   below them all:    text/ (sentences, G2P), audio/ (encoders), store/ (database)
//! ```
//!
//! One request: HTTP ([`api`]) → rate limit ([`limit`]) → parsed `CreateSpeechRequest`
//! → [`synthesis::Synthesizer::speak`] → admission → [`pool::ModelPool::lease`] (loads on
//! a miss, one load for all waiters) → sentences ([`text`]) → the engine in its worker
//! → encoder ([`audio`]) → response → lease dropped → usage row ([`store`]).

pub mod api;
pub mod audio;
pub mod cmd;
pub mod config;
pub mod engine;
pub mod hub;
pub mod limit;
pub mod packs;
pub mod pool;
pub mod store;
pub mod synthesis;
pub mod telemetry;
pub mod text;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use config::Config;
use engine::Registry;
use pool::{ModelPool, PoolError};
use store::{Store, StoreError};

/// How long a stopping server lets requests in flight finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the stored pronunciations are re-read (another replica's change is
/// spoken here within this time).
const LEXICON_REFRESH: Duration = Duration::from_secs(2);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown model {0:?} in VOXPOOL_DEFAULT_MODEL or MODEL_PRELOAD")]
    UnknownModel(String),
}

/// A server accepting requests.
pub struct Server {
    addr: SocketAddr,
    pool: ModelPool,
    store: Store,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    housekeepers: Vec<tokio::task::JoinHandle<()>>,
    background: tokio_util::task::TaskTracker,
}

impl Server {
    /// Connect the database (migrating it), build the pool, bind `config.bind` and
    /// start serving. Returns once the socket accepts connections.
    pub async fn start(config: Config, registry: Registry) -> Result<Self, StartError> {
        let registry = registry.with_default(&config.default_model);
        for name in std::iter::once(&config.default_model).chain(&config.preload) {
            if registry.resolve(name).is_none() {
                return Err(StartError::UnknownModel(name.clone()));
            }
        }
        // Install the metrics recorder before anything records.
        telemetry::handle();
        let store = Store::connect(&config.db_url).await?;
        let pool = ModelPool::new(config.pool_settings(), registry, store.clone()).await?;
        let mut housekeepers = vec![pool.spawn_housekeeper()];
        let limiter = config.rate_limit.and_then(limit::RateLimiter::new);
        if let Some(l) = &limiter {
            housekeepers.push(l.spawn_janitor(Duration::from_secs(60)));
        }
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let connections = api::conn::Connections::default();
        let acceptor =
            api::conn::TrackedAcceptor::new(listener, connections.clone()).map_err(|source| {
                StartError::Bind {
                    addr: config.bind,
                    source,
                }
            })?;
        for name in &config.preload {
            let pool = pool.clone();
            let name = name.clone();
            tokio::spawn(async move {
                if let Err(e) = pool.load(&name).await {
                    warn!(model = %name, error = %e, "preload failed");
                }
            });
        }
        let auth = api::auth::Auth::new(config.api_key.as_ref().map(|k| k.expose()), store.clone())
            .await?;
        let background = tokio_util::task::TaskTracker::new();
        let speech = synthesis::Synthesizer::new(
            pool.clone(),
            store.clone(),
            Arc::new(synthesis::VoiceBook::default()),
            config.synthesis_timeout,
        );
        speech.reload_lexicon().await?;
        housekeepers.push(speech.spawn_lexicon_refresher(LEXICON_REFRESH));
        let state = Arc::new(api::AppState {
            auth: Arc::new(auth),
            config: Arc::new(config),
            pool: pool.clone(),
            store: store.clone(),
            started_unix: chrono::Utc::now().timestamp(),
            background: background.clone(),
            speech,
            connections,
        });
        let app = api::app(state, limiter);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                app,
                async {
                    let _ = stopped.await;
                },
                Some(DRAIN_TIMEOUT),
            ),
        );
        info!(%addr, "voxpool listening");
        Ok(Self {
            addr,
            pool,
            store,
            stop: Some(stop),
            task,
            housekeepers,
            background,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pool(&self) -> &ModelPool {
        &self.pool
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stop accepting, let requests in flight finish, unload models, close the database.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await {
            warn!(error = %e, "server task ended abnormally");
        }
        // Streams that ended during the drain still write their usage rows.
        self.background.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.background.wait())
            .await
            .is_err()
        {
            warn!("usage rows still pending after the drain timeout");
        }
        self.pool.unload_all().await;
        for h in &self.housekeepers {
            h.abort();
        }
        if let Err(e) = self.store.close().await {
            warn!(error = %e, "closing the database failed");
        }
        info!("voxpool stopped");
    }
}
