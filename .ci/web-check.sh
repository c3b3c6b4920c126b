#!/usr/bin/env bash
# The web page at / in headless Chromium (Debian's chromium + chromium-driver, driven
# by Selenium from PyPI) against a real voxpool with the tiny test checkpoints: type
# text, click Speak, check the audio element holds decodable audio, click Unload and
# see the model panel change, clone a voice from an uploaded recording, speak with it
# and delete it; then, against a second server with an empty models folder, watch the
# model panel's download bar while Kokoro's files come from a stand-in hub. Saves a
# screenshot to ${WEB_SCREENSHOT:-target/web-check.png}.
# Run by .ci/run after the tests (it uses their debug binary).
set -euo pipefail
cd "$(dirname "$0")/.."

source .ci/tiny-server.sh
tiny_server selenium==4.38.0

shot="${WEB_SCREENSHOT:-target/web-check.png}"
mkdir -p "$(dirname "$shot")"
"$work/venv/bin/python" .ci/web_check.py "http://127.0.0.1:$port/" "$shot"

# A download from a stand-in hub, seen in the model panel.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
hub_port=$(free_port)
port2=$(free_port)
"$work/venv/bin/python" .ci/stand_in_hub.py "$work/models/models--hexgrad--Kokoro-82M/snapshots/tiny" \
  hexgrad/Kokoro-82M "$hub_port" 15 &
hub_pid=$!
VOXPOOL_HOST=127.0.0.1 PORT=$port2 VOXPOOL_MODELS_DIR="$work/empty" HF_ENDPOINT="http://127.0.0.1:$hub_port" \
  VOXPOOL_DB_URL="sqlite:///$work/download.db" target/debug/voxpool serve >"$work/server2.log" 2>&1 &
server2_pid=$!
trap 'kill "$hub_pid" "$server2_pid" 2>/dev/null; [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port2/health')" 2>/dev/null && break
  sleep 0.2
done
"$work/venv/bin/python" .ci/web_check.py --download "http://127.0.0.1:$port2/" "${shot%.png}-download.png" \
  || { cat "$work/server2.log"; exit 1; }
