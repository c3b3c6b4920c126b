#!/usr/bin/env python3
"""Chatterbox Turbo S3 speech tokenizer parity fixture for voxpool's Rust port.

Builds chatterbox-tts 0.1.7's `S3Tokenizer("speech_tokenizer_v2_25hz")` (the
`s3tokenizer` package's `S3TokenizerV2`: `AudioEncoderV2` and the FSQ quantizer)
with a tiny config and random weights from a fixed seed, and records, from the
log-mel on, the output of every encoder stage, the quantizer's projection and the
speech tokens for four inputs:

    case0    a 1.5 s log-mel (150 frames), no padding: what Chatterbox feeds it
    case1    the first 130 frames of it with mel_len 101: the padded tail is masked
    wrapper  `S3Tokenizer.forward` (the chatterbox wrapper) on case0's log-mel with
             `max_len=30`, which cuts the log-mel to 120 frames first
    long     5700 frames (> 30 s): the sliding-window path (3 windows of 3000
             frames, stride 2600, overlaps merged); the log-mel is not stored but
             made by a formula both sides compute exactly (`long_mel` below)

    # default: tiny model, small enough to commit (tests/fixtures/chatterbox/)
    python tools/chatterbox_s3tokenizer_fixtures.py
    # real sizes, random weights and one 15 s case, written outside the repo
    python tools/chatterbox_s3tokenizer_fixtures.py --full /tmp/s3tok-full

Files:
    s3tokenizer_tiny.safetensors   weights under the key names of the S3Gen checkpoint
                                   (`tokenizer.` prefix), then the inputs and outputs
                                   (`case0.*`, `case1.*`, `wrapper.*`, `long.*`)
    s3tokenizer_tiny_config.json   the config the Rust side reads
Running it twice gives byte-identical files.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from fixture_io import read_back, write_safetensors

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

REPO_ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = "1"
SEED = 2025

# `s3tokenizer.model_v2.ModelConfig` as `S3TokenizerV2("speech_tokenizer_v2_25hz")`
# uses it (the v2 name forces the 3^8 codebook).
V2_25HZ_CONFIG = {
    "n_mels": 128,
    "n_audio_state": 1280,
    "n_audio_head": 20,
    "n_audio_layer": 6,
    "n_codebook_size": 6561,
}

# Two heads of 16, two blocks. Kept: 128 mel bands, the two stride-2 convolutions,
# the FSMN kernel of 31, the rotary embedding over the whole head, the 8 FSQ
# dimensions of 3 levels (tokens in 0..6561), the 3000-frame windows.
TINY_OVERRIDES = {"n_audio_state": 32, "n_audio_head": 2, "n_audio_layer": 2}

CASE0_FRAMES = 150
CASE1_FRAMES, CASE1_LEN = 130, 101
WRAPPER_MAX_LEN = 30
LONG_FRAMES = 5700
FULL_FRAMES = 1500

# Every FSQ value `tanh(h)·0.999` compared must lie at least this far from the
# rounding boundaries ±0.5, so that float differences of ~1e-6 between the two
# implementations cannot flip a token.
MIN_MARGIN = 1e-4


def fmix32(x):
    """MurmurHash3's 32-bit finaliser on a uint32 array."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x = (x * np.uint32(0x85EBCA6B)).astype(np.uint32)
    x ^= x >> np.uint32(13)
    x = (x * np.uint32(0xC2B2AE35)).astype(np.uint32)
    x ^= x >> np.uint32(16)
    return x


