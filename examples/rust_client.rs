//! A small Rust client of voxpool's OpenAI-compatible speech endpoint, streaming the
//! audio to a file as it arrives.
//!
//!     cargo run --example rust_client -- "Hello there." hello.mp3
//!
//! The server address comes from VOXPOOL_URL (default http://localhost:5005/v1);
//! VOXPOOL_API_KEY is sent as the bearer token when set. The format follows the
//! file's extension (mp3, wav, flac, pcm).

use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let text = args.next().unwrap_or_else(|| "Hello from voxpool.".into());
    let out = args.next().unwrap_or_else(|| "speech.mp3".into());
    let format = std::path::Path::new(&out)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("mp3")
        .to_string();
    let base = std::env::var("VOXPOOL_URL").unwrap_or_else(|_| "http://localhost:5005/v1".into());

    let mut request = reqwest::Client::new()
        .post(format!("{}/audio/speech", base.trim_end_matches('/')))
        .json(&serde_json::json!({
            "model": "tts-1",
            "voice": "alloy",
            "input": text,
            "response_format": format,
        }));
    if let Ok(key) = std::env::var("VOXPOOL_API_KEY") {
        request = request.bearer_auth(key);
    }
    let mut response = request.send().await?;
    if !response.status().is_success() {
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        return Err(format!("{status}: {}", body["error"]["message"]).into());
    }
    let mut file = std::fs::File::create(&out)?;
    let (mut bytes, mut chunks) = (0, 0);
    while let Some(chunk) = response.chunk().await? {
        file.write_all(&chunk)?;
        bytes += chunk.len();
        chunks += 1;
    }
    println!("{out}: {bytes} bytes in {chunks} chunks");
    Ok(())
}
