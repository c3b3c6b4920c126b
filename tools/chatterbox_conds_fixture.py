"""Write a tiny Chatterbox Turbo `conds.pt` (the built-in voice file) for the tests.

    /tmp/cbvenv/bin/python tools/chatterbox_conds_fixture.py

It takes the voice the T3 and S3Gen parity fixtures already use (speaker embedding
and prompt speech tokens from `t3_tiny_io.safetensors`; prompt tokens, prompt mel and
x-vector from `s3gen_tiny_io.safetensors`, case 0) and saves it with the reference's
own `Conditionals.save`, so the file has exactly the layout of the released
`conds.pt`: `torch.save({"t3": T3Cond.__dict__, "gen": ref_dict})`. It then loads it
back with `Conditionals.load` to check. Output: tests/fixtures/chatterbox/conds_tiny.pt
(a few kB). Same environment as tools/chatterbox_t3_fixtures.py.
"""
from pathlib import Path

import torch
from safetensors.torch import load_file

from chatterbox.models.t3.modules.cond_enc import T3Cond
from chatterbox.tts_turbo import Conditionals

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "chatterbox"


def conditionals(speaker_emb, prompt_speech_tokens, s3, case="case0"):
    """A voice: T3's speaker embedding and prompt speech tokens, and S3Gen's prompt
    tokens, prompt mel and x-vector from `case` of an S3Gen fixture's io file."""
    t3_cond = T3Cond(
        speaker_emb=speaker_emb,
        cond_prompt_speech_tokens=prompt_speech_tokens,
        emotion_adv=0.0 * torch.ones(1, 1, 1),
    )
    gen = {
        "prompt_token": s3[f"{case}.prompt_token"],
        "prompt_token_len": torch.tensor([s3[f"{case}.prompt_token"].shape[1]]),
        "prompt_feat": s3[f"{case}.prompt_feat"],
        "prompt_feat_len": None,
        "embedding": s3[f"{case}.embedding"],
    }
    return Conditionals(t3_cond, gen)


def main():
    t3 = load_file(str(FIXTURES / "t3_tiny_io.safetensors"))
    s3 = load_file(str(FIXTURES / "s3gen_tiny_io.safetensors"))
    conds = conditionals(t3["cond.speaker_emb"], t3["cond.cond_prompt_speech_tokens"], s3)
    out = FIXTURES / "conds_tiny.pt"
    conds.save(out)
    back = Conditionals.load(out)
    assert torch.equal(back.t3.speaker_emb, conds.t3.speaker_emb)
    assert torch.equal(back.gen["prompt_feat"], conds.gen["prompt_feat"])
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
