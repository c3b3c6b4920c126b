//! Model files from the Hugging Face hub (hf-hub) into the models folder, in the HF
//! cache layout the engines read: for `voxpool pull` and for a server that fetches a
//! model's files on first use.
//!
//! Files already there are not fetched again; an interrupted download resumes from
//! its `.part` file; a file whose hub ETag is a SHA-256 (every LFS file: the
//! weights) is hashed after download and removed again when it does not match, so a
//! load never reads a damaged or half-written file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hf_hub::api::sync::{ApiBuilder, ApiError};
use sha2::{Digest, Sha256};

use crate::engine::chatterbox::tts_turbo::{self, HUB_REPO as TURBO_REPO};
use crate::engine::kokoro::weights::{self, HUB_REPO as KOKORO_REPO};

/// The hub voxpool downloads from unless `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// What to fetch for a model: its hub repository and which of its files.
struct Plan {
    repo: &'static str,
    required: Vec<&'static str>,
    /// Further files, by name, that are fetched when the repository has them.
    optional: fn(&str) -> bool,
}

fn plan(model: &str) -> Option<Plan> {
    match model {
        "kokoro" => Some(Plan {
            repo: KOKORO_REPO,
            required: vec![weights::CONFIG, weights::CHECKPOINT],
            optional: |f| f.starts_with("voices/") && f.ends_with(".pt"),
        }),
        "chatterbox-turbo" => Some(Plan {
            repo: TURBO_REPO,
            required: vec![
                tts_turbo::T3_WEIGHTS,
                tts_turbo::S3GEN_WEIGHTS,
                tts_turbo::CONDS,
                "vocab.json",
                "merges.txt",
            ],
            optional: |f| {
                matches!(
                    f,
                    "ve.safetensors"
                        | "added_tokens.json"
                        | "special_tokens_map.json"
                        | "tokenizer_config.json"
                        | "tokenizer.json"
                )
            },
        }),
        _ => None,
    }
}

/// Whether voxpool knows where on the hub `model`'s files are.
pub fn has_files(model: &str) -> bool {
    plan(model).is_some()
}

/// Why files could not be fetched; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{model} has no files on the hub")]
    NoFiles { model: String },
    #[error(
        "cannot reach the Hugging Face hub at {endpoint} ({reason}); downloading needs network \
         access. Files already downloaded are kept and a retry resumes. Offline, run `{pull}` \
         on a machine that has network and copy the models folder, or copy the hub files into \
         it, and set HF_HUB_OFFLINE=1"
    )]
    Unreachable {
        endpoint: String,
        reason: String,
        pull: String,
    },
    #[error("the hub refused access ({0}); set HF_TOKEN for gated models")]
    Refused(String),
    #[error("the hub answered with an error ({0})")]
    Hub(String),
    #[error("{repo} on the hub has no {file}")]
    MissingOnHub { repo: String, file: String },
    #[error("cannot write into the models folder {folder}: {reason}")]
    Disk { folder: PathBuf, reason: String },
    #[error(
        "{file}: checksum mismatch (SHA-256 {got}, the hub says {want}); the file was removed, \
         a retry downloads it again"
    )]
    Checksum {
        file: String,
        got: String,
        want: String,
    },
    #[error("download failed: {0}")]
    Other(String),
}

/// A download as it goes, shared with whoever watches it (the status endpoint, the
/// metrics, the log, the waiting requests).
#[derive(Debug, Default)]
pub struct Progress {
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    file: Mutex<String>,
}

/// One look at a [`Progress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The file being fetched.
    pub file: String,
}

impl ProgressSnapshot {
    /// Whole percent done (0 while the total is unknown).
    pub fn percent(&self) -> u64 {
        (self.bytes_done * 100)
            .checked_div(self.bytes_total)
            .unwrap_or(0)
            .min(100)
    }

    /// "45% of 327 MB".
    pub fn describe(&self) -> String {
        format!(
            "{}% of {:.0} MB",
            self.percent(),
            self.bytes_total as f64 / 1e6
        )
    }
}

