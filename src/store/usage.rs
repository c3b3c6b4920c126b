//! One row per speech request.

use entity::usage;
use sea_orm::{EntityTrait, PaginatorTrait, QueryOrder, QuerySelect, Set};
use tracing::instrument;

use super::{Store, StoreError};

/// A finished speech request to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUsage {
    pub key_id: Option<String>,
    pub model: String,
    pub voice: String,
    pub characters: usize,
    pub audio_seconds: f64,
    pub latency_ms: u64,
    pub status: u16,
}

/// A recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub id: i64,
    pub usage: NewUsage,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Store {
    #[instrument(skip_all, fields(model = %u.model, status = u.status))]
    pub async fn record_usage(&self, u: &NewUsage) -> Result<i64, StoreError> {
        let row = usage::ActiveModel {
            key_id: Set(u.key_id.clone()),
            model: Set(u.model.clone()),
            voice: Set(u.voice.clone()),
            characters: Set(i32::try_from(u.characters).unwrap_or(i32::MAX)),
            audio_seconds: Set(u.audio_seconds),
            latency_ms: Set(i64::try_from(u.latency_ms).unwrap_or(i64::MAX)),
            status: Set(i32::from(u.status)),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        };
        let res = usage::Entity::insert(row).exec(self.conn()).await?;
        Ok(res.last_insert_id)
    }

    /// The most recent `limit` rows, newest first.
    pub async fn recent_usage(&self, limit: u64) -> Result<Vec<UsageRow>, StoreError> {
        let rows = usage::Entity::find()
            .order_by_desc(usage::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| UsageRow {
                id: r.id,
                created_at: r.created_at,
                usage: NewUsage {
                    key_id: r.key_id,
                    model: r.model,
                    voice: r.voice,
                    characters: usize::try_from(r.characters).unwrap_or(0),
                    audio_seconds: r.audio_seconds,
                    latency_ms: u64::try_from(r.latency_ms).unwrap_or(0),
                    status: u16::try_from(r.status).unwrap_or(0),
                },
            })
            .collect())
    }

    pub async fn usage_count(&self) -> Result<u64, StoreError> {
        Ok(usage::Entity::find().count(self.conn()).await?)
    }
}
