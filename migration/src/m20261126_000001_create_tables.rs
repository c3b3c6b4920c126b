use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Settings {
    Table,
    Model,
    UnloadTimeout,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Voices {
    Table,
    Id,
    Name,
    Model,
    CreatedAt,
    SampleBytes,
    SampleSha256,
    Conditioning,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Name,
    KeySha256,
    Admin,
    RateLimitRpm,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Usage {
    Table,
    Id,
    KeyId,
    Model,
    Voice,
    Characters,
    AudioSeconds,
    LatencyMs,
    Status,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Settings::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Settings::Model)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Settings::UnloadTimeout)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Settings::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Voices::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Voices::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Voices::Name).string().not_null())
                    .col(ColumnDef::new(Voices::Model).string().not_null())
                    .col(
                        ColumnDef::new(Voices::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Voices::SampleBytes).big_integer().not_null())
                    .col(ColumnDef::new(Voices::SampleSha256).string().not_null())
                    .col(ColumnDef::new(Voices::Conditioning).blob())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ApiKeys::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::Name).string().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::KeySha256)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::Admin).boolean().not_null())
                    .col(ColumnDef::new(ApiKeys::RateLimitRpm).integer())
                    .col(
                        ColumnDef::new(ApiKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ApiKeys::RevokedAt).timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Usage::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Usage::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Usage::KeyId).string())
                    .col(ColumnDef::new(Usage::Model).string().not_null())
                    .col(ColumnDef::new(Usage::Voice).string().not_null())
                    .col(ColumnDef::new(Usage::Characters).integer().not_null())
                    .col(ColumnDef::new(Usage::AudioSeconds).double().not_null())
                    .col(ColumnDef::new(Usage::LatencyMs).big_integer().not_null())
                    .col(ColumnDef::new(Usage::Status).integer().not_null())
                    .col(
                        ColumnDef::new(Usage::CreatedAt)
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
                    .name("idx_usage_created_at")
                    .table(Usage::Table)
                    .col(Usage::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Usage::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Voices::Table.into_iden(),
            Settings::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
