//! The espeak-ng shared library, loaded at run time (never linked: espeak-ng is
//! GPL-3, voxpool is Apache-2.0), and called as phonemizer's espeak wrapper calls
//! it. The library keeps global state and is not thread-safe: the caller holds one
//! [`Espeak`] behind a lock.

use std::ffi::{c_char, c_int, c_uchar, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use libloading::Library;

/// The system library's name (Debian's `libespeak-ng1`, pulled in by `espeak-ng`).
const SYSTEM_LIBRARY: &str = "libespeak-ng.so.1";

/// `AUDIO_OUTPUT_SYNCHRONOUS`: no audio device, as phonemizer initialises it.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 0x02;
/// `espeakINITIALIZE_DONT_EXIT`: report a missing data folder instead of exiting
/// the process.
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
/// `espeakCHARS_UTF8`.
const CHARS_UTF8: c_int = 1;
/// IPA phonemes (bit 1), with a tie (bit 7) between the letters of one phoneme,
/// the tie in bits 8-23: phonemizer's mode for `tie=True`.
const PHONEME_MODE: c_int = 0x02 | 0x01 << 7 | (0x361 << 8);

/// `espeak_VOICE`, as `espeak_ListVoices` returns it.
#[repr(C)]
struct Voice {
    name: *const c_char,
    /// Pairs of a priority byte and a language name, ending with a 0 byte.
    languages: *const c_char,
    identifier: *const c_char,
    gender: c_uchar,
    age: c_uchar,
    variant: c_uchar,
    xx1: c_uchar,
    score: c_int,
    spare: *mut c_void,
}

type Initialize = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type Info = unsafe extern "C" fn(*mut *const c_char) -> *const c_char;
type ListVoices = unsafe extern "C" fn(*const Voice) -> *const *const Voice;
type SetVoiceByName = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemes = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;
type Terminate = unsafe extern "C" fn() -> c_int;

/// An initialised espeak-ng.
pub struct Espeak {
    set_voice_by_name: SetVoiceByName,
    text_to_phonemes: TextToPhonemes,
    terminate: Terminate,
    /// Language (`es`, `fr-fr`…) → voice identifier (`roa/es`), first voice of each.
    voices: Vec<(String, String)>,
    /// The language whose voice is set.
    current: Option<String>,
    version: String,
    /// Declared last: the functions above point into it.
    _library: Library,
}

fn symbol<T: Copy>(library: &Library, name: &str) -> Result<T, String> {
    // SAFETY: every type above is the C signature of the named espeak-ng function.
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("the espeak-ng library lacks {name}: {e}"))
}

/// The data folder of a library that ships one beside it (espeakng_loader's
/// layout: `libespeak-ng.so` next to `espeak-ng-data/`).
fn data_beside(library: &Path) -> Option<PathBuf> {
    let data = library.parent()?.join("espeak-ng-data");
    data.join("phontab").is_file().then_some(data)
}

/// The version as phonemizer reads it: the first word, without `-dev`, its numbers
/// joined by dots (`1.52.0`, `1.51`).
fn normalise_version(info: &str) -> String {
    let word = info.split_whitespace().next().unwrap_or_default();
    word.replace("-dev", "")
}

fn c_string(ptr: *const c_char) -> Option<String> {
    // SAFETY: espeak-ng returns NUL-terminated strings or null.
    (!ptr.is_null()).then(|| {
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    })
}

