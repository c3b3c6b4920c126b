#!/usr/bin/env python3
"""Chatterbox S3Gen speaker encoder (CAMPPlus) parity fixtures for voxpool's Rust port.

Builds the PyTorch reference `CAMPPlus` of chatterbox-tts 0.1.7
(`models/s3gen/xvector.py`, as `S3Token2Mel` builds it: `memory_efficient=False`,
every other argument at its default) with random weights from fixed seeds, gives
every BatchNorm non-trivial affine parameters and running statistics (a few
batches in train mode with a cumulative average), then runs the network on the
features `extract_feature` makes from a synthetic 16 kHz clip and writes ONE file

    campplus_tiny.safetensors
        speaker_encoder.*   weights under the key names of the official
                            s3gen_meanflow.safetensors (BatchNorm running stats
                            and num_batches_tracked included)
        case<i>.feats       [1, T, feat_dim] what `CAMPPlus.forward` receives
                            (kaldi fbank minus its mean over time)
        case<i>.<stage>     stage outputs (see tools/README.md)
        __metadata__        "config": the constructor arguments, as JSON

    # default: tiny widths, small enough to commit (tests/fixtures/chatterbox/)
    python tools/chatterbox_campplus_fixtures.py
    # official sizes (6.9M random parameters), not committed
    python tools/chatterbox_campplus_fixtures.py --full /tmp/campplus-full

The reference class hard-codes the FCM width (32) and the dense blocks' layer
counts, kernels and dilations ((12, 24, 16), (3, 3, 3), (1, 2, 2)). To shrink
them, the script compiles a copy of `CAMPPlus.__init__` with exactly those
literals turned into arguments (each replacement asserted to hit once) and
checks that the copy, given the official values, builds a model identical to
the stock class, weights included. Running it twice gives byte-identical files.
"""

import argparse
import copy
import hashlib
import inspect
import json
import math
import textwrap
import time
from pathlib import Path

import torch

from fixture_io import read_back, write_safetensors

REPO_ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = "1"
PREFIX = "speaker_encoder."

SEED_WEIGHTS = 20240611
SEED_PERTURB = 7
SEED_STATS = 99
SEED_CASE = 1234

# CAMPPlus's constructor defaults as S3Token2Mel uses them, plus the values the
# reference hard-codes (FCM width and blocks, the dense blocks' layout).
OFFICIAL_CONFIG = {
    "feat_dim": 80,
    "embedding_size": 192,
    "growth_rate": 32,
    "bn_size": 4,
    "init_channels": 128,
    "config_str": "batchnorm-relu",
    "output_level": "segment",
    "m_channels": 32,
    "fcm_num_blocks": 2,
    "block_layers": [12, 24, 16],
    "block_kernel_sizes": [3, 3, 3],
    "block_dilations": [1, 2, 2],
}

# Only sizes shrink; the fbank's 80 bins, the three dense blocks, their kernels
# and dilations stay. Channels: FCM 4 x 10 bins = 40, TDNN 18, block1 18 + 2x4 =
# 26 -> transit 13, block2 13 + 3x4 = 25 -> 12, block3 12 + 2x4 = 20 -> 10,
# stats 20, embedding 14; bottleneck 12, CAM mask hidden 6.
TINY_CONFIG = copy.deepcopy(OFFICIAL_CONFIG)
TINY_CONFIG.update({
    "embedding_size": 14,
    "growth_rate": 4,
    "bn_size": 3,
    "init_channels": 18,
    "m_channels": 4,
    "block_layers": [2, 3, 2],
})

SAMPLE_RATE = 16000
# Clip lengths in seconds. 2.3 s: 228 fbank frames, 114 after the stride-2 TDNN,
# so the CAM segment pooling (100 frames) ends on a partial segment of 14.
# 0.7 s: 68 frames, 34 after the TDNN, one partial segment; only the input and
# the embedding are stored for it.
CASES = [{"seconds": 2.3, "stages": True}, {"seconds": 0.7, "stages": False}]
# --full adds a 10 s clip (the longest reference S3Gen embeds), for timing.
FULL_CASES = CASES + [{"seconds": 10.0, "stages": False}]
# Batches (of STATS_BATCH clips) run in train mode to set the running stats.
STATS_BATCHES = 3
STATS_BATCH = 4


