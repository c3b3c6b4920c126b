//! Settings from the environment and the command line, validated once at start.
//!
//! This is the only module that reads the environment. Every server flag has a
//! long name, an environment variable (names from DESIGN.md and the seeds) and
//! help text; [`Config::from_args`] turns the strings into typed values and
//! rejects bad ones, naming the variable.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::engine::nn::CpuThreads;
use crate::engine::DeviceSpec;

/// Self-hosted, OpenAI-compatible speech server.
#[derive(Debug, Parser)]
#[command(name = "voxpool", version, args_conflicts_with_subcommands = true)]
#[command(
    after_help = "Examples:\n  voxpool                         # serve on 0.0.0.0:5005\n  \
    MODEL_UNLOAD_TIMEOUT=120 voxpool serve --port 8080\n  voxpool openapi > openapi.json"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server options when no subcommand is given (`serve` is the default).
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Speak text into an audio file with the model running in this process (no server).
    ///
    /// Examples:
    ///   voxpool speak "Hello there." -o hello.wav
    ///   voxpool speak "Good evening." -v bf_emma --speed 0.9 -o evening.wav
    ///   voxpool speak --phonemes "həlˈO wˈɜɹld" -o hello.wav
    ///   voxpool speak -o line.wav        (interactive: one file per line, `exit` quits)
    #[command(verbatim_doc_comment)]
    Speak(SpeakArgs),
    /// Manage API keys in the server's database (a key is shown once, at creation).
    ///
    /// Examples:
    ///   voxpool keys create --name my-app
    ///   voxpool keys create --name ops --admin
    ///   voxpool keys list
    ///   voxpool keys revoke key_0123abcd...
    ///
    /// A running server that started open requires keys within a second of the first.
    #[command(verbatim_doc_comment)]
    Keys(KeysArgs),
    /// Show the models of a running server: loaded or not, requests in flight, idle
    /// time, timeout, memory.
    ///
    /// Examples:
    ///   voxpool status
    ///   voxpool status --url http://tts.local:5005 --json
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),
    /// Load a model in a running server now (default: the server's default model).
    ///
    /// Example: voxpool load chatterbox-turbo
    #[command(verbatim_doc_comment)]
    Load(ModelArgs),
    /// Unload a model from a running server, freeing its memory (the next request
    /// loads it again). Replaces the seed's deload.py.
    ///
    /// Example: voxpool unload kokoro
    #[command(verbatim_doc_comment)]
    Unload(ModelArgs),
    /// Set a model's idle timeout in a running server (persisted; at least 60 s).
    ///
    /// Examples:
    ///   voxpool timeout 600
    ///   voxpool timeout 3600 chatterbox-turbo
    #[command(verbatim_doc_comment)]
    Timeout(TimeoutArgs),
    /// Download the files a model needs from the Hugging Face hub into the models
    /// folder (the HF cache layout), with a progress bar; an interrupted download
    /// resumes, and large files are checked against their SHA-256.
    ///
    /// Examples:
    ///   voxpool pull kokoro
    ///   voxpool pull chatterbox-turbo --models-dir /srv/models
    #[command(verbatim_doc_comment)]
    Pull(PullArgs),
    /// Delete voxpool's downloaded model files and conversion caches from the models
    /// folder, after listing them with their sizes (asks unless --yes). voxpool writes
    /// no audio files of its own; only what `voxpool speak -o` was told to write.
    ///
    /// Examples:
    ///   voxpool cleanup
    ///   voxpool cleanup --yes --models-dir /srv/models
    #[command(verbatim_doc_comment)]
    Cleanup(CleanupArgs),
    /// One model in a process of its own, driven by a server over stdin/stdout
    /// (started by `voxpool serve`, not by hand).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// `voxpool worker`: what the server passes to a worker it starts.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The engine to host (`kokoro`, `chatterbox-turbo`, `tone`).
    #[arg(long)]
    pub engine: String,
    /// The model id the server knows it by (for logs and messages).
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub models_dir: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub t3_quant: Option<String>,
    /// Engine options, `key=value`.
    #[arg(long = "option")]
    pub options: Vec<String>,
    #[arg(long, default_value = "info")]
    pub log_level: String,
    #[arg(long, default_value = "text")]
    pub log_format: String,
}

