//! Per-model runtime settings that survive a restart.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "settings")]
pub struct Model {
    /// Canonical model id (`kokoro`, `chatterbox-turbo`, ...).
    #[sea_orm(primary_key, auto_increment = false)]
    pub model: String,
    /// Idle seconds before the model is unloaded; `-1` keeps it loaded.
    pub unload_timeout: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
