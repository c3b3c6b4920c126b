//! Kokoro's files: the official `.pth` layout reads to the same weights as the
//! safetensors route, voices written by `torch.save` load and blend, and the
//! models folder is searched in the Hugging Face cache layout.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use voxpool::engine::kokoro::voices::{read_pt_tensor, VoiceLibrary};
use voxpool::engine::kokoro::weights::{read_pth, KokoroFiles};
use voxpool::engine::EngineError;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kokoro");

fn fixture_weights() -> HashMap<String, Tensor> {
    let all = candle_core::safetensors::load(format!("{FIXTURES}/tiny.safetensors"), &Device::Cpu)
        .unwrap();
    all.into_iter()
        .filter_map(|(k, v)| k.strip_prefix("weights.").map(|k| (k.to_string(), v)))
        .collect()
}

#[test]
fn pth_reads_to_the_same_weights_as_safetensors() {
    let from_pth = read_pth(Path::new(&format!("{FIXTURES}/tiny.pth"))).unwrap();
    let expected = fixture_weights();
    assert_eq!(from_pth.len(), expected.len());
    for (key, want) in &expected {
        let got = from_pth
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the .pth"));
        assert_eq!(got.dims(), want.dims(), "{key}");
        let diff = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{key}");
    }
}

#[test]
fn pth_checkpoint_is_found_converted_once_and_memory_mapped() {
    let models = tempfile::tempdir().unwrap();
    let snap = models
        .path()
        .join("models--hexgrad--Kokoro-82M/snapshots/abc123");
    std::fs::create_dir_all(snap.join("voices")).unwrap();
    assert!(matches!(
        KokoroFiles::locate(models.path()),
        Err(EngineError::FilesMissing { .. })
    ));
    std::fs::copy(format!("{FIXTURES}/tiny.pth"), snap.join("kokoro-v1_0.pth")).unwrap();
    std::fs::copy(
        format!("{FIXTURES}/tiny_config.json"),
        snap.join("config.json"),
    )
    .unwrap();
    let files = KokoroFiles::locate(models.path()).unwrap();
    assert_eq!(files.read_config().unwrap().hidden_dim, 32);
    let cache = models.path().join("cache");
    let vb = files.var_builder(&cache, &Device::Cpu).unwrap();
    let key = "decoder.generator.conv_post.weight_v";
    let want = &fixture_weights()[key];
    let got = vb.get(want.dims(), key).unwrap();
    assert_eq!(
        got.to_vec3::<f32>().unwrap(),
        want.to_vec3::<f32>().unwrap()
    );
    let converted: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(converted.len(), 1, "one safetensors copy");
    // A second load reuses the copy.
    files.var_builder(&cache, &Device::Cpu).unwrap();
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}

#[test]
fn truncated_checkpoint_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(format!("{FIXTURES}/tiny.pth")).unwrap();
    let path = dir.path().join("kokoro-v1_0.pth");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_pth(&path).unwrap_err();
    assert!(matches!(err, EngineError::BadFile { .. }), "{err}");
    assert!(err.to_string().contains("kokoro-v1_0.pth"), "{err}");
}

#[test]
fn torch_saved_voices_load_and_blend() {
    let a = read_pt_tensor(Path::new(&format!("{FIXTURES}/voices/tiny_a.pt"))).unwrap();
    assert_eq!(a.dims(), &[510, 1, 32]);
    let lib = VoiceLibrary::new(format!("{FIXTURES}/voices").into(), Device::Cpu);
    assert_eq!(lib.names(), vec!["tiny_a", "tiny_b"]);
    let row = |t: &Tensor, i: usize| {
        t.get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let style = lib.style("tiny_a", 4).unwrap();
    assert_eq!(
        style.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        row(&a, 3)
    );
    let b = read_pt_tensor(Path::new(&format!("{FIXTURES}/voices/tiny_b.pt"))).unwrap();
    let blend = lib
        .style("tiny_a(3)+tiny_b(1)", 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for ((x, y), z) in row(&a, 0).iter().zip(row(&b, 0)).zip(blend) {
        assert!((0.75 * x + 0.25 * y - z).abs() < 1e-6);
    }
    assert!(matches!(
        lib.style("nobody", 3),
        Err(EngineError::UnknownVoice { .. })
    ));
}
