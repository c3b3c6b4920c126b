#!/usr/bin/env python3
"""Chatterbox Turbo voice-cloning feature front-ends: parity fixture for voxpool.

Runs the reference pre-processing of `ChatterboxTurboTTS.prepare_conditionals`
(chatterbox-tts 0.1.7) on a short deterministic clip and records, for each network
of the cloning path, the exact tensor the reference feeds it:

    prompt_feat   S3Gen prompt mel, `mel_spectrogram` of `S3Gen.embed_ref`
    s3tok_mel     the log-mel `S3Tokenizer.forward` hands to `quantize` (T3 path:
                  ENC_COND_LEN cut and `max_len` = speech_cond_prompt_len)
    fbank         CAMPPlus input, `extract_feature` (kaldi fbank, mean removed)
    ve_mel        VoiceEncoder input, `embeds_from_wavs` (trim, melspectrogram)

The real code runs unmodified: each network's entry point (`quantize`,
`CAMPPlus.forward`, `VoiceEncoder.inference`) is replaced on its instance by a
recorder, so the wrappers around it do their own padding, cutting and packing.
No weights matter, none are stored.

    python tools/chatterbox_features_fixtures.py
    # an 18 s clip with Turbo's own cut lengths, outside the repo
    python tools/chatterbox_features_fixtures.py --full /tmp/features-full

Files: features_tiny.safetensors (inputs and the four tensors, keys in
tools/README.md) and features_tiny_config.json (the cut lengths used).

The clip is 1.6 s: 0.25 s of near-silence (noise at -80 dBFS) at each end so that
`librosa.effects.trim` cuts something, and in between three chirps, a vowel-like
harmonic stack and noise. It is loudness-normalised with the reference's
`norm_loudness` (pyloudnorm, -27 LUFS), then resampled to 16 kHz with
`librosa.resample` (soxr_hq), exactly as `prepare_conditionals` does. The cut
lengths are shrunk (TINY) so that each cut acts on the short clip; the real ones
are in TURBO. Running it twice gives a byte-identical file.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from fixture_io import read_back, write_safetensors

warnings.filterwarnings("ignore")

REPO_ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = "1"
SEED = 20261
S3GEN_SR, S3_SR = 24000, 16000

# `ChatterboxTurboTTS`: DEC_COND_LEN = 10 s at 24 kHz, ENC_COND_LEN = 15 s at 16 kHz,
# `hp.speech_cond_prompt_len` = 375 tokens; `embeds_from_wavs(trim_top_db=20)`.
TURBO = {"dec_cond_len": 10 * S3GEN_SR, "enc_cond_len": 15 * S3_SR,
         "speech_cond_prompt_len": 375, "ve_trim_top_db": 20.0}
# Cuts that bite on a 1.6 s clip: 1.4 s of the 24 kHz clip for S3Gen; 1.2 s of the
# 16 kHz clip for the tokenizer, whose mel (120 frames) `max_len` then cuts to 112.
TINY = {"dec_cond_len": 33600, "enc_cond_len": 19200,
        "speech_cond_prompt_len": 28, "ve_trim_top_db": 20.0}


def test_clip(seconds=1.6):
    """`seconds` at 24 kHz, float64, before loudness normalisation."""
    rng = np.random.RandomState(SEED)
    n, edge = int(seconds * S3GEN_SR), int(0.25 * S3GEN_SR)
    t = np.arange(n - 2 * edge) / S3GEN_SR
    dur = t[-1]
    x = np.zeros_like(t)
    # Linear chirps sweeping most of the band (up to 11 kHz, past the 8 kHz mel
    # limit), so every filter of every front-end sees energy somewhere.
    for f0, f1, a in ((120.0, 3000.0, 0.20), (2500.0, 11000.0, 0.08), (6000.0, 300.0, 0.10)):
        x += a * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * dur)))
    # A vowel-like harmonic stack on a wobbling 140 Hz fundamental.
    phase = 2 * np.pi * np.cumsum(140.0 + 15.0 * np.sin(2 * np.pi * 3.0 * t)) / S3GEN_SR
    for h in range(1, 25):
        x += 0.15 / h * np.sin(h * phase + h)
    x += 0.02 * rng.standard_normal(len(t))
    # Syllable-like amplitude envelope with 10 ms fades at both ends.
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    fade = np.minimum(1.0, np.minimum(t, dur - t) / 0.01)
    x *= env * fade
    out = 1e-4 * rng.standard_normal(n)
    out[edge:n - edge] += x
    return out


def recorder(store, key, result):
    def record(*args, **_kwargs):
        store[key] = args
        return result
    return record


def reference_features(cfg, seconds):
    from chatterbox.models.s3gen.utils.mel import mel_spectrogram
    from chatterbox.models.s3gen.xvector import CAMPPlus
    from chatterbox.models.s3tokenizer import S3Tokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts_turbo import ChatterboxTurboTTS
    import librosa

    # prepare_conditionals: librosa.load(sr=24000) -> norm_loudness -> resample.
    wav24 = test_clip(seconds).astype(np.float32)
    wav24 = ChatterboxTurboTTS.norm_loudness(None, wav24, S3GEN_SR)
    wav24 = np.asarray(wav24, dtype=np.float32)
    wav16 = librosa.resample(wav24, orig_sr=S3GEN_SR, target_sr=S3_SR)
    assert wav16.dtype == np.float32

    out = {"wav24": torch.from_numpy(wav24.copy()), "wav16": torch.from_numpy(wav16.copy())}

    # 1. S3Gen.embed_ref after `s3gen_ref_wav[:DEC_COND_LEN]`: mel, then (B, T, 80).
    ref24 = torch.from_numpy(wav24[:cfg["dec_cond_len"]].copy()).unsqueeze(0)
    out["prompt_feat"] = mel_spectrogram(ref24).transpose(1, 2).contiguous()

    # 2. T3 cond prompt: s3_tokzr.forward([ref_16k_wav[:ENC_COND_LEN]], max_len=plen).
    seen = {}
    tok = S3Tokenizer("speech_tokenizer_v2_25hz").eval()
    tok.quantize = recorder(seen, "quantize", (torch.zeros(1, 1, dtype=torch.long),
                                               torch.ones(1, dtype=torch.long)))
    tok.forward([wav16[:cfg["enc_cond_len"]]], max_len=cfg["speech_cond_prompt_len"])
    mel, mel_lens = seen["quantize"]
    out["s3tok_mel"] = mel.contiguous()
    out["s3tok_mel_lens"] = mel_lens.to(torch.int64)
    # embed_ref's own tokenizer call (no cut, no max_len) on the same 16 kHz clip.
    tok.forward([torch.from_numpy(wav16.copy()).unsqueeze(0)])
    full_mel, full_lens = seen["quantize"]
    assert full_mel.shape[-1] == len(wav16) // 160 == int(full_lens[0])

    # 3. CAMPPlus.inference(ref_wav_16): extract_feature, then forward (B, T, 80).
    campplus = CAMPPlus(memory_efficient=False).eval()
    campplus.forward = recorder(seen, "campplus", None)
    campplus.inference(torch.from_numpy(wav16.copy()).unsqueeze(0))
    (fbank,) = seen["campplus"]
    assert fbank.shape[0] == 1
    out["fbank"] = fbank[0].contiguous()

    # 4. VoiceEncoder.embeds_from_wavs([ref_16k_wav], sample_rate=16000):
    #    trim (top_db 20), melspectrogram, pack -> inference(mels, mel_lens, ...).
    ve = VoiceEncoder().eval()
    ve.inference = recorder(seen, "ve", torch.zeros(1, 256))
    ve.embeds_from_wavs([wav16], sample_rate=S3_SR, trim_top_db=cfg["ve_trim_top_db"])
    ve_mels, ve_lens = seen["ve"][:2]
    assert ve_mels.shape[0] == 1 and ve_lens == [ve_mels.shape[1]]
    out["ve_mel"] = ve_mels[0].contiguous()
    _, (start, end) = librosa.effects.trim(wav16, top_db=cfg["ve_trim_top_db"])
    out["ve_trim"] = torch.tensor([start, end], dtype=torch.int64)
    assert 0 < start and end < len(wav16)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "chatterbox",
                    help="where the fixture goes (default: %(default)s)")
    ap.add_argument("--full", metavar="OUT_DIR", type=Path,
                    help="write features_full.* for an 18 s clip with Turbo's cuts to OUT_DIR")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)

    cfg, seconds, stem, out_dir = TINY, 1.6, "features_tiny", args.out_dir
    if args.full:
        cfg, seconds, stem, out_dir = TURBO, 18.0, "features_full", args.full
    out = reference_features(cfg, seconds)
    from importlib.metadata import version
    meta = {"format": FORMAT_VERSION, "chatterbox-tts": version("chatterbox-tts"),
            "torch": torch.__version__, "librosa": version("librosa"),
            "soxr": version("soxr"), "seed": str(SEED), "config": json.dumps(cfg, sort_keys=True)}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.safetensors"
    write_safetensors(path, out, meta)
    read_back(path, out)
    cpath = out_dir / f"{stem}_config.json"
    cpath.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    print(f"{path}: {path.stat().st_size / 1e3:.1f} kB")
    for k in sorted(out):
        v = out[k]
        print(f"  {k:16s} {list(v.shape)} {v.dtype} "
              f"[{float(v.min()):.4g}, {float(v.max()):.4g}]")


if __name__ == "__main__":
    sys.exit(main())
