//! Cloned voices as speech requests name them: stored voices (`voice_…`), read
//! from the database and briefly cached, and the server's current voice (`current`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::SpeechError;
use crate::engine::ClonedVoice;
use crate::store::Store;

/// The voice name that speaks with the server's current voice.
pub const CURRENT_VOICE: &str = "current";
/// The prefix of stored voices' ids.
pub const VOICE_ID_PREFIX: &str = "voice_";

/// Stored voices' conditioning (briefly cached: a voice deleted on another replica
/// stops being served within the cache's lifetime) and the server's current voice.
pub struct VoiceBook {
    cache: moka::future::Cache<String, Arc<(String, ClonedVoice)>>,
    current: RwLock<Option<(String, ClonedVoice)>>,
}

impl Default for VoiceBook {
    fn default() -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(256)
                .time_to_live(Duration::from_secs(10))
                .build(),
            current: RwLock::new(None),
        }
    }
}

/// A voice a speech request resolved to: its model and what the engine needs.
pub struct ResolvedVoice {
    pub model: String,
    pub cloned: ClonedVoice,
}

impl VoiceBook {
    /// Resolve `voice` when it names a cloned voice (`voice_…` or `current`); `None`
    /// for every other name (the model's own voices).
    pub async fn resolve(
        &self,
        store: &Store,
        voice: &str,
    ) -> Result<Option<ResolvedVoice>, SpeechError> {
        if voice == CURRENT_VOICE {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            return match &*current {
                Some((model, cloned)) => Ok(Some(ResolvedVoice {
                    model: model.clone(),
                    cloned: cloned.clone(),
                })),
                None => Err(SpeechError::NoCurrentVoice),
            };
        }
        if !voice.starts_with(VOICE_ID_PREFIX) {
            return Ok(None);
        }
        let store = store.clone();
        let id = voice.to_string();
        let found = self
            .cache
            .try_get_with(id.clone(), async move {
                match store.voice_conditioning(&id).await {
                    Ok(Some(row)) => Ok(Arc::new((
                        row.model,
                        ClonedVoice {
                            id,
                            conditioning: row.conditioning.into(),
                        },
                    ))),
                    Ok(None) => Err(false),
                    Err(e) => {
                        tracing::error!(error = %e, "database error");
                        Err(true)
                    }
                }
            })
            .await;
        match found {
            Ok(entry) => Ok(Some(ResolvedVoice {
                model: entry.0.clone(),
                cloned: entry.1.clone(),
            })),
            Err(db_error) if *db_error => Err(SpeechError::Internal(
                "the database could not be read".into(),
            )),
            Err(_) => Err(SpeechError::NoSuchVoice(voice.to_string())),
        }
    }

    pub async fn forget(&self, id: &str) {
        self.cache.invalidate(id).await;
    }

    pub fn set_current(&self, model: String, conditioning: Vec<u8>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some((
            model,
            ClonedVoice {
                id: CURRENT_VOICE.into(),
                conditioning: conditioning.into(),
            },
        ));
    }
}
