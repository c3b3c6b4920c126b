"""voxpool through the official OpenAI Python SDK: only `base_url` changes.

    pip install openai
    python examples/openai_python.py [--voice af_heart] [--model tts-1] [--out-dir .]

Writes speech.mp3 (a whole response, OpenAI's default format), streamed.wav (read
as it is spoken, with `with_streaming_response`) and streamed.pcm (raw 24 kHz
16-bit mono, the format to play while it arrives). The server address comes from
VOXPOOL_URL (default http://localhost:5005/v1); VOXPOOL_API_KEY is sent as the
bearer token when the server asks for one.
"""
import argparse
import os
from pathlib import Path

from openai import OpenAI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tts-1")
    ap.add_argument("--voice", default="alloy")
    ap.add_argument("--out-dir", type=Path, default=Path("."))
    ap.add_argument("--text", default="Hello from voxpool. This sentence is streamed after the first.")
    args = ap.parse_args()

    client = OpenAI(
        base_url=os.environ.get("VOXPOOL_URL", "http://localhost:5005/v1"),
        api_key=os.environ.get("VOXPOOL_API_KEY", "not-needed"),
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)

    # A whole file; the SDK asks for mp3 unless told otherwise.
    speech = client.audio.speech.create(model=args.model, voice=args.voice, input=args.text)
    speech.write_to_file(args.out_dir / "speech.mp3")

    # Streamed: the body is written as the server sends each sentence.
    for fmt in ("wav", "pcm"):
        with client.audio.speech.with_streaming_response.create(
            model=args.model, voice=args.voice, input=args.text, response_format=fmt
        ) as response:
            response.stream_to_file(args.out_dir / f"streamed.{fmt}")

    for name in ("speech.mp3", "streamed.wav", "streamed.pcm"):
        print(f"{args.out_dir / name}: {(args.out_dir / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
