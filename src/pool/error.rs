use std::sync::Arc;
use std::time::Duration;

use crate::engine::EngineError;
use crate::hub::{HubError, ProgressSnapshot};
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
    /// The model's files are not on disk and the server does not fetch them: the
    /// message names the command that does.
    #[error("Model files not found in cache. Run: {pull}")]
    FilesMissing {
        model: String,
        pull: String,
        retry_after: Duration,
    },
    /// Fetching the model's files from the hub failed.
    #[error("Downloading the files of {model} failed: {source}")]
    Download {
        model: String,
        #[source]
        source: Arc<HubError>,
        retry_after: Duration,
    },
}

impl LoadError {
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Failed { retry_after, .. }
            | Self::Crashed { retry_after, .. }
            | Self::FilesMissing { retry_after, .. }
            | Self::Download { retry_after, .. } => *retry_after,
        }
    }

    /// The same error with another time to wait.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        match &mut self {
            Self::Failed { retry_after, .. }
            | Self::Crashed { retry_after, .. }
            | Self::FilesMissing { retry_after, .. }
            | Self::Download { retry_after, .. } => *retry_after = wait,
        }
        self
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
    /// The model's files are still downloading after the request's wait.
    #[error("downloading {model}: {}; retry in a few seconds", progress.describe())]
    Downloading {
        model: String,
        progress: ProgressSnapshot,
    },
}
