//! `voxpool pull <model>`: download the files an engine needs from the Hugging Face
//! hub (hf-hub) into the models folder, in the HF cache layout the engines read.
//! Files already there are not fetched again; an interrupted download resumes from
//! its `.part` file; a file whose hub ETag is a SHA-256 (every LFS file: the
//! weights) is hashed after download and removed again when it does not match.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use sha2::{Digest, Sha256};

use crate::config::PullArgs;
use crate::engine::chatterbox::tts_turbo::{self, HUB_REPO as TURBO_REPO};
use crate::engine::kokoro::weights::{self, HUB_REPO as KOKORO_REPO};
use crate::engine::Registry;

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

/// Exit code 2 for an unknown model, 1 for every other failure.
pub fn run(args: &PullArgs, mut out: impl Write) -> Result<(), (u8, String)> {
    let model = args.model.as_str();
    let models_dir = &args.models_dir();
    let endpoint = args.hf_endpoint.as_str();
    let registry = Registry::builtin();
    let id = registry
        .resolve(model)
        .map(|m| m.id.clone())
        .ok_or_else(|| (2, format!("unknown model '{model}'")))?;
    let plan = plan(&id).ok_or_else(|| (2, format!("{id} has no files to pull")))?;
    std::fs::create_dir_all(models_dir)
        .map_err(|e| (1, format!("cannot create {}: {e}", models_dir.display())))?;
    let api = ApiBuilder::from_env()
        .with_endpoint(endpoint.to_string())
        .with_cache_dir(models_dir.to_path_buf())
        .with_progress(true)
        .build()
        .map_err(|e| (1, hub_error(&e, endpoint)))?;
    let repo = api.model(plan.repo.to_string());
    let info = repo.info().map_err(|e| (1, hub_error(&e, endpoint)))?;
    let listed: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    if let Some(missing) = plan
        .required
        .iter()
        .find(|f| !listed.iter().any(|l| l == *f))
    {
        return Err((1, format!("{} on the hub has no {missing}", plan.repo)));
    }
    let files: Vec<&String> = listed
        .iter()
        .filter(|f| plan.required.contains(&f.as_str()) || (plan.optional)(f))
        .collect();
    let mut bytes = 0u64;
    for file in &files {
        let path = repo.get(file).map_err(|e| (1, hub_error(&e, endpoint)))?;
        bytes += verify(&path).map_err(|e| (1, format!("{file}: {e}")))?;
    }
    let _ = writeln!(
        out,
        "{id}: {} files, {:.1} MiB from {} in {}",
        files.len(),
        bytes as f64 / f64::from(1 << 20),
        plan.repo,
        models_dir.display()
    );
    Ok(())
}

/// Size of the downloaded file; checks its SHA-256 when its blob is named by one.
/// A mismatching blob is removed (with its snapshot link) so that a rerun fetches it.
fn verify(pointer: &Path) -> Result<u64, String> {
    let blob: PathBuf = std::fs::canonicalize(pointer).map_err(|e| e.to_string())?;
    let name = blob
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let is_sha256 = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    let mut file = std::fs::File::open(&blob).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if is_sha256 {
            hasher.update(&buf[..n]);
        }
    }
    if is_sha256 {
        let got = crate::store::hex(&hasher.finalize());
        if !got.eq_ignore_ascii_case(&name) {
            let _ = std::fs::remove_file(&blob);
            let _ = std::fs::remove_file(pointer);
            return Err(format!(
                "checksum mismatch (SHA-256 {got}, the hub says {name}); the file was removed, run pull again"
            ));
        }
    }
    Ok(size)
}

/// A message a person can act on, for hub failures.
fn hub_error(err: &ApiError, endpoint: &str) -> String {
    let text = err.to_string();
    match err {
        ApiError::RequestError(_)
            if text.contains("status code 401") || text.contains("status code 403") =>
        {
            format!("the hub refused access ({text}); set HF_TOKEN for gated models")
        }
        ApiError::RequestError(_) if text.contains("status code") => {
            format!("the hub answered with an error ({text})")
        }
        ApiError::RequestError(_) => format!(
            "cannot reach the Hugging Face hub at {endpoint} ({text}); voxpool pull needs \
             network access. Files already downloaded are kept and a rerun resumes; offline, \
             copy the files into the models folder instead"
        ),
        _ => format!("download failed: {text}"),
    }
}