impl WorkerArgs {
    /// The worker's engine and where it loads from.
    pub fn resolve(
        &self,
    ) -> Result<(crate::engine::WorkerSpec, crate::engine::LoadContext), String> {
        let device = DeviceSpec::parse(&self.device)?;
        let t3_quant = match &self.t3_quant {
            Some(q) => Some(q.parse().map_err(|e| format!("--t3-quant: {e}"))?),
            None => None,
        };
        let options = self
            .options
            .iter()
            .map(|o| {
                o.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| format!("--option {o:?}: expected key=value"))
            })
            .collect::<Result<_, _>>()?;
        let spec = crate::engine::WorkerSpec {
            engine: self.engine.clone(),
            options,
        };
        let ctx = crate::engine::LoadContext {
            models_dir: self.models_dir.clone(),
            device,
            t3_quant,
        };
        Ok((spec, ctx))
    }
}

/// How to reach a running server.
#[derive(Debug, Clone, Args)]
pub struct ServerUrl {
    /// The server's base URL (plain HTTP).
    #[arg(long, env = "VOXPOOL_URL", default_value = "http://localhost:5005")]
    pub url: String,
    /// API key sent as `Authorization: Bearer` (an admin key where keys are required).
    #[arg(long, env = "VOXPOOL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub server: ServerUrl,
    /// Print the server's JSON as it is.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model id or alias (default: the server's default model).
    pub model: Option<String>,
    #[command(flatten)]
    pub server: ServerUrl,
}

#[derive(Debug, Clone, Args)]
pub struct TimeoutArgs {
    /// Seconds of inactivity before the model is unloaded (at least 60).
    pub seconds: i64,
    /// Model id or alias (default: the server's default model).
    pub model: Option<String>,
    #[command(flatten)]
    pub server: ServerUrl,
}

#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// Model id or alias (`kokoro`, `chatterbox-turbo`, `tts-1`, ...).
    pub model: String,
    /// Folder with model weights (as for `serve`).
    #[arg(long, env = "VOXPOOL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// The Hugging Face hub to download from (a mirror, for instance).
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub hf_endpoint: String,
}

impl PullArgs {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }
}

#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Folder with model weights (as for `serve`).
    #[arg(long, env = "VOXPOOL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Delete without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl CleanupArgs {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }
}

/// Options of `voxpool keys`.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// Database URL (as for `serve`; also TORCHTS_DB_URL and DATABASE_URL).
    #[arg(long, env = "VOXPOOL_DB_URL", global = true)]
    pub db_url: Option<String>,
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it (only its SHA-256 is stored).
    Create {
        /// A label for people.
        #[arg(long, default_value = "default")]
        name: String,
        /// May use the admin routes (`/model/*`).
        #[arg(long)]
        admin: bool,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

impl KeysArgs {
    /// The database URL: the flag or its environment variables, else the default file.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        resolve_db_url(self.db_url.clone())
    }
}

/// `VOXPOOL_DB_URL` (given), `TORCHTS_DB_URL`, `DATABASE_URL`, else SQLite in ./data.
fn resolve_db_url(given: Option<String>) -> Result<String, ConfigError> {
    let url = given
        .or_else(|| non_empty_env("TORCHTS_DB_URL"))
        .or_else(|| non_empty_env("DATABASE_URL"));
    match url {
        Some(url) => normalize_db_url(&url).map_err(|r| invalid("VOXPOOL_DB_URL", &url, r)),
        None => Ok("sqlite://data/voxpool.db?mode=rwc".to_string()),
    }
}

