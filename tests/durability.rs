//! Durability: the server is killed with SIGKILL in the middle of a burst of
//! persisted writes (per-model timeouts). After a restart on the same SQLite file,
//! every acknowledged write is there and the database passes `PRAGMA integrity_check`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};

const MODELS: [&str; 2] = ["kokoro", "chatterbox-turbo"];

/// Start `voxpool serve` on `db`; returns the child and its address.
fn serve(dir: &std::path::Path, db: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxpool"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("VOXPOOL_DB_URL", db)
        .env("VOXPOOL_HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("VOXPOOL_MODELS_DIR", dir.join("models"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if line.contains("voxpool listening") {
            break line.split("addr=").nth(1).expect("addr").trim().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("voxpool.db");
    let db = format!("sqlite://{}?mode=rwc", path.display());
    let client = reqwest::Client::new();
    let mut total_acked = 0;
    for round in 0..3 {
        let (mut child, addr) = serve(dir.path(), &db);
        let stop = Arc::new(AtomicBool::new(false));
        // One writer per model, each waiting for its answer before the next write:
        // `acked` is the last value confirmed, `sent` the one that may be in flight.
        let writers: Vec<_> = MODELS
            .iter()
            .map(|model| {
                let (client, addr, stop) = (client.clone(), addr.clone(), stop.clone());
                let acked = Arc::new(AtomicI64::new(-1));
                let sent = Arc::new(AtomicI64::new(-1));
                let (a, s) = (acked.clone(), sent.clone());
                let task = tokio::spawn(async move {
                    let mut n = 0i64;
                    let mut count = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        let value = 60 + round * 100_000 + n;
                        n += 1;
                        s.store(value, Ordering::SeqCst);
                        let resp = client
                            .post(format!("http://{addr}/model/timeout"))
                            .json(&serde_json::json!({"model": model, "timeout_seconds": value}))
                            .send()
                            .await;
                        match resp {
                            Ok(r) if r.status() == 200 => {
                                a.store(value, Ordering::SeqCst);
                                count += 1;
                            }
                            Ok(r) => panic!("{model}: {}", r.status()),
                            Err(_) => break, // the server is gone
                        }
                    }
                    count
                });
                (*model, acked, sent, task)
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700 + 150 * round as u64)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        let mut expected = Vec::new();
        for (model, acked, sent, task) in writers {
            total_acked += task.await.unwrap();
            expected.push((
                model,
                acked.load(Ordering::SeqCst),
                sent.load(Ordering::SeqCst),
            ));
        }

        // Restart on the same file: the last acknowledged value (or the one in
        // flight at the kill, which may have committed) is what each model has.
        let (mut child, addr) = serve(dir.path(), &db);
        for (model, acked, sent) in expected {
            assert!(
                acked > 0,
                "round {round}: no write acknowledged for {model}"
            );
            let status: serde_json::Value = client
                .get(format!("http://{addr}/model/status?model={model}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let got = status["unload_timeout"].as_i64().unwrap();
            assert!(
                got == acked || got == sent,
                "round {round}, {model}: stored {got}, acknowledged {acked}, in flight {sent}"
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(total_acked >= 30, "only {total_acked} writes acknowledged");

    let conn = Database::connect(&db).await.unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "PRAGMA integrity_check",
        ))
        .await
        .unwrap()
        .unwrap();
    let verdict: String = row.try_get_by_index(0).unwrap();
    assert_eq!(verdict, "ok");
    println!("{total_acked} acknowledged writes over 3 SIGKILLs: all present, integrity ok");
}
