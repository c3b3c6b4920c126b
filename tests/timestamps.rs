//! Word timestamps over HTTP with the tiny Kokoro in its worker: SSE word events,
//! `POST /v1/audio/speech/captions` (JSON, WebVTT, SRT), `speed`, several sentences,
//! phoneme input, every language this machine speaks, and the refusals.

mod common;
mod packs;

use common::{start, TestServer};
use serde_json::{json, Value};

/// A server with the tiny Kokoro (voices `tiny_a`, `tiny_b`, and `jf_tiny` reading
/// Japanese).
async fn kokoro_server() -> TestServer {
    let srv = start().await;
    let models = srv.dir.path().join("models");
    common::install_tiny_kokoro(&models);
    let voices = models.join("models--hexgrad--Kokoro-82M/snapshots/tiny/voices");
    std::fs::copy(voices.join("tiny_a.pt"), voices.join("jf_tiny.pt")).unwrap();
    srv
}

#[derive(Debug, Clone, PartialEq)]
struct Word {
    word: String,
    start: f64,
    end: f64,
}

fn words_of(list: &Value) -> Vec<Word> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list of words: {list}"))
        .iter()
        .map(|w| Word {
            word: w["word"].as_str().unwrap().to_string(),
            start: w["start"].as_f64().unwrap(),
            end: w["end"].as_f64().unwrap(),
        })
        .collect()
}

/// Times start at or after 0, never go back, and end by `duration`.
fn assert_ordered(words: &[Word], duration: f64) {
    let mut last_end = 0.0;
    for w in words {
        assert!(w.start >= 0.0 && w.end > w.start, "{w:?}");
        assert!(w.start + 1e-9 >= last_end, "{w:?} starts before {last_end}");
        last_end = w.end;
    }
    assert!(last_end <= duration + 1e-3, "{last_end} past {duration}");
}

/// POST `body` to the captions endpoint.
async fn captions(srv: &TestServer, body: Value) -> (u16, Value) {
    srv.post("/v1/audio/speech/captions", body).await
}

/// Samples of a base64 WAV.
fn wav_seconds(b64: &str) -> f64 {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let (rate, samples) = common::wav_decode(&bytes);
    samples.len() as f64 / f64::from(rate)
}

#[tokio::test]
async fn sse_carries_each_sentences_words_in_order() {
    let srv = kokoro_server().await;
    let input = "The quick brown fox jumps. It lands softly on the grass!";
    let body = json!({"model": "kokoro", "input": input, "voice": "tiny_a",
        "response_format": "pcm", "stream_format": "sse", "timestamps": "word"});
    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut words = Vec::new();
    let mut word_events = 0;
    let mut types = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let event: Value = serde_json::from_str(line).unwrap();
        types.push(event["type"].as_str().unwrap().to_string());
        if event["type"] == "speech.audio.words" {
            word_events += 1;
            words.extend(words_of(&event["words"]));
        }
    }
    assert_eq!(word_events, 2, "one event per sentence: {types:?}");
    assert_eq!(types.last().unwrap(), "speech.audio.done");
    let (audio, _) = common::sse_audio(&text);
    let duration = audio.len() as f64 / 2.0 / 24_000.0;
    let spoken: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(
        spoken,
        ["The", "quick", "brown", "fox", "jumps", "It", "lands", "softly", "on", "the", "grass"]
    );
    assert_ordered(&words, duration);
    // The second sentence's words are timed from the start of the whole audio.
    assert!(words[5].start > words[4].end);

    // Asking for words changes nothing in the audio.
    let mut plain = body.clone();
    plain.as_object_mut().unwrap().remove("timestamps");
    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&plain)
        .send()
        .await
        .unwrap();
    let plain_text = resp.text().await.unwrap();
    assert!(!plain_text.contains("speech.audio.words"));
    assert_eq!(common::sse_audio(&plain_text).0, audio);
}

