//! Chatterbox Turbo T3 against the PyTorch reference (chatterbox-tts 0.1.7), on
//! the committed tiny fixture (`tools/chatterbox_t3_fixtures.py`; key table in
//! `tools/README.md`): conditioning, input embeddings, backbone, logits, the
//! KV cache, the sampler's probabilities, greedy generation with its end
//! handling, and the text front-end; T3 with quantised weights against f32.

#[path = "common/parity.rs"]
mod parity;

use parity::{assert_within, read_metadata};

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use serde_json::Value;
use voxpool::engine::chatterbox::config::T3Config;
use voxpool::engine::chatterbox::t3::{
    quantized_layers, Gpt2Cache, QuantCache, SamplingParams, T3Cond, T3Quant, T3,
};
use voxpool::engine::chatterbox::text::{punc_norm, TextTokenizer};
use voxpool::engine::nn::SafetensorsFile;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chatterbox");
/// Largest absolute difference accepted on embeddings, hidden states and logits.
const TOL: f32 = 1e-4;
/// Largest absolute difference accepted on sampler probabilities.
const PROB_TOL: f32 = 1e-5;

struct Fixture {
    cfg: T3Config,
    t3: T3,
    io: HashMap<String, Tensor>,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn load() -> Result<Self> {
        let text = std::fs::read_to_string(format!("{FIXTURES}/t3_tiny_config.json"))?;
        let cfg = T3Config::from_json(&text).map_err(candle_core::Error::wrap)?;
        let weights = candle_core::safetensors::load(
            format!("{FIXTURES}/t3_tiny.safetensors"),
            &Device::Cpu,
        )?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let t3 = T3::load(vb, &cfg)?;
        let path = format!("{FIXTURES}/t3_tiny_io.safetensors");
        let io = candle_core::safetensors::load(&path, &Device::Cpu)?;
        Ok(Self {
            cfg,
            t3,
            io,
            meta: read_metadata(Path::new(&path))?,
        })
    }

    fn get(&self, key: &str) -> Tensor {
        self.io
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("fixture has no {key}"))
    }

    fn ids(&self, key: &str) -> Vec<u32> {
        self.get(key)
            .flatten_all()
            .and_then(|t| t.to_vec1::<i64>())
            .expect("token ids")
            .into_iter()
            .map(|t| t as u32)
            .collect()
    }

    fn meta_json(&self, key: &str) -> Value {
        serde_json::from_str(&self.meta[key]).expect("metadata JSON")
    }

    fn cond(&self) -> T3Cond {
        T3Cond {
            speaker_emb: self.get("cond.speaker_emb"),
            cond_prompt_speech_tokens: Some(self.get("cond.cond_prompt_speech_tokens")),
        }
    }
}

fn params(v: &Value, max_gen_len: usize) -> SamplingParams {
    SamplingParams {
        temperature: v["temperature"].as_f64().expect("temperature"),
        top_k: v["top_k"].as_u64().expect("top_k") as usize,
        top_p: v["top_p"].as_f64().expect("top_p"),
        repetition_penalty: v["repetition_penalty"]
            .as_f64()
            .expect("repetition_penalty"),
        max_gen_len,
    }
}

#[test]
fn conditioning_and_input_embeddings() -> Result<()> {
    let f = Fixture::load()?;
    let cond = f.cond();
    let cond_emb = f.t3.prepare_conditioning(&cond)?;
    assert_within("cond_emb", &cond_emb, &f.get("out.cond_emb"), TOL)?;

    let text = f.get("text_tokens");
    let start = Tensor::new(&[[f.cfg.t3.start_speech_token]], &Device::Cpu)?;
    let (embeds, len_cond) = f.t3.prepare_input_embeds(&cond, &text, &start)?;
    assert_eq!(len_cond.to_string(), f.meta["len_cond"]);
    assert_within("prefill_embeds", &embeds, &f.get("out.prefill_embeds"), TOL)?;

    let (tf_embeds, _) =
        f.t3.prepare_input_embeds(&cond, &text, &f.get("tf.speech_tokens"))?;
    assert_within("tf.embeds", &tf_embeds, &f.get("tf.embeds"), TOL)?;
    Ok(())
}

