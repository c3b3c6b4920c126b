use std::time::Duration;

use crate::engine::EngineError;
use crate::store::StoreError;

/// Why a model could not be leased.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// Loading failed; every waiter gets this, and new attempts wait `retry_after`.
    #[error("{source}")]
    Failed {
        model: String,
        #[source]
        source: EngineError,
        retry_after: Duration,
    },
    /// The loader panicked (a bug in an engine); reported, never propagated as a panic.
    #[error("loading {model} crashed")]
    Crashed {
        model: String,
        retry_after: Duration,
    },
}

impl LoadError {
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Failed { retry_after, .. } | Self::Crashed { retry_after, .. } => *retry_after,
        }
    }
}

/// Errors of the model pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("The model '{0}' does not exist")]
    UnknownModel(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The model's queue is full.
    #[error("The model {model} is busy: {serving} requests are being served and {queued} are waiting. Retry shortly.")]
    Busy {
        model: String,
        serving: usize,
        queued: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}
