//! Chatterbox Turbo end to end: a tiny checkpoint assembled from the committed parity
//! fixtures (T3, S3Gen flow and HiFT weights, their configurations, the tokenizer
//! files and a `conds.pt` written by the reference's `Conditionals.save`), loaded by
//! the engine on its own and through the server.

use std::path::Path;

use candle_core::{Device, IndexOp, Tensor};
use rand::SeedableRng;
use serde_json::{json, Value};
use voxpool::config::Config;
use voxpool::engine::chatterbox::conds::Conditionals;
use voxpool::engine::chatterbox::config::{S3GenQuant, T3Quant};
use voxpool::engine::chatterbox::text::TextTokenizer;
use voxpool::engine::chatterbox::tts_turbo::{ChatterboxTurboEngine, TurboFiles};
use voxpool::engine::{Registry, SynthRequest, TtsEngine};

mod common;

use common::tiny_turbo::{install_tiny_cloner, install_tiny_turbo, recording, FIXTURES};
/// A server for the models in `dir`/models, its SQLite file `dir`/`db`.db; its URL.
async fn serve(dir: &Path, db: &str, budget: Option<u64>) -> (voxpool::Server, String) {
    let db = format!("sqlite://{}/{db}.db?mode=rwc", dir.display());
    let mut config = Config::local(&db).unwrap();
    config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
    config.models_dir = dir.join("models");
    config.memory_budget = budget;
    let server = voxpool::Server::start(config, Registry::builtin())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    (server, base)
}

/// Mel frames per speech token × samples per mel frame at 24 kHz.
const SAMPLES_PER_TOKEN: usize = 2 * 480;

#[test]
fn built_in_voice_file_reads_as_the_reference_wrote_it() {
    let conds = Conditionals::load(
        Path::new(&format!("{FIXTURES}/conds_tiny.pt")),
        &Device::Cpu,
    )
    .unwrap();
    let t3 =
        candle_core::safetensors::load(format!("{FIXTURES}/t3_tiny_io.safetensors"), &Device::Cpu)
            .unwrap();
    let s3 = candle_core::safetensors::load(
        format!("{FIXTURES}/s3gen_tiny_io.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let same = |a: &Tensor, b: &Tensor| {
        let a = a.to_dtype(candle_core::DType::F32).unwrap();
        let b = b.to_dtype(candle_core::DType::F32).unwrap();
        assert_eq!(a.dims(), b.dims());
        let diff: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0);
    };
    same(&conds.t3.speaker_emb, &t3["cond.speaker_emb"]);
    same(
        conds.t3.cond_prompt_speech_tokens.as_ref().unwrap(),
        &t3["cond.cond_prompt_speech_tokens"],
    );
    same(&conds.gen.prompt_token, &s3["case0.prompt_token"]);
    same(&conds.gen.prompt_feat, &s3["case0.prompt_feat"]);
    same(&conds.gen.embedding, &s3["case0.embedding"]);
}

#[test]
fn engine_speaks_with_the_built_in_voice() {
    let dir = tempfile::tempdir().unwrap();
    install_tiny_turbo(dir.path());
    let files = TurboFiles::locate(dir.path()).unwrap();
    let engine = ChatterboxTurboEngine::load(&files, &Device::Cpu, None).unwrap();

    // A seed fixes the whole call; the audio follows the tokens: 960 samples each.
    let run = |seed: u64| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let tokens = engine.speech_tokens("hello there", &mut rng).unwrap();
        let audio = engine.vocode(&tokens, &mut rng).unwrap();
        (tokens, audio)
    };
    let (tokens, audio) = run(7);
    assert_eq!(&tokens[tokens.len() - 3..], &[4299, 4299, 4299]);
    assert!(tokens.iter().all(|&t| t < 6561), "{tokens:?}");
    assert_eq!(audio.len(), tokens.len() * SAMPLES_PER_TOKEN);
    assert!(audio.iter().all(|s| s.is_finite()));
    // The reference's fade-in: the first 20 ms are silent.
    assert!(audio[..480].iter().all(|&s| s == 0.0));
    assert!(audio[480..].iter().any(|&s| s != 0.0));
    assert_eq!(run(7), (tokens.clone(), audio.clone()));
    assert_ne!(run(8).1, audio);

    // Through the engine trait: every OpenAI name means the built-in voice.
    let chunk = engine
        .synthesize(&SynthRequest {
            text: "Hi.",
            voice: "alloy",
            speed: 1.0,
            phonemes: false,
            cloned: None,
            language: None,
            lexicon: &[],
            words: false,
        })
        .unwrap();
    assert_eq!(chunk.sample_rate, 24_000);
    assert_eq!(chunk.samples.len() % SAMPLES_PER_TOKEN, 0);
    assert!(engine.voices().iter().any(|v| v == "default"));
    let err = engine
        .synthesize(&SynthRequest {
            text: "Hi.",
            voice: "af_heart",
            speed: 1.0,
            phonemes: false,
            cloned: None,
            language: None,
            lexicon: &[],
            words: false,
        })
        .unwrap_err();
    assert!(err.to_string().contains("af_heart"), "{err}");
}