#[test]
fn prefill_and_teacher_forced_logits() -> Result<()> {
    let f = Fixture::load()?;
    let embeds = f.get("out.prefill_embeds");
    let mut cache = f.t3.tfmr().new_cache(embeds.dim(1)?);
    let hidden = f.t3.forward_hidden(&embeds, &mut cache)?;
    assert_within("prefill_hidden", &hidden, &f.get("out.prefill_hidden"), TOL)?;
    let last = hidden.i((.., hidden.dim(1)? - 1, ..))?;
    let logits = f.t3.speech_logits(&last)?;
    assert_within("prefill_logits", &logits, &f.get("out.prefill_logits"), TOL)?;

    let tf_embeds = f.get("tf.embeds");
    let mut cache = f.t3.tfmr().new_cache(tf_embeds.dim(1)?);
    let hidden = f.t3.forward_hidden(&tf_embeds, &mut cache)?;
    assert_within("tf.hidden", &hidden, &f.get("tf.hidden"), TOL)?;
    let want = f.get("tf.logits");
    let n = want.dim(1)?;
    let logits =
        f.t3.speech_logits(&hidden.narrow(1, hidden.dim(1)? - n, n)?)?;
    assert_within("tf.logits", &logits, &want, TOL)?;
    Ok(())
}

/// The prompt's pass with the voice's conditioning run once and kept gives the
/// reference's hidden states for the text and start positions, the first time and
/// from the kept keys and values; another voice's conditioning takes its place.
#[test]
fn prefill_from_the_voice_prefix_matches_the_reference() -> Result<()> {
    let f = Fixture::load()?;
    let cond = f.cond();
    let text = f.get("text_tokens");
    let start = Tensor::new(&[[f.cfg.t3.start_speech_token]], &Device::Cpu)?;
    let full = f.get("out.prefill_hidden");
    let n = text.dim(1)? + 1;
    let want = full.narrow(1, full.dim(1)? - n, n)?;
    for run in ["computed", "kept"] {
        let (hidden, cache) = f.t3.prefill(&cond, &text, &start, 3)?;
        assert_within(run, &hidden, &want, TOL)?;
        assert_eq!(cache.seq_len(), full.dim(1)?, "{run}");
    }
    let other = T3Cond {
        speaker_emb: (cond.speaker_emb.clone() * 0.5)?,
        cond_prompt_speech_tokens: cond.cond_prompt_speech_tokens.clone(),
    };
    let (hidden, _) = f.t3.prefill(&other, &text, &start, 3)?;
    let diff = (hidden - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(
        diff > 100.0 * TOL,
        "another voice changed nothing ({diff:e})"
    );
    let (hidden, _) = f.t3.prefill(&cond, &text, &start, 3)?;
    assert_within("first voice again", &hidden, &want, TOL)?;
    Ok(())
}

/// Feeding the speech tokens through the KV cache, one at a time and in chunks,
/// gives the logits of one forward over the whole sequence.
#[test]
fn kv_cache_matches_full_forward() -> Result<()> {
    let f = Fixture::load()?;
    let tokens = f.get("tf.speech_tokens");
    let n = tokens.dim(1)?;
    let prefill = f.get("out.prefill_embeds");
    let want = f.get("tf.logits");

    // Whole sequence in Rust, as the reference of this comparison.
    let tf_embeds = f.get("tf.embeds");
    let mut cache = f.t3.tfmr().new_cache(tf_embeds.dim(1)?);
    let full = f.t3.forward_hidden(&tf_embeds, &mut cache)?;
    let full = f.t3.speech_logits(&full.narrow(1, full.dim(1)? - n, n)?)?;

    // One token per step, as inference_turbo does; the cache is sized for the
    // prefill only, so it also has to grow.
    let mut cache = f.t3.tfmr().new_cache(prefill.dim(1)?);
    let hidden = f.t3.forward_hidden(&prefill, &mut cache)?;
    let mut steps = vec![f
        .t3
        .speech_logits(&hidden.narrow(1, hidden.dim(1)? - 1, 1)?)?];
    for j in 1..n {
        let emb = f.t3.embed_speech(&tokens.narrow(1, j, 1)?)?;
        let hidden = f.t3.forward_hidden(&emb, &mut cache)?;
        steps.push(f.t3.speech_logits(&hidden)?);
    }
    assert_eq!(cache.seq_len(), tf_embeds.dim(1)?);
    let stepped = Tensor::cat(&steps, 1)?;
    let d = assert_within("cached steps vs full (Rust)", &stepped, &full, 1e-5)?;
    assert!(d <= 1e-5);
    assert_within("cached steps vs reference", &stepped, &want, TOL)?;

    // Chunks of several tokens after a cached prefix (causal mask with an offset).
    let mut cache = f.t3.tfmr().new_cache(8);
    let hidden = f.t3.forward_hidden(&prefill, &mut cache)?;
    let mut parts = vec![f
        .t3
        .speech_logits(&hidden.narrow(1, hidden.dim(1)? - 1, 1)?)?];
    for (start, len) in [(1, 6), (7, 1), (8, n - 8)] {
        let emb = f.t3.embed_speech(&tokens.narrow(1, start, len)?)?;
        let hidden = f.t3.forward_hidden(&emb, &mut cache)?;
        parts.push(f.t3.speech_logits(&hidden)?);
    }
    assert_within(
        "cached chunks vs full (Rust)",
        &Tensor::cat(&parts, 1)?,
        &full,
        1e-5,
    )?;
    Ok(())
}

#[test]
fn sampler_probabilities() -> Result<()> {
    let f = Fixture::load()?;
    let cases = f.meta_json("sampler");
    let cases = cases.as_array().expect("sampler cases");
    assert!(cases.len() >= 5);
    for (i, case) in cases.iter().enumerate() {
        let p = params(case, 0);
        let logits = f.get(&format!("sampler.{i}.logits")).to_vec1::<f32>()?;
        let history = f.ids(&format!("sampler.{i}.history"));
        let want = f.get(&format!("sampler.{i}.probs"));
        let got = p.probabilities(&logits, &history);
        let kept = got.iter().filter(|&&x| x > 0.0).count();
        assert_eq!(
            kept as u64,
            case["kept"].as_u64().unwrap(),
            "case {i}: tokens kept"
        );
        let want_v = want.to_vec1::<f32>()?;
        for (j, (g, w)) in got.iter().zip(&want_v).enumerate() {
            assert_eq!(
                *g > 0.0,
                *w > 0.0,
                "case {i}: token {j} kept by one side only"
            );
        }
        let got = Tensor::new(got, &Device::Cpu)?;
        assert_within(
            &format!("sampler case {i} ({kept} kept)"),
            &got,
            &want,
            PROB_TOL,
        )?;
    }
    Ok(())
}

/// `inference_turbo` with top-k 1 is greedy whatever the random draws: the same
/// tokens for any seed, ending on the stop token (dropped) or at the limit.
#[test]
fn greedy_generation_matches_reference() -> Result<()> {
    let f = Fixture::load()?;
    let g = f.meta_json("greedy");
    let text = f.ids("text_tokens");
    let cond = f.cond();
    let want = f.ids("gen.greedy.tokens");
    let want_limit = f.ids("gen.limit.tokens");
    for seed in [0u64, 1, 42] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let p = params(&g, g["max_gen_len"].as_u64().unwrap() as usize);
        let got = f.t3.inference(&text, &cond, &p, &mut rng)?;
        assert_eq!(got, want, "seed {seed}: stop-token run");
        let p = params(&g, g["limit_max_gen_len"].as_u64().unwrap() as usize);
        let got = f.t3.inference(&text, &cond, &p, &mut rng)?;
        assert_eq!(got, want_limit, "seed {seed}: limit run");
    }
    println!(
        "greedy: {} tokens then stop; limit: {} tokens",
        want.len(),
        want_limit.len()
    );
    assert_eq!(want.len() as u64, g["stop_step"].as_u64().unwrap());
    Ok(())
}

