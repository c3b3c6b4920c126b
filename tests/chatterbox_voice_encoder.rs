//! Chatterbox's voice encoder against the PyTorch reference (chatterbox-tts
//! 0.1.7), on the committed tiny fixture (`tools/chatterbox_ve_fixtures.py`; key
//! table in `tools/README.md`): the partial-window arithmetic of the released
//! 160-frame windows, the cut windows, the LSTM's final states, the partial
//! embeddings and the utterance embeddings, one utterance at a time and several
//! in one call.

#[path = "common/parity.rs"]
mod parity;

use parity::{assert_within, read_metadata};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;
use voxpool::engine::chatterbox::voice_encoder::{
    num_wins, PartialWindows, VoiceEncConfig, VoiceEncoder,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatterbox");
/// Largest absolute difference accepted on LSTM states and embeddings.
const TOL: f32 = 1e-4;

struct Fixture {
    cfg: VoiceEncConfig,
    model: VoiceEncoder,
    tensors: HashMap<String, Tensor>,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn load(path: &Path) -> Result<Self> {
        let meta = read_metadata(path)?;
        let cfg = VoiceEncConfig::from_json(&meta["config"]).map_err(candle_core::Error::wrap)?;
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
        let model = VoiceEncoder::load(vb, &cfg)?;
        Ok(Self {
            cfg,
            model,
            tensors,
            meta,
        })
    }

    fn tiny() -> Result<Self> {
        Self::load(&PathBuf::from(format!("{FIXTURES}/ve_tiny.safetensors")))
    }

    fn get(&self, key: &str) -> Tensor {
        self.tensors
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("fixture has no {key}"))
    }

    fn meta_json(&self, key: &str) -> Value {
        serde_json::from_str(&self.meta[key]).expect("metadata JSON")
    }

    /// The first `frames` frames of the input mel, [frames, num_mels].
    fn mel(&self, frames: usize) -> Result<Tensor> {
        self.get("input.mel").narrow(0, 0, frames)
    }

    fn cases(&self) -> Vec<Case> {
        let Value::Array(cases) = self.meta_json("cases") else {
            panic!("cases is not a list")
        };
        cases
            .iter()
            .map(|c| Case {
                frames: as_usize(&c["frames"]),
                windows: windows(c),
                frame_step: as_usize(&c["frame_step"]),
                n_partials: as_usize(&c["n_partials"]),
                target_len: as_usize(&c["target_len"]),
            })
            .collect()
    }
}

struct Case {
    frames: usize,
    windows: PartialWindows,
    frame_step: usize,
    n_partials: usize,
    target_len: usize,
}

fn as_usize(v: &Value) -> usize {
    v.as_u64().expect("an integer") as usize
}

fn windows(v: &Value) -> PartialWindows {
    PartialWindows {
        overlap: v["overlap"].as_f64().expect("overlap"),
        rate: v["rate"].as_f64(),
        min_coverage: v["min_coverage"].as_f64().expect("min_coverage"),
    }
}

#[test]
fn window_arithmetic_matches_the_reference_for_released_windows() -> Result<()> {
    let f = Fixture::tiny()?;
    let released = VoiceEncConfig::chatterbox();
    let Value::Array(tables) = f.meta_json("win_tables") else {
        panic!("win_tables is not a list")
    };
    for (t, table) in tables.iter().enumerate() {
        let w = windows(table);
        let step = w.frame_step(&released)?;
        assert_eq!(step, as_usize(&table["frame_step"]), "table {t}: step");
        let rows = f.get(&format!("wins{t}")).to_vec2::<i32>()?;
        for (i, row) in rows.iter().enumerate() {
            let n = i + 1;
            let got = num_wins(n, step, w.min_coverage, released.ve_partial_frames);
            assert_eq!(
                (got.0 as i32, got.1 as i32),
                (row[0], row[1]),
                "table {t} ({w:?}), {n} frames"
            );
        }
    }
    Ok(())
}