/// `"t3_quant"` in `voxpool_chatterbox.json` picks T3's weight type; an unknown
/// name fails the load and names the file.
#[test]
fn overrides_file_chooses_t3_weight_type() {
    let dir = tempfile::tempdir().unwrap();
    let snap = install_tiny_turbo(dir.path());
    let path = snap.join("voxpool_chatterbox.json");
    let mut overrides: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let files = TurboFiles::locate(dir.path()).unwrap();
    // Without a setting, T3 is quantised to q8_0.
    let engine = ChatterboxTurboEngine::load(&files, &Device::Cpu, None).unwrap();
    assert_eq!(engine.t3_quant(), T3Quant::Q8_0);
    let engine = ChatterboxTurboEngine::load(&files, &Device::Cpu, Some(T3Quant::F32)).unwrap();
    assert_eq!(engine.t3_quant(), T3Quant::F32);
    let f32_bytes = engine.memory_bytes();
    for (name, quant) in [("q8_0", T3Quant::Q8_0), ("q4k", T3Quant::Q4K)] {
        overrides["t3_quant"] = json!(name);
        std::fs::write(&path, overrides.to_string()).unwrap();
        let engine = ChatterboxTurboEngine::load(&files, &Device::Cpu, None).unwrap();
        assert_eq!(engine.t3_quant(), quant);
        // The pool is charged what the quantised weights hold.
        assert!(engine.memory_bytes() < f32_bytes, "{name}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let tokens = engine.speech_tokens("hello there", &mut rng).unwrap();
        assert_eq!(&tokens[tokens.len() - 3..], &[4299, 4299, 4299]);
    }
    // The operator's setting (CHATTERBOX_T3_QUANT) wins over the file's.
    let engine = ChatterboxTurboEngine::load(&files, &Device::Cpu, Some(T3Quant::Q8_0)).unwrap();
    assert_eq!(engine.t3_quant(), T3Quant::Q8_0);
    // A tokenizer with more ids than T3 has text embeddings is refused at load.
    let tokens = TextTokenizer::from_dir(&snap).unwrap().len();
    let mut small = overrides.clone();
    small["t3_quant"] = json!("f32");
    small["t3"]["t3"]["text_tokens_dict_size"] = json!(tokens - 1);
    std::fs::write(&path, small.to_string()).unwrap();
    let err = ChatterboxTurboEngine::load(&files, &Device::Cpu, None)
        .err()
        .expect("tokenizer larger than the text table");
    assert!(err.to_string().contains("tokenizer has"), "{err}");
    overrides["t3_quant"] = json!("q4_0");
    std::fs::write(&path, overrides.to_string()).unwrap();
    let err = ChatterboxTurboEngine::load(&files, &Device::Cpu, None)
        .err()
        .expect("unknown t3_quant");
    assert!(err.to_string().contains("voxpool_chatterbox.json"), "{err}");
}

/// `"s3gen_quant"` in `voxpool_chatterbox.json`, or the operator's setting, picks how
/// the flow multiplies: `int8` where the CPU has AVX2 or AVX-512 VNNI (f32 elsewhere, as
/// loaded), f32 by default; the int8 flow renders the same tokens to audio of the same
/// length, not the same samples; an unknown name fails the load and names the file.
#[test]
fn overrides_file_and_setting_choose_the_flow_products() {
    let dir = tempfile::tempdir().unwrap();
    let snap = install_tiny_turbo(dir.path());
    let path = snap.join("voxpool_chatterbox.json");
    let mut overrides: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let files = TurboFiles::locate(dir.path()).unwrap();
    let load = |s3gen: Option<S3GenQuant>| {
        ChatterboxTurboEngine::load_with(&files, &Device::Cpu, (None, s3gen), None)
    };
    let int8 = if voxpool::engine::nn::int8::int8_available() {
        S3GenQuant::Int8
    } else {
        S3GenQuant::F32
    };
    let exact = load(None).unwrap();
    assert_eq!(exact.s3gen_quant(), S3GenQuant::F32);
    let fast = load(Some(S3GenQuant::Int8)).unwrap();
    assert_eq!(fast.s3gen_quant(), int8);
    let vocode = |engine: &ChatterboxTurboEngine| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let tokens = engine.speech_tokens("hello there", &mut rng).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        engine.vocode(&tokens, &mut rng).unwrap()
    };
    let (a, b) = (vocode(&exact), vocode(&fast));
    assert_eq!(a.len(), b.len());
    assert!(b.iter().all(|s| s.is_finite()));
    assert_eq!(a != b, int8 == S3GenQuant::Int8);

    overrides["s3gen_quant"] = json!("int8");
    std::fs::write(&path, overrides.to_string()).unwrap();
    assert_eq!(load(None).unwrap().s3gen_quant(), int8);
    // The operator's setting (CHATTERBOX_S3GEN_QUANT) wins over the file's.
    let engine = load(Some(S3GenQuant::F32)).unwrap();
    assert_eq!(engine.s3gen_quant(), S3GenQuant::F32);
    assert_eq!(vocode(&engine), a);
    overrides["s3gen_quant"] = json!("int4");
    std::fs::write(&path, overrides.to_string()).unwrap();
    let err = load(None).err().expect("unknown s3gen_quant");
    assert!(err.to_string().contains("voxpool_chatterbox.json"), "{err}");
}