/// Sampling with Turbo's defaults is reproducible for a seed, ends on the stop
/// token or the limit, and never returns a trailing stop token.
#[test]
fn seeded_sampling_is_reproducible() -> Result<()> {
    let f = Fixture::load()?;
    let text = f.ids("text_tokens");
    let cond = f.cond();
    let p = SamplingParams {
        max_gen_len: 30,
        ..SamplingParams::default()
    };
    let run = |seed| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        f.t3.inference(&text, &cond, &p, &mut rng)
    };
    let a = run(7)?;
    assert_eq!(a, run(7)?);
    assert!(!a.is_empty() && a.len() <= 31);
    assert_ne!(a.last(), Some(&f.cfg.t3.stop_speech_token));
    assert!(a
        .iter()
        .all(|&t| (t as usize) < f.cfg.t3.speech_tokens_dict_size));
    Ok(())
}

/// Largest absolute difference and the share of positions whose argmax is the
/// same, between logits `got` and `want` [.., V].
fn logit_agreement(got: &Tensor, want: &Tensor) -> Result<(f32, f64)> {
    assert_eq!(got.dims(), want.dims(), "logits shape");
    let max_err = (got - want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    let v = want.dim(candle_core::D::Minus1)?;
    let a = got.reshape(((), v))?.argmax(1)?.to_vec1::<u32>()?;
    let b = want.reshape(((), v))?.argmax(1)?.to_vec1::<u32>()?;
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    Ok((max_err, same as f64 / a.len() as f64))
}

/// Speech logits of `t3` at the last `n` positions of one forward over `embeds`.
fn teacher_forced_logits(t3: &T3, embeds: &Tensor, n: usize) -> Result<Tensor> {
    let mut cache = t3.tfmr().new_cache(embeds.dim(1)?);
    let hidden = t3.forward_hidden(embeds, &mut cache)?;
    t3.speech_logits(&hidden.narrow(1, hidden.dim(1)? - n, n)?)
}

/// Quantised T3 on the tiny fixture, teacher-forced, against the f32 model. The
/// fixture is 64 wide with a 256-wide MLP: q8_0 (blocks of 32) quantises every
/// `Conv1D` and the speech head, q4k (blocks of 256) only the MLP's `c_proj`
/// (input 256 wide); the other layers stay f32. f32 through `load_quantized`
/// is the plain load, bit for bit.
#[test]
fn quantized_logits_follow_f32() -> Result<()> {
    let f = Fixture::load()?;
    let weights =
        candle_core::safetensors::load(format!("{FIXTURES}/t3_tiny.safetensors"), &Device::Cpu)?;
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let embeds = f.get("tf.embeds");
    let n = f.get("tf.logits").dim(1)?;
    let want = teacher_forced_logits(&f.t3, &embeds, n)?;
    let ranges = |t: &Tensor| -> Result<f32> {
        let t = t.flatten_all()?;
        Ok(t.max(0)?.to_scalar::<f32>()? - t.min(0)?.to_scalar::<f32>()?)
    };
    println!("f32 logits span {:.3}", ranges(&want)?);
    // (quant, largest abs logit error, least argmax agreement) accepted; measured
    // 0.071 and 16/16 for q8_0, 0.28 and 14/16 for q4k.
    for (quant, tol, agree) in [
        (T3Quant::F32, 0.0, 1.0),
        (T3Quant::Q8_0, 0.15, 0.9),
        (T3Quant::Q4K, 0.6, 0.75),
    ] {
        let t3 = T3::load_quantized(vb.clone(), &f.cfg, quant)?;
        assert_eq!(t3.quant(), quant);
        let got = teacher_forced_logits(&t3, &embeds, n)?;
        let (err, same) = logit_agreement(&got, &want)?;
        println!(
            "{quant:?}: max abs logit error {err:e}, argmax agreement {:.1}% of {n}",
            100.0 * same
        );
        assert!(err <= tol, "{quant:?}: logit error {err:e} > {tol:e}");
        assert!(
            same >= agree,
            "{quant:?}: argmax agreement {same} < {agree}"
        );
    }
    Ok(())
}

/// Quantised weights kept on disk ([`QuantCache`]): the first load quantises and
/// writes the file; the second reads the quantised weights from it and not the f32
/// ones from the checkpoint (the bytes read say so), holds as many bytes, and gives
/// the same logits bit for bit. A damaged or mismatched file is ignored and written
/// again; a cache that cannot be written leaves the load as it was.
#[test]
fn quantized_weights_are_cached() -> Result<()> {
    let f = Fixture::load()?;
    let checkpoint = Path::new(FIXTURES).join("t3_tiny.safetensors");
    let dir = tempfile::tempdir()?;
    let embeds = f.get("tf.embeds");
    let n = f.get("tf.logits").dim(1)?;
    let logits = |t3: &T3| -> Result<Vec<f32>> {
        teacher_forced_logits(t3, &embeds, n)?
            .flatten_all()?
            .to_vec1::<f32>()
    };
    for quant in [T3Quant::Q8_0, T3Quant::Q4K] {
        let cache = QuantCache::new(dir.path(), &checkpoint, quant).expect("a cache");
        let name = cache
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(
            name.starts_with("t3_tiny-") && name.ends_with(&format!("-{quant}-v1.gguf")),
            "{name}"
        );
        // The load and the bytes it read from the checkpoint.
        let load = |cache: Option<&QuantCache>| -> Result<(T3, u64)> {
            let file = SafetensorsFile::open(&checkpoint)?;
            let read = file.loaded();
            let vb = file.into_var_builder(DType::F32, &Device::Cpu);
            let t3 = T3::load_cached(vb, &f.cfg, quant, cache)?;
            Ok((t3, read.get()))
        };
        let (first, first_read) = load(Some(&cache))?;
        assert!(!first.quant_from_cache());
        assert!(cache.path().is_file(), "{quant}: no cache written");
        let written = std::fs::read(cache.path())?;

        let (second, second_read) = load(Some(&cache))?;
        assert!(second.quant_from_cache(), "{quant}: the cache was not used");
        let layers = quantized_layers(&f.cfg, quant);
        assert!(!layers.is_empty());
        let f32_bytes: u64 = layers.iter().map(|(_, (o, i))| (o * i * 4) as u64).sum();
        assert_eq!(
            first_read - second_read,
            f32_bytes,
            "{quant}: f32 weights read"
        );
        assert_eq!(
            first.weight_bytes(first_read),
            second.weight_bytes(second_read)
        );
        assert_eq!(
            first.quantization_bytes_saved(),
            second.quantization_bytes_saved()
        );
        let want = logits(&first)?;
        assert_eq!(logits(&second)?, want, "{quant}: logits from the cache");

        // Damaged (a cut file, a bad header) or made for another configuration (other
        // layers): ignored, quantised again and written again.
        let mut other = f.cfg.clone();
        other.backbone.n_layer = 1;
        let fewer = {
            let file = SafetensorsFile::open(&checkpoint)?;
            T3::load_cached(
                file.into_var_builder(DType::F32, &Device::Cpu),
                &other,
                quant,
                Some(&cache),
            )?
        };
        assert!(!fewer.quant_from_cache());
        for damage in [
            written[..written.len() / 2].to_vec(),
            [b"not a gguf file".as_slice(), &written[15..]].concat(),
        ] {
            std::fs::write(cache.path(), damage)?;
            let (again, _) = load(Some(&cache))?;
            assert!(!again.quant_from_cache());
            assert_eq!(logits(&again)?, want);
            assert_eq!(
                std::fs::read(cache.path())?,
                written,
                "{quant}: not rewritten"
            );
        }
        assert!(load(Some(&cache))?.0.quant_from_cache());

        // A folder that cannot be made (below a file): the load goes on without it.
        let blocked = dir.path().join("a-file");
        std::fs::write(&blocked, b"")?;
        let cache = QuantCache::new(&blocked.join("cache"), &checkpoint, quant).unwrap();
        let (t3, _) = load(Some(&cache))?;
        assert!(!t3.quant_from_cache());
        assert_eq!(logits(&t3)?, want);
    }
    // Nothing to keep for f32.
    assert!(QuantCache::new(dir.path(), &checkpoint, T3Quant::F32).is_none());
    // Only the two caches are left (no partial files).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|e| Ok(e?.file_name().to_string_lossy().to_string()))
        .collect::<Result<_>>()?;
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0] == "a-file" && names[1].ends_with("q4k-v1.gguf"));
    Ok(())
}

