//! `voxpool serve`: the server's options, each parsed into its type by clap (one
//! default per setting, on the argument), and the validated [`Config`] made of them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, FromArgMatches};

use super::parse::{self, OrEmpty, Setting};
use super::{
    invalid, Admission, AutoPull, Config, ConfigError, IdleTimeout, LogFormat, RateLimit, Secret,
};
use crate::engine::chatterbox::config::{S3GenQuant, T3Quant};
use crate::engine::DeviceSpec;
use crate::hub;

/// Options of `voxpool serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VOXPOOL_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value = "5005", value_parser = Setting(parse::port))]
    pub port: u16,
    /// Seconds of inactivity before a model is unloaded (`-1` or `never`: keep loaded;
    /// `0`: unload after each request). A value set through `POST /model/timeout` is
    /// persisted and wins over this default.
    #[arg(
        long,
        env = "MODEL_UNLOAD_TIMEOUT",
        default_value = "300",
        value_parser = Setting(IdleTimeout::parse)
    )]
    pub model_unload_timeout: IdleTimeout,
    /// Device for the models: `cpu`, `cuda`, `cuda:N`, `metal`, or empty for automatic.
    #[arg(
        long,
        env = "MODEL_DEVICE",
        default_value = "",
        value_parser = Setting(DeviceSpec::parse_named)
    )]
    pub model_device: OrEmpty<DeviceSpec>,
    /// Database URL: `sqlite://path.db`, SQLAlchemy style `sqlite:///path.db`, or
    /// `postgres://user:pass@host/db`. Also read from TORCHTS_DB_URL and DATABASE_URL.
    #[arg(long, env = "VOXPOOL_DB_URL")]
    pub db_url: Option<String>,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`); RUST_LOG filters win.
    #[arg(
        long,
        env = "LOG_LEVEL",
        default_value = "info",
        value_parser = Setting(parse::log_level)
    )]
    pub log_level: String,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        env = "LOG_FORMAT",
        default_value = "text",
        value_parser = Setting(parse::log_format)
    )]
    pub log_format: LogFormat,
    /// Return freed heap memory to the operating system after each request.
    #[arg(
        long,
        env = "FORCE_GC_AFTER_REQUEST",
        default_value = "false",
        value_parser = Setting(parse::switch),
        action = ArgAction::Set
    )]
    pub force_gc_after_request: bool,
    /// Release the device allocator's cached blocks when a model is unloaded.
    #[arg(
        long,
        env = "CLEAR_CUDA_CACHE",
        default_value = "true",
        value_parser = Setting(parse::switch),
        action = ArgAction::Set
    )]
    pub clear_cuda_cache: bool,
    /// Comma-separated models to load at start.
    #[arg(
        long,
        env = "MODEL_PRELOAD",
        default_value = "",
        value_parser = Setting(parse::names)
    )]
    pub model_preload: parse::NameList,
    /// Folder with model weights (Hugging Face cache layout or one folder per model).
    /// Defaults to `$HF_HOME/hub`, then `~/.cache/huggingface/hub`.
    #[arg(long, env = "VOXPOOL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(flatten)]
    pub text: super::TextArgs,
    /// Bytes of memory that loaded models may use together (suffixes K, M, G, KiB, MiB,
    /// GiB accepted); loading past it unloads the least recently used idle models.
    #[arg(
        long,
        env = "MODEL_MEMORY_BUDGET",
        default_value = "",
        value_parser = Setting(parse::budget)
    )]
    pub model_memory_budget: OrEmpty<u64>,
    /// Storage of Chatterbox Turbo's T3 weights: `f32` (exact), `q8_0` or `q4k`
    /// (quantised at load: a decode step reads 4-8x fewer bytes); empty: what the
    /// checkpoint's `voxpool_chatterbox.json` says, else `q8_0`.
    #[arg(
        long,
        env = "CHATTERBOX_T3_QUANT",
        default_value = "",
        value_parser = Setting(parse::t3_quant)
    )]
    pub chatterbox_t3_quant: OrEmpty<T3Quant>,
    /// How Chatterbox Turbo's S3Gen flow multiplies: `f32` (exact) or `int8` (its
    /// matrix products in 8-bit integers on x86-64 CPUs with AVX2 or AVX-512 VNNI,
    /// 1.4-1.6x faster; f32 elsewhere); empty: what the checkpoint's `voxpool_chatterbox.json` says, else
    /// `f32`.
    #[arg(
        long,
        env = "CHATTERBOX_S3GEN_QUANT",
        default_value = "",
        value_parser = Setting(parse::s3gen_quant)
    )]
    pub chatterbox_s3gen_quant: OrEmpty<S3GenQuant>,
    /// Model served for the OpenAI aliases `tts-1`, `tts-1-hd` and `gpt-4o-mini-tts`.
    #[arg(
        long,
        env = "VOXPOOL_DEFAULT_MODEL",
        default_value = "kokoro",
        value_parser = Setting(parse::model_name)
    )]
    pub default_model: String,
    /// Bootstrap admin API key.
    #[arg(
        long,
        env = "VOXPOOL_API_KEY",
        hide_env_values = true,
        value_parser = Setting(parse::secret)
    )]
    pub api_key: Option<Secret>,
    /// Requests per minute allowed per API key (or per client IP without keys); empty: off.
    #[arg(
        long,
        env = "RATE_LIMIT_RPM",
        default_value = "",
        value_parser = Setting(parse::per_minute)
    )]
    pub rate_limit_rpm: OrEmpty<u32>,
    /// Requests that may arrive at once before the per-minute rate applies.
    #[arg(
        long,
        env = "RATE_LIMIT_BURST",
        default_value = "",
        value_parser = Setting(parse::burst)
    )]
    pub rate_limit_burst: OrEmpty<u32>,
    /// Speech requests one model serves at the same time; more wait in its queue.
    #[arg(
        long,
        env = "MODEL_MAX_CONCURRENCY",
        default_value = "4",
        value_parser = Setting(parse::at_least_one)
    )]
    pub model_max_concurrency: usize,
    /// Speech requests that may wait for one model; past it requests get 429.
    #[arg(
        long,
        env = "MODEL_MAX_QUEUE",
        default_value = "64",
        value_parser = Setting(parse::any_count)
    )]
    pub model_max_queue: usize,
    /// Seconds one speech request may synthesise before it is stopped (504); 0: no limit.
    #[arg(
        long,
        env = "SYNTHESIS_TIMEOUT",
        default_value = "300",
        value_parser = Setting(parse::time_limit)
    )]
    pub synthesis_timeout: OrEmpty<Duration>,
    /// Folder that `POST /load_voice` may read reference recordings from; paths
    /// outside it are refused. Unset: loading voices by path is off.
    #[arg(long, env = "VOXPOOL_VOICES_DIR")]
    pub voices_dir: Option<PathBuf>,
    /// Download a model's missing files from the Hugging Face hub on its first use
    /// (what `voxpool pull` does); `false`: a request for it answers 503 with the pull
    /// command.
    #[arg(
        long,
        env = "VOXPOOL_AUTO_PULL",
        default_value = "true",
        value_parser = Setting(parse::switch),
        action = ArgAction::Set
    )]
    pub auto_pull: bool,
    /// Never contact the hub, as Hugging Face tools do with `HF_HUB_OFFLINE=1`.
    #[arg(
        long,
        env = "HF_HUB_OFFLINE",
        default_value = "false",
        value_parser = Setting(parse::switch),
        action = ArgAction::Set
    )]
    pub hf_hub_offline: bool,
    /// The Hugging Face hub to download from (a mirror, for instance).
    #[arg(long, env = "HF_ENDPOINT", default_value = crate::hub::DEFAULT_ENDPOINT)]
    pub hf_endpoint: String,
}

impl ServeArgs {
    /// Parse `args` (flags only, no program name) with the defaults, ignoring the
    /// environment.
    pub(crate) fn parse_without_env(args: &[&str]) -> Result<Self, clap::Error> {
        let cmd = parse::ignoring_env(Self::augment_args(clap::Command::new("voxpool")));
        let matches =
            cmd.try_get_matches_from(std::iter::once("voxpool").chain(args.iter().copied()))?;
        Self::from_arg_matches(&matches)
    }
}

impl Config {
    /// Validate `voxpool serve` options, reading the database aliases and `HF_HOME`.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let db_url = parse::db_url_from_env(args.db_url.clone());
        let models_dir = args
            .models_dir
            .clone()
            .unwrap_or_else(parse::default_models_dir);
        Self::build(args, db_url, models_dir)
    }

    /// What the parsed options leave to check or resolve: the listening address, the
    /// database URL, an automatic device, the rate limit's parts.
    fn build(
        args: &ServeArgs,
        db_url: Option<String>,
        models_dir: PathBuf,
    ) -> Result<Self, ConfigError> {
        let bind = (args.host.trim(), args.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| invalid("VOXPOOL_HOST", &args.host, "not an address or host name"))?;
        let rate_limit = args.rate_limit_rpm.map(|per_minute| RateLimit {
            per_minute,
            burst: args.rate_limit_burst.unwrap_or(per_minute),
        });
        // Found once: it looks at this executable's path.
        let pull = pull_command();
        Ok(Self {
            bind,
            unload_timeout: args.model_unload_timeout,
            device: args.model_device.unwrap_or_else(DeviceSpec::auto),
            db_url: parse::database_url(db_url)?,
            log_level: args.log_level.clone(),
            log_format: args.log_format,
            force_gc_after_request: args.force_gc_after_request,
            clear_cuda_cache: args.clear_cuda_cache,
            preload: args.model_preload.clone(),
            models_dir,
            memory_budget: args.model_memory_budget,
            default_model: args.default_model.clone(),
            api_key: args.api_key.clone().filter(|k| !k.expose().is_empty()),
            rate_limit,
            t3_quant: args.chatterbox_t3_quant,
            s3gen_quant: args.chatterbox_s3gen_quant,
            admission: Admission {
                concurrency: args.model_max_concurrency,
                queue: args.model_max_queue,
            },
            synthesis_timeout: args.synthesis_timeout,
            voices_dir: args
                .voices_dir
                .clone()
                .filter(|d| !d.as_os_str().is_empty()),
            worker_exe: std::env::current_exe().ok(),
            auto_pull: (args.auto_pull && !args.hf_hub_offline).then(|| AutoPull {
                source: hub::Source {
                    endpoint: args.hf_endpoint.clone(),
                    pull_command: pull.clone(),
                },
                wait: args
                    .synthesis_timeout
                    .unwrap_or(Duration::from_secs(DOWNLOAD_WAIT_SECS)),
            }),
            pull_command: pull,
        })
    }

    /// Settings for an in-process server on `127.0.0.1:0` with the given database:
    /// what tests, benches and embedders start from.
    pub fn local(db_url: &str) -> Result<Self, ConfigError> {
        let args = ServeArgs::parse_without_env(&[])
            .expect("the defaults of voxpool serve are valid settings");
        let mut cfg = Self::build(&args, Some(db_url.to_string()), parse::default_models_dir())?;
        cfg.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        // An embedded server fetches nothing unless told where from.
        cfg.auto_pull = None;
        Ok(cfg)
    }
}

/// How long a request waits for its model's download, when `SYNTHESIS_TIMEOUT` is off.
const DOWNLOAD_WAIT_SECS: u64 = 300;

/// The `voxpool pull` command as this installation runs it: a binary that Cargo
/// built in a source tree (`target/release/voxpool`) also names the Cargo command,
/// for users who started the server with `cargo run` and have no `voxpool` on their
/// `PATH`.
pub(crate) fn pull_command() -> String {
    let exe = std::env::current_exe().ok();
    let profile = exe.as_deref().and_then(|exe| {
        let dir = exe.parent()?;
        let from_cargo = dir.parent()?.file_name()? == "target";
        (from_cargo && exe.file_stem()? == "voxpool").then(|| dir.file_name())?
    });
    match profile.and_then(|p| p.to_str()) {
        Some("release") => {
            "voxpool pull {model} (or: cargo run --release -- pull {model})".to_string()
        }
        Some("debug") => "voxpool pull {model} (or: cargo run -- pull {model})".to_string(),
        _ => "voxpool pull {model}".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_follow_auto_pull_and_offline_mode() {
        let cfg = |args: &[&str]| {
            let args = ServeArgs::parse_without_env(args).unwrap();
            Config::build(&args, Some("sqlite::memory:".into()), "/m".into()).unwrap()
        };
        let on = cfg(&[]).auto_pull.expect("on by default");
        assert_eq!(on.source.endpoint, crate::hub::DEFAULT_ENDPOINT);
        assert_eq!(on.wait, Duration::from_secs(300));
        assert!(cfg(&["--auto-pull", "false"]).auto_pull.is_none());
        assert!(cfg(&["--hf-hub-offline", "1"]).auto_pull.is_none());
        let mirror = cfg(&["--hf-endpoint", "http://mirror", "--synthesis-timeout", "0"]);
        let mirror = mirror.auto_pull.unwrap();
        assert_eq!(mirror.source.endpoint, "http://mirror");
        assert_eq!(mirror.wait, Duration::from_secs(DOWNLOAD_WAIT_SECS));
        assert!(cfg(&[]).pull_command.starts_with("voxpool pull {model}"));
    }
    use crate::config::rejected_setting;

    /// `voxpool serve` with these flags and no environment, as the server would
    /// report a bad value.
    fn config(flags: &[&str]) -> Result<Config, String> {
        let args = ServeArgs::parse_without_env(flags)
            .map_err(|e| rejected_setting(&e).map_or_else(|| e.to_string(), ToString::to_string))?;
        Config::build(&args, None, PathBuf::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&["--model-unload-timeout", "abc"]).unwrap_err();
        assert!(err.contains("MODEL_UNLOAD_TIMEOUT"), "{err}");

        let err = config(&["--model-device", "tpu"]).unwrap_err();
        assert!(err.contains("MODEL_DEVICE"), "{err}");

        let err = config(&["--rate-limit-rpm", "lots"]).unwrap_err();
        assert!(err.contains("RATE_LIMIT_RPM"), "{err}");
    }

    #[test]
    fn messages_give_the_variable_value_and_reason() {
        assert_eq!(
            config(&["--port", "http"]).unwrap_err(),
            "invalid PORT=\"http\": expected a port number 0-65535"
        );
        assert_eq!(
            config(&["--force-gc-after-request", "maybe"]).unwrap_err(),
            "invalid FORCE_GC_AFTER_REQUEST=\"maybe\": expected true or false"
        );
        assert_eq!(
            config(&["--model-max-concurrency", "0"]).unwrap_err(),
            "invalid MODEL_MAX_CONCURRENCY=\"0\": expected a whole number >= 1"
        );
    }

    #[test]
    fn defaults_match_the_design() {
        let cfg = config(&[]).unwrap();
        assert_eq!(cfg.bind.port(), 5005);
        assert_eq!(cfg.db_url, "sqlite://data/voxpool.db?mode=rwc");
        assert_eq!(
            cfg.unload_timeout,
            IdleTimeout::After(Duration::from_secs(300))
        );
        assert!(cfg.clear_cuda_cache && !cfg.force_gc_after_request);
        assert_eq!(cfg.rate_limit, None);
        assert_eq!(parse::parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(
            config(&["--rate-limit-rpm", "60"]).unwrap().rate_limit,
            Some(RateLimit {
                per_minute: 60,
                burst: 60
            })
        );
        assert_eq!(
            cfg.admission,
            Admission {
                concurrency: 4,
                queue: 64
            }
        );
        assert_eq!(cfg.synthesis_timeout, Some(Duration::from_secs(300)));
        assert_eq!(cfg.log_level, "info");
        assert_eq!(cfg.default_model, "kokoro");
    }

    #[test]
    fn seed_spellings_and_empty_values() {
        let cfg = config(&[
            "--model-unload-timeout",
            "never",
            "--force-gc-after-request",
            "yes",
            "--clear-cuda-cache",
            "off",
            "--model-preload",
            "kokoro, ,tone",
            "--model-memory-budget",
            "",
            "--log-level",
            "WARNING",
            "--log-format",
            "json",
            "--synthesis-timeout",
            "0",
            "--model-device",
            "cpu",
        ])
        .unwrap();
        assert_eq!(cfg.unload_timeout, IdleTimeout::Never);
        assert!(cfg.force_gc_after_request && !cfg.clear_cuda_cache);
        assert_eq!(cfg.preload, ["kokoro", "tone"]);
        assert_eq!(cfg.memory_budget, None);
        assert_eq!(cfg.log_level, "warn");
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.synthesis_timeout, None);
        assert_eq!(cfg.device, DeviceSpec::Cpu);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let cfg = config(&["--api-key", "sk-very-secret"]).unwrap();
        assert!(!format!("{cfg:?}").contains("sk-very-secret"));
        let args = ServeArgs::parse_without_env(&["--api-key", "sk-very-secret"]).unwrap();
        assert!(!format!("{args:?}").contains("sk-very-secret"));
        assert_eq!(config(&["--api-key", " "]).unwrap().api_key, None);
    }
}
