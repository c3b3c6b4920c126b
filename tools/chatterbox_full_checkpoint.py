"""Assemble a full-size Chatterbox Turbo checkpoint with random weights, in the
Hugging Face cache layout the server reads, for timing the server over HTTP.

    /tmp/cbvenv/bin/python tools/chatterbox_full_checkpoint.py --out /tmp/turbo-models

It takes the `--full` outputs of the three fixture scripts (`/tmp/t3-full`,
`/tmp/s3gen-full`, `/tmp/hift-full` by default, see tools/README.md) and writes
`OUT/models--ResembleAI--chatterbox-turbo/snapshots/full/` with:

- `t3_turbo_v1.safetensors`: a symbolic link to the T3 file (1.9 GB);
- `s3gen_meanflow.safetensors`: the flow (`flow.*`) and the vocoder (`mel2wav.*`)
  in one file, as released;
- `conds.pt`: the built-in voice at the released shapes, saved with the reference's
  own `Conditionals.save`: T3's 256-wide speaker embedding and 375 prompt speech
  tokens (seeded random), S3Gen's 250 prompt tokens, 500-frame prompt mel and
  x-vector from the S3Gen fixture's case 0;
- the tokenizer files of the committed tiny fixture (a small byte-level BPE whose ids
  all lie inside the full T3's text vocabulary; a sentence becomes more text tokens
  than with the released tokenizer).

Random weights never emit the stop token, so a request speaks until T3's
`max_gen_len`: time first audio, not whole answers. Byte-identical from run to run.
Same environment as tools/chatterbox_t3_fixtures.py.
"""
import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from chatterbox.tts_turbo import Conditionals

from chatterbox_conds_fixture import conditionals

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "tests" / "fixtures" / "chatterbox" / "tokenizer"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t3", type=Path, default=Path("/tmp/t3-full"))
    ap.add_argument("--s3gen", type=Path, default=Path("/tmp/s3gen-full"))
    ap.add_argument("--hift", type=Path, default=Path("/tmp/hift-full"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    snap = args.out / "models--ResembleAI--chatterbox-turbo" / "snapshots" / "full"
    snap.mkdir(parents=True, exist_ok=True)

    t3 = snap / "t3_turbo_v1.safetensors"
    if t3.is_symlink() or t3.exists():
        t3.unlink()
    t3.symlink_to((args.t3 / "t3_turbo_v1.safetensors").resolve())

    s3gen = load_file(str(args.s3gen / "s3gen_full.safetensors"))
    s3gen.update(load_file(str(args.hift / "hift_full.safetensors")))
    assert any(k.startswith("flow.") for k in s3gen)
    assert any(k.startswith("mel2wav.") for k in s3gen)
    save_file(dict(sorted(s3gen.items())), str(snap / "s3gen_meanflow.safetensors"))

    io = load_file(str(args.s3gen / "s3gen_full_io.safetensors"))
    g = torch.Generator().manual_seed(20261207)
    conds = conditionals(
        torch.randn(1, 256, generator=g),
        torch.randint(0, 6561, (1, 375), generator=g),
        load_file(str(args.s3gen / "s3gen_full_io.safetensors")),
    )
    conds.save(snap / "conds.pt")
    back = Conditionals.load(snap / "conds.pt")
    assert torch.equal(back.gen["prompt_feat"], conds.gen["prompt_feat"])

    for f in TOKENIZER.iterdir():
        shutil.copy(f, snap / f.name)
    print(f"wrote {snap}")


if __name__ == "__main__":
    main()
