#!/usr/bin/env python3
"""Chatterbox voice encoder parity fixtures for voxpool's Rust port.

Builds the PyTorch reference `VoiceEncoder` of chatterbox-tts 0.1.7
(`chatterbox/models/voice_encoder/voice_encoder.py`: a 3-layer LSTM over 40-bin
mel frames, a linear projection, ReLU and L2 normalisation) with a tiny hidden
size and random weights from fixed seeds, runs `embeds_from_mels` on mels the
reference `melspectrogram` computes from a synthetic voiced signal, and writes
ONE file

    ve_tiny.safetensors   weights under the key names of the official
                          ve.safetensors, the input mel, per case the partial
                          windows' final LSTM states, partial embeddings and
                          the utterance embedding, and tables of the window
                          arithmetic for the official 160-frame partials;
                          the config and the cases are in the metadata

    # default: tiny widths, small enough to commit (tests/fixtures/chatterbox/)
    python tools/chatterbox_ve_fixtures.py
    # official widths (hidden 256, embedding 256), random weights, not committed
    python tools/chatterbox_ve_fixtures.py --full /tmp/ve-full

See tools/README.md for the key layout. Running it twice gives byte-identical
files.
"""

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from fixture_io import read_back, write_safetensors

REPO_ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = "1"

SEED_WEIGHTS = 20240613
SEED_SIGNAL = 5

# chatterbox/models/voice_encoder/config.py `VoiceEncConfig` (class attributes).
OFFICIAL_CONFIG = {
    "num_mels": 40,
    "sample_rate": 16000,
    "speaker_embed_size": 256,
    "ve_hidden_size": 256,
    "flatten_lstm_params": False,
    "n_fft": 400,
    "hop_size": 160,
    "win_size": 400,
    "fmax": 8000,
    "fmin": 0,
    "preemphasis": 0.0,
    "mel_power": 2.0,
    "mel_type": "amp",
    "normalized_mels": False,
    "ve_partial_frames": 160,
    "ve_final_relu": True,
    "stft_magnitude_min": 1e-4,
}

# Only widths shrink: hidden 256 -> 32, embedding 256 -> 24 (so the projection
# is not square); 3 layers (fixed in the reference), 40 mels and 160-frame
# partials stay official, so the window arithmetic is the real one.
TINY_CONFIG = dict(OFFICIAL_CONFIG, ve_hidden_size=32, speaker_embed_size=24)

# The input is one mel of MEL_FRAMES frames; every case is a prefix of it.
MEL_FRAMES = 400
# `embeds_from_mels` keyword arguments per case. `rate=1.3` is what
# `embeds_from_wavs` (and so Chatterbox's `prepare_conditionals`) passes: a
# 77-frame step. Without `rate` the step is 160 * (1 - overlap) = 80.
CASES = [
    # 4 partials; 400 frames trimmed to 391.
    {"frames": 400, "kwargs": {"rate": 1.3}},
    # 3 partials; the last one (covering 91 % of a window) padded to 314 frames.
    {"frames": 300, "kwargs": {"rate": 1.3}},
    # Shorter than one partial: zero-padded to 160 frames.
    {"frames": 100, "kwargs": {"rate": 1.3}},
    # Exactly one partial.
    {"frames": 160, "kwargs": {"rate": 1.3}},
    # The reference's own defaults (overlap 0.5, no rate): 3 partials, padded to 320.
    {"frames": 300, "kwargs": {}},
]
# One call on several utterances at once (packed, padded to the longest).
BATCH_FRAMES = [400, 300, 100]

# Window arithmetic of the official config: (overlap, rate, min_coverage) per
# table, frame counts 1..=TABLE_FRAMES.
TABLE_OPTIONS = [(0.5, 1.3, 0.8), (0.5, None, 0.8), (0.25, None, 0.5), (0.5, 2.0, 1.0)]
TABLE_FRAMES = 250

# The layer-0 input weights are scaled so the mel drives the gates (std of the
# input pre-activation over the mel ~ INPUT_DRIVE): PyTorch's init (+-1/sqrt(H))
# over power mels of ~1e-2 would leave the recurrence all but input-free.
INPUT_DRIVE = 1.5
# The other LSTM weights (recurrent, and the inputs of layers 1 and 2) are
# scaled by LSTM_GAIN so the partials' final states differ from each other
# (at PyTorch's init the signal fades through three layers: final states
# varying by ~0.01, all partials then giving one ReLU pattern), and the
# projection bias by PROJ_BIAS_SCALE so the states, not the bias, decide it.
LSTM_GAIN = 3.0
PROJ_BIAS_SCALE = 0.3


