//! The subcommands other than `serve` and the options each takes.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::parse::{database_url, db_url_from_env, default_models_dir, OrEmpty, Setting};
use super::{ConfigError, LogFormat, ServeArgs, TextArgs};
use crate::engine::chatterbox::config::{S3GenQuant, T3Quant};
use crate::engine::DeviceSpec;

/// Self-hosted, OpenAI-compatible speech server.
#[derive(Debug, Parser)]
#[command(
    name = "voxpool",
    version,
    override_usage = "voxpool [SERVE OPTIONS]\n       voxpool <COMMAND>"
)]
#[command(
    after_help = "Without a subcommand voxpool serves, taking the options of `voxpool serve --help`.\n\n\
    Examples:\n  voxpool                         # serve on 0.0.0.0:5005\n  \
    MODEL_UNLOAD_TIMEOUT=120 voxpool serve --port 8080\n  voxpool openapi > openapi.json"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parse this process's command line and the environment. Without a subcommand
    /// (nothing, or options only) it is `serve`, so the server's settings are read
    /// and checked only when it is the server that runs.
    pub fn try_parse_args() -> Result<Self, clap::Error> {
        Self::try_parse_from(serve_by_default(std::env::args_os()))
    }
}

/// The command line with `serve` inserted where no subcommand was named; help and
/// version requests stay the program's own.
fn serve_by_default(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.is_empty() {
        args.push("voxpool".into());
    }
    let serve = match args.get(1).map(|a| a.to_string_lossy()) {
        None => true,
        Some(first) => {
            first.starts_with('-') && !["-h", "--help", "-V", "--version"].contains(&&*first)
        }
    };
    if serve {
        args.insert(1, "serve".into());
    }
    args
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default when no subcommand is given).
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
    /// Manage the stored pronunciations of a running server: a word stored here is
    /// read with its phonemes by every request in its language (on every replica).
    ///
    /// Examples:
    ///   voxpool pronounce add Kokoro "kˈOkəɹO" --language a
    ///   voxpool pronounce add 東京 "tokʲˈoː" --language ja --model kokoro
    ///   voxpool pronounce list --language a
    ///   voxpool pronounce rm pron_0123abcd...
    ///
    /// Adding and removing need an admin key where keys are in use.
    #[command(verbatim_doc_comment)]
    Pronounce(PronounceArgs),
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
    #[arg(long, default_value = "cpu", value_parser = DeviceSpec::parse)]
    pub device: DeviceSpec,
    #[arg(long, value_parser = |s: &str| s.parse::<T3Quant>())]
    pub t3_quant: Option<T3Quant>,
    #[arg(long, value_parser = |s: &str| s.parse::<S3GenQuant>())]
    pub s3gen_quant: Option<S3GenQuant>,
    /// Engine options, `key=value`.
    #[arg(long = "option", value_parser = key_value)]
    pub options: Vec<(String, String)>,
    #[arg(long, default_value = "info")]
    pub log_level: String,
    #[arg(long, default_value = "text", value_parser = super::parse::log_format)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub text: TextArgs,
}

impl Command {
    /// The G2P settings of a command that speaks or fetches language packs.
    pub fn text_args(&self) -> Option<&TextArgs> {
        match self {
            Command::Serve(args) => Some(&args.text),
            Command::Speak(args) => Some(&args.text_settings),
            Command::Pull(args) => Some(&args.text),
            Command::Worker(args) => Some(&args.text),
            _ => None,
        }
    }
}

/// `key=value`.
fn key_value(option: &str) -> Result<(String, String), String> {
    option
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{option:?}: expected key=value"))
}

