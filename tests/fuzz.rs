//! Fuzzing with proptest: arbitrary text through sentence chunking, G2P, phoneme
//! chunking, the Kokoro vocabulary and Turbo's punctuation normalisation and
//! tokenizer, damaged voice uploads through the reference-clip decoder, and arbitrary
//! request bodies against a live server. Nothing may panic;
//! requests get a 2xx or a 4xx, never a 5xx. Bounded by the case count
//! (`PROPTEST_CASES` raises it).

mod common;

use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;
use voxpool::engine::chatterbox::text::{punc_norm, TextTokenizer};
use voxpool::engine::kokoro::vocab;
use voxpool::text::chunk::{split_sentences, MAX_CHUNK_CHARS};
use voxpool::text::g2p::{phonemize, split_phonemes, MAX_PHONEMES};
use voxpool::text::Language;

/// Text that looks like what people send: words, digits, punctuation, symbols,
/// currency, URLs, CJK, emoji, control characters and long runs without spaces.
fn texty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z]{1,12}",
        "[0-9]{1,9}",
        "[0-9]{1,3}[.,][0-9]{1,4}",
        r"[$£€¥][0-9]{1,7}(\.[0-9]{2})?",
        r"[.,;:!?'\x22()\[\]{}<>/\\@#%&*+=_~^|-]{1,4}",
        "https?://[a-z]{1,8}\\.[a-z]{2,3}(/[a-z0-9]{0,6})?",
        "[0-9]{1,2}:[0-9]{2}(am|pm)?",
        "[0-9]{4}s?",
        "\\PC{1,6}",
        "[\\x00-\\x1f]{1,2}",
        "[a-z]{40,80}",
        Just("\n".to_string()),
        Just("   ".to_string()),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|p| p.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sentence_chunks_are_bounded_and_keep_the_text(text in texty()) {
        let chunks = split_sentences(&text);
        for c in &chunks {
            prop_assert!(!c.trim().is_empty());
            prop_assert!(c.chars().count() <= MAX_CHUNK_CHARS);
        }
        let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        prop_assert_eq!(squash(&chunks.concat()), squash(&text));
    }

    #[test]
    fn g2p_never_panics_and_its_chunks_fit_the_model(text in texty(), british in any::<bool>()) {
        let lang = if british { Language::BritishEnglish } else { Language::AmericanEnglish };
        if let Ok(phonemes) = phonemize(&text, lang) {
            for piece in split_phonemes(&phonemes) {
                prop_assert!(piece.chars().count() <= MAX_PHONEMES);
                let _ = vocab::encode(vocab::v1_0(), &piece);
                let _ = vocab::tokens_lossy(vocab::v1_0(), &piece);
            }
        }
    }

    #[test]
    fn phoneme_input_is_split_or_refused_never_panics(phonemes in "\\PC{0,1200}") {
        for piece in split_phonemes(&phonemes) {
            prop_assert!(piece.chars().count() <= MAX_PHONEMES);
        }
        let _ = vocab::encode(vocab::v1_0(), &phonemes);
    }

    #[test]
    fn turbo_text_front_end_never_panics(text in texty()) {
        let tokenizer = TextTokenizer::from_dir(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/chatterbox/tokenizer"
        )))
        .unwrap();
        let normalised = punc_norm(&text);
        let _ = tokenizer.encode(&normalised);
    }
}

/// JSON values of any shape, biased towards the speech request's fields.
/// Valid recordings in every accepted format, to damage.
fn recordings() -> Vec<Vec<u8>> {
    use voxpool::audio::{encode, AudioFormat};
    let tone: Vec<f32> = (0..24_000).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
    let ogg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/audio/voice_6s.ogg"
    ))
    .unwrap();
    vec![
        encode(AudioFormat::Wav, &tone, 24_000).unwrap(),
        encode(AudioFormat::Mp3, &tone, 24_000).unwrap(),
        encode(AudioFormat::Flac, &tone, 24_000).unwrap(),
        ogg,
    ]
}

#[test]
fn damaged_uploads_are_refused_or_decoded_never_panic() {
    let bases = recordings();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(160));
    let damage = (
        0..bases.len() + 1,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..24),
        prop::option::of(any::<prop::sample::Index>()),
        prop::collection::vec(any::<u8>(), 0..256),
    );
    runner
        .run(&damage, |(which, flips, cut, noise)| {
            let mut bytes = bases.get(which).cloned().unwrap_or(noise);
            if !bytes.is_empty() {
                for (at, value) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len()));
                }
            }
            // Either a clip or a client error; prepare must return, not panic.
            if let Ok(clip) = voxpool::audio::clip::prepare(&bytes) {
                prop_assert!(clip.wav_24k.iter().all(|s| s.is_finite()));
                prop_assert!(clip.seconds() > voxpool::audio::clip::MIN_SECONDS);
            }
            Ok(())
        })
        .unwrap();
}

fn request_body() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,40}".prop_map(Value::from),
        prop_oneof![
            Just("test-tts"),
            Just("tts-1"),
            Just("alloy"),
            Just("wav"),
            Just("pcm"),
            Just("mp3"),
            Just("sse"),
            Just("audio"),
            Just("phonemes"),
            Just("text"),
        ]
        .prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::hash_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let field = prop_oneof![
        Just("model"),
        Just("input"),
        Just("voice"),
        Just("response_format"),
        Just("speed"),
        Just("stream_format"),
        Just("input_format"),
        Just("instructions"),
        Just("extra"),
    ];
    prop::collection::vec((field, value), 0..8).prop_map(|fields| {
        let mut obj = serde_json::Map::new();
        for (k, v) in fields {
            obj.insert(k.to_string(), v);
        }
        Value::Object(obj)
    })
}

#[test]
fn arbitrary_speech_requests_never_get_a_server_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(common::start());
    let url = srv.url("/v1/audio/speech");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(200));
    let result = runner.run(&request_body(), |body| {
        let (status, text) = rt.block_on(async {
            let resp = srv.client.post(&url).json(&body).send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        });
        prop_assert!(status < 500, "{status} for {body}: {text}");
        if status >= 400 {
            let err: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            prop_assert!(
                err["error"]["message"].is_string(),
                "{status} for {body}: {text}"
            );
        }
        Ok(())
    });
    // Raw bytes that are not JSON at all.
    for raw in [
        &b"\x00"[..],
        b"{",
        b"[]",
        b"\"x\"",
        b"{\"input\": \"\xff\xfe\"}",
        b"nul",
    ] {
        let status = rt.block_on(async {
            srv.client
                .post(&url)
                .header("content-type", "application/json")
                .body(raw.to_vec())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(raw));
    }
    rt.block_on(srv.stop());
    result.unwrap();
}
