#!/usr/bin/env bash
# Install the tiny Kokoro and Chatterbox Turbo checkpoints of the test fixtures in
# the Hugging Face cache layout under MODELS_DIR, for CI checks against a real server.
#   bash .ci/tiny-models.sh MODELS_DIR PYTHON   (PYTHON with safetensors and numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
work_models="$1"
py="$2"
snap="$work_models/models--hexgrad--Kokoro-82M/snapshots/tiny"
mkdir -p "$snap/voices"
cp tests/fixtures/kokoro/tiny.pth "$snap/kokoro-v1_0.pth"
cp tests/fixtures/kokoro/tiny_config.json "$snap/config.json"
cp tests/fixtures/kokoro/voices/tiny_a.pt "$snap/voices/af_alloy.pt"
# Tiny Turbo: the released s3gen file holds the flow and the vocoder together.
turbo="$work_models/models--ResembleAI--chatterbox-turbo/snapshots/tiny"
mkdir -p "$turbo"
fx=tests/fixtures/chatterbox
cp "$fx/t3_tiny.safetensors" "$turbo/t3_turbo_v1.safetensors"
cp "$fx/conds_tiny.pt" "$turbo/conds.pt"
cp "$fx"/tokenizer/* "$turbo/"
"$py" - "$fx" "$turbo" <<'PY'
import json, sys
from safetensors.numpy import load_file, save_file
fx, out = sys.argv[1:]
weights = {**load_file(f"{fx}/s3gen_tiny.safetensors"), **load_file(f"{fx}/hift_tiny.safetensors")}
save_file(weights, f"{out}/s3gen_meanflow.safetensors")
cfg = {k: json.load(open(f"{fx}/{k}_tiny_config.json")) for k in ["t3", "s3gen", "hift"]}
json.dump(cfg, open(f"{out}/voxpool_chatterbox.json", "w"))
PY

