//! Database migrations, applied in order at start-up. Merged migrations are frozen:
//! change the schema by adding a new file, never by editing an old one.
pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_tables;
mod m20261127_000001_voice_samples;
mod m20261207_000001_pronunciations;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_tables::Migration),
            Box::new(m20261127_000001_voice_samples::Migration),
            Box::new(m20261207_000001_pronunciations::Migration),
        ]
    }
}