def import_reference():
    from chatterbox.models.voice_encoder import voice_encoder as ve_mod
    from chatterbox.models.voice_encoder.melspec import melspectrogram
    import chatterbox
    return ve_mod, melspectrogram, chatterbox.__version__


def make_hp(ve_mod, config):
    hp = ve_mod.VoiceEncConfig()
    for k, v in config.items():
        assert hasattr(hp, k), k
        setattr(hp, k, v)
    return hp


def synthetic_mel(melspectrogram, hp, frames):
    """A voiced, speech-like 16 kHz signal (11 harmonics of a gliding 100-180 Hz
    F0, a syllable-rate amplitude envelope, light noise), through the
    reference `melspectrogram` -> (frames, num_mels) float32."""
    n = (frames - 1) * hp.hop_size
    rng = np.random.default_rng(SEED_SIGNAL)
    t = np.arange(n) / hp.sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / hp.sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.1 + 0.9 * np.sin(2 * np.pi * 2.3 * t) ** 2
    wav = (0.3 * env * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32)
    mel = melspectrogram(wav, hp).T
    assert mel.shape == (frames, hp.num_mels) and mel.dtype == np.float32, (mel.shape, mel.dtype)
    return np.ascontiguousarray(mel)


def build_model(ve_mod, hp, mel):
    torch.manual_seed(SEED_WEIGHTS)
    model = ve_mod.VoiceEncoder(hp).eval()
    with torch.no_grad():
        w = model.lstm.weight_ih_l0
        drive = (torch.from_numpy(mel) @ w.T).std()
        w.mul_(INPUT_DRIVE / drive)
        for name, p in model.lstm.named_parameters():
            if name.startswith("weight_") and name != "weight_ih_l0":
                p.mul_(LSTM_GAIN)
        model.proj.bias.mul_(PROJ_BIAS_SCALE)
    return model


@torch.inference_mode()
def instrumented(ve_mod, model, mel, overlap=0.5, rate=None, min_coverage=0.8):
    """`VoiceEncoder.inference` on one utterance, line by line."""
    hp = model.hp
    step = ve_mod.get_frame_step(overlap, rate, hp)
    n_partials, target = ve_mod.get_num_wins(len(mel), step, min_coverage, hp)
    x = torch.from_numpy(mel)
    if target > len(x):
        x = torch.cat((x, torch.zeros((target - len(x), hp.num_mels))), dim=0)
    partials = torch.stack([x[i * step: i * step + hp.ve_partial_frames] for i in range(n_partials)])
    _, (hidden, _) = model.lstm(partials)
    partial_embeds = model(partials)
    raw = torch.mean(partial_embeds, dim=0)[None]
    embeds = raw / torch.linalg.norm(raw, dim=1, keepdim=True)
    return {
        "frame_step": step,
        "n_partials": n_partials,
        "target_len": target,
        "hidden": hidden[-1],
        "partial_embeds": partial_embeds,
        "embeds": embeds,
    }