impl WorkerArgs {
    /// The worker's engine and where it loads from.
    pub fn resolve(&self) -> (crate::engine::WorkerSpec, crate::engine::LoadContext) {
        let spec = crate::engine::WorkerSpec {
            engine: self.engine.clone(),
            options: self.options.clone(),
        };
        let ctx = crate::engine::LoadContext {
            models_dir: self.models_dir.clone(),
            device: self.device,
            t3_quant: self.t3_quant,
            s3gen_quant: self.s3gen_quant,
        };
        (spec, ctx)
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

/// Options of `voxpool pronounce`.
#[derive(Debug, Clone, Args)]
pub struct PronounceArgs {
    #[command(subcommand)]
    pub action: PronounceAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PronounceAction {
    /// Store how WORD is read (or change it: one entry per word, whatever its case,
    /// language and model).
    Add {
        /// The word as it appears in text.
        word: String,
        /// Its Kokoro phonemes, as `POST /v1/audio/phonemize` writes them.
        phonemes: String,
        /// The language: a Kokoro code (`a`, `b`, `e`, `f`, `h`, `i`, `j`, `p`,
        /// `z`) or a tag such as `en-us` or `ja`.
        #[arg(long, short)]
        language: String,
        /// Limit the entry to one model (default: every model).
        #[arg(long, short)]
        model: Option<String>,
        #[command(flatten)]
        server: ServerUrl,
    },
    /// List the stored pronunciations.
    List {
        /// Only those of one language.
        #[arg(long, short)]
        language: Option<String>,
        #[command(flatten)]
        server: ServerUrl,
    },
    /// Delete a stored pronunciation by id.
    Rm {
        /// The entry's id (`pron_…`, as `list` shows).
        id: String,
        #[command(flatten)]
        server: ServerUrl,
    },
}

#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// Model id or alias (`kokoro`, `chatterbox-turbo`, `tts-1`, ...).
    pub model: String,
    /// Folder with model weights (as for `serve`).
    #[arg(long, env = "VOXPOOL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// The Hugging Face hub to download from (a mirror, for instance).
    #[arg(long, env = "HF_ENDPOINT", default_value = crate::hub::DEFAULT_ENDPOINT)]
    pub hf_endpoint: String,
    /// The Python package index (its simple API, as `pip --index-url` takes it) the
    /// language packs come from: Kokoro's Japanese and Mandarin dictionaries are
    /// published there.
    #[arg(long, env = "VOXPOOL_PYPI_URL", default_value = crate::packs::DEFAULT_INDEX)]
    pub pypi_url: String,
    /// Fetch only the model's language packs, not its weights.
    #[arg(long)]
    pub only_language_packs: bool,
    #[command(flatten)]
    pub text: TextArgs,
}

impl PullArgs {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }

    /// Where to download from, and how this installation spells the pull command.
    pub fn source(&self) -> crate::hub::Source {
        crate::hub::Source {
            endpoint: self.hf_endpoint.clone(),
            pull_command: super::serve::pull_command(),
        }
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
        database_url(db_url_from_env(self.db_url.clone()))
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
    /// The language to read the text in (`a`, `b`, `e`, `f`, `h`, `i`, `j`, `p`, `z`
    /// or a tag such as `ja`); default: the voice's first letter.
    #[arg(long, alias = "lang-code", value_parser = super::parse::language)]
    pub language: Option<crate::text::Language>,
    #[command(flatten)]
    pub text_settings: TextArgs,
    /// Folder with model weights (as for `serve`).
    #[arg(long, env = "VOXPOOL_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Device: `cpu`, `cuda`, `cuda:N`, or empty for automatic.
    #[arg(
        long,
        env = "MODEL_DEVICE",
        default_value = "",
        value_parser = Setting(DeviceSpec::parse_named)
    )]
    pub model_device: OrEmpty<DeviceSpec>,
}

impl SpeakArgs {
    /// The models folder: the flag or its environment variable, else the default.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Vec<String> {
        serve_by_default(line.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        assert_eq!(args(&["voxpool"]), ["voxpool", "serve"]);
        assert_eq!(
            args(&["voxpool", "--port", "8080"]),
            ["voxpool", "serve", "--port", "8080"]
        );
        assert_eq!(args(&["voxpool", "status"]), ["voxpool", "status"]);
        assert_eq!(args(&["voxpool", "--help"]), ["voxpool", "--help"]);
        assert_eq!(args(&["voxpool", "-V"]), ["voxpool", "-V"]);
    }
}