/// Options of `voxpool speak`.
#[derive(Debug, Clone, Args)]
pub struct SpeakArgs {
    /// Text to speak; without it, lines are read from a prompt (one model load).
    pub text: Option<String>,
    /// Model id or alias.
    #[arg(short, long, default_value = "kokoro")]
    pub model: String,
    /// Voice (OpenAI names map to built-in voices; Kokoro blends like `af_bella(2)+af_sky(1)`).
    /// Defaults to `af_heart` where the model has it, else its first voice.
    #[arg(short, long)]
    pub voice: Option<String>,
    /// Output file; the extension picks the format (`.mp3`, `.flac`, `.wav`, `.pcm`). In interactive mode
    /// lines go to `<stem>-1.<ext>`, `<stem>-2.<ext>`, ...
    #[arg(short, long, default_value = "speech.wav")]
    pub output: PathBuf,
    /// Speaking rate, 0.25 to 4.0.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f32,
    /// The text is Kokoro phonemes (see `POST /v1/audio/phonemize`), not plain text.
    #[arg(long)]
    pub phonemes: bool,
    /// Folder with model weights (as for `serve`).
    #[arg(long, env = "VOXPOOL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Device: `cpu`, `cuda`, `cuda:N`, or empty for automatic.
    #[arg(long, env = "MODEL_DEVICE", default_value = "")]
    pub model_device: String,
}

impl SpeakArgs {
    /// The models folder: the flag or its environment variable, else the default.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }
}

/// Options of `voxpool serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VOXPOOL_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value = "5005")]
    pub port: String,
    /// Seconds of inactivity before a model is unloaded (`-1` or `never`: keep loaded;
    /// `0`: unload after each request). A value set through `POST /model/timeout` is
    /// persisted and wins over this default.
    #[arg(long, env = "MODEL_UNLOAD_TIMEOUT", default_value = "300")]
    pub model_unload_timeout: String,
    /// Device for the models: `cpu`, `cuda`, `cuda:N`, `metal`, or empty for automatic.
    #[arg(long, env = "MODEL_DEVICE", default_value = "")]
    pub model_device: String,
    /// Database URL: `sqlite://path.db`, SQLAlchemy style `sqlite:///path.db`, or
    /// `postgres://user:pass@host/db`. Also read from TORCHTS_DB_URL and DATABASE_URL.
    #[arg(long, env = "VOXPOOL_DB_URL")]
    pub db_url: Option<String>,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`); RUST_LOG filters win.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Return freed heap memory to the operating system after each request.
    #[arg(long, env = "FORCE_GC_AFTER_REQUEST", default_value = "false")]
    pub force_gc_after_request: String,
    /// Release the device allocator's cached blocks when a model is unloaded.
    #[arg(long, env = "CLEAR_CUDA_CACHE", default_value = "true")]
    pub clear_cuda_cache: String,
    /// Comma-separated models to load at start.
    #[arg(long, env = "MODEL_PRELOAD", default_value = "")]
    pub model_preload: String,
    /// Folder with model weights (Hugging Face cache layout or one folder per model).
    /// Defaults to `$HF_HOME/hub`, then `~/.cache/huggingface/hub`.
    #[arg(long, env = "VOXPOOL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Bytes of memory that loaded models may use together (suffixes K, M, G, KiB, MiB,
    /// GiB accepted); loading past it unloads the least recently used idle models.
    #[arg(long, env = "MODEL_MEMORY_BUDGET", default_value = "")]
    pub model_memory_budget: String,
    /// Storage of Chatterbox Turbo's T3 weights: `f32` (exact), `q8_0` or `q4k`
    /// (quantised at load: a decode step reads 4-8x fewer bytes); empty: `f32`, or
    /// what the checkpoint's `voxpool_chatterbox.json` says.
    #[arg(long, env = "CHATTERBOX_T3_QUANT", default_value = "")]
    pub chatterbox_t3_quant: String,
    /// Model served for the OpenAI aliases `tts-1`, `tts-1-hd` and `gpt-4o-mini-tts`.
    #[arg(long, env = "VOXPOOL_DEFAULT_MODEL", default_value = "kokoro")]
    pub default_model: String,
    /// Bootstrap admin API key.
    #[arg(long, env = "VOXPOOL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests per minute allowed per API key (or per client IP without keys); empty: off.
    #[arg(long, env = "RATE_LIMIT_RPM", default_value = "")]
    pub rate_limit_rpm: String,
    /// Requests that may arrive at once before the per-minute rate applies.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value = "")]
    pub rate_limit_burst: String,
    /// Speech requests one model serves at the same time; more wait in its queue.
    #[arg(long, env = "MODEL_MAX_CONCURRENCY", default_value = "4")]
    pub model_max_concurrency: String,
    /// Speech requests that may wait for one model; past it requests get 429.
    #[arg(long, env = "MODEL_MAX_QUEUE", default_value = "64")]
    pub model_max_queue: String,
    /// Seconds one speech request may synthesise before it is stopped (504); 0: no limit.
    #[arg(long, env = "SYNTHESIS_TIMEOUT", default_value = "300")]
    pub synthesis_timeout: String,
    /// Folder that `POST /load_voice` may read reference recordings from; paths
    /// outside it are refused. Unset: loading voices by path is off.
    #[arg(long, env = "VOXPOOL_VOICES_DIR")]
    pub voices_dir: Option<PathBuf>,
}

/// A setting that could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {var}={value:?}: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(var: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_string(),
        reason: reason.into(),
    }
}

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

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Per-client request rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
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
}

/// Per-model admission limits (`MODEL_MAX_CONCURRENCY`, `MODEL_MAX_QUEUE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub concurrency: usize,
    pub queue: usize,
}