def long_mel(n_mels, frames, salt):
    """[1, n_mels, frames] log-mel stand-in: value at (c, t) = k / 1024 − 1 with
    k = fmix32(c·frames + t + salt·0x9E3779B9) >> 21, exact in f32, so the Rust
    test rebuilds it bit for bit (tests/chatterbox_s3tokenizer.rs `long_mel`)."""
    idx = np.arange(n_mels * frames, dtype=np.uint64)
    idx = ((idx + np.uint64(salt) * np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    k = fmix32(idx) >> np.uint32(21)
    values = k.astype(np.float32) / np.float32(1024.0) - np.float32(1.0)
    return torch.from_numpy(values.reshape(1, n_mels, frames))


def build(cfg):
    """chatterbox's `S3Tokenizer` wrapper around an `S3TokenizerV2` of `cfg`."""
    from chatterbox.models.s3tokenizer import S3Tokenizer
    from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2, precompute_freqs_cis

    model_cfg = ModelConfig(n_mels=cfg["n_mels"], n_audio_state=cfg["n_audio_state"],
                            n_audio_head=cfg["n_audio_head"], n_audio_layer=cfg["n_audio_layer"])
    inner = S3TokenizerV2("speech_tokenizer_v2_25hz", model_cfg)
    assert inner.config.n_codebook_size == cfg["n_codebook_size"]
    head_dim = cfg["n_audio_state"] // cfg["n_audio_head"]
    # The reference builds the rotary table for 64 dimensions, the head width of
    # the released model (1280 / 20); a tiny model needs it at its own head width.
    if head_dim != 64:
        inner.encoder.freqs_cis = precompute_freqs_cis(head_dim, 1024 * 2)
    # `S3Tokenizer.__init__` builds its network at the released size whatever
    # config it is given; build the wrapper bare and give it the network above.
    tok = S3Tokenizer.__new__(S3Tokenizer)
    torch.nn.Module.__init__(tok)
    tok.name, tok.config = inner.name, inner.config
    tok.encoder, tok.quantizer = inner.encoder, inner.quantizer
    tok.n_fft = 400
    tok.register_buffer("_mel_filters", torch.zeros(cfg["n_mels"], tok.n_fft // 2 + 1))
    tok.register_buffer("window", torch.hann_window(tok.n_fft))
    return tok.eval()


@torch.no_grad()
def perturb_weights(tok):
    """Moves the LayerNorm gains off 1 and the biases off their initial values so
    that each one is exercised, and widens the FSQ projection so that every one of
    the 3 levels shows up in each of the 8 dimensions."""
    tok.quantizer._codebook.project_down.weight.mul_(3.0)
    for name, p in tok.named_parameters():
        if p.ndim == 1 and "_ln." in name and name.endswith(".weight"):
            p.copy_(1.0 + 0.2 * torch.randn_like(p))
        elif p.ndim == 1:
            p.copy_(0.1 * torch.randn_like(p))


class Recorder:
    """Forward hooks that keep the outputs of the encoder stages and the FSQ
    projection (as a list: the sliding-window path calls the network once)."""

    def __init__(self, tok):
        self.out = {}
        enc = tok.encoder
        mods = {"conv1": enc.conv1, "conv2": enc.conv2,
                "project_down": tok.quantizer._codebook.project_down}
        mods.update({f"blocks.{i}": b for i, b in enumerate(enc.blocks)})
        self.handles = [m.register_forward_hook(self.hook(k)) for k, m in mods.items()]

    def hook(self, key):
        def f(_module, _inputs, output):
            self.out.setdefault(key, []).append(output.detach().clone())
        return f

    def take(self):
        out, self.out = self.out, {}
        return out

    def remove(self):
        for h in self.handles:
            h.remove()


def fsq_margin(projection):
    """Smallest distance of `tanh(h)·0.999` from the rounding boundaries ±0.5."""
    h = projection.float().tanh() * 0.9990000128746033
    return float((h.abs() - 0.5).abs().min())


def run_quantize(tok, rec, mel, mel_len):
    """`S3TokenizerV2.quantize`, and what the hooks saw."""
    code, code_len = tok.quantize(mel, torch.tensor([mel_len], dtype=torch.int32))
    return code, int(code_len[0]), rec.take()


def short_case(tok, rec, prefix, mel, mel_len):
    code, code_len, seen = run_quantize(tok, rec, mel, mel_len)
    assert all(len(v) == 1 for v in seen.values()), "one encoder call"
    seen = {k: v[0] for k, v in seen.items()}
    t_out = code.shape[1]
    io = {
        f"{prefix}.mel_len": torch.tensor([mel_len], dtype=torch.int64),
        f"{prefix}.code_len": torch.tensor([code_len], dtype=torch.int64),
        f"{prefix}.conv1": seen["conv1"],
        f"{prefix}.conv2": seen["conv2"],
        f"{prefix}.project_down": seen["project_down"].reshape(1, t_out, -1),
        f"{prefix}.tokens": code.long(),
    }
    for i in range(len(tok.encoder.blocks)):
        io[f"{prefix}.blocks.{i}"] = seen[f"blocks.{i}"]
    return io, fsq_margin(seen["project_down"])


def long_case(tok, rec, cfg):
    """The sliding-window path; searches the smallest salt whose FSQ values keep
    the margin at every valid position."""
    for salt in range(64):
        mel = long_mel(cfg["n_mels"], LONG_FRAMES, salt)
        code, code_len, seen = run_quantize(tok, rec, mel, LONG_FRAMES)
        (proj,) = seen["project_down"]
        # [windows·750, 8]; only the valid frames of each window count.
        windows = proj.shape[0] // 750
        lens = [min(3000, LONG_FRAMES - 2600 * w) for w in range(windows)]
        valid = torch.cat([proj[w * 750:w * 750 + (n - 1) // 4 + 1] for w, n in enumerate(lens)])
        margin = fsq_margin(valid)
        if margin >= MIN_MARGIN:
            io = {
                "long.salt": torch.tensor([salt], dtype=torch.int64),
                "long.frames": torch.tensor([LONG_FRAMES], dtype=torch.int64),
                "long.mel_head": mel[:, :, :8].clone(),
                "long.tokens": code[:, :code_len].long(),
            }
            return io, margin, windows
    raise SystemExit("no salt keeps the FSQ margin on the long input")


def make_io(tok, cfg):
    rec = Recorder(tok)
    gen = torch.Generator().manual_seed(SEED + 1)
    # Log-mel-like values (the wrapper's (log10 + 4) / 4 lands around −1..1.5);
    # redrawn until no FSQ value sits near a rounding boundary.
    for attempt in range(64):
        mel = (0.5 * torch.randn(1, cfg["n_mels"], CASE0_FRAMES, generator=gen)).contiguous()
        io0, m0 = short_case(tok, rec, "case0", mel, CASE0_FRAMES)
        io1, m1 = short_case(tok, rec, "case1", mel[:, :, :CASE1_FRAMES].contiguous(), CASE1_LEN)
        # The wrapper, from its log-mel on: `log_mel_spectrogram` is the other port's.
        tok.log_mel_spectrogram = lambda _wav, _mel=mel: _mel
        wtok, wlen = tok.forward([torch.zeros(16000)], max_len=WRAPPER_MAX_LEN)
        del tok.log_mel_spectrogram
        wseen = rec.take()
        mw = fsq_margin(wseen["project_down"][0])
        if min(m0, m1, mw) >= MIN_MARGIN:
            break
    else:
        raise SystemExit("no draw keeps the FSQ margin")
    assert wtok.shape == (1, WRAPPER_MAX_LEN) and int(wlen[0]) == WRAPPER_MAX_LEN
    io = {"case0.mel": mel, **io0, **io1,
          "wrapper.max_len": torch.tensor([WRAPPER_MAX_LEN], dtype=torch.int64),
          "wrapper.tokens": wtok.long()}
    io["case1.frames"] = torch.tensor([CASE1_FRAMES], dtype=torch.int64)
    lio, ml, windows = long_case(tok, rec, cfg)
    io.update(lio)
    rec.remove()
    # The hooks only observe: a plain run gives the same tokens.
    code, _ = tok.quantize(mel, torch.tensor([CASE0_FRAMES], dtype=torch.int32))
    assert torch.equal(code.long(), io["case0.tokens"])
    margins = {"case0": m0, "case1": m1, "wrapper": mw, "long": ml}
    return io, margins, {"draws": attempt + 1, "windows": windows}


def make_full_io(tok, cfg):
    """One 15 s log-mel (1500 frames, T3's 375-token prompt): its encoder output,
    projection and tokens."""
    rec = Recorder(tok)
    gen = torch.Generator().manual_seed(SEED + 1)
    for attempt in range(64):
        mel = (0.5 * torch.randn(1, cfg["n_mels"], FULL_FRAMES, generator=gen)).contiguous()
        io, margin = short_case(tok, rec, "case0", mel, FULL_FRAMES)
        if margin >= MIN_MARGIN:
            break
    else:
        raise SystemExit("no draw keeps the FSQ margin")
    rec.remove()
    io["case0.mel"] = mel
    for k in ("case0.conv1", "case0.conv2"):
        del io[k]
    return io, {"case0": margin}, {"draws": attempt + 1}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", metavar="OUT_DIR", type=Path,
                    help="write real-size random weights (s3tokenizer_full.safetensors) to OUT_DIR")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "chatterbox",
                    help="where the tiny fixture goes (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (keep 1 for byte-identical committed files)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    if args.full:
        cfg, stem, out_dir = dict(V2_25HZ_CONFIG), "s3tokenizer_full", args.full
    else:
        cfg, stem, out_dir = dict(V2_25HZ_CONFIG, **TINY_OVERRIDES), "s3tokenizer_tiny", args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(SEED)
    tok = build(cfg)
    perturb_weights(tok)
    # The S3Gen checkpoint's names; `_mel_filters` and `window` are buffers of the
    # log-mel front end, not read by the network.
    tensors = {f"tokenizer.{k}": v.detach().clone().contiguous()
               for k, v in tok.state_dict().items() if k not in ("_mel_filters", "window")}
    n_params = sum(v.numel() for v in tensors.values())

    if args.full:
        io, margins, info = make_full_io(tok, cfg)
    else:
        io, margins, info = make_io(tok, cfg)
    tensors.update(io)

    from importlib.metadata import version
    meta = {"format": FORMAT_VERSION, "chatterbox-tts": version("chatterbox-tts"),
            "s3tokenizer": version("s3tokenizer"), "torch": torch.__version__,
            "seed": str(SEED)}
    path, cpath = out_dir / f"{stem}.safetensors", out_dir / f"{stem}_config.json"
    write_safetensors(path, tensors, meta)
    cpath.write_text(json.dumps(cfg, indent=2) + "\n")
    read_back(path, tensors)
    for p in (path, cpath):
        print(f"{p}: {p.stat().st_size / 1e3:.1f} kB")
    print(f"{n_params} parameters; {info}")
    for k, m in margins.items():
        print(f"{k}: smallest FSQ distance to a rounding boundary {m:.2e}")
    if not args.full:
        for k in ("case0", "case1", "wrapper", "long"):
            t = tensors[f"{k}.tokens"]
            print(f"{k}: {t.shape[1]} tokens, {len(set(t.flatten().tolist()))} distinct, "
                  f"range {int(t.min())}..{int(t.max())}")


if __name__ == "__main__":
    sys.exit(main())