/// `CHATTERBOX_S3GEN_QUANT=int8` reaches the worker process: the server speaks, the
/// same length as with f32, and (with AVX2 or AVX-512 VNNI) other samples.
#[tokio::test]
async fn int8_flow_speaks_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    install_tiny_turbo(&dir.path().join("models"));
    let mut answers = Vec::new();
    for quant in [None, Some(S3GenQuant::Int8)] {
        let db = format!(
            "sqlite://{}/q{}.db?mode=rwc",
            dir.path().display(),
            answers.len()
        );
        let mut config = Config::local(&db).unwrap();
        config.worker_exe = Some(env!("CARGO_BIN_EXE_voxpool").into());
        config.models_dir = dir.path().join("models");
        config.s3gen_quant = quant;
        let server = voxpool::Server::start(config, Registry::builtin())
            .await
            .unwrap();
        let resp = reqwest::Client::new()
            .post(format!("http://{}/v1/audio/speech", server.addr()))
            .json(&json!({"model": "chatterbox-turbo", "input": "Hello there.", "voice": "default", "response_format": "pcm"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        answers.push(resp.bytes().await.unwrap());
        server.shutdown().await;
    }
    assert_eq!(answers[0].len(), answers[1].len());
    assert!(!answers[1].is_empty());
    assert_eq!(
        answers[0] != answers[1],
        voxpool::engine::nn::int8::int8_available()
    );
}

#[tokio::test]
async fn chatterbox_turbo_speaks_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    install_tiny_turbo(&models);
    let (server, base) = serve(dir.path(), "v", None).await;
    let client = reqwest::Client::new();

    let voices: Value = client
        .get(format!("{base}/v1/audio/voices?model=chatterbox-turbo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = voices["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[..2], ["default", "alloy"], "{voices}");

    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "chatterbox-turbo", "input": "Hello there. How are you?", "voice": "nova", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let wav = resp.bytes().await.unwrap();
    // Two sentences: streamed, the header leaves the length open.
    let (rate, samples) = common::wav_decode(&wav);
    assert_eq!(rate, 24_000);
    // Each sentence a whole number of speech tokens.
    assert_eq!(samples.len() % SAMPLES_PER_TOKEN, 0);
    assert!(samples.len() >= 2 * 3 * SAMPLES_PER_TOKEN);
    assert!(samples.iter().any(|&s| s != 0), "silence");
    // Spoken sentence by sentence: the two sentences alone, one after the other.
    let pcm = |input: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let resp = client
                .post(format!("{base}/v1/audio/speech"))
                .json(&json!({"model": "chatterbox-turbo", "input": input, "voice": "nova", "response_format": "pcm"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap().to_vec()
        }
    };
    let both = pcm("Hello there. How are you?").await;
    let apart = [pcm("Hello there.").await, pcm("How are you?").await].concat();
    assert_eq!(both, apart);
    // The wav comes whole, each sentence rendered in one pass; the pcm streams, each
    // sentence rendered in parts while T3 speaks it: the same tokens, so the same
    // length, and audio that differs where the parts join.
    let wav_samples: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(wav_samples.len(), both.len(), "wav and pcm lengths differ");

    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "chatterbox-turbo", "input": "Hello.", "voice": "af_heart", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("default"),
        "{body}"
    );
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "chatterbox-turbo", "input": "hə", "voice": "default", "input_format": "phonemes", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "chatterbox-turbo", "input": "Hi.", "voice": "default", "speed": 0.5, "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Speed comes from a time stretch: n tokens of 960 samples last twice as long.
    let wav = resp.bytes().await.unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
    assert_eq!(reader.len() as usize % (2 * SAMPLES_PER_TOKEN), 0);
    assert!(reader.len() as usize >= 3 * 2 * SAMPLES_PER_TOKEN);

    let status: Value = client
        .get(format!("{base}/model/status?model=chatterbox-turbo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["model_loaded"], true, "{status}");
    assert_eq!(status["available_languages"], json!(["en"]));
    assert!(status["memory_bytes"].as_u64().unwrap() > 0);
    server.shutdown().await;
}

/// What a loaded Turbo (T3 in f32) is charged: the weights it read (not the tensors of
/// the files it never uses), the voice caches at their largest and, once cloning is possible, the
/// cloning encoders.
#[test]
fn memory_charged_is_what_the_engine_holds() {
    let dir = tempfile::tempdir().unwrap();
    let snap = install_tiny_turbo(dir.path());
    let files = TurboFiles::locate(dir.path()).unwrap();
    let engine = ChatterboxTurboEngine::load(&files, &Device::Cpu, Some(T3Quant::F32)).unwrap();
    let tensor_bytes = |file: &str, keep: &dyn Fn(&str) -> bool| -> u64 {
        candle_core::safetensors::load(snap.join(file), &Device::Cpu)
            .unwrap()
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(_, t)| (t.elem_count() * 4) as u64)
            .sum()
    };
    // T3 without the text head and GPT-2's token table (Turbo embeds its own tokens).
    let unused = |name: &str| name.starts_with("text_head.") || name.starts_with("tfmr.wte.");
    let t3 = tensor_bytes("t3_turbo_v1.safetensors", &|n| !unused(n));
    assert!(
        tensor_bytes("t3_turbo_v1.safetensors", &unused) > 0,
        "the fixture should hold tensors T3 does not use"
    );
    let s3gen = tensor_bytes("s3gen_meanflow.safetensors", &|_| true);
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/t3_tiny_config.json")).unwrap(),
    )
    .unwrap();
    let (layers, width) = (
        cfg["backbone"]["n_layer"].as_u64().unwrap(),
        cfg["backbone"]["n_embd"].as_u64().unwrap(),
    );
    let prompt = cfg["t3"]["speech_cond_prompt_len"].as_u64().unwrap();
    let prefix = (1 + prompt) * 2 * layers * width * 4;
    let voice = Conditionals::load(&snap.join("conds.pt"), &Device::Cpu).unwrap();
    let voices = 17 * voice.bytes();
    assert_eq!(engine.memory_bytes(), t3 + s3gen + prefix + voices);

    install_tiny_cloner(&snap);
    let cloner = tensor_bytes("ve.safetensors", &|_| true)
        + tensor_bytes("s3gen_meanflow.safetensors", &|n| {
            n.starts_with("tokenizer.") || n.starts_with("speaker_encoder.")
        });
    let engine = ChatterboxTurboEngine::load(&files, &Device::Cpu, Some(T3Quant::F32)).unwrap();
    assert_eq!(engine.memory_bytes(), t3 + s3gen + prefix + voices + cloner);
}

/// The pool's loader keeps T3's quantised weights in the models folder's
/// `voxpool-cache/chatterbox-turbo/`: the first load writes them, later ones read them
/// from there and speak the same, bit for bit, charged the same memory; a damaged file
/// is written again; `voxpool cleanup` counts and removes the folder.
#[test]
fn quantized_t3_is_kept_in_the_models_folder() {
    use voxpool::engine::chatterbox::tts_turbo::TurboLoader;
    use voxpool::engine::{DeviceSpec, EngineLoader, LoadContext};
    let dir = tempfile::tempdir().unwrap();
    install_tiny_turbo(dir.path());
    let ctx = LoadContext {
        models_dir: dir.path().to_path_buf(),
        device: DeviceSpec::Cpu,
        t3_quant: Some(T3Quant::Q8_0),
        s3gen_quant: None,
    };
    let speak = |engine: &dyn TtsEngine| {
        engine
            .synthesize(&SynthRequest {
                text: "hello there",
                voice: "default",
                speed: 1.0,
                phonemes: false,
                cloned: None,
                language: None,
                lexicon: &[],
                words: false,
            })
            .unwrap()
            .samples
    };
    let cache = dir.path().join("voxpool-cache").join("chatterbox-turbo");
    let first = TurboLoader.load(&ctx).unwrap();
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("t3_turbo_v1-") && name.ends_with("-q8_0-v1.gguf"),
        "{name}"
    );
    let written = std::fs::read(&files[0]).unwrap();
    let second = TurboLoader.load(&ctx).unwrap();
    let audio = speak(first.as_ref());
    assert_eq!(speak(second.as_ref()), audio);
    assert_eq!(second.memory_bytes(), first.memory_bytes());
    // Cut short: ignored, and written whole again.
    std::fs::write(&files[0], &written[..written.len() / 3]).unwrap();
    let third = TurboLoader.load(&ctx).unwrap();
    assert_eq!(speak(third.as_ref()), audio);
    assert_eq!(std::fs::read(&files[0]).unwrap(), written);
    // f32 has nothing to keep.
    let f32_ctx = LoadContext {
        t3_quant: Some(T3Quant::F32),
        s3gen_quant: None,
        ..ctx.clone()
    };
    TurboLoader.load(&f32_ctx).unwrap();
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);

    let found = voxpool::cmd::cleanup::candidates(dir.path());
    assert!(
        found.contains(&dir.path().join("voxpool-cache")),
        "{found:?}"
    );
    assert!(
        voxpool::cmd::cleanup::size_of(&dir.path().join("voxpool-cache")) >= written.len() as u64
    );
}

