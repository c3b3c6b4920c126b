//! API keys: only their SHA-256 is stored.

use entity::api_key;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use tracing::instrument;

use super::{Store, StoreError};

impl Store {
    /// The unrevoked key whose SHA-256 (hex) is `sha256`.
    #[instrument(skip_all)]
    pub async fn active_api_key(&self, sha256: &str) -> Result<Option<api_key::Model>, StoreError> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::KeySha256.eq(sha256))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(self.conn())
            .await?)
    }

    /// Stores a new key by its SHA-256 (hex); returns its id (`key_…`).
    #[instrument(skip_all, fields(name, admin))]
    pub async fn create_api_key(
        &self,
        name: &str,
        sha256: &str,
        admin: bool,
    ) -> Result<String, StoreError> {
        let id = format!("key_{}", uuid::Uuid::new_v4().simple());
        api_key::ActiveModel {
            id: Set(id.clone()),
            name: Set(name.to_string()),
            key_sha256: Set(sha256.to_string()),
            admin: Set(admin),
            rate_limit_rpm: Set(None),
            created_at: Set(chrono::Utc::now()),
            revoked_at: Set(None),
        }
        .insert(self.conn())
        .await?;
        Ok(id)
    }

    /// Every key, newest first.
    #[instrument(skip_all)]
    pub async fn api_keys(&self) -> Result<Vec<api_key::Model>, StoreError> {
        use sea_orm::QueryOrder;
        Ok(api_key::Entity::find()
            .order_by_desc(api_key::Column::CreatedAt)
            .all(self.conn())
            .await?)
    }

    /// Marks key `id` revoked; false when there is no such unrevoked key.
    #[instrument(skip_all)]
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        use sea_orm::sea_query::Expr;
        let result = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(chrono::Utc::now()))
            .filter(api_key::Column::Id.eq(id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(self.conn())
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// How many keys are not revoked.
    #[instrument(skip_all)]
    pub async fn active_api_key_count(&self) -> Result<u64, StoreError> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::RevokedAt.is_null())
            .count(self.conn())
            .await?)
    }
}
