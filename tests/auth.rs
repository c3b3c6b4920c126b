//! API keys: open without any; with `VOXPOOL_API_KEY` every route but `/health` needs
//! a key (401), admin routes need an admin key (403), in OpenAI's error shape.

mod common;

use common::{start, start_with, Options, MODEL};
use serde_json::{json, Value};
use voxpool::api::auth::sha256;
use voxpool::config::Secret;
use voxpool::store::hex;

async fn call(
    srv: &common::TestServer,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut req = match method {
        "POST" => srv.client.post(srv.url(path)).json(&json!({})),
        _ => srv.client.get(srv.url(path)),
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_keys_the_server_is_open() {
    let srv = start().await;
    assert_eq!(call(&srv, "GET", "/v1/models", None).await.0, 200);
    assert_eq!(call(&srv, "GET", "/model/status", None).await.0, 200);
    // A key created while the server runs (as `voxpool keys create` does from
    // another process) closes it within a second.
    let store = srv.server.as_ref().unwrap().store();
    store
        .create_api_key("late", &hex(&sha256("sk-late")), false)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(call(&srv, "GET", "/v1/models", None).await.0, 401);
    assert_eq!(
        call(&srv, "GET", "/v1/models", Some("sk-late")).await.0,
        200
    );
    assert_eq!(call(&srv, "GET", "/health", None).await.0, 200);
    srv.stop().await;
}

#[tokio::test]
async fn keys_are_required_and_scoped() {
    let srv = start_with(Options {
        configure: Box::new(|c| c.api_key = Some(Secret::new("sk-admin-bootstrap"))),
        ..Options::default()
    })
    .await;
    let store = srv.server.as_ref().unwrap().store();
    store
        .create_api_key("app", &hex(&sha256("sk-user-1")), false)
        .await
        .unwrap();

    assert_eq!(call(&srv, "GET", "/health", None).await.0, 200);
    // The web page is public; what it calls is not.
    let page = srv.client.get(srv.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    for (key, want) in [(None, 401), (Some("sk-wrong"), 401), (Some("Bearer"), 401)] {
        let (code, body) = call(&srv, "GET", "/v1/models", key).await;
        assert_eq!(code, want, "{key:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
        assert!(body["error"]["message"].is_string());
    }
    // A user key speaks and lists; admin routes answer 403.
    assert_eq!(
        call(&srv, "GET", "/v1/models", Some("sk-user-1")).await.0,
        200
    );
    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .bearer_auth("sk-user-1")
        .json(&json!({"model": MODEL, "input": "Hi", "voice": "alloy", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for (method, path) in [("GET", "/model/status"), ("POST", "/model/unload")] {
        let (code, body) = call(&srv, method, path, Some("sk-user-1")).await;
        assert_eq!(code, 403, "{path}: {body}");
        assert_eq!(body["error"]["type"], "permission_error");
    }
    // The bootstrap key is an admin key.
    assert_eq!(
        call(&srv, "GET", "/model/status", Some("sk-admin-bootstrap"))
            .await
            .0,
        200
    );
    let (code, body) = call(&srv, "POST", "/model/unload", Some("sk-admin-bootstrap")).await;
    assert_eq!(code, 200, "{body}");
    srv.stop().await;
}

/// `voxpool keys` writes the keys a server then requires; revoking one locks it out.
#[tokio::test]
async fn keys_command_creates_lists_and_revokes() {
    use std::process::Command;
    use std::sync::Arc;

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = format!("sqlite://{}/voxpool.db?mode=rwc", dir.path().display());
    let keys = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_voxpool"))
            .env_clear()
            .env("VOXPOOL_DB_URL", &db)
            .arg("keys")
            .args(args)
            .output()
            .unwrap()
    };
    let out = keys(&["create", "--name", "my-app"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        secret.starts_with("sk-vp-") && secret.len() > 60,
        "{secret}"
    );
    let list = String::from_utf8(keys(&["list"]).stdout).unwrap();
    assert!(list.contains("my-app") && list.contains("user"), "{list}");
    assert!(!list.contains(&secret), "the key itself is never listed");
    let id = list
        .lines()
        .find(|l| l.contains("my-app"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();

    // The server on that database requires keys.
    let srv = start_with(Options {
        dir: Some(Arc::clone(&dir)),
        ..Options::default()
    })
    .await;
    assert_eq!(call(&srv, "GET", "/v1/models", None).await.0, 401);
    assert_eq!(call(&srv, "GET", "/v1/models", Some(&secret)).await.0, 200);
    assert_eq!(
        call(&srv, "GET", "/model/status", Some(&secret)).await.0,
        403
    );

    let out = keys(&["revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(call(&srv, "GET", "/v1/models", Some(&secret)).await.0, 401);
    let again = keys(&["revoke", &id]);
    assert_eq!(again.status.code(), Some(1));
    srv.stop().await;
}
