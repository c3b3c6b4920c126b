"""Time the PyTorch reference's voice cloning on the same weights and clip as
voxpool's bench (`benches/cloning.rs`).

    python tools/chatterbox_clone_bench_reference.py --ve /tmp/clone-full/ve \
        --s3tokenizer /tmp/clone-full/s3tokenizer --campplus /tmp/clone-full/campplus \
        --runs 3 --threads 2

Builds `VoiceEncoder()`, `S3Tokenizer("speech_tokenizer_v2_25hz")` and `CAMPPlus()`
at their released sizes, loads the full-size random weights that
`tools/chatterbox_{ve,s3tokenizer,campplus}_fixtures.py --full` write, and runs
what `ChatterboxTurboTTS.prepare_conditionals` runs after loading, loudness
normalisation and resampling (both implementations get the same 24 and 16 kHz
clip, computed from one formula): S3Gen's prompt mel of the first 10 s, CAMPPlus on
them, their speech tokens, T3's prompt tokens of the first 15 s (at most 375) and
the voice encoder's embedding of the whole clip. Every measurement is the median of
`--runs` runs after one warm-up run. Prints one JSON object.
"""
import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

warnings.filterwarnings("ignore")

SECONDS = 12.0


def clip(rate):
    """The bench clip: a voiced harmonic tone whose pitch glides, with tremolo and
    a little deterministic noise (the same formula as benches/cloning.rs)."""
    n = int(SECONDS * rate)
    t = np.arange(n, dtype=np.float64) / rate
    pitch = 120.0 + 30.0 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    wav = sum(np.sin(k * phase) / k for k in range(1, 8))
    wav *= 0.15 * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))
    i = np.arange(n, dtype=np.uint64)
    noise = ((i * np.uint64(2654435761)) % np.uint64(1000)).astype(np.float64) / 1000.0 - 0.5
    wav += 0.01 * noise
    return torch.from_numpy(wav.astype(np.float32))


def strip(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def find(folder, suffix):
    files = sorted(Path(folder).glob(f"*{suffix}"))
    if not files:
        sys.exit(f"no *{suffix} in {folder}: run the fixture script with --full first")
    return files[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ve", required=True)
    ap.add_argument("--s3tokenizer", required=True)
    ap.add_argument("--campplus", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from chatterbox.models.s3gen.utils.mel import mel_spectrogram
    from chatterbox.models.s3gen.xvector import CAMPPlus
    from chatterbox.models.s3tokenizer import S3Tokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder

    ve = VoiceEncoder()
    ve_state = load_file(find(args.ve, ".safetensors"))
    ve.load_state_dict({k: v for k, v in ve_state.items() if not k.startswith(("case", "input"))},
                       strict=False)
    ve.eval()
    tokenizer = S3Tokenizer("speech_tokenizer_v2_25hz")
    tok_state = strip(load_file(find(args.s3tokenizer, ".safetensors")), "tokenizer.")
    tokenizer.load_state_dict(tok_state, strict=False)
    tokenizer.eval()
    campplus = CAMPPlus(memory_efficient=False)
    camp_state = strip(load_file(find(args.campplus, ".safetensors")), "speaker_encoder.")
    campplus.load_state_dict(camp_state, strict=False)
    campplus.eval()

    wav24 = clip(24_000)
    wav16 = clip(16_000)

    def clone():
        times = {}
        with torch.inference_mode():
            start = time.perf_counter()
            ref24 = wav24[: 10 * 24_000]
            ref16 = wav16[: 10 * 16_000]
            mel = mel_spectrogram(ref24[None]).transpose(1, 2)
            times["prompt_mel"] = time.perf_counter() - start
            t = time.perf_counter()
            emb = campplus.inference(ref16[None])
            times["campplus"] = time.perf_counter() - t
            t = time.perf_counter()
            tokens, _ = tokenizer(ref16[None].float())
            tokens = tokens[:, : mel.shape[1] // 2]
            t3_tokens, _ = tokenizer.forward([wav16[: 15 * 16_000].numpy()], max_len=375)
            times["tokenizer"] = time.perf_counter() - t
            t = time.perf_counter()
            ve_embed = torch.from_numpy(ve.embeds_from_wavs([wav16.numpy()], sample_rate=16_000))
            times["voice_encoder"] = time.perf_counter() - t
            times["total"] = time.perf_counter() - start
        return times, (mel.shape, emb.shape, tokens.shape, t3_tokens.shape, ve_embed.shape)

    clone()
    runs = [clone() for _ in range(args.runs)]
    median = {k: float(np.median([r[0][k] for r in runs])) for k in runs[0][0]}
    shapes = [list(s) for s in runs[0][1]]
    print(json.dumps({"threads": args.threads, "runs": args.runs, "seconds": median,
                      "shapes": shapes, "clip_seconds": SECONDS}))


if __name__ == "__main__":
    main()