impl Progress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            file: self.file.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// Told of a download's progress: at each further tenth of the bytes, and of each
/// chunk's bytes (for a counter).
pub trait Watcher: Send + Sync {
    fn tenth(&self, model: &str, at: &ProgressSnapshot);
    fn bytes(&self, model: &str, bytes: u64) {
        let _ = (model, bytes);
    }
}

/// What a fetch brought: how many files the model has, and the bytes downloaded now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    pub files: usize,
    pub downloaded: u64,
    pub bytes_on_disk: u64,
}

/// Where to fetch from and how the command that fetches by hand is spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub endpoint: String,
    /// The `voxpool pull` command for this installation (`{model}` is replaced).
    pub pull_command: String,
}

impl Source {
    pub fn pull_command(&self, model: &str) -> String {
        pull_command_for(&self.pull_command, model)
    }
}

/// The pull command for `model`, from a template with `{model}` in it.
pub fn pull_command_for(template: &str, model: &str) -> String {
    template.replace("{model}", model)
}

/// Fetch the files of `model` that `models_dir` lacks, reporting to `progress` and
/// `watcher`. Blocking: run it on a blocking thread.
pub fn fetch(
    model: &str,
    models_dir: &Path,
    source: &Source,
    progress: &Progress,
    watcher: &dyn Watcher,
) -> Result<Fetched, HubError> {
    let plan = plan(model).ok_or_else(|| HubError::NoFiles {
        model: model.to_string(),
    })?;
    let disk = |e: &dyn std::fmt::Display| HubError::Disk {
        folder: models_dir.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(models_dir).map_err(|e| disk(&e))?;
    let endpoint = source.endpoint.as_str();
    let hub_error = |e: ApiError| classify(e, source, model, models_dir);
    let api = ApiBuilder::new()
        .with_endpoint(endpoint.to_string())
        .with_cache_dir(models_dir.to_path_buf())
        .with_progress(false)
        .build()
        .map_err(hub_error)?;
    let repo = api.model(plan.repo.to_string());
    let info: RepoInfo = repo
        .info_request()
        .query("blobs", "true")
        .call()
        .map_err(|e| hub_error(ApiError::RequestError(Box::new(e))))?
        .into_json()
        .map_err(|e| HubError::Hub(format!("unreadable repository listing: {e}")))?;
    if let Some(missing) = plan
        .required
        .iter()
        .find(|f| !info.siblings.iter().any(|s| s.rfilename == **f))
    {
        return Err(HubError::MissingOnHub {
            repo: plan.repo.to_string(),
            file: missing.to_string(),
        });
    }
    let files: Vec<&Sibling> = info
        .siblings
        .iter()
        .filter(|s| plan.required.contains(&s.rfilename.as_str()) || (plan.optional)(&s.rfilename))
        .collect();
    let cache = hf_hub::Cache::new(models_dir.to_path_buf()).model(plan.repo.to_string());
    let wanted: Vec<&&Sibling> = files
        .iter()
        .filter(|s| cache.get(&s.rfilename).is_none())
        .collect();
    progress.bytes_total.store(
        wanted.iter().filter_map(|s| s.size).sum(),
        Ordering::Relaxed,
    );
    progress.bytes_done.store(0, Ordering::Relaxed);
    let mut downloaded = 0u64;
    for sibling in &wanted {
        let file = sibling.rfilename.as_str();
        *progress.file.lock().unwrap_or_else(|e| e.into_inner()) = file.to_string();
        let tracker = Tracker {
            model,
            progress,
            watcher,
            sized: sibling.size.is_some(),
        };
        let before = progress.bytes_done.load(Ordering::Relaxed);
        let path = repo
            .download_with_progress(file, tracker)
            .map_err(hub_error)?;
        verify(&path).map_err(|e| match e {
            Verify::Mismatch { got, want } => HubError::Checksum {
                file: file.to_string(),
                got,
                want,
            },
            Verify::Io(reason) => disk(&reason),
        })?;
        downloaded += progress.bytes_done.load(Ordering::Relaxed) - before;
    }
    let mut bytes_on_disk = 0;
    for sibling in &files {
        if let Some(path) = cache.get(&sibling.rfilename) {
            bytes_on_disk += std::fs::metadata(&path).map_or(0, |m| m.len());
        }
    }
    Ok(Fetched {
        files: files.len(),
        downloaded,
        bytes_on_disk,
    })
}

/// The repository listing with sizes (`?blobs=true`).
#[derive(serde::Deserialize)]
struct RepoInfo {
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
}

/// hf-hub's progress callbacks into the shared [`Progress`].
struct Tracker<'a> {
    model: &'a str,
    progress: &'a Progress,
    watcher: &'a dyn Watcher,
    /// The listing gave the file's size (already in the total).
    sized: bool,
}

