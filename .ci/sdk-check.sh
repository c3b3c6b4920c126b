#!/usr/bin/env bash
# Python clients against a real voxpool serving the tiny Kokoro and Chatterbox Turbo
# checkpoints from the test fixtures (run by .ci/run after the tests, with their
# debug binary):
# 1. the official OpenAI Python and Node SDKs and the Rust client example
#    (examples/openai_python.py, openai_node.mjs, rust_client.rs) must write files
#    that decode as 24 kHz mono audio;
# 2. an API fuzz run: schemathesis sends generated requests for every operation in
#    /openapi.json; any 5xx, or a response that does not match the spec, fails.
set -euo pipefail
cd "$(dirname "$0")/.."

source .ci/tiny-server.sh
tiny_server openai==3.57.0 mutagen==1.48.1 schemathesis==4.32.5 soundfile==0.13.1

VOXPOOL_URL="http://127.0.0.1:$port/v1" "$work/venv/bin/python" examples/openai_python.py --out-dir "$work/out"
"$work/venv/bin/python" - "$work/out" "$port" <<'PY'
import json, sys, urllib.request, wave
from pathlib import Path
from mutagen.mp3 import MP3
import soundfile as sf

out, port = Path(sys.argv[1]), sys.argv[2]
mp3 = MP3(out / "speech.mp3").info
assert (mp3.sample_rate, mp3.channels) == (24000, 1), (mp3.sample_rate, mp3.channels)
assert mp3.length > 1.0, mp3.length
# Several sentences, read by the SDK as a stream: the WAV header carries the exact
# length, which Python's wave and soundfile read.
wav = out / "streamed.wav"
with wave.open(str(wav)) as w:
    assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
    frames = w.getnframes()
    assert frames == (wav.stat().st_size - 44) // 2, (frames, wav.stat().st_size)
data, rate = sf.read(str(wav))
assert (rate, len(data)) == (24000, frames), (rate, len(data), frames)
pcm = (out / "streamed.pcm").stat().st_size
assert frames > 24000 and pcm == 2 * frames, (frames, pcm)
# FLAC of two sentences: soundfile reads every sample STREAMINFO announces.
body = json.dumps({"model": "tts-1", "input": "One sentence. And a second one.",
                   "voice": "alloy", "response_format": "flac"}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/audio/speech", body,
                             {"Content-Type": "application/json"})
flac = out / "two.flac"
flac.write_bytes(urllib.request.urlopen(req).read())
info = sf.info(str(flac))
data, rate = sf.read(str(flac))
assert (rate, info.frames, len(data)) == (24000, len(data), len(data)) and len(data) > 0, info
print(f"OpenAI SDK: mp3 {mp3.length:.2f} s, wav {frames / 24000:.2f} s, pcm {pcm // 2} samples, flac {len(data)} samples")
PY

# Words as they are spoken (examples/word_timestamps.py): each word printed once, in
# order, with times that never go back; the captions endpoint's WAV and SRT agree.
VOXPOOL_URL="http://127.0.0.1:$port/v1" "$work/venv/bin/python" examples/word_timestamps.py \
  --voice alloy --out-dir "$work/words" | tee "$work/words.txt"
"$work/venv/bin/python" - "$work/words" "$work/words.txt" <<'PY'
import re, sys, wave
from pathlib import Path

out, printed = Path(sys.argv[1]), Path(sys.argv[2]).read_text().splitlines()
timed = [l.split() for l in printed if re.match(r"^\s*\d+\.\d+\s+\d+\.\d+\s+\S", l)]
words = [t[2] for t in timed]
assert words == "Every word has its time Captions follow the voice".split(), words
times = [(float(t[0]), float(t[1])) for t in timed]
assert all(a < b for a, b in times) and all(p[1] <= n[0] for p, n in zip(times, times[1:])), times
pcm = (out / "words.pcm").stat().st_size / 2 / 24000
assert times[-1][1] <= pcm + 1e-3, (times[-1], pcm)
with wave.open(str(out / "captions.wav")) as w:
    seconds = w.getnframes() / w.getframerate()
assert abs(seconds - pcm) < 0.01, (seconds, pcm)
srt = (out / "captions.srt").read_text().strip().split("\n\n")
assert [b.splitlines()[0] for b in srt] == [str(i + 1) for i in range(len(srt))], srt
assert " ".join(" ".join(b.splitlines()[2:]) for b in srt) == " ".join(words), srt
print(f"word timestamps: {len(words)} words over {pcm:.2f} s, {len(srt)} SRT cues")
PY

# The official OpenAI Node SDK (examples/openai_node.mjs) and the Rust client example.
mkdir -p "$work/node"
cp examples/openai_node.mjs "$work/node/"
(cd "$work/node" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund openai@6.49.0)
VOXPOOL_URL="http://127.0.0.1:$port/v1" node "$work/node/openai_node.mjs" "$work/node-out"
[ -x target/debug/examples/rust_client ] || cargo build --example rust_client
VOXPOOL_URL="http://127.0.0.1:$port/v1" target/debug/examples/rust_client \
  "Hello from Rust. A second sentence." "$work/node-out/rust.wav"
"$work/venv/bin/python" - "$work/node-out" <<'PY'
import sys, wave
from pathlib import Path
from mutagen.mp3 import MP3

out = Path(sys.argv[1])
mp3 = MP3(out / "speech.mp3").info
assert (mp3.sample_rate, mp3.channels) == (24000, 1) and mp3.length > 1.0, mp3.pprint()
pcm = (out / "streamed.pcm").stat().st_size
assert pcm > 2 * 24000 and pcm % 2 == 0, pcm
wav = out / "rust.wav"
with wave.open(str(wav)) as w:
    assert (w.getframerate(), w.getnchannels()) == (24000, 1)
    assert (wav.stat().st_size - 44) // 2 > 24000
print(f"Node SDK: mp3 {mp3.length:.2f} s, pcm {pcm // 2} samples; Rust client: wav ok")
PY

# API fuzzing: bounded, with a fixed seed so that a failure replays.
"$work/venv/bin/st" run "http://127.0.0.1:$port/openapi.json" --no-color --seed 1 \
  --max-examples "${VOXPOOL_FUZZ_EXAMPLES:-200}" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance
if grep -q "panicked" "$work/server.log"; then
  echo "the server panicked during the fuzz run:"; grep -A3 panicked "$work/server.log"; exit 1
fi
