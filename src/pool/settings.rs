//! What the pool is told at start ([`PoolSettings`]): how long idle models stay, how
//! many requests each model serves and queues, and where missing files come from.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::LoadContext;

/// How long an idle model stays loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleTimeout {
    /// Keep loaded until asked to unload.
    Never,
    /// Unload after this much inactivity; zero unloads as soon as the last request ends.
    After(Duration),
}

impl IdleTimeout {
    /// Parse the `MODEL_UNLOAD_TIMEOUT` form: whole seconds, `-1` or `never`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("never") || v == "-1" {
            return Ok(Self::Never);
        }
        match v.parse::<u64>() {
            Ok(secs) => Ok(Self::After(Duration::from_secs(secs))),
            Err(_) => Err("expected whole seconds (0 or more), -1 or `never`".into()),
        }
    }

    /// Seconds as stored and reported: `-1` for [`IdleTimeout::Never`].
    pub fn as_seconds(self) -> i64 {
        match self {
            Self::Never => -1,
            Self::After(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Inverse of [`IdleTimeout::as_seconds`]; any negative value means never.
    pub fn from_seconds(secs: i64) -> Self {
        u64::try_from(secs)
            .map(|s| Self::After(Duration::from_secs(s)))
            .unwrap_or(Self::Never)
    }
}

/// Per-model admission limits (`MODEL_MAX_CONCURRENCY`, `MODEL_MAX_QUEUE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub concurrency: usize,
    pub queue: usize,
}

/// Fetching a model's missing files from the hub on its first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPull {
    pub source: crate::hub::Source,
    /// How long a request waits for a download before it gets a 503 with the
    /// progress (the download goes on).
    pub wait: Duration,
}

/// Everything the pool is told at start (the server's configuration hands it down).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Idle timeout of models that have none persisted.
    pub unload_timeout: IdleTimeout,
    pub admission: Admission,
    /// Bytes loaded models may hold together.
    pub memory_budget: Option<u64>,
    /// Where and on what models load.
    pub load: LoadContext,
    /// Release the device's cached memory when a model unloads.
    pub clear_device_cache: bool,
    /// Trim the heap after every request.
    pub force_gc_after_request: bool,
    /// The binary worker processes run; `None` loads every model in this process.
    pub worker_exe: Option<PathBuf>,
    /// The workers' log level and format.
    pub log_level: String,
    pub log_json: bool,
    /// Where missing model files come from; `None`: they don't.
    pub auto_pull: Option<AutoPull>,
    /// The pull command as this installation spells it (`{model}` in it).
    pub pull_command: String,
}
