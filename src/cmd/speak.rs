//! `voxpool speak`: load one model in this process and write speech to files, for
//! one text or line after line from a prompt.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::audio::{self, AudioFormat};
use crate::config::SpeakArgs;
use crate::engine::{AudioChunk, DeviceSpec, LoadContext, Registry, SpeechJob, TtsEngine};
use crate::synthesis;

/// Why `speak` stopped; the exit code follows the kind.
#[derive(Debug, thiserror::Error)]
pub enum SpeakError {
    /// Bad arguments: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The model or the synthesis failed: exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl SpeakError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
        }
    }
}

/// Run `voxpool speak` with `input` as the prompt's source (stdin in the binary).
pub fn run(
    args: &SpeakArgs,
    registry: &Registry,
    input: impl BufRead,
    mut out: impl Write,
) -> Result<(), SpeakError> {
    let format = format_of(&args.output)?;
    if !(0.25..=4.0).contains(&args.speed) {
        return Err(SpeakError::Usage(format!(
            "--speed {} is out of range; use 0.25 to 4.0",
            args.speed
        )));
    }
    let device = args.model_device.unwrap_or_else(DeviceSpec::auto);
    let spec = registry.resolve(&args.model).ok_or_else(|| {
        let known: Vec<&str> = registry.models().iter().map(|m| m.id.as_str()).collect();
        SpeakError::Usage(format!(
            "unknown model '{}'; models: {}",
            args.model,
            known.join(", ")
        ))
    })?;
    let ctx = LoadContext {
        models_dir: args.models_dir(),
        device,
        t3_quant: None,
        s3gen_quant: None,
    };
    let started = Instant::now();
    let engine = spec
        .loader
        .load(&ctx)
        .map_err(|e| SpeakError::Failed(e.to_string()))?;
    let _ = writeln!(
        out,
        "loaded {} on {device} in {:.2} s",
        spec.id,
        started.elapsed().as_secs_f64()
    );
    let voice = pick_voice(engine.as_ref(), args.voice.as_deref())?;

    let speak_to = |text: &str, path: &Path, out: &mut dyn Write| -> Result<(), SpeakError> {
        let chunks = synthesis::plan(text);
        if chunks.iter().all(|c| c.trim().is_empty()) {
            return Err(SpeakError::Usage(
                "nothing to speak: the text is empty".into(),
            ));
        }
        let started = Instant::now();
        let job = SpeechJob {
            chunks,
            voice: voice.clone(),
            speed: args.speed,
            phonemes: args.phonemes,
            cloned: None,
            language: args.language,
            incremental: false,
            lexicon: Vec::new(),
            words: false,
        };
        // The server's sentence loop, with nobody to leave and no time limit.
        let mut audio = AudioChunk {
            samples: Vec::new(),
            sample_rate: engine.sample_rate(),
            words: Vec::new(),
        };
        let rendered = synthesis::render(engine.as_ref(), &job, None, &|| true, &mut |chunk| {
            audio.samples.extend(chunk.samples);
            Ok(true)
        });
        if let Some(e) = rendered.error {
            return Err(SpeakError::Failed(e.to_string()));
        }
        let bytes = audio::encode(format, &audio.samples, audio.sample_rate)
            .map_err(|e| SpeakError::Failed(e.to_string()))?;
        std::fs::write(path, bytes)
            .map_err(|e| SpeakError::Failed(format!("cannot write {}: {e}", path.display())))?;
        let _ = writeln!(
            out,
            "wrote {} ({:.2} s of audio in {:.2} s)",
            path.display(),
            audio.seconds(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    };

    if let Some(text) = &args.text {
        return speak_to(text, &args.output, &mut out);
    }
    let _ = writeln!(
        out,
        "voice {voice}; type a line to speak it, `exit` to quit"
    );
    let mut n = 0;
    for line in input.lines() {
        let line = line.map_err(|e| SpeakError::Failed(format!("reading the prompt: {e}")))?;
        let line = line.trim();
        if line == "exit" || line == "quit" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        n += 1;
        let path = numbered(&args.output, n);
        // A line that cannot be spoken is reported; the prompt goes on.
        if let Err(e) = speak_to(line, &path, &mut out) {
            let _ = writeln!(out, "error: {e}");
        }
    }
    Ok(())
}

/// The format named by the output file's extension.
fn format_of(path: &Path) -> Result<AudioFormat, SpeakError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let supported = || {
        AudioFormat::SUPPORTED
            .iter()
            .map(|f| format!(".{}", f.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match AudioFormat::from_name(&ext) {
        Some(f) if f.is_supported() => Ok(f),
        Some(f) => Err(SpeakError::Usage(format!(
            "{} output is not supported by this build yet; use {}",
            f.name(),
            supported()
        ))),
        None => Err(SpeakError::Usage(format!(
            "cannot tell the format of '{}'; use {}",
            path.display(),
            supported()
        ))),
    }
}

fn pick_voice(engine: &dyn TtsEngine, asked: Option<&str>) -> Result<String, SpeakError> {
    let voices = engine.voices();
    match asked {
        Some(v) if engine.accepts_voice(v) => Ok(v.to_string()),
        Some(v) => Err(SpeakError::Usage(format!(
            "voice '{v}' is not available; voices: {}",
            voices.join(", ")
        ))),
        None if engine.accepts_voice("af_heart") => Ok("af_heart".into()),
        None => voices
            .into_iter()
            .next()
            .ok_or_else(|| SpeakError::Failed("the model has no voices".into())),
    }
}

/// `out.wav` → `out-<n>.wav`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("speech");
    let name = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}-{n}.{ext}"),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_pick_the_format() {
        assert_eq!(format_of(Path::new("a.WAV")).unwrap(), AudioFormat::Wav);
        assert_eq!(format_of(Path::new("a.pcm")).unwrap(), AudioFormat::Pcm);
        assert!(matches!(
            format_of(Path::new("a.txt")),
            Err(SpeakError::Usage(_))
        ));
        assert!(matches!(
            format_of(Path::new("a")),
            Err(SpeakError::Usage(_))
        ));
        assert_eq!(
            numbered(Path::new("dir/out.wav"), 3),
            PathBuf::from("dir/out-3.wav")
        );
    }
}