impl Espeak {
    /// Load and initialise `library`, or the system's espeak-ng.
    pub fn open(library: Option<&Path>) -> Result<Espeak, String> {
        // SAFETY: loading runs the library's initialisers; espeak-ng's have no
        // requirements.
        let loaded = match library {
            Some(path) => unsafe { Library::new(path) }.map_err(|e| {
                format!(
                    "the espeak-ng library {} could not be loaded ({e})",
                    path.display()
                )
            })?,
            None => unsafe { Library::new(SYSTEM_LIBRARY) }.map_err(|e| {
                format!("espeak-ng is not installed, `apt-get install espeak-ng` ({e})")
            })?,
        };
        let initialize: Initialize = symbol(&loaded, "espeak_Initialize")?;
        let info: Info = symbol(&loaded, "espeak_Info")?;
        let list_voices: ListVoices = symbol(&loaded, "espeak_ListVoices")?;
        let data = library.and_then(data_beside);
        let data = data
            .map(|d| CString::new(d.to_string_lossy().as_bytes()))
            .transpose()
            .map_err(|_| "the espeak-ng data path holds a NUL byte".to_string())?;
        let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
        // SAFETY: a valid (or null) path; synchronous mode opens no audio device.
        let rate =
            unsafe { initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_ptr, INITIALIZE_DONT_EXIT) };
        if rate <= 0 {
            return Err("espeak-ng could not be initialised (is its data, espeak-ng-data, installed? `apt-get install espeak-ng`)".into());
        }
        let mut data_path: *const c_char = std::ptr::null();
        // SAFETY: espeak_Info writes a pointer to its own static string.
        let version = c_string(unsafe { info(&mut data_path) }).unwrap_or_default();
        let mut voices = Vec::new();
        // SAFETY: a null spec lists every voice; the array ends with a null
        // pointer and lives in the library until the next listing.
        unsafe {
            let mut at = list_voices(std::ptr::null());
            while !at.is_null() && !(*at).is_null() {
                let voice = &**at;
                // The first language, after its priority byte (phonemizer's
                // `languages[1:]`).
                let language = (!voice.languages.is_null())
                    .then(|| c_string(voice.languages.add(1)))
                    .flatten();
                if let (Some(language), Some(identifier)) = (language, c_string(voice.identifier)) {
                    if !voices.iter().any(|(l, _)| *l == language) {
                        voices.push((language, identifier));
                    }
                }
                at = at.add(1);
            }
        }
        Ok(Espeak {
            set_voice_by_name: symbol(&loaded, "espeak_SetVoiceByName")?,
            text_to_phonemes: symbol(&loaded, "espeak_TextToPhonemes")?,
            terminate: symbol(&loaded, "espeak_Terminate")?,
            voices,
            current: None,
            version: normalise_version(&version),
            _library: loaded,
        })
    }

    /// The library's version (`1.52.0`, `1.51`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether a voice speaks `language` (`es`, `fr-fr`…).
    pub fn has_language(&self, language: &str) -> bool {
        self.voices.iter().any(|(l, _)| l == language)
    }

    /// Select the voice of `language`, as phonemizer's `set_voice`: the first
    /// voice listed for it, by identifier.
    pub fn set_language(&mut self, language: &str) -> Result<(), String> {
        if self.current.as_deref() == Some(language) {
            return Ok(());
        }
        let identifier = self
            .voices
            .iter()
            .find(|(l, _)| l == language)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| format!("espeak-ng has no voice for '{language}'"))?;
        let name = CString::new(identifier).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated name; the library is initialised.
        if unsafe { (self.set_voice_by_name)(name.as_ptr()) } != 0 {
            self.current = None;
            return Err(format!(
                "espeak-ng could not load its voice for '{language}'"
            ));
        }
        self.current = Some(language.to_string());
        Ok(())
    }

    /// phonemizer's `EspeakWrapper.text_to_phonemes(text, tie=True)`: espeak's
    /// clauses one call at a time, joined by spaces.
    pub fn text_to_phonemes(&mut self, text: &str) -> String {
        // The C string ends at a NUL byte, as ctypes' `c_char_p` does.
        let text = text.split('\0').next().unwrap_or_default();
        let Ok(text) = CString::new(text) else {
            return String::new();
        };
        let mut ptr: *const c_void = text.as_ptr().cast();
        let mut parts = Vec::new();
        while !ptr.is_null() {
            // SAFETY: `ptr` points into `text`, alive for the loop; espeak
            // advances it and sets it to null at the end.
            let phonemes =
                c_string(unsafe { (self.text_to_phonemes)(&mut ptr, CHARS_UTF8, PHONEME_MODE) });
            if let Some(p) = phonemes.filter(|p| !p.is_empty()) {
                parts.push(p);
            }
        }
        parts.join(" ")
    }
}

impl Drop for Espeak {
    fn drop(&mut self) {
        // SAFETY: the library is still loaded (`_library` drops after this).
        unsafe { (self.terminate)() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_phonemizer_reads_them() {
        assert_eq!(normalise_version("1.52.0"), "1.52.0");
        assert_eq!(normalise_version("1.51"), "1.51");
        assert_eq!(normalise_version("1.52-dev extra"), "1.52");
    }

    #[test]
    fn the_phoneme_mode_is_phonemizers() {
        // 0x02 | 0x01 << 7 | ord('͡') << 8 in phonemizer/backend/espeak/wrapper.py.
        assert_eq!(PHONEME_MODE, 221570);
    }
}
