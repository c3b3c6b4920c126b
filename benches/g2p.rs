//! G2P cost per language against Kokoro's synthesis of the same sentence, in one
//! command: text → phonemes must stay a small share of a request's time.
//!
//! `cargo bench --bench g2p` reads Kokoro's weights from `KOKORO_MODELS_DIR`
//! (a models folder in the Hugging Face layout; default: the speech tier's real
//! weights in `~/.cache/voxpool-speech/realweights/hf`), the language packs from
//! `VOXPOOL_LANGUAGE_PACKS` (default `~/.cache/voxpool/language-packs`), and
//! espeak-ng from the system. For each language it can speak it prints the time of
//! the first call (tables built), the median G2P time of a typical sentence, the
//! median synthesis time of its phonemes, and G2P's share of the two.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use voxpool::engine::kokoro::engine::KokoroLoader;
use voxpool::engine::{DeviceSpec, EngineLoader, LoadContext, SynthRequest};
use voxpool::text::g2p::{availability, phonemize};
use voxpool::text::settings::{configure, TextSettings};
use voxpool::text::Language;

/// A typical sentence per language (one clause or two, as users send).
const SENTENCES: [(Language, &str); 9] = [
    (
        Language::AmericanEnglish,
        "The weather is very nice today, so we are going to the park.",
    ),
    (
        Language::BritishEnglish,
        "The weather is very nice today, so we are going to the park.",
    ),
    (
        Language::Spanish,
        "Hoy hace muy buen tiempo, así que vamos a ir al parque.",
    ),
    (
        Language::French,
        "Il fait très beau aujourd'hui, alors nous allons au parc.",
    ),
    (
        Language::Hindi,
        "आज मौसम बहुत अच्छा है, इसलिए हम पार्क जा रहे हैं।",
    ),
    (
        Language::Italian,
        "Oggi il tempo è molto bello, quindi andiamo al parco.",
    ),
    (
        Language::Japanese,
        "今日はとても良い天気なので、公園に行きます。",
    ),
    (
        Language::BrazilianPortuguese,
        "Hoje o tempo está muito bom, então vamos ao parque.",
    ),
    (Language::Mandarin, "今天天气很好，所以我们去公园。"),
];

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into()))
}

fn main() {
    voxpool::config::apply_cpu_threads(voxpool::config::cpu_threads());
    let packs = std::env::var("VOXPOOL_LANGUAGE_PACKS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cache/voxpool/language-packs"));
    configure(TextSettings {
        packs_dir: packs,
        espeak_library: std::env::var("VOXPOOL_ESPEAK_LIBRARY")
            .ok()
            .map(PathBuf::from),
    });
    let models_dir = std::env::var("KOKORO_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cache/voxpool-speech/realweights/hf"));
    let ctx = LoadContext {
        models_dir: models_dir.clone(),
        device: DeviceSpec::Cpu,
        t3_quant: None,
        s3gen_quant: None,
    };
    let engine = match KokoroLoader.load(&ctx) {
        Ok(e) => e,
        Err(e) => {
            println!(
                "no Kokoro in {} ({e}): run tools/speech/run.sh once, or set KOKORO_MODELS_DIR",
                models_dir.display()
            );
            return;
        }
    };
    let voice = engine
        .voices()
        .into_iter()
        .find(|v| v.starts_with("jf_") || v.starts_with("af_"))
        .unwrap_or_else(|| "af_heart".into());
    let runs: usize = std::env::var("G2P_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "G2P against synthesis, Kokoro-82M (voice {voice}) — {}, {} cores; medians of {runs}",
        common::cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<22} {:>9} {:>10} {:>9} {:>12} {:>8}",
        "language", "phonemes", "first (ms)", "g2p (ms)", "speech (ms)", "g2p %"
    );
    for (language, text) in SENTENCES {
        if let Err(why) = availability(language) {
            println!("{:<22} skipped: {why}", language.name());
            continue;
        }
        let started = Instant::now();
        let phonemes = match phonemize(text, language) {
            Ok(p) => p,
            Err(e) => {
                println!("{:<22} failed: {e}", language.name());
                continue;
            }
        };
        let first = started.elapsed().as_secs_f64();
        let g2p = median(
            (0..runs.max(1) * 10)
                .map(|_| {
                    let t = Instant::now();
                    let _ = phonemize(text, language);
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        let request = SynthRequest {
            text: &phonemes,
            voice: &voice,
            speed: 1.0,
            phonemes: true,
            cloned: None,
            language: None,
            lexicon: &[],
            words: false,
        };
        let _ = engine.synthesize(&request);
        let speech = median(
            (0..runs.max(1))
                .map(|_| {
                    let t = Instant::now();
                    let _ = engine.synthesize(&request);
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        println!(
            "{:<22} {:>9} {:>10.1} {:>9.2} {:>12.0} {:>7.2}%",
            language.name(),
            phonemes.chars().count(),
            first * 1e3,
            g2p * 1e3,
            speech * 1e3,
            100.0 * g2p / (g2p + speech)
        );
    }
}