#[test]
fn turbo_config_rejects_tiny_weights() -> Result<()> {
    let weights =
        candle_core::safetensors::load(format!("{FIXTURES}/t3_tiny.safetensors"), &Device::Cpu)?;
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    assert!(T3::load(vb, &T3Config::turbo()).is_err());
    Ok(())
}

fn text_cases() -> Vec<(String, String, Vec<u32>)> {
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/t3_text_cases.json")).unwrap(),
    )
    .unwrap();
    cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap();
            (
                c["text"].as_str().unwrap().to_string(),
                c["normalized"].as_str().unwrap().to_string(),
                ids.iter().map(|v| v.as_u64().unwrap() as u32).collect(),
            )
        })
        .collect()
}

/// Without `added_tokens_decoder` in `tokenizer_config.json` (older saves), the
/// added tokens come from `added_tokens.json` and the special ones from the
/// config's `bos`/`eos`/`unk` entries, with the same ids.
#[test]
fn text_tokenizer_from_added_tokens_json() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(
            format!("{FIXTURES}/tokenizer/{name}"),
            dir.path().join(name),
        )
        .unwrap();
    }
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/tokenizer/tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    config
        .as_object_mut()
        .unwrap()
        .remove("added_tokens_decoder");
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let tok = TextTokenizer::from_dir(dir.path()).expect("tokenizer");
    assert_eq!(tok.len(), 321);
    for (_, normalized, ids) in text_cases() {
        assert_eq!(
            tok.encode(&normalized).unwrap(),
            ids,
            "ids of {normalized:?}"
        );
    }
}