#[tokio::test]
async fn captions_come_as_json_vtt_and_srt() {
    let srv = kokoro_server().await;
    let input = "Captions make videos easier to follow. Every word has its time.";
    let (code, json_body) = captions(
        &srv,
        json!({"model": "kokoro", "input": input, "voice": "tiny_a", "response_format": "wav"}),
    )
    .await;
    assert_eq!(code, 200, "{json_body}");
    assert_eq!(json_body["format"], "wav");
    assert!(json_body["captions"].is_null());
    let seconds = wav_seconds(json_body["audio"].as_str().unwrap());
    let duration = json_body["duration"].as_f64().unwrap();
    assert!((seconds - duration).abs() < 1e-3, "{seconds} vs {duration}");
    let words = words_of(&json_body["words"]);
    assert_eq!(words.len(), 11, "{words:?}");
    assert_eq!(words[0].word, "Captions");
    assert_ordered(&words, duration);
    // The last word ends with the speech; only the closing pad's silence follows.
    assert!(duration - words.last().unwrap().end < 0.5);

    // WebVTT: a header, then cues whose times parse and follow the words.
    let (code, vtt) = captions(
        &srv,
        json!({"model": "kokoro", "input": input, "voice": "tiny_a", "captions_format": "vtt"}),
    )
    .await;
    assert_eq!(code, 200, "{vtt}");
    assert_eq!(vtt["format"], "mp3");
    assert_eq!(
        words_of(&vtt["words"]),
        words,
        "the same words for any format"
    );
    let vtt = vtt["captions"].as_str().unwrap();
    let cues = parse_cues(vtt.strip_prefix("WEBVTT\n").expect("WEBVTT header"), '.');
    check_cues(&cues, &words);

    let (code, srt) = captions(
        &srv,
        json!({"model": "kokoro", "input": input, "voice": "tiny_a", "captions_format": "srt"}),
    )
    .await;
    assert_eq!(code, 200);
    let srt = srt["captions"].as_str().unwrap();
    let blocks: Vec<&str> = srt.split("\n\n").collect();
    for (i, block) in blocks.iter().enumerate() {
        assert_eq!(block.lines().next().unwrap(), (i + 1).to_string(), "{srt}");
    }
    let cues = parse_cues(srt, ',');
    check_cues(&cues, &words);
}

/// `(start, end, text)` of each cue in a VTT body (after its header) or an SRT file.
fn parse_cues(body: &str, separator: char) -> Vec<(f64, f64, String)> {
    let time = |t: &str| {
        let (hms, ms) = t.trim().split_once(separator).expect("milliseconds");
        let parts: Vec<f64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
        assert_eq!(parts.len(), 3, "{t}");
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2] + ms.parse::<f64>().unwrap() / 1000.0
    };
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let lines: Vec<&str> = block.trim().lines().collect();
            let at = lines
                .iter()
                .position(|l| l.contains(" --> "))
                .expect("a timing line");
            let (from, to) = lines[at].split_once(" --> ").unwrap();
            (time(from), time(to), lines[at + 1..].join(" "))
        })
        .collect()
}

/// Cues hold every word once, in order, and their times follow the words'.
fn check_cues(cues: &[(f64, f64, String)], words: &[Word]) {
    assert!(!cues.is_empty());
    let text: Vec<String> = cues.iter().map(|c| c.2.clone()).collect();
    let spoken: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(text.join(" "), spoken.join(" "));
    assert!((cues[0].0 - words[0].start).abs() < 0.002);
    assert!((cues.last().unwrap().1 - words.last().unwrap().end).abs() < 0.002);
    for pair in cues.windows(2) {
        assert!(pair[0].0 < pair[0].1 && pair[0].1 <= pair[1].0, "{cues:?}");
    }
}

