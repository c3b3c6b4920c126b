//! The store on an empty database: migrations, then every repository function.
//! Runs on a fresh SQLite file, and on PostgreSQL when `DATABASE_URL_TEST` names one.

use voxpool::store::{NewUsage, Store};

async fn exercise(store: &Store) {
    store.ping().await.unwrap();
    let model = format!("model-{}", uuid_like());
    assert!(!store.timeouts().await.unwrap().contains_key(&model));
    store.save_timeout(&model, 600).await.unwrap();
    assert_eq!(store.timeouts().await.unwrap()[&model], 600);
    // Saving again updates in place.
    store.save_timeout(&model, -1).await.unwrap();
    assert_eq!(store.timeouts().await.unwrap()[&model], -1);

    let before = store.usage_count().await.unwrap();
    let usage = NewUsage {
        key_id: None,
        model: model.clone(),
        voice: "alloy".into(),
        characters: 42,
        audio_seconds: 3.25,
        latency_ms: 120,
        status: 200,
    };
    let id1 = store.record_usage(&usage).await.unwrap();
    let id2 = store
        .record_usage(&NewUsage {
            status: 503,
            key_id: Some("key_1".into()),
            ..usage.clone()
        })
        .await
        .unwrap();
    assert!(id2 > id1);
    assert_eq!(store.usage_count().await.unwrap(), before + 2);
    let recent = store.recent_usage(2).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].id, id2);
    assert_eq!(recent[0].usage.status, 503);
    assert_eq!(recent[0].usage.key_id.as_deref(), Some("key_1"));
    assert_eq!(recent[1].usage, usage);
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn sqlite_store_from_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet, named the SQLAlchemy way.
    let path = dir.path().join("nested/data/torchts.db");
    let url = voxpool::config::normalize_db_url(&format!(
        "sqlite:////{}",
        path.display().to_string().trim_start_matches('/')
    ))
    .unwrap();
    let store = Store::connect(&url).await.unwrap();
    assert!(path.exists());
    exercise(&store).await;
    store.close().await.unwrap();
    // Reopening runs the migrations again without harm and keeps the rows.
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.usage_count().await.unwrap(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v.db?mode=rwc", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.journal_mode().await.unwrap().as_deref(), Some("wal"));
    store.close().await.unwrap();
}

#[tokio::test]
async fn postgres_store_when_available() {
    let Ok(url) = std::env::var("DATABASE_URL_TEST") else {
        eprintln!("DATABASE_URL_TEST not set: PostgreSQL store test skipped");
        return;
    };
    let url = voxpool::config::normalize_db_url(&url).unwrap();
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), sea_orm::DbBackend::Postgres);
    exercise(&store).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let err = Store::connect("postgres://voxpool:secret@127.0.0.1:1/voxpool")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot open database"), "{err}");
    assert!(!err.contains("secret"), "password leaked: {err}");
}
