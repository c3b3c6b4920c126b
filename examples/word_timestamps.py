"""Words as they are spoken, through the official OpenAI Python SDK (voxpool's
`timestamps` extension, Kokoro only).

    pip install openai
    python examples/word_timestamps.py [--voice af_heart] [--out-dir .] [--text "..."]

Streams the speech as server-sent events with `"timestamps": "word"`: the audio comes
in `speech.audio.delta` events and each sentence's words in `speech.audio.words`
events, which this prints as they arrive (start and end in seconds from the start of
the audio). Writes the audio to words.pcm (24 kHz 16-bit mono), then asks
`POST /v1/audio/speech/captions` for the same speech as a WAV file with SRT captions,
written to captions.wav and captions.srt. The server address comes from VOXPOOL_URL
(default http://localhost:5005/v1); VOXPOOL_API_KEY is sent as the bearer token when
the server asks for one.
"""
import argparse
import base64
import json
import os
from pathlib import Path

from openai import OpenAI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="kokoro")
    ap.add_argument("--voice", default="af_heart")
    ap.add_argument("--out-dir", type=Path, default=Path("."))
    ap.add_argument("--text", default="Every word has its time. Captions follow the voice.")
    args = ap.parse_args()

    client = OpenAI(
        base_url=os.environ.get("VOXPOOL_URL", "http://localhost:5005/v1"),
        api_key=os.environ.get("VOXPOOL_API_KEY", "not-needed"),
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)

    audio = bytearray()
    words = 0
    with client.audio.speech.with_streaming_response.create(
        model=args.model,
        voice=args.voice,
        input=args.text,
        response_format="pcm",
        stream_format="sse",
        extra_body={"timestamps": "word"},
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: "):])
            if event["type"] == "speech.audio.delta":
                audio += base64.b64decode(event["audio"])
            elif event["type"] == "speech.audio.words":
                for word in event["words"]:
                    print(f"{word['start']:7.3f} {word['end']:7.3f}  {word['word']}", flush=True)
                    words += 1
    (args.out_dir / "words.pcm").write_bytes(audio)
    print(f"{words} words, {len(audio) / 2 / 24000:.2f} s of audio")

    # The whole file with its words and captions in one answer.
    captions = client.post(
        "/audio/speech/captions",
        body={"model": args.model, "voice": args.voice, "input": args.text,
              "response_format": "wav", "captions_format": "srt"},
        cast_to=object,
    )
    (args.out_dir / "captions.wav").write_bytes(base64.b64decode(captions["audio"]))
    (args.out_dir / "captions.srt").write_text(captions["captions"])
    print(f"captions.srt: {len(captions['words'])} words over {captions['duration']:.2f} s")


if __name__ == "__main__":
    main()
