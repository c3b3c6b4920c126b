//! Every response format this build encodes, decoded back: sample rate, channels,
//! duration and `Content-Type` as a client sees them.

mod common;

use common::{expected_samples, start, MODEL};
use serde_json::json;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Decodes a whole file: (sample rate, channels, mono samples).
fn decode(bytes: Vec<u8>, extension: &str) -> (u32, usize, Vec<f32>) {
    let stream = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .expect("a known container");
    let mut format = probed.format;
    let track = format.default_track().expect("one track").clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .expect("a known codec");
    let (mut rate, mut channels, mut out) = (0, 0, Vec::new());
    while let Ok(packet) = format.next_packet() {
        let decoded = decoder.decode(&packet).expect("decodable packet");
        let spec = *decoded.spec();
        rate = spec.rate;
        channels = spec.channels.count();
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        out.extend_from_slice(buf.samples());
    }
    (rate, channels, out)
}

#[tokio::test]
async fn each_format_decodes_to_the_spoken_audio() {
    let srv = start().await;
    let text = "A sentence long enough to fill some frames.";
    let want = expected_samples(text, 1.0);
    // (format asked, extension, content type); no format means OpenAI's default, mp3.
    for (format, ext, content_type) in [
        (Some("mp3"), "mp3", "audio/mpeg"),
        (None, "mp3", "audio/mpeg"),
        (Some("flac"), "flac", "audio/flac"),
        (Some("wav"), "wav", "audio/wav"),
        (Some("aac"), "aac", "audio/aac"),
    ] {
        let mut body = json!({"model": MODEL, "input": text, "voice": "alloy"});
        if let Some(f) = format {
            body["response_format"] = json!(f);
        }
        let resp = srv
            .client
            .post(srv.url("/v1/audio/speech"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{format:?}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            content_type,
            "{format:?}"
        );
        let (rate, channels, samples) = decode(resp.bytes().await.unwrap().to_vec(), ext);
        assert_eq!((rate, channels), (24_000, 1), "{format:?}");
        let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.2, "{format:?}: peak {peak}");
        if ext == "mp3" {
            // LAME's encoder delay (1105 samples) comes first, and the end is padded
            // to whole 576-sample frames.
            assert!(
                samples.len() >= want && samples.len() <= want + 1105 + 2 * 576,
                "{format:?}: {} samples for {want}",
                samples.len()
            );
        } else if ext == "aac" {
            // One frame of encoder priming first, the end padded to whole 1024-sample
            // frames, and the encoder's overlap flushed as one more frame.
            assert!(
                samples.len() >= want + 1024 && samples.len() <= want + 3 * 1024,
                "{format:?}: {} samples for {want}",
                samples.len()
            );
        } else {
            assert_eq!(samples.len(), want, "{format:?}");
        }
    }

    // Ogg Opus (symphonia has no Opus decoder): the headers, the final granule
    // position at exactly the samples spoken, and packets that decode to the tone.
    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": MODEL, "input": text, "voice": "alloy", "response_format": "opus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/ogg");
    let bytes = resp.bytes().await.unwrap().to_vec();
    let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
    let head = reader.read_packet().unwrap().unwrap().data;
    assert_eq!(&head[..8], b"OpusHead");
    assert_eq!(head[9], 1, "one channel");
    let pre_skip = u64::from(u16::from_le_bytes([head[10], head[11]]));
    assert_eq!(
        u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
        24_000
    );
    assert_eq!(
        &reader.read_packet().unwrap().unwrap().data[..8],
        b"OpusTags"
    );
    let mut decoder = opus_rs::OpusDecoder::new(48_000, 1).unwrap();
    let (mut decoded, mut end) = (Vec::new(), 0);
    let mut frame = vec![0f32; 5_760];
    while let Some(packet) = reader.read_packet().unwrap() {
        let n = decoder.decode(&packet.data, 5_760, &mut frame).unwrap();
        decoded.extend_from_slice(&frame[..n]);
        end = packet.absgp_page();
    }
    assert_eq!(end - pre_skip, 2 * want as u64, "final granule position");
    assert!(decoded.len() as u64 >= end);
    let peak = decoded.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.2, "opus: peak {peak}");
    srv.stop().await;
}

