//! Durability: the server is killed with SIGKILL in the middle of a burst of
//! persisted writes (per-model timeouts and voice uploads). After a restart on the
//! same SQLite file, every acknowledged write is there, no upload left a partial row,
//! and the database passes `PRAGMA integrity_check`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::workloads::ServeProcess;
use sea_orm::{ConnectionTrait, Database, Statement};

const MODELS: [&str; 2] = ["kokoro", "chatterbox-turbo"];

/// Start `voxpool serve` on `db` and wait until Chatterbox Turbo (preloaded, in its
/// worker) can clone; returns the process and its address.
async fn serve(dir: &std::path::Path, db: &str) -> (ServeProcess, String) {
    let srv = ServeProcess::start(
        dir,
        &dir.join("models"),
        &[
            ("VOXPOOL_DB_URL", db),
            ("MODEL_PRELOAD", "chatterbox-turbo"),
        ],
    );
    let addr = srv.base.trim_start_matches("http://").to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: serde_json::Value = srv
            .client
            .get(format!("http://{addr}/model/status?model=chatterbox-turbo"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["model_loaded"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Turbo never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (srv, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let snap = common::tiny_turbo::install_tiny_turbo(&dir.path().join("models"));
    common::tiny_turbo::install_tiny_cloner(&snap);
    let path = dir.path().join("voxpool.db");
    let mut voices_acked: Vec<String> = Vec::new();
    let db = format!("sqlite://{}?mode=rwc", path.display());
    let client = reqwest::Client::new();
    let mut total_acked = 0;
    for round in 0..3 {
        let (mut child, addr) = serve(dir.path(), &db).await;
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
        // Voice uploads alongside: `created` holds the acknowledged ids, `sending` the
        // name of the one that may be in flight.
        let uploaded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let uploader = {
            let (client, addr, stop) = (client.clone(), addr.clone(), stop.clone());
            let uploaded = Arc::clone(&uploaded);
            tokio::spawn(async move {
                let mut created = Vec::new();
                let mut sending = None;
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("r{round}-v{n}");
                    n += 1;
                    sending = Some(name.clone());
                    let form = reqwest::multipart::Form::new()
                        .text("name", name)
                        .text("model", "chatterbox-turbo")
                        .part(
                            "audio_sample",
                            reqwest::multipart::Part::bytes(common::tiny_turbo::recording(
                                5.5,
                                100.0 + n as f64,
                            ))
                            .file_name("ref.wav"),
                        );
                    let resp = client
                        .post(format!("http://{addr}/v1/audio/voices"))
                        .multipart(form)
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 200 => {
                            let body: serde_json::Value = r.json().await.unwrap();
                            created.push(body["id"].as_str().unwrap().to_string());
                            uploaded.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => panic!("voice upload: {}", r.status()),
                        Err(_) => break, // the server is gone
                    }
                }
                (created, sending)
            })
        };
        // Kill once an upload has been acknowledged in this round (a voice's first
        // clone also loads the cloning encoders in the worker) and every writer has
        // had a number of writes confirmed that grows with the round, so each round
        // kills at a different point of the writes.
        let writes = 5 + 10 * round;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let ready = || {
            uploaded.load(Ordering::SeqCst) > 0
                && writers.iter().all(|(_, acked, _, _)| {
                    acked.load(Ordering::SeqCst) >= 60 + round * 100_000 + writes
                })
        };
        while !ready() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            ready(),
            "round {round}: no upload or too few writes in 30 s"
        );
        child.kill(); // SIGKILL
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

        let (created, in_flight) = uploader.await.unwrap();
        voices_acked.extend(created);

        // Restart on the same file: the last acknowledged value (or the one in
        // flight at the kill, which may have committed) is what each model has.
        let (mut child, addr) = serve(dir.path(), &db).await;
        let voices: serde_json::Value = client
            .get(format!(
                "http://{addr}/v1/audio/voices?model=chatterbox-turbo"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let stored: Vec<(String, String)> = voices["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["builtin"] == false)
            .map(|v| {
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for id in &voices_acked {
            assert!(
                stored.iter().any(|(s, _)| s == id),
                "round {round}: acknowledged voice {id} is gone"
            );
        }
        // Anything else is the upload in flight at the kill, stored whole.
        for (id, name) in &stored {
            if !voices_acked.contains(id) {
                assert_eq!(
                    Some(name),
                    in_flight.as_ref(),
                    "round {round}: stray voice {id}"
                );
                voices_acked.push(id.clone());
            }
        }
        for id in &voices_acked {
            let resp = client
                .post(format!("http://{addr}/v1/audio/speech"))
                .json(&serde_json::json!({"model": "chatterbox-turbo", "input": "Hi.", "voice": id, "response_format": "pcm"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "round {round}: voice {id} cannot speak");
        }
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
        child.kill();
    }
    assert!(total_acked >= 30, "only {total_acked} writes acknowledged");
    assert!(
        voices_acked.len() >= 3,
        "only {} voice uploads acknowledged",
        voices_acked.len()
    );

    // The server reads the URL as its users write it (see `normalize_db_url`); open
    // the very file it wrote.
    let conn = Database::connect(voxpool::config::normalize_db_url(&db).unwrap())
        .await
        .unwrap();
    let settings = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT count(*) FROM settings",
        ))
        .await
        .unwrap()
        .unwrap();
    let settings: i64 = settings.try_get_by_index(0).unwrap();
    assert_eq!(settings, MODELS.len() as i64, "the file the server wrote");
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
    let partial = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT count(*) FROM voices WHERE conditioning IS NULL OR sample IS NULL \
             OR length(sample) != sample_bytes",
        ))
        .await
        .unwrap()
        .unwrap();
    let partial: i64 = partial.try_get_by_index(0).unwrap();
    assert_eq!(
        partial, 0,
        "voice rows without their conditioning or recording"
    );
    println!(
        "{total_acked} acknowledged timeout writes and {} voice uploads over 3 SIGKILLs: \
         all present, no partial rows, integrity ok",
        voices_acked.len()
    );
}
