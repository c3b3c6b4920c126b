//! The database: connection, migrations at start, and one repository file per
//! table. Only this module queries; no entity type leaves it.

mod api_keys;
mod pronunciations;
mod settings;
mod url;
mod usage;
mod voices;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};
use tracing::instrument;

pub use pronunciations::{NewPronunciation, PronunciationRow, PRONUNCIATION_ID_PREFIX};
pub use url::{normalize_db_url, sqlite_path};
pub use usage::{NewUsage, UsageRow};
pub use voices::{NewVoice, VoiceConditioning, VoiceRow};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    #[error("cannot create folder for database {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[source] sea_orm::DbErr),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Cheap to clone; all clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Connect to `url` (created if it is a new SQLite file) and apply migrations.
    #[instrument(skip_all, fields(backend))]
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = sqlite_path(url) {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                    path: path.display().to_string(),
                    source,
                })?;
            }
        }
        let mut opts = ConnectOptions::new(url.to_string());
        opts.connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                // WAL with NORMAL sync: committed rows survive a crash of the process;
                // a power cut may lose the last transactions but never corrupts the file.
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    // 512 KiB of page cache per connection (SQLite's default is 2 MiB):
                    // the tables are small and read by key, and the server's idle
                    // memory stays low.
                    .pragma("cache_size", "-512")
            });
        if url.starts_with("sqlite::memory:") {
            // Each connection of an in-memory database is its own database.
            opts.max_connections(1).min_connections(1);
        }
        let db = Database::connect(opts)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact(url),
                source,
            })?;
        tracing::Span::current().record("backend", format!("{:?}", db.get_database_backend()));
        Migrator::up(&db, None).await.map_err(StoreError::Migrate)?;
        Ok(Self { db })
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Check the database answers (for `/health`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await.map_err(StoreError::from)
    }

    /// Close the connection pool, flushing SQLite's WAL.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await.map_err(StoreError::from)
    }

    /// SQLite's journal mode (`wal` by default); `None` on other databases.
    pub async fn journal_mode(&self) -> Result<Option<String>, StoreError> {
        use sea_orm::{ConnectionTrait, Statement};
        if self.backend() != DbBackend::Sqlite {
            return Ok(None);
        }
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA journal_mode",
            ))
            .await?;
        Ok(row.and_then(|r| r.try_get_by_index::<String>(0).ok()))
    }

    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// Hide a password in a database URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Lowercase hex, as keys' digests are stored.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
