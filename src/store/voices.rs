//! Cloned voices: metadata, the conditioning computed once at creation, and the
//! reference recording it came from.

use chrono::{DateTime, SubsecRound, Utc};
use entity::voice;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use sha2::{Digest, Sha256};
use tracing::instrument;

use super::{Store, StoreError};

/// A stored voice without its blobs.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct VoiceRow {
    pub id: String,
    pub name: String,
    pub model: String,
    pub created_at: DateTime<Utc>,
    pub sample_bytes: i64,
    pub sample_sha256: String,
}

/// A voice to store.
#[derive(Debug, Clone)]
pub struct NewVoice<'a> {
    pub name: &'a str,
    pub model: &'a str,
    pub sample: &'a [u8],
    pub conditioning: &'a [u8],
}

/// What a model needs to speak with a stored voice.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceConditioning {
    pub model: String,
    pub conditioning: Vec<u8>,
}

#[derive(Debug, FromQueryResult)]
struct ConditioningRow {
    model: String,
    conditioning: Option<Vec<u8>>,
}

fn metadata() -> sea_orm::Select<voice::Entity> {
    voice::Entity::find().select_only().columns([
        voice::Column::Id,
        voice::Column::Name,
        voice::Column::Model,
        voice::Column::CreatedAt,
        voice::Column::SampleBytes,
        voice::Column::SampleSha256,
    ])
}

impl Store {
    /// Stores a voice in one insert (a failure leaves no row); its id is `voice_…`.
    #[instrument(skip_all, fields(model = new.model))]
    pub async fn create_voice(&self, new: NewVoice<'_>) -> Result<VoiceRow, StoreError> {
        let row = VoiceRow {
            id: format!("voice_{}", uuid::Uuid::new_v4().simple()),
            name: new.name.to_string(),
            model: new.model.to_string(),
            // Microseconds: what every backend keeps, so the row reads back equal.
            created_at: Utc::now().trunc_subsecs(6),
            sample_bytes: new.sample.len() as i64,
            sample_sha256: crate::store::hex(&Sha256::digest(new.sample)),
        };
        voice::ActiveModel {
            id: Set(row.id.clone()),
            name: Set(row.name.clone()),
            model: Set(row.model.clone()),
            created_at: Set(row.created_at),
            sample_bytes: Set(row.sample_bytes),
            sample_sha256: Set(row.sample_sha256.clone()),
            conditioning: Set(Some(new.conditioning.to_vec())),
            sample: Set(Some(new.sample.to_vec())),
        }
        .insert(self.conn())
        .await?;
        Ok(row)
    }

    /// Stored voices, oldest first; of one model when `model` is given.
    #[instrument(skip_all)]
    pub async fn voices(&self, model: Option<&str>) -> Result<Vec<VoiceRow>, StoreError> {
        let mut query = metadata().order_by_asc(voice::Column::CreatedAt);
        if let Some(model) = model {
            query = query.filter(voice::Column::Model.eq(model));
        }
        Ok(query
            .order_by_asc(voice::Column::Id)
            .into_model::<VoiceRow>()
            .all(self.conn())
            .await?)
    }

    /// The voice `id`, without its blobs.
    #[instrument(skip_all)]
    pub async fn voice(&self, id: &str) -> Result<Option<VoiceRow>, StoreError> {
        Ok(metadata()
            .filter(voice::Column::Id.eq(id))
            .into_model::<VoiceRow>()
            .one(self.conn())
            .await?)
    }

    /// The model and conditioning of voice `id`.
    #[instrument(skip_all)]
    pub async fn voice_conditioning(
        &self,
        id: &str,
    ) -> Result<Option<VoiceConditioning>, StoreError> {
        let row = voice::Entity::find()
            .select_only()
            .columns([voice::Column::Model, voice::Column::Conditioning])
            .filter(voice::Column::Id.eq(id))
            .into_model::<ConditioningRow>()
            .one(self.conn())
            .await?;
        Ok(row.and_then(|r| {
            r.conditioning.map(|conditioning| VoiceConditioning {
                model: r.model,
                conditioning,
            })
        }))
    }

    /// Deletes voice `id` with its recording; false when there was none.
    #[instrument(skip_all)]
    pub async fn delete_voice(&self, id: &str) -> Result<bool, StoreError> {
        let result = voice::Entity::delete_by_id(id.to_string())
            .exec(self.conn())
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// The reference recording of voice `id` as uploaded.
    #[instrument(skip_all)]
    pub async fn voice_sample(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(voice::Entity::find_by_id(id.to_string())
            .one(self.conn())
            .await?
            .and_then(|v| v.sample))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn voices_round_trip_and_delete() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let a = store
            .create_voice(NewVoice {
                name: "Ada",
                model: "chatterbox-turbo",
                sample: b"RIFF sample",
                conditioning: &[1, 2, 3],
            })
            .await
            .unwrap();
        assert!(a.id.starts_with("voice_"));
        assert_eq!(a.sample_bytes, 11);
        assert_eq!(store.voice(&a.id).await.unwrap(), Some(a.clone()));
        assert_eq!(store.voices(None).await.unwrap(), vec![a.clone()]);
        assert!(store.voices(Some("kokoro")).await.unwrap().is_empty());
        let c = store.voice_conditioning(&a.id).await.unwrap().unwrap();
        assert_eq!(
            (c.model.as_str(), c.conditioning),
            ("chatterbox-turbo", vec![1, 2, 3])
        );
        assert_eq!(
            store.voice_sample(&a.id).await.unwrap(),
            Some(b"RIFF sample".to_vec())
        );
        assert!(store.delete_voice(&a.id).await.unwrap());
        assert!(!store.delete_voice(&a.id).await.unwrap());
        assert_eq!(store.voice(&a.id).await.unwrap(), None);
        assert_eq!(store.voice_sample(&a.id).await.unwrap(), None);
    }
}
