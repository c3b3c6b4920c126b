//! `voxpool cleanup`: delete voxpool's model files from the models folder (the
//! seed's cleanup.py), after listing them with their sizes.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::engine::chatterbox::tts_turbo::HUB_REPO as TURBO_REPO;
use crate::engine::kokoro::weights::HUB_REPO as KOKORO_REPO;

/// What voxpool keeps under `models_dir`: the Hugging Face cache folders of its
/// models (and their lock folders), plain `<model>/` folders, its conversion cache.
pub fn candidates(models_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for repo in [KOKORO_REPO, TURBO_REPO] {
        let name = format!("models--{}", repo.replace('/', "--"));
        out.push(models_dir.join(&name));
        out.push(models_dir.join(".locks").join(&name));
    }
    for model in ["kokoro", "chatterbox-turbo", "voxpool-cache"] {
        out.push(models_dir.join(model));
    }
    out.retain(|p| p.symlink_metadata().is_ok());
    out
}

/// Bytes under `path`, not following symbolic links (the HF cache links snapshots
/// to blobs, which are counted once where they are).
pub fn size_of(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| size_of(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// List, ask (unless `yes`), delete. Exit code 1 when a deletion failed or the
/// answer was not yes.
pub fn run(
    models_dir: &Path,
    yes: bool,
    mut input: impl BufRead,
    mut out: impl Write,
) -> Result<(), String> {
    let found = candidates(models_dir);
    if found.is_empty() {
        let _ = writeln!(out, "nothing of voxpool's in {}", models_dir.display());
        return Ok(());
    }
    let mut total = 0;
    for path in &found {
        let size = size_of(path);
        total += size;
        let _ = writeln!(out, "{:>10}  {}", human(size), path.display());
    }
    let _ = writeln!(out, "{:>10}  in all", human(total));
    if !yes {
        let _ = write!(out, "Delete these? [y/N] ");
        let _ = out.flush();
        let mut answer = String::new();
        let _ = input.read_line(&mut answer);
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err("nothing deleted".into());
        }
    }
    let mut failed = Vec::new();
    for path in &found {
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        if let Err(e) = removed {
            failed.push(format!("{}: {e}", path.display()));
        }
    }
    if failed.is_empty() {
        let _ = writeln!(out, "freed {}", human(total));
        Ok(())
    } else {
        Err(format!("could not delete {}", failed.join("; ")))
    }
}
