//! A tiny Chatterbox Turbo checkpoint in the Hugging Face cache layout, assembled
//! from the committed parity fixtures, with random-weight voice-cloning encoders
//! sized to fit it; and a reference recording to clone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use serde_json::{json, Value};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatterbox");

/// Writes the tiny Turbo checkpoint in the Hugging Face cache layout; returns its folder.
pub fn install_tiny_turbo(models: &Path) -> PathBuf {
    let snap = models.join("models--ResembleAI--chatterbox-turbo/snapshots/tiny");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::copy(
        format!("{FIXTURES}/t3_tiny.safetensors"),
        snap.join("t3_turbo_v1.safetensors"),
    )
    .unwrap();
    // The released file holds the flow (`flow.*`) and the vocoder (`mel2wav.*`).
    let mut s3gen: HashMap<String, Tensor> = HashMap::new();
    for part in ["s3gen_tiny", "hift_tiny"] {
        let path = format!("{FIXTURES}/{part}.safetensors");
        s3gen.extend(candle_core::safetensors::load(path, &Device::Cpu).unwrap());
    }
    assert!(s3gen.keys().any(|k| k.starts_with("flow.")));
    assert!(s3gen.keys().any(|k| k.starts_with("mel2wav.")));
    candle_core::safetensors::save(&s3gen, snap.join("s3gen_meanflow.safetensors")).unwrap();
    std::fs::copy(format!("{FIXTURES}/conds_tiny.pt"), snap.join("conds.pt")).unwrap();
    for entry in std::fs::read_dir(format!("{FIXTURES}/tokenizer")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), snap.join(entry.file_name())).unwrap();
    }
    let config = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap())
            .unwrap()
    };
    let overrides = json!({
        "t3": config("t3_tiny_config.json"),
        "s3gen": config("s3gen_tiny_config.json"),
        "hift": config("hift_tiny_config.json"),
    });
    std::fs::write(
        snap.join("voxpool_chatterbox.json"),
        serde_json::to_string_pretty(&overrides).unwrap(),
    )
    .unwrap();
    snap
}

/// Adds random-weight voice-cloning encoders sized for the tiny T3 (256-wide speaker
/// embedding) and S3Gen (192-wide x-vector) to a tiny checkpoint: `ve.safetensors`,
/// the tokenizer and CAMPPlus inside the S3Gen file, and their configurations.
pub fn install_tiny_cloner(snap: &Path) {
    use candle_core::DType;
    use candle_nn::{VarBuilder, VarMap};
    use voxpool::engine::chatterbox::campplus::{CAMPPlus, CAMPPlusConfig};
    use voxpool::engine::chatterbox::s3tokenizer::{S3Tokenizer, S3TokenizerConfig};
    use voxpool::engine::chatterbox::voice_encoder::{VoiceEncConfig, VoiceEncoder};

    let read = |name: &str| std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
    let tok_cfg = S3TokenizerConfig::from_json(&read("s3tokenizer_tiny_config.json")).unwrap();
    let camp_cfg = CAMPPlusConfig {
        embedding_size: 192,
        ..CAMPPlusConfig::from_json(
            r#"{"feat_dim": 80, "embedding_size": 14, "growth_rate": 4, "bn_size": 3,
                "init_channels": 18, "config_str": "batchnorm-relu", "output_level": "segment",
                "m_channels": 4, "fcm_num_blocks": 2, "block_layers": [2, 3, 2],
                "block_kernel_sizes": [3, 3, 3], "block_dilations": [1, 2, 2]}"#,
        )
        .unwrap()
    };
    let ve_cfg = VoiceEncConfig {
        ve_hidden_size: 32,
        speaker_embed_size: 256,
        ..VoiceEncConfig::chatterbox()
    };
    // Random weights, fixed seed; BatchNorm variances kept positive.
    let randomize = |vm: &VarMap, seed: u64| {
        let data = vm.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for name in names {
            let var = &data[name];
            let n = var.elem_count();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    let v: f32 = rand::Rng::random_range(&mut rng, -0.3..0.3);
                    if name.ends_with("running_var") {
                        v.abs() + 0.5
                    } else {
                        v
                    }
                })
                .collect();
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    };
    let ve_vm = VarMap::new();
    VoiceEncoder::load(
        VarBuilder::from_varmap(&ve_vm, DType::F32, &Device::Cpu),
        &ve_cfg,
    )
    .unwrap();
    randomize(&ve_vm, 1);
    ve_vm.save(snap.join("ve.safetensors")).unwrap();
    let s3_vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&s3_vm, DType::F32, &Device::Cpu);
    S3Tokenizer::load(vb.pp("tokenizer"), &tok_cfg).unwrap();
    CAMPPlus::load(vb.pp("speaker_encoder"), &camp_cfg).unwrap();
    randomize(&s3_vm, 2);
    let s3gen_path = snap.join("s3gen_meanflow.safetensors");
    let mut s3gen = candle_core::safetensors::load(&s3gen_path, &Device::Cpu).unwrap();
    for (name, var) in s3_vm.data().lock().unwrap().iter() {
        s3gen.insert(name.clone(), var.as_tensor().clone());
    }
    candle_core::safetensors::save(&s3gen, &s3gen_path).unwrap();
    let overrides_path = snap.join("voxpool_chatterbox.json");
    let mut overrides: Value =
        serde_json::from_str(&std::fs::read_to_string(&overrides_path).unwrap()).unwrap();
    overrides["ve"] = serde_json::to_value(&ve_cfg).unwrap();
    overrides["s3tokenizer"] = serde_json::from_str(&read("s3tokenizer_tiny_config.json")).unwrap();
    let mut camp: Value = serde_json::from_str(
        r#"{"feat_dim": 80, "growth_rate": 4, "bn_size": 3,
            "init_channels": 18, "config_str": "batchnorm-relu", "output_level": "segment",
            "m_channels": 4, "fcm_num_blocks": 2, "block_layers": [2, 3, 2],
            "block_kernel_sizes": [3, 3, 3], "block_dilations": [1, 2, 2]}"#,
    )
    .unwrap();
    camp["embedding_size"] = json!(192);
    overrides["campplus"] = camp;
    // The tiny T3 holds 128 positions: a short speech prompt leaves room for text.
    overrides["features"] = json!({
        "dec_cond_len": 240000, "enc_cond_len": 240000,
        "speech_cond_prompt_len": 28, "ve_trim_top_db": 20.0
    });
    std::fs::write(
        &overrides_path,
        serde_json::to_string_pretty(&overrides).unwrap(),
    )
    .unwrap();
}

/// A WAV recording of `seconds` of a vowel-like tone at `pitch` Hz (44.1 kHz, 16 bit).
pub fn recording(seconds: f64, pitch: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..(seconds * 44_100.0) as usize {
        let t = i as f64 / 44_100.0;
        let v: f64 = (1..6)
            .map(|k| (2.0 * std::f64::consts::PI * pitch * k as f64 * t).sin() / k as f64)
            .sum::<f64>()
            * (0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin());
        w.write_sample((v * 6000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}
