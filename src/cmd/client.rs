//! `voxpool status | load | unload | timeout`: clients of a running server's
//! `/model/*` endpoints (the seed's deload.py and friends).

use std::io::Write;

use serde_json::{json, Value};

use crate::config::ServerUrl;

/// A failed command: exit code 1 (the server refused or could not be reached).
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn base(server: &ServerUrl) -> Result<String, ClientError> {
    let url = server.url.trim().trim_end_matches('/');
    if url.starts_with("https://") {
        return Err(ClientError(format!(
            "{url}: this client speaks plain HTTP only; use the server's http:// address"
        )));
    }
    if !url.starts_with("http://") {
        return Err(ClientError(format!("{url}: expected an http:// URL")));
    }
    Ok(url.to_string())
}

/// Send one request; the JSON body of a 2xx, or the server's error message.
async fn call(server: &ServerUrl, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
    let url = format!("{}{path}", base(server)?);
    let client = reqwest::Client::new();
    let mut req = match &body {
        Some(b) => client.post(&url).json(b),
        None => client.get(&url),
    };
    if let Some(key) = server.api_key.as_deref().filter(|k| !k.trim().is_empty()) {
        req = req.bearer_auth(key.trim());
    }
    let resp = req.send().await.map_err(|e| {
        ClientError(format!(
            "cannot reach voxpool at {}: {}",
            server.url,
            std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string())
        ))
    })?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let message = value["error"]["message"]
        .as_str()
        .map_or_else(|| status.to_string(), str::to_string);
    Err(ClientError(format!("{} ({})", message, status.as_u16())))
}

fn model_body(model: Option<&str>) -> Value {
    match model {
        Some(m) => json!({ "model": m }),
        None => json!({}),
    }
}

/// `voxpool status`: one line per model, or the JSON with `--json`.
pub async fn status(server: &ServerUrl, raw: bool, mut out: impl Write) -> Result<(), ClientError> {
    let status = call(server, "/model/status", None).await?;
    if raw {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
        return Ok(());
    }
    let _ = writeln!(out, "device {}", status["device"].as_str().unwrap_or("?"));
    let _ = writeln!(
        out,
        "{:<18} {:<8} {:>9} {:>10} {:>9} {:>11}  last error",
        "model", "loaded", "in flight", "idle (s)", "timeout", "memory MiB"
    );
    let models = status["models"].as_array().cloned().unwrap_or_default();
    for m in models {
        let loaded = if m["is_loading"] == true {
            "loading"
        } else if m["model_loaded"] == true {
            "yes"
        } else {
            "no"
        };
        let timeout = match m["unload_timeout"].as_i64() {
            Some(t) if t < 0 => "never".to_string(),
            Some(t) => t.to_string(),
            None => "?".into(),
        };
        let _ = writeln!(
            out,
            "{:<18} {:<8} {:>9} {:>10.1} {:>9} {:>11.1}  {}",
            m["model"].as_str().unwrap_or("?"),
            loaded,
            m["in_flight"].as_u64().unwrap_or(0),
            m["time_since_last_activity"].as_f64().unwrap_or(0.0),
            timeout,
            m["memory_bytes"].as_f64().unwrap_or(0.0) / f64::from(1 << 20),
            m["last_error"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

/// `voxpool load|unload [model]`.
pub async fn load_or_unload(
    server: &ServerUrl,
    model: Option<&str>,
    load: bool,
    mut out: impl Write,
) -> Result<(), ClientError> {
    let path = if load { "/model/load" } else { "/model/unload" };
    let reply = call(server, path, Some(model_body(model))).await?;
    let _ = writeln!(out, "{}", reply["message"].as_str().unwrap_or("done"));
    Ok(())
}

/// `voxpool timeout <seconds> [model]`.
pub async fn timeout(
    server: &ServerUrl,
    seconds: i64,
    model: Option<&str>,
    mut out: impl Write,
) -> Result<(), ClientError> {
    let mut body = model_body(model);
    body["timeout_seconds"] = json!(seconds);
    let reply = call(server, "/model/timeout", Some(body)).await?;
    let _ = writeln!(out, "{}", reply["message"].as_str().unwrap_or("done"));
    Ok(())
}