/// Kokoro and Turbo in one server: both speak, side by side; under a memory budget
/// that holds either but not both, each load evicts the other and nothing is lost.
#[tokio::test]
async fn both_engines_share_the_server_and_its_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    install_tiny_turbo(&models);
    common::install_tiny_kokoro(&models);
    let client = reqwest::Client::new();
    let speak = |base: String, model: &'static str, voice: &'static str| {
        let client = client.clone();
        async move {
            let resp = client
                .post(format!("{base}/v1/audio/speech"))
                .json(&json!({"model": model, "input": "Hello there.", "voice": voice, "response_format": "pcm"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{model}");
            let audio = resp.bytes().await.unwrap();
            assert!(!audio.is_empty(), "{model}");
            audio
        }
    };
    let loaded = |base: String| {
        let client = client.clone();
        async move {
            let status: Value = client
                .get(format!("{base}/model/status"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let model = |id: &str| {
                status["models"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["model"] == id)
                    .cloned()
                    .unwrap()
            };
            let (k, c) = (model("kokoro"), model("chatterbox-turbo"));
            (
                k["model_loaded"].as_bool().unwrap(),
                c["model_loaded"].as_bool().unwrap(),
                k["memory_bytes"].as_u64().unwrap(),
                c["memory_bytes"].as_u64().unwrap(),
            )
        }
    };

    let (server, base) = serve(dir.path(), "a", None).await;
    // Each model's memory as the budget counts it: its worker, measured once loaded.
    for model in ["kokoro", "chatterbox-turbo"] {
        let resp = reqwest::Client::new()
            .post(format!("{base}/model/load"))
            .json(&json!({ "model": model }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (k_loaded, c_loaded, k_bytes, c_bytes) = loaded(base.clone()).await;
    assert!(k_loaded && c_loaded);
    assert!(k_bytes > 0 && c_bytes > 0);
    let (kokoro, turbo) = (
        speak(base.clone(), "kokoro", "tiny_a").await,
        speak(base.clone(), "chatterbox-turbo", "default").await,
    );
    // Side by side, each as it spoke alone (both are seeded by the input).
    let together = futures_util::future::join_all((0..4).map(|i| {
        let (model, voice) = [("kokoro", "tiny_a"), ("chatterbox-turbo", "default")][i % 2];
        speak(base.clone(), model, voice)
    }))
    .await;
    for (i, audio) in together.iter().enumerate() {
        assert_eq!(audio, [&kokoro, &turbo][i % 2], "request {i}");
    }
    server.shutdown().await;

    // A budget for the larger model and half the smaller one.
    let budget = k_bytes.max(c_bytes) + k_bytes.min(c_bytes) / 2;
    let (server, base) = serve(dir.path(), "b", Some(budget)).await;
    let evicted = |want: (bool, bool)| {
        let base = base.clone();
        async move {
            for _ in 0..100 {
                let (k, c, _, _) = loaded(base.clone()).await;
                if (k, c) == want {
                    return true;
                }
                assert!(k || c, "neither model loaded");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert_eq!(speak(base.clone(), "kokoro", "tiny_a").await, kokoro);
    assert_eq!(
        speak(base.clone(), "chatterbox-turbo", "default").await,
        turbo
    );
    assert!(
        evicted((false, true)).await,
        "Kokoro stayed past the budget"
    );
    assert_eq!(speak(base.clone(), "kokoro", "tiny_a").await, kokoro);
    assert!(evicted((true, false)).await, "Turbo stayed past the budget");
    server.shutdown().await;
}

/// Awkward input for the real (tiny) Turbo over HTTP: a clear 4xx or audio, never a
/// 5xx, and the server keeps speaking afterwards.
#[tokio::test]
async fn awkward_input_gets_audio_or_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    install_tiny_turbo(&models);
    let (server, base) = serve(dir.path(), "v", None).await;
    let client = reqwest::Client::new();
    let long_word = "a".repeat(3000);
    let many_tags = "[laugh] [sigh] [clear throat] ".repeat(16);
    let long_text = "This sentence goes on, and on, and on, and on, and on, and on".repeat(8);
    let inputs: Vec<(&str, Value)> = vec![
        ("empty", json!("")),
        ("spaces", json!("   \n\t ")),
        ("punctuation", json!("?!... ,;")),
        ("a tag alone", json!("[laugh]")),
        ("tags", json!(many_tags)),
        ("unclosed tag", json!("[clear throat")),
        ("control characters", json!("\u{0}\u{7}\u{1b}[0m hi")),
        ("emoji and CJK", json!("👋 你好 🎉")),
        ("one long word", json!(long_word)),
        ("long text", json!(long_text)),
        ("a number", json!(12)),
        ("null", Value::Null),
    ];
    for (what, input) in inputs {
        for extra in [
            json!({}),
            json!({"speed": 0.25}),
            json!({"speed": 4.0}),
            json!({"stream_format": "sse"}),
        ] {
            let mut body = json!({"model": "chatterbox-turbo", "input": input, "voice": "default", "response_format": "pcm"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let resp = client
                .post(format!("{base}/v1/audio/speech"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let code = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap();
            assert!(
                code == 200 || (400..500).contains(&code),
                "{what} {extra}: {code} {}",
                String::from_utf8_lossy(&bytes)
            );
            if code != 200 {
                let err: Value = serde_json::from_slice(&bytes).unwrap();
                assert!(err["error"]["message"].as_str().is_some(), "{what}: {err}");
            }
        }
    }
    let resp = client
        .post(format!("{base}/v1/audio/speech"))
        .json(&json!({"model": "chatterbox-turbo", "input": "Still here.", "voice": "default", "response_format": "pcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.bytes().await.unwrap().is_empty());
    server.shutdown().await;
}

/// The prompt tokens of the built-in voice come first in what T3 sees.
#[test]
fn prompt_tokens_are_ids() {
    let conds = Conditionals::load(
        Path::new(&format!("{FIXTURES}/conds_tiny.pt")),
        &Device::Cpu,
    )
    .unwrap();
    let tokens = conds.t3.cond_prompt_speech_tokens.unwrap();
    assert_eq!(tokens.dtype(), candle_core::DType::U32);
    let first: u32 = tokens.i((0, 0)).unwrap().to_scalar().unwrap();
    assert!(first < 6561);
}

#[tokio::test]
async fn chatterbox_turbo_clones_voices_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let snap = install_tiny_turbo(&models);
    let (server, base) = serve(dir.path(), "v", None).await;
    let client = reqwest::Client::new();
    let create = |name: &'static str, sample: Vec<u8>| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let form = reqwest::multipart::Form::new()
                .text("name", name)
                .text("model", "chatterbox-turbo")
                .part(
                    "audio_sample",
                    reqwest::multipart::Part::bytes(sample).file_name("ref.wav"),
                );
            let resp = client
                .post(format!("{base}/v1/audio/voices"))
                .multipart(form)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    // Without ve.safetensors the model speaks but cannot clone: the files are missing.
    let (code, body) = create("nope", recording(6.0, 140.0)).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("voxpool pull chatterbox-turbo"),
        "{body}"
    );
    client
        .post(format!("{base}/model/unload"))
        .json(&json!({"model": "chatterbox-turbo"}))
        .send()
        .await
        .unwrap();
    install_tiny_cloner(&snap);

    let (code, low) = create("Low", recording(6.0, 110.0)).await;
    assert_eq!(code, 200, "{low}");
    let (code, high) = create("High", recording(7.5, 240.0)).await;
    assert_eq!(code, 200, "{high}");
    let ids = [
        low["id"].as_str().unwrap().to_string(),
        high["id"].as_str().unwrap().to_string(),
    ];
    let speak = |voice: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let resp = client
                .post(format!("{base}/v1/audio/speech"))
                .json(&json!({"model": "chatterbox-turbo", "input": "Hello there.", "voice": voice, "response_format": "pcm"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap().to_vec()
        }
    };
    let alone = [speak(ids[0].clone()).await, speak(ids[1].clone()).await];
    let builtin = speak("default".into()).await;
    assert!(!alone[0].is_empty() && !alone[1].is_empty());
    assert_ne!(alone[0], alone[1], "two recordings, two voices");
    assert_ne!(alone[0], builtin);
    assert_eq!(speak(ids[0].clone()).await, alone[0], "seeded by the input");
    let together = futures_util::future::join_all((0..4).map(|i| speak(ids[i % 2].clone()))).await;
    for (i, audio) in together.iter().enumerate() {
        assert_eq!(
            audio,
            &alone[i % 2],
            "voice {} spoken alongside the other",
            i % 2
        );
    }
    server.shutdown().await;
}

/// A streamed response gets a sentence's audio in parts while T3 is still speaking
/// it (the tiny T3 speaks a sentence in dozens of tokens, S3Gen's first part is ten):
/// SSE and pcm bring several pieces for one sentence, as long as the sentence
/// rendered whole (a wav of one sentence comes whole), also under `speed`.
#[tokio::test]
async fn a_streamed_sentence_arrives_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    install_tiny_turbo(&dir.path().join("models"));
    let (server, base) = serve(dir.path(), "parts", None).await;
    let client = reqwest::Client::new();
    let text = "Hello there, this sentence is long enough to come in parts.";
    for speed in [1.0, 2.0] {
        let whole = client
            .post(format!("{base}/v1/audio/speech"))
            .json(&json!({"model": "chatterbox-turbo", "input": text, "voice": "default", "response_format": "wav", "speed": speed}))
            .send()
            .await
            .unwrap();
        assert_eq!(whole.status(), 200);
        let (_, whole) = common::wav_decode(&whole.bytes().await.unwrap());
        let body = client
            .post(format!("{base}/v1/audio/speech"))
            .json(&json!({"model": "chatterbox-turbo", "input": text, "voice": "default", "response_format": "pcm", "stream_format": "sse", "speed": speed}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (pcm, deltas) = common::sse_audio(&body);
        assert!(
            deltas >= 3,
            "speed {speed}: {deltas} deltas for one sentence"
        );
        assert_eq!(pcm.len(), 2 * whole.len(), "speed {speed}");
        assert!(pcm.iter().any(|&b| b != 0));
        // The same request streams the same audio again.
        let mut again = client
            .post(format!("{base}/v1/audio/speech"))
            .json(&json!({"model": "chatterbox-turbo", "input": text, "voice": "default", "response_format": "pcm", "speed": speed}))
            .send()
            .await
            .unwrap();
        let mut streamed = Vec::new();
        let mut pieces = 0;
        while let Some(piece) = again.chunk().await.unwrap() {
            pieces += 1;
            streamed.extend_from_slice(&piece);
        }
        assert_eq!(streamed, pcm, "speed {speed}");
        assert!(pieces >= 2, "speed {speed}: {pieces} pieces");
    }
    server.shutdown().await;
}
