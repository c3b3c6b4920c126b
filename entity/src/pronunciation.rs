//! Stored pronunciations: how a word is read in one language, by every model or one.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pronunciations")]
pub struct Model {
    /// `pron_` followed by a random id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The word as it was given.
    pub word: String,
    /// The word lowercased: one entry per word, whatever its case.
    pub word_key: String,
    /// Kokoro phonemes (v1.0 vocabulary).
    pub phonemes: String,
    /// Kokoro language code (`a`, `b`, `e`, `f`, `h`, `i`, `j`, `p`, `z`).
    pub language: String,
    /// The model id the entry is limited to; `""` for every model.
    pub model: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
