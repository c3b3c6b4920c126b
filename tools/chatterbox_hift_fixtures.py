#!/usr/bin/env python3
"""Chatterbox Turbo HiFT vocoder parity fixtures for voxpool's Rust port.

Builds the PyTorch reference `HiFTGenerator` (with its `ConvRNNF0Predictor`)
exactly as `S3Token2Wav(meanflow=True)` configures it in chatterbox-tts 0.1.7
(24 kHz, upsample rates [8, 5, 3], n_fft 16, hop 4, 8 harmonics), with random
weights from fixed seeds, runs `HiFTGenerator.inference` on random mels and
writes

    hift_tiny.safetensors     weights under the key names of the official
                              s3gen_meanflow.safetensors (`mel2wav.` prefix,
                              `parametrizations.weight.original0/1` pairs)
    hift_tiny_config.json     the HiFTGenerator / ConvRNNF0Predictor arguments
    hift_tiny_io.safetensors  per case: the input mel, the three random draws
                              the forward pass makes, and every stage's output

    # default: tiny widths, small enough to commit (tests/fixtures/chatterbox/)
    python tools/chatterbox_hift_fixtures.py
    # official widths (base 512, F0 predictor 512), random weights
    python tools/chatterbox_hift_fixtures.py --full /tmp/hift-full

See tools/README.md for the key layout. Running it twice gives byte-identical
files.
"""

import argparse
import contextlib
import copy
import hashlib
import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = "1"
PREFIX = "mel2wav."

SEED_WEIGHTS = 20240611
SEED_PERTURB = 7
SEED_CASE = 1234

# s3gen.py S3Token2Wav.__init__: the arguments it passes, plus the defaults of
# HiFTGenerator and ConvRNNF0Predictor it relies on, spelled out.
OFFICIAL_CONFIG = {
    "in_channels": 80,
    "base_channels": 512,
    "nb_harmonics": 8,
    "sampling_rate": 24000,
    "nsf_alpha": 0.1,
    "nsf_sigma": 0.003,
    "nsf_voiced_threshold": 10,
    "upsample_rates": [8, 5, 3],
    "upsample_kernel_sizes": [16, 11, 7],
    "istft_params": {"n_fft": 16, "hop_len": 4},
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "source_resblock_kernel_sizes": [7, 7, 11],
    "source_resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "lrelu_slope": 0.1,
    "audio_limit": 0.99,
    "f0_predictor": {"num_class": 1, "in_channels": 80, "cond_channels": 512},
}

# Only widths shrink: every rate, kernel, dilation, n_fft/hop and the mel size
# stay official.  Generator 40 -> 20 -> 10 -> 5 channels, F0 predictor 24,
# all distinct from each other and from n_fft + 2 = 18.
TINY_CONFIG = copy.deepcopy(OFFICIAL_CONFIG)
TINY_CONFIG["base_channels"] = 40
TINY_CONFIG["f0_predictor"]["cond_channels"] = 24

# Mel frames per case (50 frames per second of audio, 480 samples each).
CASES = [{"frames": 40}, {"frames": 23}]
# Random mels: log-mel-like level and spread.
MEL_MEAN, MEL_STD = -4.0, 2.0
# F0 predictor head: a spread of ~F0_STD Hz around F0_BIAS_HZ before `abs`
# (measured on a probe mel), so
# that some frames fall under the 10 Hz voicing threshold.
F0_BIAS_HZ = 50.0
F0_STD = 120.0
# conv_post log-magnitudes: a spread of ~1 (default init gives ~0.01, which
# would make every magnitude 1).
POST_STD = 1.0


def import_reference():
    from chatterbox.models.s3gen import hifigan
    from chatterbox.models.s3gen.f0_predictor import ConvRNNF0Predictor
    import chatterbox
    return hifigan, ConvRNNF0Predictor, chatterbox.__version__


