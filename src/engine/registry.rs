//! The models this server can serve, their aliases and how to load each.

use std::sync::Arc;

use super::loader::{EngineLoader, ModelSpec, WorkerSpec};

/// OpenAI model names that stand for the default model.
pub const OPENAI_ALIASES: [&str; 3] = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"];

impl WorkerSpec {
    /// The loader a worker process uses for `engine`.
    pub fn loader(&self) -> Result<Box<dyn EngineLoader>, String> {
        match self.engine.as_str() {
            "kokoro" => Ok(Box::new(super::kokoro::engine::KokoroLoader)),
            "chatterbox-turbo" => Ok(Box::new(super::chatterbox::tts_turbo::TurboLoader)),
            "tone" => super::tone::ToneLoader::from_options(&self.options)
                .map(|l| Box::new(l) as Box<dyn EngineLoader>),
            other => Err(format!("no engine named {other:?}")),
        }
    }
}

/// The set of models and the default one the OpenAI aliases point to.
#[derive(Debug, Clone)]
pub struct Registry {
    models: Vec<ModelSpec>,
    default_model: String,
}

impl Registry {
    /// The models of this build: Kokoro-82M and Chatterbox Turbo.
    pub fn builtin() -> Self {
        let models = vec![
            ModelSpec {
                id: "kokoro".into(),
                owned_by: "hexgrad".into(),
                languages: crate::text::g2p::available_languages()
                    .iter()
                    .map(|l| l.code().to_string())
                    .collect(),
                loader: Arc::new(super::kokoro::engine::KokoroLoader),
            },
            ModelSpec {
                id: "chatterbox-turbo".into(),
                owned_by: "resemble-ai".into(),
                languages: vec!["en".into()],
                loader: Arc::new(super::chatterbox::tts_turbo::TurboLoader),
            },
        ];
        Self {
            models,
            default_model: "kokoro".into(),
        }
    }

    /// A registry with no models, to build up with [`Registry::with_model`].
    pub fn empty() -> Self {
        Self {
            models: Vec::new(),
            default_model: String::new(),
        }
    }

    /// Add (or replace) a model.
    pub fn with_model(mut self, spec: ModelSpec) -> Self {
        self.models.retain(|m| m.id != spec.id);
        if self.default_model.is_empty() {
            self.default_model = spec.id.clone();
        }
        self.models.push(spec);
        self
    }

    /// Point the OpenAI aliases (and requests without a model) at `id`.
    pub fn with_default(mut self, id: &str) -> Self {
        self.default_model = id.to_string();
        self
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    /// Find a model by id or alias.
    pub fn resolve(&self, name: &str) -> Option<&ModelSpec> {
        let id = if OPENAI_ALIASES.contains(&name) {
            self.default_model.as_str()
        } else {
            name
        };
        self.models.iter().find(|m| m.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DeviceSpec, EngineError, LoadContext};

    #[test]
    fn aliases_resolve_to_the_default_model() {
        let reg = Registry::builtin();
        for alias in OPENAI_ALIASES {
            assert_eq!(reg.resolve(alias).map(|m| m.id.as_str()), Some("kokoro"));
        }
        assert_eq!(
            reg.resolve("chatterbox-turbo").map(|m| m.id.as_str()),
            Some("chatterbox-turbo")
        );
        assert!(reg.resolve("whisper-1").is_none());
        let reg = reg.with_default("chatterbox-turbo");
        assert_eq!(
            reg.resolve("tts-1").map(|m| m.id.as_str()),
            Some("chatterbox-turbo")
        );
    }

    #[test]
    fn missing_files_give_the_pull_message() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = LoadContext {
            models_dir: dir.path().to_path_buf(),
            device: DeviceSpec::Cpu,
            t3_quant: None,
            s3gen_quant: None,
        };
        let reg = Registry::builtin();
        let err = reg
            .resolve("kokoro")
            .unwrap()
            .loader
            .load(&ctx)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "Model files not found in cache. Run: voxpool pull kokoro"
        );
        let snap = dir.path().join("models--hexgrad--Kokoro-82M/snapshots/abc");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("kokoro-v1_0.pth"), b"x").unwrap();
        std::fs::write(
            snap.join("config.json"),
            include_str!("../../tests/fixtures/kokoro/tiny_config.json"),
        )
        .unwrap();
        let err = reg
            .resolve("kokoro")
            .unwrap()
            .loader
            .load(&ctx)
            .err()
            .unwrap();
        assert!(matches!(err, EngineError::BadFile { .. }), "{err}");
        assert!(err.to_string().contains("kokoro-v1_0.pth"), "{err}");
        // Chatterbox Turbo: the pull message until every file is there, then a
        // corrupt file is named.
        let snap = dir
            .path()
            .join("models--ResembleAI--chatterbox-turbo/snapshots/abc");
        std::fs::create_dir_all(&snap).unwrap();
        let turbo = reg.resolve("chatterbox-turbo").unwrap();
        for file in [
            "t3_turbo_v1.safetensors",
            "s3gen_meanflow.safetensors",
            "conds.pt",
        ] {
            let err = turbo.loader.load(&ctx).err().unwrap();
            assert_eq!(
                err.to_string(),
                "Model files not found in cache. Run: voxpool pull chatterbox-turbo"
            );
            std::fs::write(snap.join(file), b"x").unwrap();
        }
        for file in ["vocab.json", "merges.txt"] {
            let err = turbo.loader.load(&ctx).err().unwrap();
            assert!(matches!(err, EngineError::FilesMissing { .. }), "{err}");
            std::fs::write(snap.join(file), b"{}").unwrap();
        }
        let err = turbo.loader.load(&ctx).err().unwrap();
        assert!(matches!(err, EngineError::BadFile { .. }), "{err}");
        assert!(err.to_string().contains("vocab.json"), "{err}");
    }
}
