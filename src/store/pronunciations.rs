//! Stored pronunciations: one entry per word (whatever its case), language and
//! model; a second entry for the same word replaces the first's phonemes.

use chrono::{DateTime, SubsecRound, Utc};
use entity::pronunciation;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use tracing::instrument;

use super::{Store, StoreError};

/// Prefix of every pronunciation id.
pub const PRONUNCIATION_ID_PREFIX: &str = "pron_";

/// A stored pronunciation.
#[derive(Debug, Clone, PartialEq)]
pub struct PronunciationRow {
    pub id: String,
    /// The word as last given.
    pub word: String,
    pub phonemes: String,
    /// Kokoro language code.
    pub language: String,
    /// The model id the entry is limited to; `None`: every model.
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A pronunciation to store (already validated).
#[derive(Debug, Clone)]
pub struct NewPronunciation<'a> {
    pub word: &'a str,
    pub phonemes: &'a str,
    pub language: &'a str,
    pub model: Option<&'a str>,
}

impl From<pronunciation::Model> for PronunciationRow {
    fn from(m: pronunciation::Model) -> Self {
        Self {
            id: m.id,
            word: m.word,
            phonemes: m.phonemes,
            language: m.language,
            model: Some(m.model).filter(|m| !m.is_empty()),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// The key that makes a word one entry whatever its case.
fn word_key(word: &str) -> String {
    word.to_lowercase()
}

impl Store {
    /// Stores `new`, or updates the entry for the same word (ignoring case), language
    /// and model, keeping its id. Returns the row and whether it is new.
    #[instrument(skip_all, fields(language = new.language))]
    pub async fn upsert_pronunciation(
        &self,
        new: NewPronunciation<'_>,
    ) -> Result<(PronunciationRow, bool), StoreError> {
        let key = word_key(new.word);
        let model = new.model.unwrap_or("");
        // Microseconds: what every backend keeps, so the row reads back equal.
        let now = Utc::now().trunc_subsecs(6);
        if let Some(row) = self.update_pronunciation(&key, model, &new, now).await? {
            return Ok((row, false));
        }
        let inserted = pronunciation::ActiveModel {
            id: Set(format!(
                "{PRONUNCIATION_ID_PREFIX}{}",
                uuid::Uuid::new_v4().simple()
            )),
            word: Set(new.word.to_string()),
            word_key: Set(key.clone()),
            phonemes: Set(new.phonemes.to_string()),
            language: Set(new.language.to_string()),
            model: Set(model.to_string()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(self.conn())
        .await;
        match inserted {
            Ok(m) => Ok((m.into(), true)),
            // Another request (or replica) inserted the same word in between: the
            // unique index refused this one, so update that entry instead.
            Err(e) => match self.update_pronunciation(&key, model, &new, now).await? {
                Some(row) => Ok((row, false)),
                None => Err(e.into()),
            },
        }
    }

    async fn update_pronunciation(
        &self,
        key: &str,
        model: &str,
        new: &NewPronunciation<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<PronunciationRow>, StoreError> {
        let existing = pronunciation::Entity::find()
            .filter(pronunciation::Column::WordKey.eq(key))
            .filter(pronunciation::Column::Language.eq(new.language))
            .filter(pronunciation::Column::Model.eq(model))
            .one(self.conn())
            .await?;
        let Some(existing) = existing else {
            return Ok(None);
        };
        let mut active: pronunciation::ActiveModel = existing.into();
        active.word = Set(new.word.to_string());
        active.phonemes = Set(new.phonemes.to_string());
        active.updated_at = Set(now);
        Ok(Some(active.update(self.conn()).await?.into()))
    }

    /// Stored pronunciations in one language (a Kokoro code) or all, by word.
    #[instrument(skip_all)]
    pub async fn pronunciations(
        &self,
        language: Option<&str>,
    ) -> Result<Vec<PronunciationRow>, StoreError> {
        let mut query = pronunciation::Entity::find();
        if let Some(language) = language {
            query = query.filter(pronunciation::Column::Language.eq(language));
        }
        Ok(query
            .order_by_asc(pronunciation::Column::WordKey)
            .order_by_asc(pronunciation::Column::Language)
            .order_by_asc(pronunciation::Column::Model)
            .all(self.conn())
            .await?
            .into_iter()
            .map(PronunciationRow::from)
            .collect())
    }

    /// The pronunciation `id`.
    #[instrument(skip_all)]
    pub async fn pronunciation(&self, id: &str) -> Result<Option<PronunciationRow>, StoreError> {
        Ok(pronunciation::Entity::find_by_id(id.to_string())
            .one(self.conn())
            .await?
            .map(PronunciationRow::from))
    }

    /// Deletes pronunciation `id`; false when there was none.
    #[instrument(skip_all)]
    pub async fn delete_pronunciation(&self, id: &str) -> Result<bool, StoreError> {
        let result = pronunciation::Entity::delete_by_id(id.to_string())
            .exec(self.conn())
            .await?;
        Ok(result.rows_affected > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(word: &'a str, phonemes: &'a str, model: Option<&'a str>) -> NewPronunciation<'a> {
        NewPronunciation {
            word,
            phonemes,
            language: "a",
            model,
        }
    }

    #[tokio::test]
    async fn one_entry_per_word_language_and_model() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let (a, created) = store
            .upsert_pronunciation(entry("Kokoro", "kˈOkəɹO", None))
            .await
            .unwrap();
        assert!(created && a.id.starts_with(PRONUNCIATION_ID_PREFIX));
        assert_eq!(a.model, None);
        let (b, created) = store
            .upsert_pronunciation(entry("KOKORO", "kOkˈOɹO", None))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(
            (b.id.as_str(), b.word.as_str(), b.phonemes.as_str()),
            (a.id.as_str(), "KOKORO", "kOkˈOɹO")
        );
        assert_eq!(b.created_at, a.created_at);
        let (c, created) = store
            .upsert_pronunciation(entry("kokoro", "x", Some("kokoro")))
            .await
            .unwrap();
        assert!(created && c.id != a.id);
        assert_eq!(c.model.as_deref(), Some("kokoro"));
        assert_eq!(store.pronunciations(None).await.unwrap().len(), 2);
        assert!(store.pronunciations(Some("j")).await.unwrap().is_empty());
        assert_eq!(store.pronunciation(&a.id).await.unwrap(), Some(b));
        assert!(store.delete_pronunciation(&a.id).await.unwrap());
        assert!(!store.delete_pronunciation(&a.id).await.unwrap());
        assert_eq!(store.pronunciations(Some("a")).await.unwrap(), vec![c]);
    }
}