impl hf_hub::api::Progress for Tracker<'_> {
    fn init(&mut self, size: usize, _file: &str) {
        if !self.sized {
            self.progress
                .bytes_total
                .fetch_add(size as u64, Ordering::Relaxed);
        }
    }

    fn update(&mut self, size: usize) {
        let size = size as u64;
        let total = self.progress.bytes_total.load(Ordering::Relaxed).max(1);
        let before = self.progress.bytes_done.fetch_add(size, Ordering::Relaxed);
        self.watcher.bytes(self.model, size);
        if (before + size) * 10 / total > before * 10 / total {
            self.watcher.tenth(self.model, &self.progress.snapshot());
        }
    }

    fn finish(&mut self) {}
}

enum Verify {
    Mismatch { got: String, want: String },
    Io(String),
}

/// Check the downloaded file's SHA-256 when its blob is named by one. A mismatching
/// blob is removed (with its snapshot link) so that the next fetch gets it again.
fn verify(pointer: &Path) -> Result<(), Verify> {
    let io = |e: std::io::Error| Verify::Io(e.to_string());
    let blob: PathBuf = std::fs::canonicalize(pointer).map_err(io)?;
    let name = blob
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    if !(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Ok(());
    }
    let mut file = std::fs::File::open(&blob).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got = crate::store::hex(&hasher.finalize());
    if got.eq_ignore_ascii_case(&name) {
        return Ok(());
    }
    let _ = std::fs::remove_file(&blob);
    let _ = std::fs::remove_file(pointer);
    Err(Verify::Mismatch { got, want: name })
}

/// A message a person can act on, for hub failures.
fn classify(err: ApiError, source: &Source, model: &str, models_dir: &Path) -> HubError {
    let text = err.to_string();
    match err {
        ApiError::RequestError(_)
            if text.contains("status code 401") || text.contains("status code 403") =>
        {
            HubError::Refused(text)
        }
        ApiError::RequestError(_) if text.contains("status code") => HubError::Hub(text),
        ApiError::RequestError(_) => HubError::Unreachable {
            endpoint: source.endpoint.clone(),
            reason: text,
            pull: source.pull_command(model),
        },
        ApiError::TooManyRetries(inner) => classify(*inner, source, model, models_dir),
        ApiError::IoError(e) => HubError::Disk {
            folder: models_dir.to_path_buf(),
            reason: e.to_string(),
        },
        _ => HubError::Other(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_people_write_it() {
        let at = ProgressSnapshot {
            bytes_done: 147_150_000,
            bytes_total: 327_000_000,
            file: "kokoro-v1_0.pth".into(),
        };
        assert_eq!(at.describe(), "45% of 327 MB");
        let none = ProgressSnapshot {
            bytes_done: 5,
            bytes_total: 0,
            file: String::new(),
        };
        assert_eq!(none.percent(), 0);
    }

    #[test]
    fn the_pull_command_names_the_model() {
        let source = Source {
            endpoint: DEFAULT_ENDPOINT.into(),
            pull_command: "voxpool pull {model} (or: cargo run --release -- pull {model})".into(),
        };
        assert_eq!(
            source.pull_command("kokoro"),
            "voxpool pull kokoro (or: cargo run --release -- pull kokoro)"
        );
        assert!(has_files("kokoro") && has_files("chatterbox-turbo") && !has_files("tone"));
    }
}
