//! `voxpool status | load | unload | timeout` against a running server, and
//! `voxpool cleanup` on a models folder: output, exit codes, API keys.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{start_with, Options, MODEL};
use voxpool::config::Secret;

/// Run the binary with `args` (and `stdin`); returns (exit code, stdout, stderr).
async fn voxpool(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_voxpool"));
    cmd.args(args)
        .env_remove("VOXPOOL_API_KEY")
        .env_remove("VOXPOOL_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, stdin.as_bytes())
        .await
        .unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn status_load_timeout_unload_as_a_client() {
    let srv = start_with(Options::default()).await;
    let url = srv.base.clone();
    let run = |mut args: Vec<&'static str>| {
        let url = url.clone();
        async move {
            args.push("--url");
            let mut args: Vec<&str> = args;
            args.push(&url);
            voxpool(&args, &[], "").await
        }
    };
    let (code, out, err) = run(vec!["load", MODEL]).await;
    assert_eq!(
        (code, out.trim()),
        (0, "Model loaded successfully"),
        "{err}"
    );
    let (code, out, _) = run(vec!["status"]).await;
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with(MODEL)).expect(&out);
    assert!(line.split_whitespace().nth(1) == Some("yes"), "{out}");
    let (code, out, _) = run(vec!["timeout", "600", MODEL]).await;
    assert_eq!((code, out.trim()), (0, "Timeout updated to 600 seconds"));
    let (code, _, err) = run(vec!["timeout", "10", MODEL]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("at least 60") && err.contains("(400)"),
        "{err}"
    );
    let (code, out, _) = run(vec!["unload", MODEL]).await;
    assert_eq!((code, out.trim()), (0, "Model unloaded successfully"));
    let (code, out, _) = run(vec!["status", "--json"]).await;
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let model = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == MODEL)
        .unwrap();
    assert_eq!(
        (
            model["model_loaded"].as_bool(),
            model["unload_timeout"].as_i64()
        ),
        (Some(false), Some(600))
    );
    let (code, _, err) = run(vec!["unload", "no-such-model"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    // Nobody listening.
    let (code, _, err) = voxpool(&["status", "--url", "http://127.0.0.1:9"], &[], "").await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach voxpool at http://127.0.0.1:9"),
        "{err}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_client_sends_the_api_key_from_the_environment() {
    let srv = start_with(Options {
        configure: Box::new(|c| c.api_key = Some(Secret::new("sk-admin-cli"))),
        ..Options::default()
    })
    .await;
    let (code, _, err) = voxpool(&["status", "--url", &srv.base], &[], "").await;
    assert_eq!(code, 1);
    assert!(
        err.contains("Missing API key") && err.contains("(401)"),
        "{err}"
    );
    let (code, out, err) = voxpool(
        &["status", "--url", &srv.base],
        &[("VOXPOOL_API_KEY", "sk-admin-cli")],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(MODEL));
    srv.stop().await;
}

#[tokio::test]
async fn cleanup_lists_asks_and_deletes_only_voxpools_files() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path();
    let write = |rel: &str, bytes: usize| {
        let path = models.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![7u8; bytes])
            .unwrap();
    };
    write("models--hexgrad--Kokoro-82M/blobs/abc", 300_000);
    write("models--ResembleAI--chatterbox-turbo/blobs/def", 200_000);
    write("voxpool-cache/kokoro/model.safetensors", 100_000);
    write("models--someone--other-model/blobs/keep", 1_000);
    let dir_arg = models.to_str().unwrap();

    let (code, out, err) = voxpool(&["cleanup", "--models-dir", dir_arg], &[], "n\n").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("models--hexgrad--Kokoro-82M") && out.contains("voxpool-cache"),
        "{out}"
    );
    assert!(out.contains("585.9 KiB  in all"), "{out}");
    assert!(!out.contains("other-model"), "{out}");
    assert!(models.join("models--hexgrad--Kokoro-82M").exists());

    let (code, out, _) = voxpool(&["cleanup", "--models-dir", dir_arg, "--yes"], &[], "").await;
    assert_eq!(code, 0);
    assert!(out.contains("freed 585.9 KiB"), "{out}");
    assert!(!models.join("models--hexgrad--Kokoro-82M").exists());
    assert!(!models.join("voxpool-cache").exists());
    assert!(models
        .join("models--someone--other-model/blobs/keep")
        .exists());

    let (code, out, _) = voxpool(&["cleanup", "--models-dir", dir_arg], &[], "").await;
    assert_eq!(code, 0);
    assert!(out.starts_with("nothing of voxpool's"), "{out}");
}

#[tokio::test]
async fn pronounce_adds_lists_and_removes_entries() {
    let srv = start_with(Options {
        configure: Box::new(|c| c.api_key = Some(Secret::new("sk-admin-pronounce"))),
        ..Options::default()
    })
    .await;
    let key = [("VOXPOOL_API_KEY", "sk-admin-pronounce")];
    let run = |args: Vec<&str>| {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.extend(["--url".to_string(), srv.base.clone()]);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            voxpool(&args, &key, "").await
        }
    };
    let (code, out, err) = run(vec!["pronounce", "list"]).await;
    assert_eq!((code, out.trim()), (0, "no stored pronunciations"), "{err}");
    let (code, out, err) = run(vec![
        "pronounce",
        "add",
        "Kokoro",
        "kˈOkəɹO",
        "--language",
        "en-us",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("added pron_")
            && out.contains("Kokoro -> /kˈOkəɹO/ (language a, every model)"),
        "{out}"
    );
    let id = out.split_whitespace().nth(1).unwrap().trim_end_matches(':');
    let (code, out, err) = run(vec!["pronounce", "add", "kokoro", "kOkˈOɹO", "-l", "a"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("updated {id}: kokoro")), "{out}");
    let (code, out, err) = run(vec![
        "pronounce",
        "add",
        "東京",
        "tokʲˈoː",
        "-l",
        "ja",
        "--model",
        "tts-1",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("(language j, model {MODEL})")),
        "{out}"
    );

    let (code, out, _) = run(vec!["pronounce", "list"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("id") && lines[0].ends_with("phonemes"),
        "{out}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, [id, "kokoro", "a", "(all)", "kOkˈOɹO"], "{out}");
    let (code, out, _) = run(vec!["pronounce", "list", "--language", "j"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("東京") && out.contains(MODEL), "{out}");

    // Refusals name what is wrong and exit 1.
    let (code, _, err) = run(vec!["pronounce", "add", "x", "k#", "-l", "a"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("'#' (U+0023)") && err.contains("(400)"),
        "{err}"
    );
    let (code, _, err) = run(vec!["pronounce", "list", "-l", "klingon"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("klingon") && err.contains("(400)"), "{err}");

    let (code, out, err) = run(vec!["pronounce", "rm", id]).await;
    assert_eq!(
        (code, out.trim()),
        (0, format!("deleted {id}").as_str()),
        "{err}"
    );
    let (code, _, err) = run(vec!["pronounce", "rm", id]).await;
    assert_eq!(code, 1);
    assert!(err.contains("(404)"), "{err}");
    // Without the key: refused.
    let (code, _, err) = voxpool(&["pronounce", "list", "--url", &srv.base], &[], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("(401)"), "{err}");
    srv.stop().await;
}