def import_reference():
    from chatterbox.models.s3gen import xvector
    import chatterbox
    return xvector, chatterbox.__version__


def configurable_class(xvector):
    """`CAMPPlus` whose hard-coded FCM and block layout are constructor arguments."""
    src = textwrap.dedent(inspect.getsource(xvector.CAMPPlus.__init__))
    edits = [
        ("**kwargs,",
         "m_channels=32, fcm_num_blocks=2, block_layers=(12, 24, 16),\n"
         "    block_kernel_sizes=(3, 3, 3), block_dilations=(1, 2, 2), **kwargs,"),
        ("super().__init__()", "torch.nn.Module.__init__(self)"),
        ("FCM(feat_dim=feat_dim)",
         "FCM(num_blocks=[fcm_num_blocks, fcm_num_blocks], m_channels=m_channels, feat_dim=feat_dim)"),
        ("zip((12, 24, 16), (3, 3, 3), (1, 2, 2))",
         "zip(block_layers, block_kernel_sizes, block_dilations)"),
    ]
    for old, new in edits:
        assert src.count(old) == 1, f"reference changed: {old!r}"
        src = src.replace(old, new)
    namespace = dict(vars(xvector))
    exec(compile(src, xvector.__file__, "exec"), namespace)
    return type("ConfigurableCAMPPlus", (xvector.CAMPPlus,), {"__init__": namespace["__init__"]})


def build_model(cls, config):
    torch.manual_seed(SEED_WEIGHTS)
    return cls(**config, memory_efficient=False)


def check_against_stock(xvector, cls):
    """The configurable copy with the official values is the stock class."""
    ours = build_model(cls, OFFICIAL_CONFIG).state_dict()
    torch.manual_seed(SEED_WEIGHTS)
    stock = xvector.CAMPPlus(memory_efficient=False).state_dict()
    assert list(ours) == list(stock), "key names differ from the stock CAMPPlus"
    for k in stock:
        assert torch.equal(ours[k], stock[k]), k


def synthetic_clip(seconds, seed):
    """A voiced-like clip: a few harmonics under a syllable-rate envelope, plus noise."""
    g = torch.Generator().manual_seed(seed)
    n = int(round(seconds * SAMPLE_RATE))
    t = torch.arange(n, dtype=torch.float64) / SAMPLE_RATE
    f0 = 100 + 80 * torch.rand((), generator=g, dtype=torch.float64)
    vibrato = 1 + 0.05 * torch.sin(2 * math.pi * 3 * t)
    phase = 2 * math.pi * torch.cumsum(f0 * vibrato, 0) / SAMPLE_RATE
    wav = torch.zeros(n, dtype=torch.float64)
    for h in range(1, 8):
        wav += torch.rand((), generator=g, dtype=torch.float64) / h * torch.sin(h * phase)
    env = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t + torch.rand((), generator=g, dtype=torch.float64) * 6)
    wav = wav * env + 0.02 * torch.randn(n, generator=g, dtype=torch.float64)
    return (0.3 * wav / wav.abs().max()).float()