#[tokio::test]
async fn times_follow_speed() {
    let srv = kokoro_server().await;
    let mut ends = Vec::new();
    for speed in [0.5, 1.0, 2.0] {
        let (code, body) = captions(
            &srv,
            json!({"model": "kokoro", "input": "Slow down, then speed up again.",
                "voice": "tiny_a", "response_format": "wav", "speed": speed}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let words = words_of(&body["words"]);
        let duration = body["duration"].as_f64().unwrap();
        assert_eq!(words.len(), 6);
        assert_ordered(&words, duration);
        ends.push(words.last().unwrap().end);
    }
    // Half speed takes about twice as long as normal, double speed about half.
    assert!(
        ends[0] > 1.6 * ends[1] && ends[1] > 1.6 * ends[2],
        "{ends:?}"
    );
}

#[tokio::test]
async fn phoneme_input_is_timed_word_by_word() {
    let srv = kokoro_server().await;
    let (code, body) = captions(
        &srv,
        json!({"model": "kokoro", "input": "hˈI fˈɑks, wˈʌn tˈu.", "voice": "tiny_a",
            "input_format": "phonemes", "response_format": "wav"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let words = words_of(&body["words"]);
    let spoken: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(spoken, ["hˈI", "fˈɑks,", "wˈʌn", "tˈu."]);
    assert_ordered(&words, body["duration"].as_f64().unwrap());
}

#[tokio::test]
async fn refusals_name_their_field() {
    let srv = kokoro_server().await;
    let cases = [
        (
            "/v1/audio/speech",
            json!({"model": "kokoro", "input": "Hi.", "voice": "tiny_a", "timestamps": "word"}),
            "timestamps",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "kokoro", "input": "Hi.", "voice": "tiny_a", "stream_format": "sse", "timestamps": "letters"}),
            "timestamps",
        ),
        (
            "/v1/audio/speech/captions",
            json!({"model": "kokoro", "input": "Hi.", "voice": "tiny_a", "stream_format": "sse"}),
            "stream_format",
        ),
        (
            "/v1/audio/speech/captions",
            json!({"model": "kokoro", "input": "Hi.", "voice": "tiny_a", "captions_format": "ass"}),
            "captions_format",
        ),
        (
            "/v1/audio/speech/captions",
            json!({"model": "kokoro", "input": "Hi.", "voice": "tiny_a", "subtitles": true}),
            "subtitles",
        ),
        (
            "/v1/audio/speech/captions",
            json!({"model": "kokoro", "input": "", "voice": "tiny_a"}),
            "input",
        ),
        // Chatterbox Turbo has no alignment between its text and its audio.
        (
            "/v1/audio/speech/captions",
            json!({"model": "chatterbox-turbo", "input": "Hi.", "voice": "default"}),
            "timestamps",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "chatterbox-turbo", "input": "Hi.", "voice": "default",
                "stream_format": "sse", "timestamps": "word"}),
            "timestamps",
        ),
    ];
    for (path, body, param) in cases {
        let (code, answer) = srv.post(path, body.clone()).await;
        assert_eq!(code, 400, "{body} -> {answer}");
        assert_eq!(answer["error"]["param"], param, "{body} -> {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 10);
    }
    // Refusing Turbo loaded nothing.
    let (_, status) = srv.get("/model/status?model=chatterbox-turbo").await;
    assert_ne!(status["model_loaded"], true, "{status}");
}

/// Every language this machine speaks gives words in order; Japanese and Chinese
/// words are the segmenter's.
#[tokio::test]
async fn every_language_is_timed() {
    packs::setup();
    let srv = kokoro_server().await;
    let sentences = [
        ("a", "Good morning, everyone."),
        ("b", "The weather is lovely today."),
        ("e", "El tren sale a las nueve."),
        ("f", "Le train part à neuf heures."),
        ("h", "मुझे चाय पसंद है।"),
        ("i", "Il treno parte alle nove."),
        ("j", "東京は大きな町です。"),
        ("p", "O trem sai às nove horas."),
        ("z", "我们明天去北京。"),
    ];
    let available: Vec<String> = voxpool::text::g2p::available_languages()
        .iter()
        .map(|l| l.code().to_string())
        .collect();
    for (language, input) in sentences {
        if !available.iter().any(|a| a == language) {
            eprintln!("skipped {language}: not available here");
            continue;
        }
        let (code, body) = captions(
            &srv,
            json!({"model": "kokoro", "input": input, "voice": "tiny_a", "language": language,
                "response_format": "wav"}),
        )
        .await;
        assert_eq!(code, 200, "{language}: {body}");
        let words = words_of(&body["words"]);
        assert!(words.len() >= 3, "{language}: {words:?}");
        assert_ordered(&words, body["duration"].as_f64().unwrap());
        // Each word is written in the input (after the G2P's normalisation).
        let mut rest = input.to_lowercase();
        for w in &words {
            let at = rest
                .find(&w.word.to_lowercase())
                .unwrap_or_else(|| panic!("{language}: {:?} not in order in {input}", w.word));
            rest = rest[at + w.word.len()..].to_string();
        }
        if language == "j" {
            assert!(words.iter().any(|w| w.word == "東京"), "{words:?}");
        }
        if language == "z" {
            assert!(words.iter().any(|w| w.word == "北京"), "{words:?}");
        }
    }
}
