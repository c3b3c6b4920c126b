//! One row per speech request.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "usage")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub key_id: Option<String>,
    pub model: String,
    pub voice: String,
    /// Characters of input text.
    pub characters: i32,
    /// Seconds of audio produced.
    pub audio_seconds: f64,
    /// Time from request to last byte, milliseconds.
    pub latency_ms: i64,
    /// HTTP status sent to the client.
    pub status: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
