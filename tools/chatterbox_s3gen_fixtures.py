#!/usr/bin/env python3
"""Chatterbox Turbo S3Gen token-to-mel parity fixtures for voxpool's Rust port.

Builds the flow part of `S3Gen(meanflow=True)` (chatterbox-tts 0.1.7:
`CausalMaskedDiffWithXvec` with the `UpsampleConformerEncoder` and the meanflow
`CausalConditionalCFM` / `ConditionalDecoder`), exactly as
`chatterbox/models/s3gen/s3gen.py` `S3Token2Mel.__init__` wires it, but with a
tiny config and random weights from a fixed seed, and records the inputs, the
noise the flow draws and the output of every stage for two inputs.

    # default: tiny model, small enough to commit (tests/fixtures/chatterbox/)
    python tools/chatterbox_s3gen_fixtures.py
    # Turbo sizes, random weights, written outside the repo (for benchmarks)
    python tools/chatterbox_s3gen_fixtures.py --full /tmp/s3gen-full

Files (see tools/README.md for the key tables):
    s3gen_tiny.safetensors      weights under the official `s3gen_meanflow.safetensors`
                                key names (`flow.` prefix)
    s3gen_tiny_config.json      the config the Rust side reads
    s3gen_tiny_io.safetensors   `case<i>.<stage>` inputs, noise and stage outputs
Running it twice gives byte-identical files.
"""

import argparse
import json
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", category=FutureWarning)

REPO_ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = "1"
SEED = 20260

# `S3Token2Mel.__init__` (meanflow=True) as shipped with Chatterbox Turbo. Keys
# follow the constructor arguments of the reference classes.
TURBO_CONFIG = {
    "vocab_size": 6561,
    "input_size": 512,
    "output_size": 80,
    "spk_embed_dim": 192,
    "token_mel_ratio": 2,
    "pre_lookahead_len": 3,
    "encoder": {
        "output_size": 512,
        "attention_heads": 8,
        "linear_units": 2048,
        "num_blocks": 6,
        "num_up_blocks": 4,
        "upsample_stride": 2,
        "input_layer": "linear",
        "pos_enc_layer_type": "rel_pos_espnet",
        "selfattention_layer_type": "rel_selfattn",
        "activation_type": "swish",
        "normalize_before": True,
        "use_cnn_module": False,
        "macaron_style": False,
        "static_chunk_size": 0,
        "key_bias": True,
    },
    "decoder": {
        "in_channels": 320,
        "out_channels": 80,
        "causal": True,
        "channels": [256],
        "attention_head_dim": 64,
        "n_blocks": 4,
        "num_mid_blocks": 12,
        "num_heads": 8,
        "act_fn": "gelu",
        "meanflow": True,
    },
    "cfm": {
        "spk_emb_dim": 80,
        "n_timesteps": 2,
        "t_scheduler": "cosine",
        "inference_cfg_rate": 0.7,
    },
}

# Every module kind and every structural quirk of the Turbo flow (one down block
# without downsampling, mid blocks, one up block, causal convs, meanflow time
# mixer, the 4 up-encoder layers, attention inner width != channels), smaller.
TINY_OVERRIDES = {
    "input_size": 64,
    "encoder": {"output_size": 64, "attention_heads": 2, "linear_units": 128, "num_blocks": 2},
    "decoder": {"channels": [32], "attention_head_dim": 24, "n_blocks": 2, "num_mid_blocks": 2,
                "num_heads": 2},
}

# (prompt tokens, speech tokens) per case.
CASES = [(14, 23), (31, 6)]


