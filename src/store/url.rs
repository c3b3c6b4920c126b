//! Database URLs as users write them (sqlx or SQLAlchemy forms), and the file
//! behind a SQLite one.

use std::path::PathBuf;

/// Accept sqlx URLs, SQLAlchemy ones (`sqlite:///relative.db`, `sqlite:////absolute.db`,
/// `postgresql+psycopg2://`) and return what the database driver understands.
pub fn normalize_db_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        if rest.starts_with(":memory:") || rest == "//:memory:" {
            return Ok("sqlite::memory:".into());
        }
        // SQLAlchemy: three slashes then a relative path, four for an absolute one.
        let path_and_query = if let Some(p) = rest.strip_prefix("///") {
            p
        } else if let Some(p) = rest.strip_prefix("//") {
            p
        } else {
            rest
        };
        if path_and_query.is_empty() || path_and_query.starts_with('?') {
            return Err("no database file named".into());
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut query: Vec<&str> = query
            .map(|q| q.split('&').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if !query.iter().any(|kv| kv.starts_with("mode=")) {
            query.push("mode=rwc");
        }
        return Ok(format!("sqlite://{path}?{}", query.join("&")));
    }
    for prefix in [
        "postgresql+psycopg2://",
        "postgresql+asyncpg://",
        "postgresql://",
    ] {
        if let Some(rest) = url.strip_prefix(prefix) {
            return Ok(format!("postgres://{rest}"));
        }
    }
    if url.starts_with("postgres://") {
        return Ok(url.to_string());
    }
    Err("expected a sqlite:// or postgres:// URL".into())
}

/// The file behind a SQLite URL, if any (to create its folder before connecting).
pub fn sqlite_path(db_url: &str) -> Option<PathBuf> {
    let rest = db_url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}
