//! Agreement of voxpool's G2P (misaki-rs) with the reference Python `misaki`
//! 0.9.4, on the sentences of `tests/fixtures/g2p/sentences.txt`.
//!
//! `tests/fixtures/g2p/misaki_0.9.4.tsv` holds misaki's phonemes (fallback=None,
//! unknown words dropped, whitespace collapsed: the same handling as
//! `voxpool::text::g2p::phonemize`), made by `tools/g2p_reference.py`.
//! Per language the test prints every mismatch and two rates:
//! - exact: sentences whose phoneme string is identical;
//! - similarity: 1 − Levenshtein distance / length of the longer string, in
//!   characters, averaged over sentences.
//!
//! It fails when a rate drops below its floor (just under what was measured),
//! so a regression shows while a gain passes; raise the floors after one.

use voxpool::text::g2p::{phonemize, TextError};
use voxpool::text::Language;

const REFERENCE: &str = include_str!("fixtures/g2p/misaki_0.9.4.tsv");

/// Floors per language: (lang, exact-match rate, mean similarity).
/// Measured with misaki-rs 0.8.0 against misaki 0.9.4 on the 112 sentences:
/// a: 106/112 exact (94.6 %), mean similarity 0.99310;
/// b: 106/112 exact (94.6 %), mean similarity 0.99337.
/// One more mismatching sentence (105/112 = 93.75 %) fails the exact floor.
const FLOORS: [(&str, f64, f64); 2] = [("a", 0.94, 0.992), ("b", 0.94, 0.992)];

struct Row<'a> {
    lang: &'a str,
    sentence: &'a str,
    expected: &'a str,
}

fn rows() -> Vec<Row<'static>> {
    REFERENCE
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("lang\t"))
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let (lang, sentence, expected) = (f.next(), f.next(), f.next());
            Row {
                lang: lang.expect("lang column"),
                sentence: sentence.expect("sentence column"),
                expected: expected.expect("phonemes column"),
            }
        })
        .collect()
}

/// Levenshtein distance in chars.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn similarity(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    1.0 - edit_distance(&a, &b) as f64 / longest as f64
}

#[test]
fn edit_distance_basics() {
    let d = |a: &str, b: &str| {
        edit_distance(
            &a.chars().collect::<Vec<_>>(),
            &b.chars().collect::<Vec<_>>(),
        )
    };
    assert_eq!(d("", ""), 0);
    assert_eq!(d("abc", ""), 3);
    assert_eq!(d("kitten", "sitting"), 3);
    assert_eq!(d("ðə", "ði"), 1);
    assert!((similarity("abcd", "abxd") - 0.75).abs() < 1e-12);
}

#[test]
fn agreement_with_python_misaki() {
    let rows = rows();
    assert!(rows.len() >= 80, "reference has {} rows", rows.len());
    let mut failures = Vec::new();
    for (lang, exact_floor, similarity_floor) in FLOORS {
        let mut n = 0;
        let mut exact = 0;
        let mut sim_sum = 0.0;
        let mut table = String::new();
        for row in rows.iter().filter(|r| r.lang == lang) {
            let language = Language::parse(lang).expect("a language code");
            let got = match phonemize(row.sentence, language) {
                Ok(p) => p,
                Err(TextError::Empty) => String::new(),
                Err(e) => panic!("{lang} {:?}: {e}", row.sentence),
            };
            let sim = similarity(&got, row.expected);
            n += 1;
            sim_sum += sim;
            if got == row.expected {
                exact += 1;
            } else {
                table.push_str(&format!(
                    "{sim:.3}  {}\n       misaki : {}\n       voxpool: {got}\n",
                    row.sentence, row.expected
                ));
            }
        }
        assert!(n > 0, "no rows for {lang}");
        let exact_rate = exact as f64 / n as f64;
        let mean_sim = sim_sum / n as f64;
        println!("--- lang {lang}: mismatches (similarity, sentence) ---\n{table}");
        println!(
            "lang {lang}: exact {exact}/{n} = {:.1} %, mean similarity {mean_sim:.5} \
             (floors {:.1} %, {similarity_floor:.3})\n",
            100.0 * exact_rate,
            100.0 * exact_floor
        );
        if exact_rate < exact_floor || mean_sim < similarity_floor {
            failures.push(format!(
                "{lang}: exact {:.3} (floor {exact_floor}), similarity {mean_sim:.4} (floor {similarity_floor})",
                exact_rate
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "G2P agreement with misaki 0.9.4 regressed: {failures:?}"
    );
}