impl Config {
    /// Validate `voxpool serve` options, reading the database aliases and `HF_HOME`.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let db_url = args
            .db_url
            .clone()
            .or_else(|| non_empty_env("TORCHTS_DB_URL"))
            .or_else(|| non_empty_env("DATABASE_URL"));
        let models_dir = args.models_dir.clone().unwrap_or_else(default_models_dir);
        Self::build(args, db_url, models_dir)
    }

    fn build(
        args: &ServeArgs,
        db_url: Option<String>,
        models_dir: PathBuf,
    ) -> Result<Self, ConfigError> {
        let port: u16 = args
            .port
            .trim()
            .parse()
            .map_err(|_| invalid("PORT", &args.port, "expected a port number 0-65535"))?;
        let bind = (args.host.trim(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| invalid("VOXPOOL_HOST", &args.host, "not an address or host name"))?;
        let unload_timeout = IdleTimeout::parse(&args.model_unload_timeout)
            .map_err(|r| invalid("MODEL_UNLOAD_TIMEOUT", &args.model_unload_timeout, r))?;
        let device = DeviceSpec::parse(&args.model_device)
            .map_err(|r| invalid("MODEL_DEVICE", &args.model_device, r))?;
        let db_url = match db_url {
            Some(url) => normalize_db_url(&url).map_err(|r| invalid("VOXPOOL_DB_URL", &url, r))?,
            None => "sqlite://data/voxpool.db?mode=rwc".to_string(),
        };
        let log_level = args.log_level.trim().to_ascii_lowercase();
        if !["error", "warn", "warning", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(invalid(
                "LOG_LEVEL",
                &args.log_level,
                "expected error, warn, info, debug or trace",
            ));
        }
        let log_level = if log_level == "warning" {
            "warn".into()
        } else {
            log_level
        };
        let log_format = match args.log_format.trim().to_ascii_lowercase().as_str() {
            "" | "text" | "pretty" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(invalid(
                    "LOG_FORMAT",
                    &args.log_format,
                    "expected text or json",
                ))
            }
        };
        let force_gc_after_request = parse_bool(&args.force_gc_after_request)
            .map_err(|r| invalid("FORCE_GC_AFTER_REQUEST", &args.force_gc_after_request, r))?;
        let clear_cuda_cache = parse_bool(&args.clear_cuda_cache)
            .map_err(|r| invalid("CLEAR_CUDA_CACHE", &args.clear_cuda_cache, r))?;
        let preload = args
            .model_preload
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let memory_budget = match args.model_memory_budget.trim() {
            "" => None,
            v => Some(
                parse_bytes(v)
                    .map_err(|r| invalid("MODEL_MEMORY_BUDGET", &args.model_memory_budget, r))?,
            ),
        };
        let default_model = args.default_model.trim().to_string();
        if default_model.is_empty() {
            return Err(invalid("VOXPOOL_DEFAULT_MODEL", "", "must name a model"));
        }
        let api_key = args
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| Secret(k.to_string()));
        let rate_limit = parse_rate_limit(&args.rate_limit_rpm, &args.rate_limit_burst)?;
        let t3_quant = match args.chatterbox_t3_quant.trim() {
            "" => None,
            v => Some(v.parse().map_err(|_| {
                invalid(
                    "CHATTERBOX_T3_QUANT",
                    &args.chatterbox_t3_quant,
                    "expected f32, q8_0 or q4k",
                )
            })?),
        };
        let count = |var: &'static str, value: &str, min: usize| {
            value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| invalid(var, value, format!("expected a whole number >= {min}")))
        };
        let admission = Admission {
            concurrency: count("MODEL_MAX_CONCURRENCY", &args.model_max_concurrency, 1)?,
            queue: count("MODEL_MAX_QUEUE", &args.model_max_queue, 0)?,
        };
        let synthesis_timeout = match count("SYNTHESIS_TIMEOUT", &args.synthesis_timeout, 0)? {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs as u64)),
        };
        Ok(Self {
            bind,
            unload_timeout,
            device,
            db_url,
            log_level,
            log_format,
            force_gc_after_request,
            clear_cuda_cache,
            preload,
            models_dir,
            memory_budget,
            default_model,
            api_key,
            rate_limit,
            t3_quant,
            admission,
            synthesis_timeout,
            voices_dir: args
                .voices_dir
                .clone()
                .filter(|d| !d.as_os_str().is_empty()),
            worker_exe: std::env::current_exe().ok(),
        })
    }

    /// Settings for an in-process server on `127.0.0.1:0` with the given database:
    /// what tests, benches and embedders start from.
    pub fn local(db_url: &str) -> Result<Self, ConfigError> {
        let args = ServeArgs::parse_from_defaults();
        let mut cfg = Self::build(&args, Some(db_url.to_string()), default_models_dir())?;
        cfg.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(cfg)
    }
}

