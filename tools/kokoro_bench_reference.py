"""Time the PyTorch reference Kokoro on the same weights and inputs as voxpool's bench.

    python tools/kokoro_bench_reference.py --weights /tmp/kokoro-full/full.safetensors \
        --tokens 50 150 400 --runs 3 --threads 2 [--device cuda]

Builds the reference KModel at the official v1.0 size, loads the `weights.*`
tensors written by `kokoro_fixtures.py --full` (durations calibrated to ~3 frames
per token, like real speech), and runs `forward_with_tokens` on token sequences
made by the same formula as `benches/kokoro.rs`. Prints one JSON object.
"""
import argparse
import json
import resource
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import kokoro_fixtures as fx


def token_ids(n):
    """Deterministic ids in 1..177 (same formula as benches/kokoro.rs), with the pads."""
    return [0] + [1 + (i * 37 + 11) % 177 for i in range(n)] + [0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--tokens", type=int, nargs="+", default=[50, 150, 400])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    kmodel, istftnet = fx.import_kokoro()
    vocab = json.loads(fx.VOCAB_PATH.read_text(encoding="utf-8"))["vocab"]
    model = fx.build_model(kmodel, istftnet, dict(fx.OFFICIAL_CONFIG), vocab)
    flat = load_file(str(args.weights))
    for group in fx.GROUPS if hasattr(fx, "GROUPS") else ("bert", "bert_encoder", "predictor", "text_encoder", "decoder"):
        prefix = f"weights.{group}."
        sd = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
        getattr(model, group).load_state_dict(sd, strict=False)
    model = model.to(args.device).eval()
    ref_s = flat["case0.input.ref_s"].to(args.device)
    cuda = args.device.startswith("cuda")
    load_s = time.perf_counter() - t0

    results = {}
    for n in args.tokens:
        ids = torch.LongTensor([token_ids(n)]).to(args.device)
        times, audio_s = [], 0.0
        for run in range(args.runs + 1):
            torch.manual_seed(run)
            start = time.perf_counter()
            with torch.no_grad():
                audio, _ = model.forward_with_tokens(ids, ref_s, 1.0)
            if cuda:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            if run > 0:  # the first run warms up
                times.append(elapsed)
            audio_s = audio.numel() / 24000
        times.sort()
        results[str(n)] = {"seconds": times[len(times) // 2], "audio_seconds": audio_s}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_seconds": load_s, "peak_rss_mib": peak_mib, "threads": args.threads,
                      "device": args.device, "torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