def build_model(hifigan, predictor_cls, config):
    torch.manual_seed(SEED_WEIGHTS)
    kw = {k: v for k, v in config.items() if k != "f0_predictor"}
    f0 = predictor_cls(**config["f0_predictor"])
    model = hifigan.HiFTGenerator(**kw, f0_predictor=f0)
    return model.eval()


@torch.no_grad()
def perturb_weights(model, mel_probe):
    """Move parameters off the values that would hide a porting bug (weight-norm
    gains equal to ||v||, Snake alphas at 1) and set the scales that make the
    signal path meaningful (F0 in a speech range with unvoiced frames,
    spectrogram log-magnitudes of order 1)."""
    g = torch.Generator().manual_seed(SEED_PERTURB)

    def u(shape, lo, hi):
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    for name, p in model.named_parameters():
        if name.endswith("parametrizations.weight.original0"):
            p.mul_(u(p.shape, 0.75, 1.25))
        elif name.endswith(".alpha"):
            p.copy_(u(p.shape, 0.5, 1.5))
    # F0 head: normalise the classifier's output on a probe mel.
    pred = model.f0_predictor
    h = pred.condnet(mel_probe).transpose(1, 2)
    raw = pred.classifier(h).squeeze(-1)
    raw = raw - pred.classifier.bias
    pred.classifier.weight.mul_(F0_STD / raw.std())
    pred.classifier.bias.fill_(F0_BIAS_HZ - (raw.mean() * F0_STD / raw.std()).item())
    # conv_post: scale its gain (weight = g * v / ||v||) for a log-magnitude
    # spread of POST_STD.
    post = model.conv_post
    torch.manual_seed(SEED_PERTURB)
    x = instrumented_inference(model, mel_probe)["conv_post"]
    spread = (x - post.bias[None, :, None]).std()
    post.parametrizations.weight.original0.mul_(POST_STD / spread)


class Draws:
    """Patches torch.rand / torch.randn_like for one `inference` call.

    record mode: call the real functions and keep their outputs.
    replay mode: return the given tensors instead (no RNG involved).

    The three draws, in order: `Uniform(-pi, pi).sample` in SineGen (through
    torch.rand, [B, 9, 1]), SineGen's `randn_like` noise [B, 9, L], and
    SourceModuleHnNSF's noise-branch `randn_like` [B, L, 1].
    """

    NAMES = ("sine_phase_rand", "sine_randn", "source_randn")
    KINDS = ("rand", "randn_like", "randn_like")

    def __init__(self, replay=None):
        self.replay = replay
        self.draws = []

    @contextlib.contextmanager
    def active(self):
        real_rand, real_randn_like = torch.rand, torch.randn_like

        def rand(*args, **kwargs):
            return self._take("rand", lambda: real_rand(*args, **kwargs))

        def randn_like(t, *args, **kwargs):
            return self._take("randn_like", lambda: real_randn_like(t, *args, **kwargs), like=t)

        torch.rand, torch.randn_like = rand, randn_like
        try:
            yield self
        finally:
            torch.rand, torch.randn_like = real_rand, real_randn_like

    def _take(self, kind, real, like=None):
        i = len(self.draws)
        assert i < 3 and self.KINDS[i] == kind, (i, kind)
        if self.replay is None:
            out = real()
        else:
            out = self.replay[self.NAMES[i]].clone()
            if like is not None:
                assert out.shape == like.shape and out.dtype == like.dtype
        self.draws.append(out.clone())
        return out

    def named(self):
        assert len(self.draws) == 3, len(self.draws)
        return dict(zip(self.NAMES, self.draws))


def trim_fade(sr):
    """s3gen.py S3Token2Wav: 20 ms of silence, then a 20 ms raised-cosine fade-in."""
    n_trim = sr // 50
    fade = torch.zeros(2 * n_trim)
    fade[n_trim:] = (torch.cos(torch.linspace(torch.pi, 0, n_trim)) + 1) / 2
    return fade