impl ServeArgs {
    /// The defaults, ignoring the environment.
    fn parse_from_defaults() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: "5005".into(),
            model_unload_timeout: "300".into(),
            model_device: String::new(),
            db_url: None,
            log_level: "info".into(),
            log_format: "text".into(),
            force_gc_after_request: "false".into(),
            clear_cuda_cache: "true".into(),
            model_preload: String::new(),
            models_dir: None,
            model_memory_budget: String::new(),
            default_model: "kokoro".into(),
            chatterbox_t3_quant: String::new(),
            api_key: None,
            rate_limit_rpm: String::new(),
            rate_limit_burst: String::new(),
            model_max_concurrency: "4".into(),
            model_max_queue: "64".into(),
            synthesis_timeout: "300".into(),
            voices_dir: None,
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
    let number = |name: &str| non_empty_env(name).and_then(|v| v.trim().parse().ok());
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

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn default_models_dir() -> PathBuf {
    if let Some(home) = non_empty_env("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = non_empty_env("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/huggingface/hub")
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_bytes(value: &str) -> Result<u64, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected bytes, e.g. 4000000000, 4G or 3GiB".to_string())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err("unknown unit; use K, M, G, KiB, MiB or GiB".into()),
    };
    n.checked_mul(mult)
        .filter(|b| *b > 0)
        .ok_or_else(|| "must be a positive number of bytes".into())
}

fn parse_rate_limit(rpm: &str, burst: &str) -> Result<Option<RateLimit>, ConfigError> {
    let per_minute = match rpm.trim() {
        "" | "0" | "off" => return Ok(None),
        v => v
            .parse::<u32>()
            .map_err(|_| invalid("RATE_LIMIT_RPM", rpm, "expected requests per minute"))?,
    };
    let burst = match burst.trim() {
        "" => per_minute,
        v => v
            .parse::<u32>()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| invalid("RATE_LIMIT_BURST", burst, "expected a positive count"))?,
    };
    Ok(Some(RateLimit { per_minute, burst }))
}