def win_table(ve_mod, hp, overlap, rate, min_coverage):
    step = ve_mod.get_frame_step(overlap, rate, hp)
    rows = [ve_mod.get_num_wins(n, step, min_coverage, hp) for n in range(1, TABLE_FRAMES + 1)]
    return step, torch.tensor(rows, dtype=torch.int32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", metavar="OUT_DIR", type=Path,
                    help="official widths (1.4M random parameters, ~6 MB) written to OUT_DIR")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "chatterbox",
                    help="where the tiny fixture goes (default: tests/fixtures/chatterbox)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1; results are only byte-stable for a fixed value)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    ve_mod, melspectrogram, cb_version = import_reference()
    if args.full:
        config, name, out_dir = OFFICIAL_CONFIG, "ve_full", args.full
    else:
        config, name, out_dir = TINY_CONFIG, "ve_tiny", args.out_dir
    hp = make_hp(ve_mod, config)

    mel = synthetic_mel(melspectrogram, hp, MEL_FRAMES)
    model = build_model(ve_mod, hp, mel)
    tensors = dict(model.state_dict())
    n_params = sum(v.numel() for v in tensors.values())
    tensors["input.mel"] = torch.from_numpy(mel)

    case_meta = []
    for i, case in enumerate(CASES):
        m = mel[: case["frames"]]
        out = instrumented(ve_mod, model, m, **case["kwargs"])
        # The stock entry point gives the same embedding, bit for bit.
        stock = model.embeds_from_mels([m], **case["kwargs"])
        assert np.array_equal(stock, out["embeds"].numpy()), f"case{i}: stock embeds_from_mels differs"
        # Chatterbox's prepare_conditionals: the mean over utterances (one here).
        spk = torch.from_numpy(stock).mean(axis=0, keepdim=True)
        assert torch.equal(spk, out["embeds"])
        # ReLU must be exercised (some zeros) without emptying a partial, and
        # partials of one utterance must differ in which outputs it zeroes.
        pe = out["partial_embeds"]
        zeros = (pe == 0).float().mean().item()
        assert 0.1 < zeros < 0.9 and (pe > 0).any(dim=1).all(), f"case{i}: {zeros:.0%} zeros after ReLU"
        if len(pe) > 1:
            assert ((pe > 0) != (pe[0] > 0)).any(), f"case{i}: every partial has the same ReLU pattern"
        for k in ("hidden", "partial_embeds", "embeds"):
            tensors[f"case{i}.{k}"] = out[k]
        case_meta.append({
            "frames": case["frames"],
            "overlap": case["kwargs"].get("overlap", 0.5),
            "rate": case["kwargs"].get("rate"),
            "min_coverage": case["kwargs"].get("min_coverage", 0.8),
            "frame_step": out["frame_step"],
            "n_partials": out["n_partials"],
            "target_len": out["target_len"],
        })

    # Several utterances in one call: pack pads them to a common length, yet
    # each one's embedding is its own (same numbers up to LSTM batch rounding).
    batch = model.embeds_from_mels([mel[:n] for n in BATCH_FRAMES], rate=1.3)
    for j, n in enumerate(BATCH_FRAMES):
        i = next(i for i, c in enumerate(CASES) if c["frames"] == n and c["kwargs"] == {"rate": 1.3})
        diff = np.abs(batch[j] - tensors[f"case{i}.embeds"].numpy()[0]).max()
        assert diff < 1e-6, f"batch row {j}: {diff}"
    tensors["batch.embeds"] = torch.from_numpy(batch)

    # Window arithmetic of the official 160-frame partials.
    official_hp = make_hp(ve_mod, OFFICIAL_CONFIG)
    tables = []
    for t, (overlap, rate, cov) in enumerate(TABLE_OPTIONS):
        step, rows = win_table(ve_mod, official_hp, overlap, rate, cov)
        tensors[f"wins{t}"] = rows
        tables.append({"overlap": overlap, "rate": rate, "min_coverage": cov, "frame_step": step})

    metadata = {
        "format": "voxpool-chatterbox-ve-fixture",
        "format_version": FORMAT_VERSION,
        "model": name,
        "config": json.dumps(config, sort_keys=True, ensure_ascii=True),
        "cases": json.dumps(case_meta, ensure_ascii=True),
        "batch_frames": json.dumps(BATCH_FRAMES),
        "win_tables": json.dumps(tables, ensure_ascii=True),
        "parameters": str(n_params),
        "reference": f"chatterbox-tts=={cb_version} torch=={torch.__version__.split('+')[0]}",
        "seeds": json.dumps({"weights": SEED_WEIGHTS, "signal": SEED_SIGNAL}),
    }
    path = out_dir / f"{name}.safetensors"
    write_safetensors(path, tensors, metadata, largest_first=True)
    read_back(path, tensors)

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    print(f"{path}: {path.stat().st_size / 1e3:.1f} kB, sha256 {digest}")
    print(f"{n_params} parameters; mel {mel.min():.2e}..{mel.max():.2e}")
    for i, m in enumerate(case_meta):
        pe = tensors[f"case{i}.partial_embeds"]
        print(f"case{i}: {m['frames']} frames, step {m['frame_step']}, {m['n_partials']} partials "
              f"-> {m['target_len']} frames; {(pe == 0).float().mean():.0%} zeros after ReLU")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