@torch.inference_mode()
def instrumented_inference(model, mel):
    """HiFTGenerator.inference + decode, line by line, keeping every stage."""
    out = {}
    f0 = model.f0_predictor(mel)
    out["f0"] = f0
    s = model.f0_upsamp(f0[:, None])
    out["f0_up"] = s
    s = s.transpose(1, 2)
    sine_wavs, uv, _ = model.m_source.l_sin_gen(s.transpose(1, 2))
    sine_merge = model.m_source.l_tanh(model.m_source.l_linear(sine_wavs.transpose(1, 2)))
    _source_noise = torch.randn_like(uv.transpose(1, 2)) * model.m_source.sine_amp / 3
    s = sine_merge.transpose(1, 2)
    out["source"] = s

    re, im = model._stft(s.squeeze(1))
    s_stft = torch.cat([re, im], dim=1)
    out["source_stft"] = s_stft
    x = model.conv_pre(mel)
    out["conv_pre"] = x
    for i in range(model.num_upsamples):
        x = torch.nn.functional.leaky_relu(x, model.lrelu_slope)
        x = model.ups[i](x)
        if i == model.num_upsamples - 1:
            x = model.reflection_pad(x)
        si = model.source_downs[i](s_stft)
        si = model.source_resblocks[i](si)
        out[f"source_res{i}"] = si
        x = x + si
        xs = None
        for j in range(model.num_kernels):
            y = model.resblocks[i * model.num_kernels + j](x)
            xs = y if xs is None else xs + y
        x = xs / model.num_kernels
        out[f"stage{i}"] = x
    x = torch.nn.functional.leaky_relu(x)
    x = model.conv_post(x)
    out["conv_post"] = x
    bins = model.istft_params["n_fft"] // 2 + 1
    magnitude = torch.exp(x[:, :bins, :])
    phase = torch.sin(x[:, bins:, :])
    audio = model._istft(magnitude, phase)
    out["audio_raw"] = audio
    audio = torch.clamp(audio, -model.audio_limit, model.audio_limit)
    out["audio"] = audio
    faded = audio.clone()
    fade = trim_fade(model.sampling_rate)
    faded[:, :len(fade)] *= fade[: faded.shape[1]]
    out["audio_faded"] = faded
    return out


def run_case(model, index, case, check):
    g = torch.Generator().manual_seed(SEED_CASE + index)
    mel = torch.randn((1, 80, case["frames"]), generator=g) * MEL_STD + MEL_MEAN
    torch.manual_seed(SEED_CASE + 100 + index)
    rec = Draws()
    with rec.active():
        stages = instrumented_inference(model, mel)
    draws = rec.named()
    if check:
        # 1. the stock inference with the same seed: same draws, same audio.
        torch.manual_seed(SEED_CASE + 100 + index)
        stock = Draws()
        with stock.active(), torch.inference_mode():
            audio, source = model.inference(speech_feat=mel)
        for k, v in stock.named().items():
            assert torch.equal(v, draws[k]), k
        assert torch.equal(audio, stages["audio"]), "stock audio differs"
        assert torch.equal(source, stages["source"]), "stock source differs"
        # 2. replaying the exported draws reproduces the audio without any seed.
        torch.manual_seed(999)
        with Draws(replay=draws).active(), torch.inference_mode():
            again, _ = model.inference(speech_feat=mel)
        assert torch.equal(again, audio), "replay differs"
        # 3. the noise branch of the source module is never read.
        other = dict(draws, source_randn=torch.randn_like(draws["source_randn"]))
        with Draws(replay=other).active(), torch.inference_mode():
            again, _ = model.inference(speech_feat=mel)
        assert torch.equal(again, audio), "source_randn reaches the audio"
    res = {"input.mel": mel}
    for k, v in draws.items():
        res[f"noise.{k}"] = v
    for k, v in stages.items():
        res[f"out.{k}"] = v
    return res


_DTYPES = {torch.float32: ("F32", np.float32), torch.int64: ("I64", np.int64)}