/// Accept sqlx URLs, SQLAlchemy ones (`sqlite:///relative.db`, `sqlite:////absolute.db`,
/// `postgresql+psycopg2://`) and return what the database driver understands.
pub fn normalize_db_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        if rest.starts_with(":memory:") || rest == "//:memory:" {
            return Ok("sqlite::memory:".into());
        }
        // SQLAlchemy: three slashes then a relative path, four for an absolute one.
        let path_and_query = if let Some(p) = rest.strip_prefix("///") {
            p
        } else if let Some(p) = rest.strip_prefix("//") {
            p
        } else {
            rest
        };
        if path_and_query.is_empty() || path_and_query.starts_with('?') {
            return Err("no database file named".into());
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut query: Vec<&str> = query
            .map(|q| q.split('&').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if !query.iter().any(|kv| kv.starts_with("mode=")) {
            query.push("mode=rwc");
        }
        return Ok(format!("sqlite://{path}?{}", query.join("&")));
    }
    for prefix in [
        "postgresql+psycopg2://",
        "postgresql+asyncpg://",
        "postgresql://",
    ] {
        if let Some(rest) = url.strip_prefix(prefix) {
            return Ok(format!("postgres://{rest}"));
        }
    }
    if url.starts_with("postgres://") {
        return Ok(url.to_string());
    }
    Err("expected a sqlite:// or postgres:// URL".into())
}

/// The file behind a SQLite URL, if any (to create its folder before connecting).
pub fn sqlite_path(db_url: &str) -> Option<PathBuf> {
    let rest = db_url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bad_values_name_the_variable() {
        let mut args = ServeArgs::parse_from_defaults();
        args.model_unload_timeout = "abc".into();
        let err = Config::build(&args, None, PathBuf::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("MODEL_UNLOAD_TIMEOUT"), "{err}");

        let mut args = ServeArgs::parse_from_defaults();
        args.model_device = "tpu".into();
        let err = Config::build(&args, None, PathBuf::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("MODEL_DEVICE"), "{err}");

        let mut args = ServeArgs::parse_from_defaults();
        args.rate_limit_rpm = "lots".into();
        let err = Config::build(&args, None, PathBuf::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("RATE_LIMIT_RPM"), "{err}");
    }

    #[test]
    fn defaults_match_the_design() {
        let cfg = Config::build(&ServeArgs::parse_from_defaults(), None, PathBuf::new()).unwrap();
        assert_eq!(cfg.bind.port(), 5005);
        assert_eq!(cfg.db_url, "sqlite://data/voxpool.db?mode=rwc");
        assert_eq!(
            cfg.unload_timeout,
            IdleTimeout::After(Duration::from_secs(300))
        );
        assert!(cfg.clear_cuda_cache && !cfg.force_gc_after_request);
        assert_eq!(cfg.rate_limit, None);
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(
            parse_rate_limit("60", "").unwrap(),
            Some(RateLimit {
                per_minute: 60,
                burst: 60
            })
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let mut args = ServeArgs::parse_from_defaults();
        args.api_key = Some("sk-very-secret".into());
        let cfg = Config::build(&args, None, PathBuf::new()).unwrap();
        assert!(!format!("{cfg:?}").contains("sk-very-secret"));
    }
}
