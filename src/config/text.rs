//! Options of the text layer, shared by `serve`, `speak`, `pull` and `worker`.

use std::path::PathBuf;

use clap::Args;

/// Where G2P finds what is not compiled in (serve, speak, pull, worker).
#[derive(Debug, Clone, Args)]
pub struct TextArgs {
    /// Folder of the language packs (Japanese and Mandarin dictionaries) that
    /// `voxpool pull kokoro` fetches. Defaults to `$XDG_CACHE_HOME/voxpool/language-packs`,
    /// then `~/.cache/voxpool/language-packs`.
    #[arg(long, env = "VOXPOOL_LANGUAGE_PACKS")]
    pub language_packs: Option<PathBuf>,
    /// The espeak-ng shared library for Spanish, French, Hindi, Italian and Brazilian
    /// Portuguese (loaded at run time; default: the system's `libespeak-ng.so.1`).
    #[arg(long, env = "VOXPOOL_ESPEAK_LIBRARY")]
    pub espeak_library: Option<PathBuf>,
}

impl TextArgs {
    pub fn settings(&self) -> crate::text::settings::TextSettings {
        crate::text::settings::TextSettings {
            packs_dir: self
                .language_packs
                .clone()
                .unwrap_or_else(super::parse::default_language_packs_dir),
            espeak_library: self.espeak_library.clone(),
        }
    }
}
