//! Voices created through the voices API (cloned from a reference clip).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "voices")]
pub struct Model {
    /// `voice_` followed by a random id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub model: String,
    pub created_at: DateTimeUtc,
    /// Size of the uploaded reference sample in bytes.
    pub sample_bytes: i64,
    /// SHA-256 of the uploaded reference sample, hex.
    pub sample_sha256: String,
    /// Serialized conditioning tensors (safetensors), computed once at creation.
    pub conditioning: Option<Vec<u8>>,
    /// The uploaded reference recording as it was sent.
    pub sample: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