/// `mp3` and `pcm` are sent sentence by sentence: the first bytes arrive while the
/// model is still speaking (its lease is held), the pieces join into the same audio as
/// a whole file, and a client that leaves stops the synthesis and frees the lease.
#[tokio::test]
async fn audio_streams_sentence_by_sentence_and_stops_when_the_client_leaves() {
    use futures_util::StreamExt;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let srv = start().await;
    let sentences = ["First sentence here.", "Then a second one.", "And a third."];
    let text = sentences.join(" ");
    let want: usize = sentences.iter().map(|s| expected_samples(s, 1.0)).sum();
    // Each sentence takes a second, so the checks below run well before the next.
    srv.knobs.synth_delay_ms.store(1000, Ordering::SeqCst);
    let request = || {
        srv.client
            .post(srv.url("/v1/audio/speech"))
            .json(
                &json!({"model": MODEL, "input": text, "voice": "alloy", "response_format": "pcm"}),
            )
            .send()
    };

    let resp = request().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    // At most the first sentence has been spoken (the transport may split it).
    assert!(!first.is_empty() && first.len() <= 2 * expected_samples(sentences[0], 1.0));
    let busy = srv.status().await;
    assert_eq!(busy["in_flight"], 1, "{busy}");
    let mut all = first.to_vec();
    while let Some(chunk) = body.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(all.len(), 2 * want);
    assert!(
        srv.wait_status(Duration::from_secs(5), |s| s["in_flight"] == 0)
            .await
    );

    // Leave after the first sentence of eight: the server notices at its next writes
    // (TCP reports the closed peer one write late), stops speaking, the lease comes
    // back, and the usage row says the client left (499) with only the audio made.
    srv.knobs.synth_delay_ms.store(300, Ordering::SeqCst);
    let long = ["One more sentence."; 8].join(" ");
    let all_eight = 8 * expected_samples("One more sentence.", 1.0);
    let resp = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": MODEL, "input": long, "voice": "alloy", "response_format": "pcm"}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    assert!(
        srv.wait_status(Duration::from_secs(5), |s| s["in_flight"] == 0)
            .await
    );
    let store = srv.server.as_ref().unwrap().store();
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = store.recent_usage(10).await.unwrap();
        if rows.iter().any(|r| r.usage.status == 499) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = rows
        .iter()
        .find(|r| r.usage.status == 499)
        .expect("a row for the request the client left");
    assert!(
        left.usage.audio_seconds < all_eight as f64 / 24_000.0,
        "{:?}",
        left.usage
    );
    assert!(rows.iter().any(|r| r.usage.status == 200));
    srv.stop().await;
}

/// `wav` and `flac` stream too when the input has several sentences: the first
/// sentence's bytes come while the rest is spoken, the header leaves the length
/// unknown (RIFF/data sizes 0xFFFFFFFF; STREAMINFO total 0), and decoders read every
/// sample. One sentence gets the exact file.
#[tokio::test]
async fn wav_and_flac_carry_their_exact_length() {
    let srv = start().await;
    let sentences = [
        "First sentence here.",
        "Then a second one.",
        "And a third.",
        "A fourth follows.",
        "The fifth ends it.",
    ];
    for n in [1, 2, 5] {
        let text = sentences[..n].join(" ");
        let want: usize = sentences[..n]
            .iter()
            .map(|s| expected_samples(s, 1.0))
            .sum();
        for format in ["wav", "flac"] {
            let bytes = srv
                .client
                .post(srv.url("/v1/audio/speech"))
                .json(&json!({"model": MODEL, "input": text, "voice": "alloy", "response_format": format}))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec();
            // The header's length is the audio's.
            let in_header = if format == "wav" {
                hound::WavReader::new(std::io::Cursor::new(&bytes))
                    .unwrap()
                    .len() as usize
            } else {
                let packed = u64::from_be_bytes(bytes[18..26].try_into().unwrap());
                (packed & ((1 << 36) - 1)) as usize
            };
            let (rate, channels, samples) = decode(bytes, format);
            assert_eq!(
                (rate, channels, samples.len(), in_header),
                (24_000, 1, want, want),
                "{format}, {n} sentences"
            );
        }
    }
    // Over SSE the pieces stream, the length left open as OpenAI leaves it.
    let text = sentences[..3].join(" ");
    let want: usize = sentences[..3]
        .iter()
        .map(|s| expected_samples(s, 1.0))
        .sum();
    let body = srv
        .client
        .post(srv.url("/v1/audio/speech"))
        .json(&json!({"model": MODEL, "input": text, "voice": "alloy", "response_format": "wav", "stream_format": "sse"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (wav, deltas) = common::sse_audio(&body);
    assert!(deltas > 1, "{body}");
    assert_eq!(&wav[4..8], &[0xff; 4]);
    assert_eq!(decode(wav, "wav").2.len(), want);
    srv.stop().await;
}

/// `stream_format: "sse"`: OpenAI's `speech.audio.delta` events with base64 audio,
/// then `speech.audio.done` with usage.
#[tokio::test]
async fn sse_sends_audio_deltas_then_usage() {
    use base64::Engine as _;

    let srv = start().await;
    let text = "One sentence. Another sentence.";
    let want = expected_samples("One sentence.", 1.0) + expected_samples("Another sentence.", 1.0);
    for format in ["pcm", "mp3", "wav"] {
        let resp = srv
            .client
            .post(srv.url("/v1/audio/speech"))
            .json(&json!({"model": MODEL, "input": text, "voice": "alloy",
                "response_format": format, "stream_format": "sse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let body = resp.text().await.unwrap();
        let events: Vec<serde_json::Value> = body
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data line")).unwrap())
            .collect();
        let (last, deltas) = events.split_last().unwrap();
        assert!(!deltas.is_empty(), "{format}");
        let mut audio = Vec::new();
        for d in deltas {
            assert_eq!(d["type"], "speech.audio.delta", "{format}");
            audio.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(d["audio"].as_str().unwrap())
                    .unwrap(),
            );
        }
        assert_eq!(last["type"], "speech.audio.done", "{format}");
        let usage = &last["usage"];
        assert_eq!(usage["input_tokens"], text.chars().count());
        let output = (want as f64 / 24_000.0 / 0.02).round() as u64;
        assert_eq!(usage["output_tokens"], output);
        assert_eq!(usage["total_tokens"], text.chars().count() as u64 + output);
        match format {
            "pcm" => assert_eq!(audio.len(), 2 * want),
            "wav" => assert_eq!(common::wav_samples(&audio), (24_000, want)),
            _ => {
                let (rate, channels, samples) = decode(audio, format);
                assert_eq!((rate, channels), (24_000, 1));
                assert!(samples.len() >= want);
            }
        }
    }
    srv.stop().await;
}