#[test]
fn text_front_end_matches_reference() {
    let tok =
        TextTokenizer::from_dir(Path::new(&format!("{FIXTURES}/tokenizer"))).expect("tokenizer");
    let cfg: T3Config = T3Config::from_json(
        &std::fs::read_to_string(format!("{FIXTURES}/t3_tiny_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tok.len(), cfg.t3.text_tokens_dict_size);
    let cases = text_cases();
    for (text, normalized, ids) in &cases {
        assert_eq!(&punc_norm(text), normalized, "punc_norm({text:?})");
        assert_eq!(
            &tok.encode(normalized).unwrap(),
            ids,
            "ids of {normalized:?}"
        );
    }
    println!("{} texts: punc_norm and ids identical", cases.len());
}

/// The full-size random weights of `tools/chatterbox_t3_fixtures.py --full DIR`
/// load under the released Turbo configuration and generate. Run with
/// `CHATTERBOX_T3_FULL=DIR cargo test --release --test chatterbox_t3 -- --ignored --nocapture`.
#[test]
#[ignore = "needs the --full weights (1.9 GB) named by CHATTERBOX_T3_FULL"]
fn full_size_turbo_weights() -> Result<()> {
    let dir = std::env::var("CHATTERBOX_T3_FULL").expect("CHATTERBOX_T3_FULL=DIR");
    let cfg = T3Config::turbo();
    let file = Path::new(&dir).join("t3_turbo_v1.safetensors");
    // SAFETY: the file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &Device::Cpu)? };
    let t0 = std::time::Instant::now();
    let t3 = T3::load(vb, &cfg)?;
    println!("load {:?}", t0.elapsed());
    let cond = T3Cond {
        speaker_emb: Tensor::ones((1, 256), DType::F32, &Device::Cpu)?,
        cond_prompt_speech_tokens: Some(Tensor::arange(0u32, 375, &Device::Cpu)?.unsqueeze(0)?),
    };
    let text: Vec<u32> = (100..140).collect();
    let p = SamplingParams {
        top_k: 1,
        max_gen_len: 10,
        ..SamplingParams::default()
    };
    let t0 = std::time::Instant::now();
    let tokens = t3.inference(&text, &cond, &p, &mut rand::rngs::StdRng::seed_from_u64(0))?;
    println!(
        "{} tokens (prefill of 417 positions + 10 steps) in {:?}",
        tokens.len(),
        t0.elapsed()
    );
    assert!(!tokens.is_empty() && tokens.len() <= 11);

    // Prefill and cached decode steps timed apart.
    let text = Tensor::new(text.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let start = Tensor::new(&[[cfg.t3.start_speech_token]], &Device::Cpu)?;
    let (embeds, _) = t3.prepare_input_embeds(&cond, &text, &start)?;
    let mut cache = t3.tfmr().new_cache(embeds.dim(1)? + 32);
    let t0 = std::time::Instant::now();
    let hidden = t3.forward_hidden(&embeds, &mut cache)?;
    t3.speech_logits(&hidden.narrow(1, hidden.dim(1)? - 1, 1)?)?;
    println!(
        "prefill of {} positions: {:?}",
        embeds.dim(1)?,
        t0.elapsed()
    );
    let step = t3.embed_speech(&Tensor::new(&[[5u32]], &Device::Cpu)?)?;
    let t0 = std::time::Instant::now();
    for _ in 0..10 {
        let hidden = t3.forward_hidden(&step, &mut cache)?;
        t3.speech_logits(&hidden)?;
    }
    println!("decode step: {:?}", t0.elapsed() / 10);
    Ok(())
}

/// Quantised T3 at Turbo size (the `--full` random weights) against f32: logit
/// error and argmax agreement over a teacher-forced sequence; then prefill and
/// decode-step times of each weight type, interleaved so that load from other
/// processes spreads over all three (printed, not checked). Run with
/// `CHATTERBOX_T3_FULL=DIR cargo test --release --test chatterbox_t3
/// full_size_quantized -- --ignored --nocapture`.
#[test]
#[ignore = "needs the --full weights (1.9 GB) named by CHATTERBOX_T3_FULL"]
fn full_size_quantized_weights() -> Result<()> {
    let dir = std::env::var("CHATTERBOX_T3_FULL").expect("CHATTERBOX_T3_FULL=DIR");
    let cfg = T3Config::turbo();
    let file = Path::new(&dir).join("t3_turbo_v1.safetensors");
    // SAFETY: the file is not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &Device::Cpu)? };
    let dev = &Device::Cpu;
    let cond = T3Cond {
        speaker_emb: Tensor::ones((1, 256), DType::F32, dev)?,
        cond_prompt_speech_tokens: Some(Tensor::arange(0u32, 375, dev)?.unsqueeze(0)?),
    };
    let text = Tensor::arange(100u32, 140, dev)?.unsqueeze(0)?;
    let start = cfg.t3.start_speech_token;
    // The start token, then 63 speech tokens spread over the vocabulary.
    let speech: Vec<u32> = std::iter::once(start)
        .chain((1..64u32).map(|i| i * 997 % 6561))
        .collect();
    let n = speech.len();
    let speech = Tensor::new(speech.as_slice(), dev)?.unsqueeze(0)?;

    let mut models = Vec::new();
    let mut want: Option<Tensor> = None;
    // (quant, largest abs logit error, least argmax agreement) accepted. Measured on
    // the --full file: 0.094 and 64/64 for q8_0, 0.93 and 41/64 for q4k; on other
    // weights of the same distributions 0.11 and 63/64, 0.96 and 33/64 (random
    // weights give logits whose two largest are often close).
    for (quant, tol, agree) in [
        (T3Quant::F32, 0.0, 1.0),
        (T3Quant::Q8_0, 0.2, 0.95),
        (T3Quant::Q4K, 2.0, 0.4),
    ] {
        let t0 = std::time::Instant::now();
        let t3 = T3::load_quantized(vb.clone(), &cfg, quant)?;
        let load = t0.elapsed();
        let (embeds, _) = t3.prepare_input_embeds(&cond, &text, &speech)?;
        let logits = teacher_forced_logits(&t3, &embeds, n)?;
        let want = want.get_or_insert_with(|| logits.clone());
        let (err, same) = logit_agreement(&logits, want)?;
        println!(
            "{quant:?}: max abs logit error {err:.4} (f32 logits span {:.2}), argmax \
             agreement {:.1}% of {n}; load and quantisation {load:.2?}",
            want.max_all()?.to_scalar::<f32>()? - want.min_all()?.to_scalar::<f32>()?,
            100.0 * same,
        );
        assert!(err <= tol, "{quant:?}: logit error {err:e} > {tol:e}");
        assert!(
            same >= agree,
            "{quant:?}: argmax agreement {same} < {agree}"
        );
        models.push(t3);
    }

    // Prefill of the 417 conditioning + text + start positions, then cached steps;
    // and the 41 text + start positions after a kept voice's 376 (`T3::prefill`).
    let start = Tensor::new(&[[start]], dev)?;
    let (embeds, len_cond) = models[0].prepare_input_embeds(&cond, &text, &start)?;
    let len = embeds.dim(1)?;
    let tail = embeds.narrow(1, len_cond, len - len_cond)?;
    let step_token = Tensor::new(&[[5u32]], dev)?;
    let (rounds, steps) = (3, 8);
    let mut prefill = vec![Vec::new(); models.len()];
    let mut prefill_kept = vec![Vec::new(); models.len()];
    let mut decode = vec![Vec::new(); models.len()];
    for _ in 0..rounds {
        for (i, t3) in models.iter().enumerate() {
            let mut cache = t3.tfmr().new_cache(len + steps);
            let t0 = std::time::Instant::now();
            let hidden = t3.forward_hidden(&embeds, &mut cache)?;
            t3.speech_logits(&hidden.narrow(1, hidden.dim(1)? - 1, 1)?)?;
            prefill[i].push(t0.elapsed());
            let mut kept = Gpt2Cache::from_prefix(&cache.prefix(len_cond)?, len)?;
            let t0 = std::time::Instant::now();
            let hidden = t3.forward_hidden(&tail, &mut kept)?;
            t3.speech_logits(&hidden.narrow(1, hidden.dim(1)? - 1, 1)?)?;
            prefill_kept[i].push(t0.elapsed());
            let step = t3.embed_speech(&step_token)?;
            for _ in 0..steps {
                let t0 = std::time::Instant::now();
                let hidden = t3.forward_hidden(&step, &mut cache)?;
                t3.speech_logits(&hidden)?;
                decode[i].push(t0.elapsed());
            }
        }
    }
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (p0, k0, d0) = (
        median(&mut prefill[0]),
        median(&mut prefill_kept[0]),
        median(&mut decode[0]),
    );
    for (i, t3) in models.iter().enumerate() {
        let (p, k, d) = (
            median(&mut prefill[i]),
            median(&mut prefill_kept[i]),
            median(&mut decode[i]),
        );
        println!(
            "{:?}: prefill of {len} positions {p:.2?} ({:.2}x f32), of {} after the \
             voice's {len_cond} {k:.2?} ({:.2}x f32), decode step {d:.1?} ({:.2}x f32); \
             medians of {rounds} and {} interleaved runs",
            t3.quant(),
            p.as_secs_f64() / p0.as_secs_f64(),
            len - len_cond,
            k.as_secs_f64() / k0.as_secs_f64(),
            d.as_secs_f64() / d0.as_secs_f64(),
            rounds * steps,
        );
    }
    Ok(())
}

/// Random weights for any tensor asked for, the same for a name whatever else is
/// loaded: GPT-2's initialisation (N(0, 0.02), layer norm scales 1).
struct RandomWeights;

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        use rand_distr::Distribution;
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        let mut rng = rand::rngs::StdRng::seed_from_u64(h.finish());
        let normal = rand_distr::Normal::new(0f32, 0.02).unwrap();
        let is_scale = name.contains("ln_") && name.ends_with(".weight");
        let values: Vec<f32> = (0..s.elem_count())
            .map(|_| normal.sample(&mut rng) + if is_scale { 1.0 } else { 0.0 })
            .collect();
        Tensor::from_vec(values, s, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("{name}: shape needed")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// q4k on a T3 256 wide (random weights, GPT-2's initialisation), where its blocks of
/// 256 fit every `Conv1D` and the speech head: all of them quantised (the bytes
/// saved say so), and the logits close to f32's.
#[test]
fn q4k_quantizes_every_layer_of_a_256_wide_t3() -> Result<()> {
    let f = Fixture::load()?;
    let mut cfg = f.cfg.clone();
    cfg.backbone.n_embd = 256;
    cfg.backbone.n_inner = None;
    cfg.backbone.n_head = 4;
    cfg.backbone.n_layer = 2;
    let dev = Device::Cpu;
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), DType::F32, dev.clone());
    let f32_t3 = T3::load(vb.clone(), &cfg)?;
    let q4k = T3::load_quantized(vb, &cfg, T3Quant::Q4K)?;
    // Every Conv1D (256·768 + 256·256 + 256·1024 + 1024·256 per layer) and the
    // speech head (6563·256) in q4k: 144 bytes per 256 values instead of 1024.
    let e = 256;
    let values = 2 * (e * 3 * e + e * e + 2 * e * 4 * e) + cfg.t3.speech_tokens_dict_size * e;
    assert_eq!(
        q4k.quantization_bytes_saved(),
        (values / 256 * (1024 - 144)) as u64
    );
    assert_eq!(f32_t3.quantization_bytes_saved(), 0);

    let cond = T3Cond {
        speaker_emb: (Tensor::ones((1, cfg.t3.speaker_embed_size), DType::F32, &dev)? / 16.0)?,
        cond_prompt_speech_tokens: Some(Tensor::new(&[[5u32, 9, 700, 31, 64, 3000]], &dev)?),
    };
    let text = Tensor::new(&[[12u32, 40, 7, 99, 150, 3, 8, 17]], &dev)?;
    let speech = Tensor::new(&[[6561u32, 17, 4000, 230, 5, 1200, 64, 77]], &dev)?;
    let (embeds, _) = f32_t3.prepare_input_embeds(&cond, &text, &speech)?;
    let n = speech.dim(1)?;
    let want = teacher_forced_logits(&f32_t3, &embeds, n)?;
    let got = teacher_forced_logits(&q4k, &embeds, n)?;
    let (err, same) = logit_agreement(&got, &want)?;
    let span = {
        let w = want.flatten_all()?;
        w.max(0)?.to_scalar::<f32>()? - w.min(0)?.to_scalar::<f32>()?
    };
    println!("q4k, 256 wide: max abs logit error {err:e} (f32 span {span:.3}), argmax agreement {:.0}% of {n}", 100.0 * same);
    assert!(err > 0.0, "nothing was quantised");
    assert!(
        err <= 0.1 * span,
        "logit error {err:e} against a span of {span}"
    );
    Ok(())
}
