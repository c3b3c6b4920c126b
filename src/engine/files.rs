//! Finding a model's files on disk and measuring them: the helpers the registry and
//! the engines' loaders share, kept apart from both so neither imports the other.

use std::path::{Path, PathBuf};

/// Total size of `paths` that exist (files, or the files directly in a folder).
pub fn size_of_files<'a>(paths: impl IntoIterator<Item = &'a Path>) -> u64 {
    paths
        .into_iter()
        .map(|p| match std::fs::read_dir(p) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum(),
            Err(_) => std::fs::metadata(p).map_or(0, |m| m.len()),
        })
        .sum()
}

/// Look for `file` in the Hugging Face cache layout (`models--org--name/snapshots/*/`)
/// or in a plain `<models_dir>/<model>/` folder.
pub fn find_model_file(
    models_dir: &Path,
    hub_repo: &str,
    model: &str,
    file: &str,
) -> Option<PathBuf> {
    let local = models_dir.join(model).join(file);
    if local.is_file() {
        return Some(local);
    }
    let snapshots = models_dir
        .join(format!("models--{}", hub_repo.replace('/', "--")))
        .join("snapshots");
    std::fs::read_dir(snapshots)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join(file))
        .find(|p| p.is_file())
}
