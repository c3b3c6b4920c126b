//! Stored pronunciations: a word and the Kokoro phonemes it is read as, per language
//! and per model. `model` is `""` for an entry that holds for every model, so the
//! unique index sees it (SQL never counts two NULLs as equal).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Pronunciations {
    Table,
    Id,
    Word,
    WordKey,
    Phonemes,
    Language,
    Model,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Pronunciations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Pronunciations::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Pronunciations::Word).string().not_null())
                    .col(ColumnDef::new(Pronunciations::WordKey).string().not_null())
                    .col(ColumnDef::new(Pronunciations::Phonemes).string().not_null())
                    .col(ColumnDef::new(Pronunciations::Language).string().not_null())
                    .col(
                        ColumnDef::new(Pronunciations::Model)
                            .string()
                            .not_null()
                            .default(""),
                    )
                    .col(
                        ColumnDef::new(Pronunciations::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Pronunciations::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_pronunciations_word")
                    .table(Pronunciations::Table)
                    .col(Pronunciations::WordKey)
                    .col(Pronunciations::Language)
                    .col(Pronunciations::Model)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Pronunciations::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