#[test]
fn partial_windows_are_cut_like_the_reference() -> Result<()> {
    let f = Fixture::tiny()?;
    let window = f.cfg.ve_partial_frames;
    for (i, case) in f.cases().iter().enumerate() {
        assert_eq!(
            case.windows.frame_step(&f.cfg)?,
            case.frame_step,
            "case {i}"
        );
        let mel = f.mel(case.frames)?;
        let parts = f.model.partials(&mel, &case.windows)?;
        assert_eq!(
            parts.dims(),
            &[case.n_partials, window, f.cfg.num_mels],
            "case {i}"
        );
        // Window k holds frames k·step.. of the mel, zeros past its end, and
        // nothing past the reference's trimmed length.
        let rows = mel.to_vec2::<f32>()?;
        let last_frame = case.target_len.min(case.frames);
        for k in 0..case.n_partials {
            let got = parts.i(k)?.to_vec2::<f32>()?;
            for (j, frame) in got.iter().enumerate() {
                let src = k * case.frame_step + j;
                assert!(src < case.target_len, "case {i}: window {k} past the span");
                let want = if src < last_frame {
                    rows[src].clone()
                } else {
                    vec![0.0; f.cfg.num_mels]
                };
                assert_eq!(frame, &want, "case {i}: window {k}, frame {j}");
            }
        }
    }
    Ok(())
}

/// Measured on x86-64 (AVX2 + FMA): final states ≤ 6.3e-7, partial embeddings
/// ≤ 9.4e-7 (utterance embeddings ≤ 9.5e-7, several at once ≤ 8.3e-7; official
/// widths ≤ 2.4e-7).
#[test]
fn lstm_states_and_partial_embeddings_match() -> Result<()> {
    let f = Fixture::tiny()?;
    for (i, case) in f.cases().iter().enumerate() {
        let parts = f.model.partials(&f.mel(case.frames)?, &case.windows)?;
        assert_within(
            &format!("case {i} hidden"),
            &f.model.last_hidden(&parts)?,
            &f.get(&format!("case{i}.hidden")),
            TOL,
        )?;
        assert_within(
            &format!("case {i} partial_embeds"),
            &f.model.forward(&parts)?,
            &f.get(&format!("case{i}.partial_embeds")),
            TOL,
        )?;
    }
    Ok(())
}

#[test]
fn utterance_embeddings_match() -> Result<()> {
    let f = Fixture::tiny()?;
    for (i, case) in f.cases().iter().enumerate() {
        let mel = f.mel(case.frames)?;
        let want = f.get(&format!("case{i}.embeds"));
        let got = f
            .model
            .embeds_from_mels(std::slice::from_ref(&mel), &case.windows)?;
        assert_within(&format!("case {i} embeds"), &got, &want, TOL)?;
        if case.windows == PartialWindows::chatterbox() {
            let spk = f.model.speaker_emb(&mel)?;
            assert_within(&format!("case {i} speaker_emb"), &spk, &want, TOL)?;
        }
    }
    Ok(())
}

#[test]
fn several_utterances_in_one_call_match() -> Result<()> {
    let f = Fixture::tiny()?;
    let Value::Array(frames) = f.meta_json("batch_frames") else {
        panic!("batch_frames is not a list")
    };
    let mels = frames
        .iter()
        .map(|n| f.mel(as_usize(n)))
        .collect::<Result<Vec<_>>>()?;
    let got = f
        .model
        .embeds_from_mels(&mels, &PartialWindows::chatterbox())?;
    assert_within("batch embeds", &got, &f.get("batch.embeds"), TOL)?;
    Ok(())
}

#[test]
fn wrong_widths_fail_at_load() -> Result<()> {
    let f = Fixture::tiny()?;
    let vb = VarBuilder::from_tensors(f.tensors.clone(), DType::F32, &Device::Cpu);
    assert!(VoiceEncoder::load(vb, &VoiceEncConfig::chatterbox()).is_err());
    Ok(())
}

/// Official widths with random weights (`tools/chatterbox_ve_fixtures.py --full
/// DIR`, not committed):
/// `VOXPOOL_VE_FULL=DIR cargo test --release --test chatterbox_voice_encoder -- --ignored`.
#[test]
#[ignore = "needs VOXPOOL_VE_FULL (see tools/README.md)"]
fn full_size_random_weights_match() -> Result<()> {
    let dir = std::env::var("VOXPOOL_VE_FULL").expect("VOXPOOL_VE_FULL");
    let f = Fixture::load(&Path::new(&dir).join("ve_full.safetensors"))?;
    assert_eq!(f.cfg, VoiceEncConfig::chatterbox());
    for (i, case) in f.cases().iter().enumerate() {
        let parts = f.model.partials(&f.mel(case.frames)?, &case.windows)?;
        assert_within(
            &format!("case {i} partial_embeds"),
            &f.model.forward(&parts)?,
            &f.get(&format!("case{i}.partial_embeds")),
            TOL,
        )?;
        let got = f
            .model
            .embeds_from_mels(&[f.mel(case.frames)?], &case.windows)?;
        assert_within(
            &format!("case {i} embeds"),
            &got,
            &f.get(&format!("case{i}.embeds")),
            TOL,
        )?;
    }
    Ok(())
}