def merged(base, over):
    out = json.loads(json.dumps(base))
    for k, v in over.items():
        if isinstance(v, dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def import_reference():
    from chatterbox.models.s3gen.configs import CFM_PARAMS
    from chatterbox.models.s3gen.decoder import ConditionalDecoder
    from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
    from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
    from chatterbox.models.s3gen.transformer.upsample_encoder import (
        PreLookaheadLayer,
        Upsample1D,
        UpsampleConformerEncoder,
    )
    return dict(CFM_PARAMS=CFM_PARAMS, ConditionalDecoder=ConditionalDecoder,
                CausalMaskedDiffWithXvec=CausalMaskedDiffWithXvec,
                CausalConditionalCFM=CausalConditionalCFM, PreLookaheadLayer=PreLookaheadLayer,
                Upsample1D=Upsample1D, UpsampleConformerEncoder=UpsampleConformerEncoder)


def build_flow(ref, cfg):
    """The `self.flow` of `S3Token2Mel(meanflow=True)` for `cfg`."""
    e, d, c = cfg["encoder"], cfg["decoder"], cfg["cfm"]
    assert cfg["input_size"] == e["output_size"], "the encoder's up_embed reads its own output"
    encoder = ref["UpsampleConformerEncoder"](
        output_size=e["output_size"],
        attention_heads=e["attention_heads"],
        linear_units=e["linear_units"],
        num_blocks=e["num_blocks"],
        dropout_rate=0.1,
        positional_dropout_rate=0.1,
        attention_dropout_rate=0.1,
        normalize_before=e["normalize_before"],
        input_layer=e["input_layer"],
        pos_enc_layer_type=e["pos_enc_layer_type"],
        selfattention_layer_type=e["selfattention_layer_type"],
        input_size=cfg["input_size"],
        use_cnn_module=e["use_cnn_module"],
        macaron_style=e["macaron_style"],
    )
    # The reference hard-codes 512 channels for these two layers (Turbo's width);
    # a narrower encoder needs them at its own width.
    if e["output_size"] != 512:
        encoder.pre_lookahead_layer = ref["PreLookaheadLayer"](
            channels=e["output_size"], pre_lookahead_len=cfg["pre_lookahead_len"])
        encoder.up_layer = ref["Upsample1D"](
            channels=e["output_size"], out_channels=e["output_size"], stride=e["upsample_stride"])
    assert len(encoder.up_encoders) == e["num_up_blocks"]
    estimator = ref["ConditionalDecoder"](
        in_channels=d["in_channels"],
        out_channels=d["out_channels"],
        causal=d["causal"],
        channels=d["channels"],
        dropout=0.0,
        attention_head_dim=d["attention_head_dim"],
        n_blocks=d["n_blocks"],
        num_mid_blocks=d["num_mid_blocks"],
        num_heads=d["num_heads"],
        act_fn=d["act_fn"],
        meanflow=d["meanflow"],
    )
    decoder = ref["CausalConditionalCFM"](
        spk_emb_dim=c["spk_emb_dim"], cfm_params=ref["CFM_PARAMS"], estimator=estimator)
    flow = ref["CausalMaskedDiffWithXvec"](
        input_size=cfg["input_size"],
        output_size=cfg["output_size"],
        spk_embed_dim=cfg["spk_embed_dim"],
        vocab_size=cfg["vocab_size"],
        token_mel_ratio=cfg["token_mel_ratio"],
        pre_lookahead_len=cfg["pre_lookahead_len"],
        encoder=encoder,
        decoder=decoder,
    )
    return flow.eval()


@torch.no_grad()
def perturb_weights(flow):
    """Moves every parameter off its initial value (LayerNorm gains of 1, zero
    biases, the identity time mixer) so that each one is exercised."""
    for name, p in flow.named_parameters():
        if p.ndim == 1 and name.endswith(".weight"):  # LayerNorm gains
            p.copy_(1.0 + 0.2 * torch.randn_like(p))
        elif p.ndim == 1:  # biases
            p.copy_(0.1 * torch.randn_like(p))
        elif name.endswith("time_embed_mixer.weight"):
            p.add_(0.05 * torch.randn_like(p))


class Recorder:
    """Forward hooks that keep the output of named submodules."""

    def __init__(self, flow):
        self.out = {}
        self.handles = []
        enc = flow.encoder
        named = {
            "encoder.embed": enc.embed,
            "encoder.pre_lookahead_layer": enc.pre_lookahead_layer,
            "encoder.up_layer": enc.up_layer,
            "encoder.up_embed": enc.up_embed,
            "encoder": enc,
            "encoder_proj": flow.encoder_proj,
            "spk_embed_affine_layer": flow.spk_embed_affine_layer,
            "input_embedding": flow.input_embedding,
        }
        for i, layer in enumerate(enc.encoders):
            named[f"encoder.encoders.{i}"] = layer
        for i, layer in enumerate(enc.up_encoders):
            named[f"encoder.up_encoders.{i}"] = layer
        for key, module in named.items():
            self.handles.append(module.register_forward_hook(self.hook(key)))

    def hook(self, key):
        def f(_module, _inputs, output):
            if isinstance(output, tuple):
                output = output[0]
            self.out[key] = output.detach().clone()
        return f

    def remove(self):
        for h in self.handles:
            h.remove()


def recording_basic_euler(cfm, record):
    """`CausalConditionalCFM.basic_euler` (flow_matching.py), same arithmetic, also
    keeping the start noise, each step's estimator output and each step's x."""

    def basic_euler(x, t_span, mu, mask, spks, cond):
        record["noise"] = x.detach().clone()
        record["decoder.mu"] = mu.detach().clone()
        record["decoder.spks"] = spks.detach().clone()
        record["decoder.cond"] = cond.detach().clone()
        record["t_span"] = t_span.detach().clone()
        in_dtype = x.dtype
        for i, (t, r) in enumerate(zip(t_span[..., :-1], t_span[..., 1:])):
            t, r = t[None], r[None]
            record[f"step{i}.x_in"] = x.detach().clone()
            dxdt = cfm.estimator.forward(x, mask=mask, mu=mu, t=t, spks=spks, cond=cond, r=r)
            record[f"step{i}.dxdt"] = dxdt.detach().clone()
            dt = r - t
            x = x + dt * dxdt
            record[f"step{i}.x"] = x.detach().clone()
        return x.to(in_dtype)

    return basic_euler


def case_inputs(cfg, index, n_prompt, n_speech):
    g = torch.Generator().manual_seed(SEED + 101 * index)
    vocab = cfg["vocab_size"]
    prompt_token = torch.randint(0, vocab, (1, n_prompt), generator=g)
    speech_tokens = torch.randint(0, vocab, (1, n_speech), generator=g)
    # Log-mel-like values for the prompt's mel frames (2 per token).
    prompt_feat = -6.0 + 2.0 * torch.randn(1, n_prompt * cfg["token_mel_ratio"], cfg["output_size"],
                                           generator=g)
    embedding = torch.randn(1, cfg["spk_embed_dim"], generator=g)
    return prompt_token, speech_tokens, prompt_feat, embedding


def run_flow(flow, cfg, speech_tokens, prompt_token, prompt_feat, embedding, seed):
    """`S3Token2Wav.flow_inference` with `meanflow=True`: draws the tail noise,
    then `flow.inference(..., finalize=True)` (which draws the full-length noise
    and overwrites its tail)."""
    torch.manual_seed(seed)
    noise = torch.randn(1, cfg["output_size"], speech_tokens.size(-1) * cfg["token_mel_ratio"])
    mel, _ = flow.inference(
        token=speech_tokens,
        token_len=torch.LongTensor([speech_tokens.size(-1)]),
        prompt_token=prompt_token,
        prompt_token_len=torch.LongTensor([prompt_token.size(-1)]),
        prompt_feat=prompt_feat,
        prompt_feat_len=None,
        embedding=embedding,
        finalize=True,
        n_timesteps=cfg["cfm"]["n_timesteps"],
        noised_mels=noise,
        meanflow=True,
    )
    return mel


def run_case(flow, cfg, index, n_prompt, n_speech):
    prompt_token, speech_tokens, prompt_feat, embedding = case_inputs(cfg, index, n_prompt, n_speech)
    seed = SEED + 7 * index
    stock = run_flow(flow, cfg, speech_tokens, prompt_token, prompt_feat, embedding, seed)

    record = {}
    cfm = flow.decoder
    cfm.basic_euler = recording_basic_euler(cfm, record)
    rec = Recorder(flow)
    try:
        mel = run_flow(flow, cfg, speech_tokens, prompt_token, prompt_feat, embedding, seed)
    finally:
        rec.remove()
        del cfm.basic_euler
    assert torch.equal(mel, stock), "instrumented run differs from the stock flow.inference"

    # Replaying the exported noise alone (no seed) must give the same mel.
    noise = record["noise"]
    real_randn_like = torch.randn_like
    torch.randn_like = lambda t, *a, **k: noise.clone()
    try:
        replay, _ = flow.inference(
            token=speech_tokens, token_len=torch.LongTensor([n_speech]),
            prompt_token=prompt_token, prompt_token_len=torch.LongTensor([n_prompt]),
            prompt_feat=prompt_feat, prompt_feat_len=None, embedding=embedding, finalize=True,
            n_timesteps=cfg["cfm"]["n_timesteps"], noised_mels=None, meanflow=True)
    finally:
        torch.randn_like = real_randn_like
    assert torch.equal(replay, stock), "replaying the exported noise does not reproduce the mel"

    out = {
        "speech_tokens": speech_tokens.to(torch.int64),
        "prompt_token": prompt_token.to(torch.int64),
        "prompt_feat": prompt_feat,
        "embedding": embedding,
        "noise": noise,
        # stage outputs
        "token_emb": rec.out["input_embedding"],
        "spk_emb": record["decoder.spks"],
        "encoder.embed": rec.out["encoder.embed"],
        "encoder.pre_lookahead_layer": rec.out["encoder.pre_lookahead_layer"],
        "encoder.up_layer": rec.out["encoder.up_layer"],
        "encoder.up_embed": rec.out["encoder.up_embed"],
        "encoder.out": rec.out["encoder"],
        "mu": record["decoder.mu"],
        "conds": record["decoder.cond"],
        "t_span": record["t_span"],
        "mel": mel,
    }
    for i in range(cfg["encoder"]["num_blocks"]):
        out[f"encoder.encoders.{i}"] = rec.out[f"encoder.encoders.{i}"]
    for i in range(cfg["encoder"]["num_up_blocks"]):
        out[f"encoder.up_encoders.{i}"] = rec.out[f"encoder.up_encoders.{i}"]
    for i in range(cfg["cfm"]["n_timesteps"]):
        for part in ("x_in", "dxdt", "x"):
            out[f"step{i}.{part}"] = record[f"step{i}.{part}"]
    # `token_emb` is the embedding of [prompt, speech] times the all-ones mask.
    assert out["token_emb"].shape[1] == n_prompt + n_speech
    assert mel.shape == (1, cfg["output_size"], n_speech * cfg["token_mel_ratio"])
    return {f"case{index}.{k}": v.contiguous() for k, v in out.items()}


DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """A safetensors file with a sorted header, so that output is byte-stable."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def check_readback(path, tensors):
    from safetensors.torch import load_file
    back = load_file(str(path))
    assert sorted(back) == sorted(tensors), path
    for k, v in tensors.items():
        assert torch.equal(back[k], v.cpu()), f"{path}: {k}"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", metavar="OUT_DIR", type=Path,
                    help="write Turbo-size random weights (s3gen_full*.safetensors) to OUT_DIR")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "chatterbox",
                    help="where the tiny fixture goes (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (keep 1 for byte-identical committed files)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    ref = import_reference()
    if args.full:
        cfg, stem, out_dir = TURBO_CONFIG, "s3gen_full", args.full
    else:
        cfg, stem, out_dir = merged(TURBO_CONFIG, TINY_OVERRIDES), "s3gen_tiny", args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(SEED)
    flow = build_flow(ref, cfg)
    perturb_weights(flow)
    weights = {f"flow.{k}": v.detach().clone().contiguous() for k, v in flow.state_dict().items()}
    n_params = sum(p.numel() for p in flow.parameters())

    io = {}
    cases = CASES if not args.full else [(250, 100)]
    for index, (n_prompt, n_speech) in enumerate(cases):
        io.update(run_case(flow, cfg, index, n_prompt, n_speech))

    import chatterbox  # noqa: F401  (version for the metadata)
    from importlib.metadata import version
    meta = {"format": FORMAT_VERSION, "chatterbox-tts": version("chatterbox-tts"),
            "torch": torch.__version__, "seed": str(SEED), "cases": json.dumps(cases)}
    wpath, cpath, iopath = (out_dir / f"{stem}.safetensors", out_dir / f"{stem}_config.json",
                            out_dir / f"{stem}_io.safetensors")
    write_safetensors(wpath, weights, meta)
    write_safetensors(iopath, io, meta)
    cpath.write_text(json.dumps(cfg, indent=2) + "\n")
    check_readback(wpath, weights)
    check_readback(iopath, io)
    for p in (wpath, cpath, iopath):
        print(f"{p}: {p.stat().st_size / 1e6:.2f} MB")
    print(f"{n_params} parameters; mel range "
          f"{min(float(io[f'case{i}.mel'].min()) for i in range(len(cases))):.3f}.."
          f"{max(float(io[f'case{i}.mel'].max()) for i in range(len(cases))):.3f}")


if __name__ == "__main__":
    sys.exit(main())
