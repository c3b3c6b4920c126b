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
# A British voice: the web page's language picker follows the voice's first letter.
cp tests/fixtures/kokoro/voices/tiny_b.pt "$snap/voices/bf_tiny.pt"
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
import numpy as np
from safetensors import safe_open
weights = {**load_file(f"{fx}/s3gen_tiny.safetensors"), **load_file(f"{fx}/hift_tiny.safetensors")}
cfg = {k: json.load(open(f"{fx}/{k}_tiny_config.json")) for k in ["t3", "s3gen", "hift"]}
# Voice cloning: the tiny tokenizer, CAMPPlus and voice encoder of the parity fixtures,
# their output layers widened to what the tiny S3Gen (192) and T3 (256) take.
rng = np.random.default_rng(7)
def meta(name):
    with safe_open(f"{fx}/{name}.safetensors", "np") as f:
        return json.loads(f.metadata()["config"])
tok = load_file(f"{fx}/s3tokenizer_tiny.safetensors")
weights.update({k: v for k, v in tok.items() if k.startswith("tokenizer.")})
camp = {k: v for k, v in load_file(f"{fx}/campplus_tiny.safetensors").items()
        if k.startswith("speaker_encoder.")}
dense = "speaker_encoder.xvector.dense."
inner = camp[dense + "linear.weight"].shape[1]
camp[dense + "linear.weight"] = rng.normal(0, 0.3, (192, inner, 1)).astype(np.float32)
camp[dense + "nonlinear.batchnorm.running_mean"] = np.zeros(192, np.float32)
camp[dense + "nonlinear.batchnorm.running_var"] = np.ones(192, np.float32)
weights.update(camp)
save_file(weights, f"{out}/s3gen_meanflow.safetensors")
ve = {k: v for k, v in load_file(f"{fx}/ve_tiny.safetensors").items()
      if k.startswith(("lstm.", "proj.", "similarity_"))}
ve["proj.weight"] = rng.normal(0, 0.3, (256, ve["proj.weight"].shape[1])).astype(np.float32)
ve["proj.bias"] = rng.normal(0, 0.1, 256).astype(np.float32)
save_file(ve, f"{out}/ve.safetensors")
cfg["ve"] = {**meta("ve_tiny"), "speaker_embed_size": 256}
cfg["campplus"] = {**meta("campplus_tiny"), "embedding_size": 192}
cfg["s3tokenizer"] = json.load(open(f"{fx}/s3tokenizer_tiny_config.json"))
# The tiny T3 holds 128 positions: a short speech prompt leaves room for text.
cfg["features"] = {"dec_cond_len": 240000, "enc_cond_len": 240000,
                   "speech_cond_prompt_len": 28, "ve_trim_top_db": 20.0}
json.dump(cfg, open(f"{out}/voxpool_chatterbox.json", "w"))
PY

