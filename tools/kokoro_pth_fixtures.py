"""Write the tiny Kokoro checkpoint in the official PyTorch layout, for the loader tests.

From tests/fixtures/kokoro/tiny.safetensors (made by kokoro_fixtures.py) this writes
  tests/fixtures/kokoro/tiny.pth            {group: {"module." + key: tensor}} like kokoro-v1_0.pth
  tests/fixtures/kokoro/voices/tiny_a.pt    torch.save(tensor [510, 1, 2*style_dim]) like voices/*.pt
  tests/fixtures/kokoro/voices/tiny_b.pt
Run with the fixture venv: python tools/kokoro_pth_fixtures.py
"""
import pathlib

import torch
from safetensors.torch import load_file

root = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "kokoro"
flat = load_file(str(root / "tiny.safetensors"))
groups = {}
for key, value in flat.items():
    if not key.startswith("weights."):
        continue
    group, rest = key[len("weights."):].split(".", 1)
    groups.setdefault(group, {})["module." + rest] = value.clone()
torch.save(groups, root / "tiny.pth")

width = flat["case0.input.ref_s"].shape[-1]
gen = torch.Generator().manual_seed(1234)
for name in ("tiny_a", "tiny_b"):
    pack = torch.randn(510, 1, width, generator=gen) * 0.5
    torch.save(pack, root / "voices" / f"{name}.pt")
print("wrote", root / "tiny.pth", "and 2 voices")
