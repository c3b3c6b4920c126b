//! The `voxpool` binary: bad settings fail at start with a message naming the
//! variable; a real server starts on the seed's SQLAlchemy database URL and stops
//! cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn voxpool(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxpool"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .current_dir(dir);
    cmd
}

#[test]
fn bad_settings_exit_non_zero_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, code) in [
        ("MODEL_UNLOAD_TIMEOUT", "abc", 2),
        ("MODEL_DEVICE", "tpu", 2),
        ("PORT", "http", 2),
        ("FORCE_GC_AFTER_REQUEST", "maybe", 2),
        ("MODEL_MEMORY_BUDGET", "lots", 2),
        ("CHATTERBOX_T3_QUANT", "q3", 2),
        ("CHATTERBOX_S3GEN_QUANT", "int4", 2),
        ("VOXPOOL_DB_URL", "mysql://localhost/x", 2),
        (
            "VOXPOOL_DB_URL",
            "postgres://u:hidden@127.0.0.1:1/voxpool",
            1,
        ),
    ] {
        let out = voxpool(dir.path())
            .env(var, value)
            .env("PORT", if var == "PORT" { value } else { "0" })
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{var}={value}: {stderr}");
        if code == 2 {
            assert!(stderr.contains(var), "{var}={value}: {stderr}");
        } else {
            assert!(stderr.contains("cannot open database"), "{stderr}");
            assert!(!stderr.contains("hidden"), "password in output: {stderr}");
        }
    }
}

#[test]
fn serves_on_the_seed_database_url_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = voxpool(dir.path())
        .env("TORCHTS_DB_URL", "sqlite:///data/torchts.db")
        .env("VOXPOOL_HOST", "127.0.0.1")
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = stdout.lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if line.contains("voxpool listening") {
            let addr = line
                .split("addr=")
                .nth(1)
                .expect("addr field")
                .trim()
                .to_string();
            break addr;
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let body: serde_json::Value = reqwest::get(format!("http://{addr}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "ok");
        let status: serde_json::Value = reqwest::get(format!("http://{addr}/model/status"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["model"], "kokoro");
        assert_eq!(status["unload_timeout"], 300);
    });
    assert!(
        dir.path().join("data/torchts.db").exists(),
        "SQLAlchemy URL not honoured"
    );
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    assert!(
        rest.iter().any(|l| l.contains("voxpool stopped")),
        "{rest:?}"
    );
}

#[test]
fn openapi_subcommand_prints_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let out = voxpool(dir.path()).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spec["info"]["title"], "voxpool");
}
