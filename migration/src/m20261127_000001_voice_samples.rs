//! Keep each cloned voice's reference recording with its row, so that deleting the
//! voice deletes the recording and a voice can be recomputed for a new model version.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Voices {
    Table,
    Sample,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Voices::Table)
                    .add_column(ColumnDef::new(Voices::Sample).blob())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Voices::Table)
                    .drop_column(Voices::Sample)
                    .to_owned(),
            )
            .await
    }
}
