#!/usr/bin/env bash
# The official OpenAI Python SDK against a real voxpool (tiny Kokoro checkpoint from
# the test fixtures): examples/openai_python.py must write files that decode as
# 24 kHz mono audio. Run by .ci/run after the tests (it uses their debug binary).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/voxpool
[ -x "$bin" ] || cargo build
work=$(mktemp -d /tmp/voxpool-sdk.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q openai==3.57.0 mutagen==1.48.1

snap="$work/models/models--hexgrad--Kokoro-82M/snapshots/tiny"
mkdir -p "$snap/voices"
cp tests/fixtures/kokoro/tiny.pth "$snap/kokoro-v1_0.pth"
cp tests/fixtures/kokoro/tiny_config.json "$snap/config.json"
cp tests/fixtures/kokoro/voices/tiny_a.pt "$snap/voices/af_alloy.pt"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
VOXPOOL_HOST=127.0.0.1 PORT=$port VOXPOOL_MODELS_DIR="$work/models" \
  VOXPOOL_DB_URL="sqlite://$work/voxpool.db?mode=rwc" "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health')" 2>/dev/null && break
  sleep 0.2
done

VOXPOOL_URL="http://127.0.0.1:$port/v1" "$work/venv/bin/python" examples/openai_python.py --out-dir "$work/out"
"$work/venv/bin/python" - "$work/out" <<'PY'
import sys, wave
from pathlib import Path
from mutagen.mp3 import MP3

out = Path(sys.argv[1])
mp3 = MP3(out / "speech.mp3").info
assert (mp3.sample_rate, mp3.channels) == (24000, 1), (mp3.sample_rate, mp3.channels)
assert mp3.length > 1.0, mp3.length
with wave.open(str(out / "streamed.wav")) as w:
    assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
    frames = w.getnframes()
pcm = (out / "streamed.pcm").stat().st_size
assert frames > 24000 and pcm == 2 * frames, (frames, pcm)
print(f"OpenAI SDK: mp3 {mp3.length:.2f} s, wav {frames / 24000:.2f} s, pcm {pcm // 2} samples")
PY
