//! Turning setting strings into typed values: clap's value parsers for the
//! server's options, and the settings read straight from the environment.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Arg, Command};

use super::{invalid, ConfigError, LogFormat, Secret};
use crate::engine::chatterbox::config::{S3GenQuant, T3Quant};

/// A setting where an empty value means "not set". (clap gives a field spelled
/// `Option<T>` an optional argument of `T`; this one is parsed whole, so that
/// `MODEL_MEMORY_BUDGET=` means unlimited, as the seed's empty values do.)
pub type OrEmpty<T> = Option<T>;

/// A comma-separated list, parsed whole (clap would take `Vec<T>` as a repeated flag).
pub type NameList = Vec<String>;

/// A clap value parser over `parse`, whose rejections become
/// [`ConfigError::Invalid`] naming the argument's environment variable (its flag
/// where it has none) and the value as given.
#[derive(Clone, Copy)]
pub struct Setting<T>(pub fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Setting<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let var = arg.map(setting_name).unwrap_or_default();
        let parse = self.0;
        let named = move |text: &str| parse(text).map_err(|reason| invalid(&var, text, reason));
        named.parse_ref(cmd, arg, value)
    }
}

/// What a message calls an argument: its environment variable, else its flag.
fn setting_name(arg: &Arg) -> String {
    match (arg.get_env(), arg.get_long()) {
        (Some(var), _) => var.to_string_lossy().into_owned(),
        (None, Some(long)) => format!("--{long}"),
        (None, None) => arg.get_id().to_string(),
    }
}

/// `cmd` without the values of the environment variables set now: what the
/// defaults and the command line alone give. An argument whose variable is unset
/// keeps its name for messages.
pub fn ignoring_env(cmd: Command) -> Command {
    cmd.mut_args(|arg| {
        let set = arg
            .get_env()
            .is_some_and(|var| std::env::var_os(var).is_some());
        if set {
            arg.env(None)
        } else {
            arg
        }
    })
}

/// `PORT`.
pub fn port(value: &str) -> Result<u16, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "expected a port number 0-65535".into())
}

/// Booleans as the seed writes them.
pub fn switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// `LOG_LEVEL`, lower case; `warning` is `warn`.
pub fn log_level(value: &str) -> Result<String, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "warning" => Ok("warn".into()),
        level @ ("error" | "warn" | "info" | "debug" | "trace") => Ok(level.into()),
        _ => Err("expected error, warn, info, debug or trace".into()),
    }
}

/// `LOG_FORMAT`.
pub fn log_format(value: &str) -> Result<LogFormat, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "text" | "pretty" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

/// Comma-separated names, blanks dropped.
pub fn names(value: &str) -> Result<NameList, String> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

/// A model name (`VOXPOOL_DEFAULT_MODEL`).
pub fn model_name(value: &str) -> Result<String, String> {
    match value.trim() {
        "" => Err("must name a model".into()),
        name => Ok(name.into()),
    }
}

/// A key, trimmed; empty when none was given.
pub fn secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value.trim()))
}

/// `MODEL_MEMORY_BUDGET`: bytes, empty for unlimited.
pub fn budget(value: &str) -> Result<OrEmpty<u64>, String> {
    match value.trim() {
        "" => Ok(None),
        v => parse_bytes(v).map(Some),
    }
}

/// `CHATTERBOX_S3GEN_QUANT`, empty for the checkpoint's choice.
pub fn s3gen_quant(value: &str) -> Result<OrEmpty<S3GenQuant>, String> {
    match value.trim() {
        "" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| "expected f32 or int8".into()),
    }
}

/// `CHATTERBOX_T3_QUANT`, empty for the checkpoint's choice.
pub fn t3_quant(value: &str) -> Result<OrEmpty<T3Quant>, String> {
    match value.trim() {
        "" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| "expected f32, q8_0 or q4k".into()),
    }
}

/// `RATE_LIMIT_RPM`: empty, `0` or `off` for no limit.
pub fn per_minute(value: &str) -> Result<OrEmpty<u32>, String> {
    match value.trim() {
        "" | "0" | "off" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| "expected requests per minute".into()),
    }
}

/// `RATE_LIMIT_BURST`: empty for the per-minute rate.
pub fn burst(value: &str) -> Result<OrEmpty<u32>, String> {
    match value.trim() {
        "" => Ok(None),
        v => v
            .parse()
            .ok()
            .filter(|b| *b > 0)
            .map(Some)
            .ok_or_else(|| "expected a positive count".into()),
    }
}

/// A count of at least one.
pub fn at_least_one(value: &str) -> Result<usize, String> {
    count(value, 1)
}

/// A count, zero included.
pub fn any_count(value: &str) -> Result<usize, String> {
    count(value, 0)
}

fn count(value: &str, min: usize) -> Result<usize, String> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| format!("expected a whole number >= {min}"))
}

/// Whole seconds; `0` for no limit.
pub fn time_limit(value: &str) -> Result<OrEmpty<Duration>, String> {
    match any_count(value)? {
        0 => Ok(None),
        secs => Ok(Some(Duration::from_secs(secs as u64))),
    }
}

pub fn parse_bytes(value: &str) -> Result<u64, String> {
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

pub(super) fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
/// `$XDG_CACHE_HOME/voxpool/language-packs`, else `~/.cache/voxpool/language-packs`.
pub fn default_language_packs_dir() -> PathBuf {
    let cache = non_empty_env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(non_empty_env("HOME").unwrap_or_else(|| ".".into())).join(".cache")
        });
    cache.join("voxpool/language-packs")
}

/// A language code or tag (`--language`).
pub fn language(code: &str) -> Result<crate::text::Language, String> {
    crate::text::g2p::parse_language(code).map_err(|e| e.to_string())
}

pub fn default_models_dir() -> PathBuf {
    if let Some(home) = non_empty_env("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = non_empty_env("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/huggingface/hub")
}

/// The database URL given as `VOXPOOL_DB_URL`, else `TORCHTS_DB_URL`, else `DATABASE_URL`.
pub fn db_url_from_env(given: Option<String>) -> Option<String> {
    given
        .or_else(|| non_empty_env("TORCHTS_DB_URL"))
        .or_else(|| non_empty_env("DATABASE_URL"))
}

/// `url` in the form the database driver understands, else SQLite in ./data.
pub fn database_url(url: Option<String>) -> Result<String, ConfigError> {
    match url {
        Some(url) => {
            crate::store::normalize_db_url(&url).map_err(|r| invalid("VOXPOOL_DB_URL", &url, r))
        }
        None => Ok("sqlite://data/voxpool.db?mode=rwc".to_string()),
    }
}
