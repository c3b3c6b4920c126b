//! Japanese G2P agreement with the reference: misaki 0.9.4's `JAG2P()` (what
//! Kokoro's `KPipeline('j')` speaks), over tests/fixtures/g2p/ja/sentences.txt.
//! tools/g2p_reference_ja.py writes the expected phonemes (`reference.tsv`) and
//! the MeCab tokens fugashi gives (`tokens.jsonl`).
//!
//! Needs the Japanese language pack: `VOXPOOL_LANGUAGE_PACKS`, else
//! `target/language-packs` (`voxpool pull kokoro` fetches it).

use std::path::PathBuf;
use std::time::Instant;

mod packs;

use voxpool::text::japanese;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/g2p/ja")
}

fn setup() {
    packs::setup();
    if let Err(why) = japanese::availability() {
        panic!(
            "{why}\n(fix: run `voxpool pull kokoro`, or point VOXPOOL_LANGUAGE_PACKS at a \
             folder holding ja/ with the files of voxpool::text::japanese::PACK_FILES)"
        );
    }
}

fn reference() -> Vec<(String, String)> {
    std::fs::read_to_string(fixtures().join("reference.tsv"))
        .unwrap()
        .lines()
        .map(|line| {
            let (sentence, phonemes) = line.split_once('\t').expect("sentence<TAB>phonemes");
            (sentence.to_string(), phonemes.to_string())
        })
        .collect()
}

#[test]
fn phonemes_agree_with_misaki() {
    setup();
    let cases = reference();
    assert!(cases.len() >= 120, "only {} sentences", cases.len());
    // Time a fresh load (another test may have built the tables already).
    japanese::release();
    let start = Instant::now();
    japanese::phonemize("一").unwrap();
    let load = start.elapsed();

    let mut same = 0;
    for (sentence, expected) in &cases {
        let got = japanese::phonemize(sentence).unwrap();
        if &got == expected {
            same += 1;
        } else {
            println!("DIFF {sentence}\n  expected {expected}\n  got      {got}");
        }
    }
    let start = Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        for (sentence, _) in &cases {
            japanese::phonemize(sentence).unwrap();
        }
    }
    let per_sentence = start.elapsed() / (rounds * cases.len()) as u32;
    let share = 100.0 * same as f64 / cases.len() as f64;
    println!(
        "{same}/{} sentences agree ({share:.1}%); first use {load:?}, then {per_sentence:?} a sentence",
        cases.len()
    );
    assert!(
        share >= 95.0,
        "only {share:.1}% of sentences agree with misaki"
    );
}

#[test]
fn tokens_agree_with_fugashi() {
    setup();
    let rows = std::fs::read_to_string(fixtures().join("tokens.jsonl")).unwrap();
    let (mut same, mut total) = (0, 0);
    for row in rows.lines() {
        let row: serde_json::Value = serde_json::from_str(row).unwrap();
        let text = row["text"].as_str().unwrap();
        let expected: Vec<String> = row["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        let got: Vec<String> = japanese::tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| {
                serde_json::json!([t.surface, t.char_type, t.is_unknown, t.pron, t.kana])
                    .to_string()
            })
            .collect();
        total += 1;
        if got == expected {
            same += 1;
        } else {
            println!(
                "TOKENS {text}\n  expected {}\n  got      {}",
                expected.join(" "),
                got.join(" ")
            );
        }
    }
    assert_eq!(
        same,
        total,
        "{} of {total} sentences tokenised differently",
        total - same
    );
}

#[test]
fn normalised_text_agrees_with_misaki() {
    let rows = std::fs::read_to_string(fixtures().join("tokens.jsonl")).unwrap();
    let sentences = std::fs::read_to_string(fixtures().join("sentences.txt")).unwrap();
    let sentences: Vec<&str> = sentences.lines().filter(|l| !l.trim().is_empty()).collect();
    for (sentence, row) in sentences.iter().zip(rows.lines()) {
        let row: serde_json::Value = serde_json::from_str(row).unwrap();
        assert_eq!(
            japanese::normalize(sentence),
            row["text"].as_str().unwrap(),
            "{sentence}"
        );
    }
}

#[test]
fn released_tables_come_back() {
    setup();
    let first = japanese::phonemize("今日はいい天気ですね。").unwrap();
    japanese::release();
    assert_eq!(
        japanese::phonemize("今日はいい天気ですね。").unwrap(),
        first
    );
    assert_eq!(japanese::phonemize("").unwrap(), "");
}
