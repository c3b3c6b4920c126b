//! Kokoro through the server: a temporary models folder in the Hugging Face cache
//! layout holding the tiny checkpoint; `POST /v1/audio/speech` returns a WAV whose
//! length follows the predicted durations.

use std::sync::Arc;

use candle_core::Device;
use serde_json::{json, Value};
use voxpool::config::Config;
use voxpool::engine::kokoro::engine::KokoroEngine;
use voxpool::engine::kokoro::weights::KokoroFiles;
use voxpool::engine::{Registry, TtsEngine};

mod common;

use common::install_tiny_kokoro as install_tiny_model;

#[tokio::test]
async fn kokoro_speaks_through_the_server() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let models = dir.path().join("models");
    install_tiny_model(&models);
    let db = format!("sqlite://{}/v.db?mode=rwc", dir.path().display());
    let mut config = Config::local(&db).unwrap();
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    config.models_dir = models.clone();
    let server = voxpool::Server::start(config, Registry::builtin())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::new();

    // Durations predicted by the engine itself for the same phonemes.
    let phonemes = "hˈI fˈɑks!";
    let files = KokoroFiles::locate(&models).unwrap();
    let engine = KokoroEngine::load(&files, &dir.path().join("cache"), &Device::Cpu).unwrap();
    let frames: u32 = engine
        .predicted_frames(phonemes, "tiny_a", 1.0)
        .unwrap()
        .iter()
        .sum();

    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "tts-1", "input": phonemes, "voice": "tiny_a", "response_format": "wav", "input_format": "phonemes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let wav = resp.bytes().await.unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
    assert_eq!(reader.spec().sample_rate, 24_000);
    assert_eq!(reader.len(), frames * 600);
    let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    assert!(samples.iter().any(|&s| s != 0), "silence");

    // The decoder's noise is seeded by the input: the same request gives the same
    // audio, streamed or not; another voice draws other noise.
    let pcm = |voice: &'static str| {
        let client = client.clone();
        let url = format!("{base}/v1/audio/speech");
        async move {
            let body = json!({"model": "kokoro", "input": phonemes, "voice": voice, "response_format": "pcm", "input_format": "phonemes"});
            let resp = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap()
        }
    };
    let first = pcm("tiny_a").await;
    assert_eq!(first.len(), samples.len() * 2);
    let same: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(first.as_ref(), same.as_slice(), "wav and pcm differ");
    assert_eq!(pcm("tiny_a").await, first, "a repeated request differs");
    assert_ne!(pcm("tiny_b").await, first);

    // A sentence longer than the tiny model's 64 text positions is spoken in pieces
    // that fit the model.
    let long = "This sentence is far too long for the tiny test model to take in one piece, \
                so the engine cuts its phonemes where the model can hold them.";
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(
            &json!({"model": "kokoro", "input": long, "voice": "tiny_a", "response_format": "wav"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let wav = resp.bytes().await.unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
    assert!(reader.len() > 0);

    // Text goes through G2P; a blend of two voices works; unknown voices are 404.
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "kokoro", "input": "Hello there.", "voice": "tiny_a(2)+tiny_b(1)", "response_format": "pcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.bytes().await.unwrap().is_empty());
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "kokoro", "input": "Hello.", "voice": "af_nobody", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tiny_a"),
        "{body}"
    );

    let status: Value = client
        .get(format!("{base}/model/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["model"], "kokoro");
    assert_eq!(status["model_loaded"], true);
    // The languages this machine speaks: English always, the others with their
    // language packs or espeak-ng.
    let here: Vec<&str> = voxpool::text::g2p::available_languages()
        .iter()
        .map(|l| l.code())
        .collect();
    assert!(here.starts_with(&["a", "b"]));
    assert_eq!(status["available_languages"], json!(here));

    // The model, and the G2P tables it used, live in its worker: this process (the
    // server) never built them, and the unload ends the worker (this binary's other
    // tests do not phonemize in-process).
    assert!(!voxpool::text::g2p::is_built(
        voxpool::text::Language::AmericanEnglish
    ));
    let worker = status["worker_pid"].as_u64().expect("a worker pid");
    assert!(std::path::Path::new(&format!("/proc/{worker}")).exists());
    let resp = client
        .post(format!("{base}/model/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ended = std::fs::read_to_string(format!("/proc/{worker}/stat"))
        .map_or(true, |stat| stat.contains(") Z "));
    assert!(ended, "worker {worker} still running after the unload");
    assert!(
        !voxpool::text::g2p::is_built(voxpool::text::Language::AmericanEnglish)
            && !voxpool::text::g2p::is_built(voxpool::text::Language::BritishEnglish)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn voices_are_listed_from_the_files_without_loading_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    install_tiny_model(&models);
    // A voice under an official name brings its OpenAI alias along.
    let voices = models.join("models--hexgrad--Kokoro-82M/snapshots/tiny/voices");
    std::fs::copy(voices.join("tiny_a.pt"), voices.join("af_heart.pt")).unwrap();
    let db = format!("sqlite://{}/v.db?mode=rwc", dir.path().display());
    let mut config = Config::local(&db).unwrap();
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    config.models_dir = models.clone();
    let server = voxpool::Server::start(config, Registry::builtin())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::new();
    let get = |query: &'static str| {
        let client = client.clone();
        let url = format!("{base}/v1/audio/voices{query}");
        async move { client.get(url).send().await.unwrap() }
    };

    let resp = get("").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<(&str, &str)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["model"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            ("af_heart", "kokoro"),
            ("tiny_a", "kokoro"),
            ("tiny_b", "kokoro"),
            ("shimmer", "kokoro")
        ],
        "{body}"
    );
    assert_eq!(body["data"][0]["object"], "audio.voice");
    assert_eq!(body["data"][0]["builtin"], true);

    // Aliases resolve; unknown models are 404; nothing was loaded to answer.
    let body: Value = get("?model=tts-1").await.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 4);
    let body: Value = get("?model=chatterbox-turbo").await.json().await.unwrap();
    assert_eq!(body["data"], json!([]), "no Turbo files here");
    let resp = get("?model=nope").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    let status: Value = client
        .get(format!("{base}/model/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["model_loaded"], false);
    server.shutdown().await;
}

/// `voxpool speak` in a child process with the tiny model: one text, phonemes, the
/// interactive prompt, and the errors a script relies on (exit 2 usage, 1 failure).
#[test]
fn speak_command_writes_audio_files() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    install_tiny_model(&models);
    let speak = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxpool"));
        cmd.env_clear()
            .env("HOME", dir.path())
            .env("VOXPOOL_MODELS_DIR", &models)
            .current_dir(dir.path())
            .arg("speak")
            .args(args);
        cmd
    };
    let wav_len = |name: &str| {
        hound::WavReader::open(dir.path().join(name))
            .map(|r| r.len())
            .unwrap_or(0)
    };

    let out = speak(&["Hello there.", "-v", "tiny_b", "-o", "a.wav"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wav_len("a.wav") > 0);

    // A language by code or alias; an unknown one is a usage error naming those
    // available.
    for (flag, code, file) in [
        ("--language", "en-us", "us.wav"),
        ("--lang-code", "b", "gb.wav"),
    ] {
        let out = speak(&[
            "The schedule is on the tomato.",
            "-v",
            "tiny_a",
            flag,
            code,
            "-o",
            file,
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_ne!(
        wav_len("us.wav"),
        wav_len("gb.wav"),
        "British English reads the words with other phonemes"
    );
    let out = speak(&["Hello.", "--language", "xx", "-o", "x.wav"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a (American English)"), "{stderr}");

    // Phonemes give the same audio as through the server (frames × 600 samples).
    let files = KokoroFiles::locate(&models).unwrap();
    let engine = KokoroEngine::load(&files, &dir.path().join("cache"), &Device::Cpu).unwrap();
    let frames: u32 = engine
        .predicted_frames("hˈI fˈɑks!", "tiny_a", 1.0)
        .unwrap()
        .iter()
        .sum();
    let out = speak(&["--phonemes", "hˈI fˈɑks!", "-v", "tiny_a", "-o", "p.wav"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(wav_len("p.wav"), frames * 600);

    // Interactive: one load, one file per line, `exit` stops before the last line.
    let mut child = speak(&["-v", "tiny_a", "-o", "line.wav"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"First line.\n\nSecond line.\nexit\nNot spoken.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("loaded kokoro").count(), 1, "{stderr}");
    assert!(
        wav_len("line-1.wav") > 0 && wav_len("line-2.wav") > 0,
        "{stderr}"
    );
    assert!(!dir.path().join("line-3.wav").exists());

    // Every response format, by the file's extension.
    for (name, magic) in [
        ("a.opus", &b"OggS"[..]),
        ("a.aac", &[0xff][..]),
        ("a.mp3", &b""[..]),
    ] {
        let out = speak(&["Hi.", "-o", name]).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        assert!(bytes.len() > 100 && bytes.starts_with(magic), "{name}");
    }

    // Usage errors exit 2 and say what to do; a missing model exits 1 with the pull hint.
    for (args, code, says) in [
        (vec!["Hi.", "-o", "a.txt"], 2, "cannot tell the format"),
        (vec!["Hi.", "-v", "nobody", "-o", "b.wav"], 2, "tiny_a"),
        (vec!["Hi.", "-m", "nope", "-o", "b.wav"], 2, "unknown model"),
        (
            vec!["Hi.", "--speed", "9", "-o", "b.wav"],
            2,
            "out of range",
        ),
        (
            vec!["Hi.", "-m", "chatterbox-turbo", "-o", "b.wav"],
            1,
            "voxpool pull",
        ),
    ] {
        let out = speak(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("b.wav").exists());
}

#[test]
fn memory_is_the_tensors_held_not_the_checkpoint_file() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    install_tiny_model(&models);
    let files = KokoroFiles::locate(&models).unwrap();
    let cache = dir.path().join("cache");
    let engine = KokoroEngine::load(&files, &cache, &Device::Cpu).unwrap();
    // What the model reads of the checkpoint (not every stored tensor is a weight).
    let file = files.weights_file(&cache).unwrap();
    let stored = file.bytes_under("", candle_core::DType::F32);
    let read = file.loaded();
    let cfg = files.read_config().unwrap();
    voxpool::engine::kokoro::model::KModel::load(
        file.into_var_builder(candle_core::DType::F32, &Device::Cpu),
        &cfg,
    )
    .unwrap();
    assert!(read.get() > 0 && read.get() <= stored);
    let voices = engine
        .voices()
        .iter()
        .filter(|v| v.starts_with("tiny_"))
        .count() as u64;
    let library = voxpool::engine::kokoro::voices::VoiceLibrary::new(files.voices, Device::Cpu);
    assert_eq!(
        library.style("tiny_a", 1).unwrap().dims(),
        [1, 2 * cfg.style_dim]
    );
    let pack = (voxpool::engine::kokoro::voices::PACK_ROWS * 2 * cfg.style_dim * 4) as u64;
    assert_eq!(engine.memory_bytes(), read.get() + voices * pack);
}
