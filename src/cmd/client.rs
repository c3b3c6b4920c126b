//! `voxpool status | load | unload | timeout`: clients of a running server's
//! `/model/*` endpoints (the seed's deload.py and friends); `voxpool pronounce`, of
//! its `/v1/audio/pronunciations`.

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

/// Send one request (a POST with `body`, else a GET); the JSON body of a 2xx, or
/// the server's error message.
async fn call(server: &ServerUrl, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
    let method = match body {
        Some(_) => reqwest::Method::POST,
        None => reqwest::Method::GET,
    };
    send(server, method, path, &[], body).await.map(|(_, v)| v)
}

/// Send one request with `query` and an optional JSON `body`; the status and JSON
/// body of a 2xx, or the server's error message.
async fn send(
    server: &ServerUrl,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> Result<(u16, Value), ClientError> {
    let mut url = format!("{}{path}", base(server)?);
    for (i, (name, value)) in query.iter().enumerate() {
        let sep = if i == 0 { '?' } else { '&' };
        url.push_str(&format!("{sep}{name}={}", percent_encode(value)));
    }
    let client = reqwest::Client::new();
    let mut req = client.request(method, &url);
    if let Some(b) = &body {
        req = req.json(b);
    }
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
        return Ok((status.as_u16(), value));
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

/// `voxpool pronounce add WORD PHONEMES --language L [--model M]`.
pub async fn pronounce_add(
    server: &ServerUrl,
    word: &str,
    phonemes: &str,
    language: &str,
    model: Option<&str>,
    mut out: impl Write,
) -> Result<(), ClientError> {
    let mut body = json!({"word": word, "phonemes": phonemes, "language": language});
    if let Some(m) = model {
        body["model"] = json!(m);
    }
    let (status, entry) = send(
        server,
        reqwest::Method::POST,
        "/v1/audio/pronunciations",
        &[],
        Some(body),
    )
    .await?;
    let _ = writeln!(
        out,
        "{} {}: {} -> /{}/ ({})",
        // 201: a new entry; 200: the word's entry, changed.
        if status == 201 { "added" } else { "updated" },
        entry["id"].as_str().unwrap_or("?"),
        entry["word"].as_str().unwrap_or("?"),
        entry["phonemes"].as_str().unwrap_or("?"),
        scope(&entry),
    );
    Ok(())
}

/// `voxpool pronounce list [--language L]`: one line per entry under a header.
pub async fn pronounce_list(
    server: &ServerUrl,
    language: Option<&str>,
    mut out: impl Write,
) -> Result<(), ClientError> {
    let query: Vec<(&str, &str)> = language.map(|l| ("language", l)).into_iter().collect();
    let (_, list) = send(
        server,
        reqwest::Method::GET,
        "/v1/audio/pronunciations",
        &query,
        None,
    )
    .await?;
    let entries = list["data"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        let _ = writeln!(out, "no stored pronunciations");
        return Ok(());
    }
    let text = |e: &Value, field: &str| e[field].as_str().unwrap_or("").to_string();
    let width = |field: &str, title: &str| {
        entries
            .iter()
            .map(|e| text(e, field).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (id_w, word_w) = (width("id", "id"), width("word", "word"));
    let _ = writeln!(
        out,
        "{:<id_w$}  {:<word_w$}  {:<8}  {:<16}  phonemes",
        "id", "word", "language", "model"
    );
    for e in &entries {
        let _ = writeln!(
            out,
            "{:<id_w$}  {:<word_w$}  {:<8}  {:<16}  {}",
            text(e, "id"),
            text(e, "word"),
            text(e, "language"),
            e["model"].as_str().unwrap_or("(all)"),
            text(e, "phonemes"),
        );
    }
    Ok(())
}

/// `voxpool pronounce rm ID`.
pub async fn pronounce_rm(
    server: &ServerUrl,
    id: &str,
    mut out: impl Write,
) -> Result<(), ClientError> {
    // An id is `pron_` and hex; anything else is refused by the server as unknown.
    let path = format!(
        "/v1/audio/pronunciations/{}",
        id.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
    );
    let (_, reply) = send(server, reqwest::Method::DELETE, &path, &[], None).await?;
    let _ = writeln!(out, "deleted {}", reply["id"].as_str().unwrap_or(id));
    Ok(())
}

/// `value` as a URL's query takes it: unreserved characters as they are, the rest
/// as `%XX` of their UTF-8 bytes.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// "language a, every model" or "language a, model kokoro".
fn scope(entry: &Value) -> String {
    format!(
        "language {}, {}",
        entry["language"].as_str().unwrap_or("?"),
        entry["model"]
            .as_str()
            .map_or("every model".to_string(), |m| format!("model {m}"))
    )
}
