#!/usr/bin/env bash
# The web page at / in headless Chromium (Debian's chromium + chromium-driver, driven
# by Selenium from PyPI) against a real voxpool with the tiny test checkpoints: type
# text, click Speak, check the audio element holds decodable audio, click Unload and
# see the model panel change. Saves a screenshot to ${WEB_SCREENSHOT:-target/web-check.png}.
# Run by .ci/run after the tests (it uses their debug binary).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/voxpool
[ -x "$bin" ] || cargo build
work=$(mktemp -d /tmp/voxpool-web.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q selenium==4.38.0 safetensors==0.7.0 numpy==2.4.6
bash .ci/tiny-models.sh "$work/models" "$work/venv/bin/python"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
VOXPOOL_HOST=127.0.0.1 PORT=$port VOXPOOL_MODELS_DIR="$work/models" \
  VOXPOOL_DB_URL="sqlite:///$work/voxpool.db" "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health')" 2>/dev/null && break
  sleep 0.2
done

shot="${WEB_SCREENSHOT:-target/web-check.png}"
mkdir -p "$(dirname "$shot")"
"$work/venv/bin/python" .ci/web_check.py "http://127.0.0.1:$port/" "$shot"