@torch.no_grad()
def perturb_and_calibrate(model, xvector):
    """Moves every BatchNorm off weight 1 / bias 0 and the CAM biases off 0, then
    sets the running statistics to the averages over a few batches of features."""
    g = torch.Generator().manual_seed(SEED_PERTURB)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        if bn.affine:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.2)
        bn.momentum = None  # cumulative average over the calibration batches
        bn.reset_running_stats()
    for name, p in model.named_parameters():
        if name.endswith("cam_layer.linear1.bias") or name.endswith("cam_layer.linear2.bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.train()
    for b in range(STATS_BATCHES):
        clips = [synthetic_clip(2.0, SEED_STATS + b * STATS_BATCH + i) for i in range(STATS_BATCH)]
        feats, _, _ = xvector.extract_feature(torch.stack(clips))
        model(feats)
    model.eval()
    for bn in bns:
        assert bn.num_batches_tracked.item() == STATS_BATCHES


@torch.inference_mode()
def instrumented_forward(model, feats):
    """CAMPPlus.forward step by step, keeping the output of every child of `xvector`."""
    out = {}
    x = model.head(feats.permute(0, 2, 1))
    out["head"] = x
    for name, child in model.xvector.named_children():
        x = child(x)
        out[name] = x
    return out


def run_case(model, xvector, index, case):
    wav = synthetic_clip(case["seconds"], SEED_CASE + index)[None]
    feats, _, _ = xvector.extract_feature(wav)
    feats = feats.float()
    with torch.inference_mode():
        stock = model.inference(wav)
        direct = model(feats)
    stages = instrumented_forward(model, feats)
    assert torch.equal(stock, direct), "inference(wav) != forward(extract_feature(wav))"
    assert torch.equal(stages["dense"], stock), "instrumented forward differs"
    res = {"feats": feats, "embedding": stock}
    if case["stages"]:
        for k, v in stages.items():
            if k != "dense":
                res[k] = v
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", metavar="OUT_DIR", type=Path,
                    help="official sizes (~6.9M random parameters, ~28 MB) written to OUT_DIR")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "chatterbox",
                    help="where the tiny fixture goes (default: tests/fixtures/chatterbox)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1; results are only byte-stable for a fixed value)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    xvector, cb_version = import_reference()
    cls = configurable_class(xvector)
    check_against_stock(xvector, cls)
    if args.full:
        config, name, out_dir = OFFICIAL_CONFIG, "campplus_full", args.full
    else:
        config, name, out_dir = TINY_CONFIG, "campplus_tiny", args.out_dir
    config = copy.deepcopy(config)

    model = build_model(cls, config)
    perturb_and_calibrate(model, xvector)

    tensors = {PREFIX + k: v for k, v in model.state_dict().items()}
    n_params = sum(v.numel() for k, v in tensors.items() if not k.endswith("num_batches_tracked"))
    case_meta = []
    for i, case in enumerate(FULL_CASES if args.full else CASES):
        res = run_case(model, xvector, i, case)
        for k, v in res.items():
            tensors[f"case{i}.{k}"] = v
        case_meta.append({"seconds": case["seconds"], "frames": int(res["feats"].shape[1])})

    metadata = {
        "format": "voxpool-chatterbox-campplus-fixture",
        "format_version": FORMAT_VERSION,
        "model": name,
        "config": json.dumps(config, ensure_ascii=True),
        "cases": json.dumps(case_meta, ensure_ascii=True),
        "parameters": str(n_params),
        "reference": f"chatterbox-tts=={cb_version} torch=={torch.__version__.split('+')[0]}",
        "seeds": json.dumps({"weights": SEED_WEIGHTS, "perturb": SEED_PERTURB, "stats": SEED_STATS,
                             "cases": SEED_CASE}),
    }
    path = out_dir / f"{name}.safetensors"
    write_safetensors(path, tensors, metadata, largest_first=True)
    read_back(path, tensors)

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    print(f"{path}: {path.stat().st_size / 1e3:.1f} kB, sha256 {digest}")
    print(f"{n_params} parameters")
    for i, m in enumerate(case_meta):
        emb = tensors[f"case{i}.embedding"]
        print(f"case{i}: {m['seconds']} s, {m['frames']} frames; embedding std {emb.std():.3f}")
    for k in sorted(k for k in tensors if k.startswith("case0.")):
        v = tensors[k]
        print(f"  {k}: {list(v.shape)} std {v.std():.3f}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
