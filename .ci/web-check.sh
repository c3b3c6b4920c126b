#!/usr/bin/env bash
# The web page at / in headless Chromium (Debian's chromium + chromium-driver, driven
# by Selenium from PyPI) against a real voxpool with the tiny test checkpoints: type
# text, click Speak, check the audio element holds decodable audio, click Unload and
# see the model panel change, clone a voice from an uploaded recording, speak with it
# and delete it. Saves a screenshot to ${WEB_SCREENSHOT:-target/web-check.png}.
# Run by .ci/run after the tests (it uses their debug binary).
set -euo pipefail
cd "$(dirname "$0")/.."

source .ci/tiny-server.sh
tiny_server selenium==4.38.0

shot="${WEB_SCREENSHOT:-target/web-check.png}"
mkdir -p "$(dirname "$shot")"
"$work/venv/bin/python" .ci/web_check.py "http://127.0.0.1:$port/" "$shot"
