//! `voxpool pull <model>`: download the files an engine needs from the Hugging Face
//! hub into the models folder ([`crate::hub`] does the work; a server does the same
//! on a model's first use).

use std::io::Write;

use crate::config::PullArgs;
use crate::engine::Registry;
use crate::hub::{self, ProgressSnapshot, Source, Watcher};

/// Prints a line at each tenth of the download.
struct Printer;

impl Watcher for Printer {
    fn tenth(&self, model: &str, at: &ProgressSnapshot) {
        eprintln!("downloading {model}: {} ({})", at.describe(), at.file);
    }
}

/// Exit code 2 for an unknown model, 1 for every other failure.
pub fn run(args: &PullArgs, source: &Source, mut out: impl Write) -> Result<(), (u8, String)> {
    let model = args.model.as_str();
    let registry = Registry::builtin();
    let id = registry
        .resolve(model)
        .map(|m| m.id.clone())
        .ok_or_else(|| (2, format!("unknown model '{model}'")))?;
    if !args.only_language_packs {
        pull_model(&id, args, source, &mut out)?;
    }
    if id == LANGUAGE_PACK_MODEL {
        pull_language_packs(args, &mut out)?;
    } else if args.only_language_packs {
        return Err((2, format!("{id} reads no language packs")));
    }
    Ok(())
}

/// The model whose G2P reads the language packs.
const LANGUAGE_PACK_MODEL: &str = "kokoro";

fn pull_model(
    id: &str,
    args: &PullArgs,
    source: &Source,
    out: &mut impl Write,
) -> Result<(), (u8, String)> {
    let models_dir = args.models_dir();
    if !hub::has_files(id) {
        return Err((2, format!("{id} has no files to pull")));
    }
    let progress = hub::Progress::default();
    let fetched =
        hub::fetch(id, &models_dir, source, &progress, &Printer).map_err(|e| (1, e.to_string()))?;
    let _ = writeln!(
        out,
        "{id}: {} files, {:.1} MiB ({:.1} MiB downloaded now) from {} in {}",
        fetched.files,
        fetched.bytes_on_disk as f64 / f64::from(1 << 20),
        fetched.downloaded as f64 / f64::from(1 << 20),
        source.endpoint,
        models_dir.display()
    );
    Ok(())
}

/// Fetch the Japanese and Mandarin dictionaries into the language-packs folder.
fn pull_language_packs(args: &PullArgs, out: &mut impl Write) -> Result<(), (u8, String)> {
    let dir = args.text.settings().packs_dir;
    let files = crate::text::pack_files();
    let fetched = crate::packs::fetch(&files, &dir, &args.pypi_url, &mut |line| {
        eprintln!("{line}");
    })
    .map_err(|e| (1, e.to_string()))?;
    let _ = writeln!(
        out,
        "language packs: {} files written, {} already there, {:.1} MiB downloaded from {} into {}",
        fetched.written,
        fetched.present,
        fetched.downloaded as f64 / f64::from(1 << 20),
        args.pypi_url,
        dir.display()
    );
    Ok(())
}
