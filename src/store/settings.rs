//! Per-model settings (the idle timeout).

use std::collections::HashMap;

use entity::setting;
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};
use tracing::instrument;

use super::{Store, StoreError};

impl Store {
    /// Persisted idle timeouts in seconds (`-1`: never), by model id.
    #[instrument(skip_all)]
    pub async fn timeouts(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows = setting::Entity::find().all(self.conn()).await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.model, r.unload_timeout))
            .collect())
    }

    /// Persist `model`'s idle timeout in seconds (`-1`: never).
    #[instrument(skip_all, fields(model))]
    pub async fn save_timeout(&self, model: &str, seconds: i64) -> Result<(), StoreError> {
        let row = setting::ActiveModel {
            model: Set(model.to_string()),
            unload_timeout: Set(seconds),
            updated_at: Set(chrono::Utc::now()),
        };
        setting::Entity::insert(row)
            .on_conflict(
                OnConflict::column(setting::Column::Model)
                    .update_columns([setting::Column::UnloadTimeout, setting::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
