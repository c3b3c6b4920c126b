//! Settings from the environment and the command line, validated once at start.
//!
//! This is the only module that reads the environment (with `main`, which applies
//! the thread settings). Every server flag has a long name, an environment variable
//! (names from DESIGN.md and the seeds) and help text; clap parses each into its
//! type ([`parse`]'s value parsers, one default per setting) and a bad value is
//! rejected at start, naming the variable. [`Config::from_args`] then resolves what
//! needs more than one setting.
//!
//! - `commands.rs`: the command line and the subcommands' options
//! - `serve.rs`: `voxpool serve`'s options and the [`Config`] made of them
//! - `parse.rs`: value parsers and the settings read straight from the environment

mod commands;
mod parse;
mod serve;
mod text;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::engine::nn::CpuThreads;
use crate::engine::DeviceSpec;

pub use crate::limit::RateLimit;
pub use crate::pool::{Admission, AutoPull, IdleTimeout, PoolSettings};
pub use crate::store::{normalize_db_url, sqlite_path};
pub use commands::{
    CleanupArgs, Cli, Command, KeysAction, KeysArgs, ModelArgs, PronounceAction, PronounceArgs,
    PullArgs, ServerUrl, SpeakArgs, StatusArgs, TimeoutArgs, WorkerArgs,
};
pub use serve::ServeArgs;
pub use text::TextArgs;

/// A setting that could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {var}={value:?}: {reason}")]
    Invalid {
        var: String,
        value: String,
        reason: String,
    },
}

fn invalid(var: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var: var.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The setting behind a command-line error, when a value was rejected (the rest are
/// clap's own: usage, `--help`, `--version`).
pub fn rejected_setting(err: &clap::Error) -> Option<&ConfigError> {
    std::error::Error::source(err)?.downcast_ref()
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub unload_timeout: IdleTimeout,
    pub device: DeviceSpec,
    pub db_url: String,
    pub log_level: String,
    pub log_format: LogFormat,
    pub force_gc_after_request: bool,
    pub clear_cuda_cache: bool,
    pub preload: Vec<String>,
    pub models_dir: PathBuf,
    pub memory_budget: Option<u64>,
    pub default_model: String,
    pub api_key: Option<Secret>,
    pub rate_limit: Option<RateLimit>,
    /// `CHATTERBOX_T3_QUANT`, when set.
    pub t3_quant: Option<crate::engine::chatterbox::config::T3Quant>,
    /// `CHATTERBOX_S3GEN_QUANT`, when set.
    pub s3gen_quant: Option<crate::engine::chatterbox::config::S3GenQuant>,
    /// Admission control per model: requests served at once, and waiting.
    pub admission: Admission,
    /// How long one speech request may synthesise; `None`: no limit.
    pub synthesis_timeout: Option<std::time::Duration>,
    /// `VOXPOOL_VOICES_DIR`: where `POST /load_voice` may read from.
    pub voices_dir: Option<PathBuf>,
    /// The voxpool binary that runs worker processes: this executable by default (a
    /// program that embeds the server, such as a test, names the binary); `None`:
    /// models load in this process.
    pub worker_exe: Option<PathBuf>,
    /// Where a model's missing files come from on its first use; `None`: they don't
    /// (`VOXPOOL_AUTO_PULL=false`, `HF_HUB_OFFLINE=1`, or an embedded server).
    pub auto_pull: Option<AutoPull>,
    /// The `voxpool pull` command as this installation spells it (`{model}` in it).
    pub pull_command: String,
}

impl Config {
    /// What the model pool is told.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            unload_timeout: self.unload_timeout,
            admission: self.admission,
            memory_budget: self.memory_budget,
            load: crate::engine::LoadContext {
                models_dir: self.models_dir.clone(),
                device: self.device,
                t3_quant: self.t3_quant,
                s3gen_quant: self.s3gen_quant,
            },
            clear_device_cache: self.clear_cuda_cache,
            force_gc_after_request: self.force_gc_after_request,
            worker_exe: self.worker_exe.clone(),
            log_level: self.log_level.clone(),
            log_json: self.log_format == LogFormat::Json,
            auto_pull: self.auto_pull.clone(),
            pull_command: self.pull_command.clone(),
        }
    }
}

/// Where candle reads the thread count from (rayon too), before working it out.
const THREADS_ENV: &str = "RAYON_NUM_THREADS";
/// Where candle's CPU worker threads read their spin limit from.
const SPIN_LIMIT_ENV: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// Candle's CPU thread settings for this process: `RAYON_NUM_THREADS` and
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` where the user set them, else the count candle
/// detects and voxpool's spin limit ([`CpuThreads`] says why).
pub fn cpu_threads() -> CpuThreads {
    let number = |name: &str| parse::non_empty_env(name).and_then(|v| v.trim().parse().ok());
    CpuThreads {
        count: number(THREADS_ENV)
            .filter(|n| *n > 0)
            .unwrap_or_else(CpuThreads::detected_count),
        spin_limit: number(SPIN_LIMIT_ENV)
            .and_then(|n: usize| u32::try_from(n).ok())
            .unwrap_or(CpuThreads::SPIN_LIMIT),
    }
}

/// Write `threads` where candle and rayon read them, leaving alone a variable the
/// user set. It sets environment variables, so it must run before any other thread
/// starts (the start of `main`); worker processes inherit them.
pub fn apply_cpu_threads(threads: CpuThreads) {
    if std::env::var_os(SPIN_LIMIT_ENV).is_none() {
        std::env::set_var(SPIN_LIMIT_ENV, threads.spin_limit.to_string());
    }
    if std::env::var_os(THREADS_ENV).is_none() {
        std::env::set_var(THREADS_ENV, threads.count.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sqlalchemy_urls_map_to_sqlx() {
        assert_eq!(
            normalize_db_url("sqlite:///data/torchts.db").unwrap(),
            "sqlite://data/torchts.db?mode=rwc"
        );
        assert_eq!(
            normalize_db_url("sqlite:////var/lib/x.db").unwrap(),
            "sqlite:///var/lib/x.db?mode=rwc"
        );
        assert_eq!(
            normalize_db_url("sqlite://data/voxpool.db?mode=rwc").unwrap(),
            "sqlite://data/voxpool.db?mode=rwc"
        );
        assert_eq!(
            normalize_db_url("postgresql+psycopg2://u:p@h/db").unwrap(),
            "postgres://u:p@h/db"
        );
        assert!(normalize_db_url("mysql://x").is_err());
        assert!(normalize_db_url("sqlite://").is_err());
        assert_eq!(
            sqlite_path("sqlite://data/torchts.db?mode=rwc"),
            Some(PathBuf::from("data/torchts.db"))
        );
    }

    #[test]
    fn timeouts_parse_like_the_seed() {
        assert_eq!(
            IdleTimeout::parse("300"),
            Ok(IdleTimeout::After(Duration::from_secs(300)))
        );
        assert_eq!(IdleTimeout::parse("-1"), Ok(IdleTimeout::Never));
        assert_eq!(IdleTimeout::parse("never"), Ok(IdleTimeout::Never));
        assert!(IdleTimeout::parse("abc").is_err());
        assert!(IdleTimeout::parse("-5").is_err());
        assert_eq!(IdleTimeout::from_seconds(-1), IdleTimeout::Never);
        assert_eq!(IdleTimeout::After(Duration::from_secs(60)).as_seconds(), 60);
    }
}