def write_safetensors(path, tensors, metadata):
    """safetensors with a byte-stable header: sorted keys, 8-byte aligned data."""
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header = {}
    blobs = []
    offset = 0
    for k in order:
        t = tensors[k].detach().cpu().contiguous()
        code, npdt = _DTYPES[t.dtype]
        data = t.numpy().astype(npdt, copy=False).tobytes(order="C")
        header[k] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    raw = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def read_back(path, tensors):
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        assert set(f.keys()) == set(tensors)
        for k in f.keys():
            assert torch.equal(f.get_tensor(k), tensors[k].contiguous()), k


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", metavar="OUT_DIR", type=Path,
                    help="official widths (~21M random parameters, ~84 MB) written to OUT_DIR")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "chatterbox",
                    help="where the tiny fixture goes (default: tests/fixtures/chatterbox)")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the cross-checks against the stock HiFTGenerator.inference")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1; results are only byte-stable for a fixed value)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    hifigan, predictor_cls, cb_version = import_reference()
    if args.full:
        config, name, out_dir = OFFICIAL_CONFIG, "hift_full", args.full
    else:
        config, name, out_dir = TINY_CONFIG, "hift_tiny", args.out_dir
    config = copy.deepcopy(config)

    model = build_model(hifigan, predictor_cls, config)
    probe = torch.randn((1, 80, 64), generator=torch.Generator().manual_seed(SEED_PERTURB)) * MEL_STD + MEL_MEAN
    perturb_weights(model, probe)

    weights = {PREFIX + k: v for k, v in model.state_dict().items()}
    n_params = sum(v.numel() for v in weights.values())
    io = {}
    case_meta = []
    for i, case in enumerate(CASES):
        for k, v in run_case(model, i, case, not args.no_check).items():
            io[f"case{i}.{k}"] = v
        f0 = io[f"case{i}.out.f0"]
        # Voicing must not hinge on the last bits of F0.
        margin = (f0 - config["nsf_voiced_threshold"]).abs().min().item()
        assert margin > 1e-2, f"case{i}: an F0 lies {margin} Hz from the voicing threshold"
        case_meta.append({
            "frames": case["frames"],
            "samples": int(io[f"case{i}.out.audio"].shape[1]),
            "voiced": float((f0 > config["nsf_voiced_threshold"]).float().mean()),
        })

    metadata = {
        "format": "voxpool-chatterbox-hift-fixture",
        "format_version": FORMAT_VERSION,
        "model": name,
        "config": json.dumps(config, ensure_ascii=True),
        "cases": json.dumps(case_meta, ensure_ascii=True),
        "parameters": str(n_params),
        "reference": f"chatterbox-tts=={cb_version} torch=={torch.__version__.split('+')[0]}",
        "seeds": json.dumps({"weights": SEED_WEIGHTS, "perturb": SEED_PERTURB, "cases": SEED_CASE}),
    }
    w_path = out_dir / f"{name}.safetensors"
    io_path = out_dir / f"{name}_io.safetensors"
    cfg_path = out_dir / f"{name}_config.json"
    write_safetensors(w_path, weights, metadata)
    write_safetensors(io_path, io, metadata)
    cfg_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    read_back(w_path, weights)
    read_back(io_path, io)

    for p in (w_path, io_path):
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB, sha256 {digest}")
    print(f"{n_params} parameters")
    for i, m in enumerate(case_meta):
        f0 = io[f"case{i}.out.f0"]
        post = io[f"case{i}.out.conv_post"]
        audio = io[f"case{i}.out.audio"]
        print(f"case{i}: {m['frames']} frames, {m['samples']} samples; F0 {f0.min():.0f}..{f0.max():.0f} Hz, "
              f"{m['voiced']:.0%} voiced; conv_post std {post.std():.2f}; audio rms {audio.pow(2).mean().sqrt():.3f}, "
              f"clipped {(io[f'case{i}.out.audio_raw'].abs() > config['audio_limit']).float().mean():.1%}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
