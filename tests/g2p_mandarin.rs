//! Agreement of voxpool's Mandarin G2P with the reference, misaki 0.9.4's
//! `ZHG2P(version=None)` (what kokoro 0.9.4 runs for Kokoro-82M, language `z`),
//! on `tests/fixtures/g2p/zh/sentences.txt`: `reference.tsv` holds its phonemes,
//! made by `tools/g2p_reference_zh.py`.
//!
//! Needs the Mandarin language pack (pypinyin's `pinyin_dict.json` and
//! `phrases_dict.json`) under `$VOXPOOL_LANGUAGE_PACKS/zh/`, else under
//! `target/language-packs/zh/`; `voxpool pull kokoro` fetches it.

mod packs;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use voxpool::text::mandarin;

const REFERENCE: &str = include_str!("fixtures/g2p/zh/reference.tsv");

/// Share of sentences whose phonemes must be identical to the reference's.
const FLOOR: f64 = 0.95;

/// The tests share the tables (one drops them): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn setup() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    packs::setup();
    if let Err(why) = mandarin::availability() {
        panic!(
            "the Mandarin language pack is missing: {why}\n\
             (or copy pypinyin 0.55.0's pypinyin/pinyin_dict.json and \
             pypinyin/phrases_dict.json into target/language-packs/zh/, or set \
             VOXPOOL_LANGUAGE_PACKS to a folder holding zh/)"
        );
    }
    guard
}

fn rows(tsv: &'static str) -> Vec<(&'static str, &'static str)> {
    tsv.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("sentence\t"))
        .map(|l| l.split_once('\t').expect("two columns"))
        .collect()
}

#[test]
fn sentences_agree_with_misaki() {
    let _serial = setup();
    mandarin::release();
    let started = Instant::now();
    mandarin::phonemize("你好").expect("Mandarin G2P");
    let load = started.elapsed();

    let rows = rows(REFERENCE);
    for (sentence, _) in &rows {
        mandarin::phonemize(sentence).expect("phonemes");
    }
    let mut same = 0;
    let started = Instant::now();
    for (sentence, expected) in &rows {
        let got = mandarin::phonemize(sentence).expect("phonemes");
        if got == *expected {
            same += 1;
        } else {
            println!("DIFF {sentence}\n  expected {expected}\n  got      {got}");
        }
    }
    let per_sentence = started.elapsed() / rows.len() as u32;
    let rate = same as f64 / rows.len() as f64;
    println!(
        "{same}/{} identical ({:.1} %); first use {load:?}, then {per_sentence:?} a sentence",
        rows.len(),
        rate * 100.0
    );
    assert!(
        rate >= FLOOR,
        "{same}/{} sentences identical, under {:.0} %",
        rows.len(),
        FLOOR * 100.0
    );
}

#[test]
fn release_then_phonemize_again() {
    let _serial = setup();
    let first = mandarin::phonemize("银行的行长").unwrap();
    mandarin::release();
    assert_eq!(mandarin::phonemize("银行的行长").unwrap(), first);
}

#[test]
fn blank_text_has_no_phonemes() {
    let _serial = setup();
    assert_eq!(mandarin::phonemize("  \n").unwrap(), "");
}
