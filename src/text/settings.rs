//! Where the text layer finds what is not compiled in: language packs (dictionaries
//! that `voxpool pull` fetches) and the system's espeak-ng library.

use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq)]
pub struct TextSettings {
    /// Folder holding one folder per language pack (`ja/`, `zh/`).
    pub packs_dir: PathBuf,
    /// The espeak-ng shared library to load; `None` searches the system's.
    pub espeak_library: Option<PathBuf>,
}

static SETTINGS: OnceLock<TextSettings> = OnceLock::new();

/// Set the text settings once, at start, before any G2P runs. Later calls are
/// ignored and answer `false`.
pub fn configure(settings: TextSettings) -> bool {
    SETTINGS.set(settings).is_ok()
}

/// The settings given to [`configure`], else packs under `./language-packs`.
pub fn settings() -> &'static TextSettings {
    SETTINGS.get_or_init(|| TextSettings {
        packs_dir: PathBuf::from("language-packs"),
        espeak_library: None,
    })
}

/// One file of a language pack, taken from a package on PyPI (the reference
/// pipeline's own data, so voxpool reads text exactly as it does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackFile {
    /// The pack's folder under [`TextSettings::packs_dir`] (`ja`, `zh`).
    pub pack: &'static str,
    /// PyPI package and exact version it comes from.
    pub package: &'static str,
    pub version: &'static str,
    /// The end of the member's path inside the package archive
    /// (`unidic_lite/dicdir/sys.dic`).
    pub member: &'static str,
    /// The file's name in the pack's folder.
    pub file: &'static str,
}

impl TextSettings {
    /// Where `file` of `pack` lives.
    pub fn pack_file(&self, file: &PackFile) -> PathBuf {
        self.packs_dir.join(file.pack).join(file.file)
    }
}
