#!/usr/bin/env python3
"""Chatterbox Turbo T3 parity fixtures for voxpool's Rust port.

Builds the reference `T3(T3Config(...))` exactly as
`ChatterboxTurboTTS.from_local` does (chatterbox-tts 0.1.7, pinned in
tools/README.md), but over a tiny GPT-2 backbone and a tiny GPT-2 byte-level
BPE tokenizer, with random weights from a fixed seed, and writes to
tests/fixtures/chatterbox/:

    t3_tiny.safetensors       weights under the t3_turbo_v1.safetensors key names
    t3_tiny_config.json       the T3Config fields and the backbone config dict
    t3_tiny_io.safetensors    inputs and the output of every stage (see README)
    t3_text_cases.json        punc_norm and tokenizer ids for a set of texts
    tokenizer/                vocab.json, merges.txt, added_tokens.json,
                              special_tokens_map.json, tokenizer_config.json
                              (the file set the Turbo checkpoint ships)

    python tools/chatterbox_t3_fixtures.py               # tiny, committed
    python tools/chatterbox_t3_fixtures.py --full DIR    # GPT-2 medium sizes

Running it twice gives byte-identical files.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "chatterbox"
FORMAT_VERSION = "1"

SEED_WEIGHTS = 20261127
SEED_INPUTS = 7
SEED_SAMPLER = 11

# The tiny backbone: GPT2_MEDIUM_CONFIG (chatterbox/models/t3/llama_configs.py)
# with small sizes.  Only the keys that GPT2Config reads matter; the rest are
# kept so the dict has the official layout.
TINY_NAME = "GPT2_tiny"
TINY_OVERRIDES = {"n_ctx": 128, "n_embd": 64, "hidden_size": 64, "n_head": 4, "n_layer": 2,
                  "n_positions": 128}

# Turbo's paralinguistic tags (the added tokens of the checkpoint's tokenizer).
TAGS = ["[laugh]", "[chuckle]", "[sigh]", "[gasp]", "[cough]", "[clear throat]", "[sniff]",
        "[groan]", "[shush]", "[whispering]", "[angry]", "[happy]", "[sarcastic]", "[surprised]",
        "[fear]", "[crying]", "[dramatic]", "[narration]", "[advertisement]"]

# Merges of the tiny BPE (GPT-2 byte-level symbols: Ġ is the space byte).
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "e r", "a n", "Ġ a", "o u", "r e", "o n", "Ġ s", "e d",
          "Ġ w", "i s", "Ġ h", "l l", "Ġ b", "in g", "Ġ i", "o r", "e s", "Ġ c", "Ġ o", "i t",
          "Ġ m", "a t", "Ġ f", "e n", "Ġ p", "Ġ d", "H e", "He ll", "Hell o", "Ġw h", "o w",
          "Ġ y", "Ġy ou", "Ġt o", "Ġt h", "Ġth is", "Ġa n", "Ġan d", "Ġ ,", ". .", "Ġf or"]

TEXTS = [
    "hello there, how are you?",
    "Hello   world\u2026 this is  a test",
    "We said: \u201cgo\u201d \u2014 and they went \u2013 fast",
    "it\u2019s \u2018fine\u2019 ,really [laugh] and [clear throat] okay",
    "",
    "   ",
    "Already ends with a comma,",
    "ends with spaces   ",
    "\u00e9t\u00e9 \u00e0 Paris! Caf\u00e9 [sigh]",
    "numbers 1234 and symbols #@$%^&*() <|endoftext|> end",
    "\u00dfe lower sharp s",
    "tabs\tand\nnewlines\r\nmixed\u00a0nbsp",
]
GEN_TEXT = "hello there, how are you?"

PROMPT_LEN = 12          # cond_prompt_speech_tokens in the fixture (conds.pt has 375)
TF_SPEECH = 16           # teacher-forced speech positions: start token + 15 tokens
GREEDY_MAX_GEN_LEN = 40  # max_gen_len of the greedy run that ends on the stop token
LIMIT_MAX_GEN_LEN = 5    # max_gen_len of the run cut by the token limit
STOP_STEP_RANGE = (8, 16)


def import_reference():
    import chatterbox.models.t3.llama_configs as llama_configs
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.tts_turbo import punc_norm
    return llama_configs, T3, T3Cond, T3Config, punc_norm


def turbo_hp(T3Config, llama_config_name, text_vocab):
    """T3Config exactly as ChatterboxTurboTTS.from_local sets it up."""
    hp = T3Config(text_tokens_dict_size=text_vocab)
    hp.llama_config_name = llama_config_name
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    return hp


def config_json(hp, backbone):
    fields = {k: v for k, v in vars(hp).items()}
    return {"t3": fields, "backbone": backbone, "format_version": FORMAT_VERSION}


# --------------------------------------------------------------------------
# Tokenizer files
# --------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer(dirpath: Path):
    """A tiny GPT-2 byte-level BPE in the slow-tokenizer file layout of the checkpoint."""
    dirpath.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for sym in bytes_to_unicode():
        vocab[sym] = len(vocab)
    for m in MERGES:
        a, b = m.split(" ")
        tok = a + b
        assert a in vocab and b in vocab, m
        assert tok not in vocab, m
        vocab[tok] = len(vocab)
    eot = "<|endoftext|>"
    vocab[eot] = len(vocab)
    added = {t: len(vocab) + i for i, t in enumerate(TAGS)}

    def dump(name, obj):
        (dirpath / name).write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    dump("vocab.json", vocab)
    (dirpath / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n", encoding="utf-8")
    dump("added_tokens.json", added)
    dump("special_tokens_map.json", {"bos_token": eot, "eos_token": eot, "unk_token": eot})
    decoder = {str(vocab[eot]): {"content": eot, "lstrip": False, "normalized": True, "rstrip": False,
                                 "single_word": False, "special": True}}
    for t, i in added.items():
        decoder[str(i)] = {"content": t, "lstrip": False, "normalized": True, "rstrip": False,
                           "single_word": False, "special": False}
    dump("tokenizer_config.json", {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "bos_token": eot,
        "clean_up_tokenization_spaces": False,
        "eos_token": eot,
        "errors": "replace",
        "model_max_length": 1024,
        "pad_token": None,
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": eot,
    })
    return len(vocab) + len(added)


def load_tokenizer_like_turbo(dirpath: Path, expected_len):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(dirpath)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    assert len(tokenizer) == expected_len, (len(tokenizer), expected_len)
    return tokenizer


def tokenize_like_turbo(tokenizer, punc_norm, text):
    normed = punc_norm(text)
    ids = tokenizer(normed, return_tensors="pt", padding=True, truncation=True).input_ids
    return normed, ids


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------

def randomize(t3, seed):
    """Move every parameter off PyTorch/HF init values that would hide a bug.

    GPT-2's init (std 0.02, LayerNorm 1/0, zero biases) makes attention almost
    uniform and logits almost flat; weights at std 1/sqrt(fan_in), noisy
    LayerNorms and biases give the sampler and greedy decoding real margins.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(t3.named_parameters()):
            if "ln_" in name:
                if name.endswith("weight"):
                    p.copy_(torch.empty_like(p).uniform_(0.7, 1.3, generator=g))
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name in ("tfmr.wte.weight", "tfmr.wpe.weight", "text_emb.weight", "speech_emb.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            else:
                # Conv1D keeps [in, out]; nn.Linear keeps [out, in].
                fan_in = p.shape[0] if name.startswith("tfmr.h.") else p.shape[1]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def state_dict_for_checkpoint(t3):
    """The keys t3_turbo_v1.safetensors holds: T3's state dict, tfmr.wte included."""
    return {k: v.detach().clone().contiguous() for k, v in t3.state_dict().items()}


# --------------------------------------------------------------------------
# Reference computations
# --------------------------------------------------------------------------

def reference_processors(temperature, top_k, top_p, repetition_penalty):
    """The LogitsProcessorList of T3.inference_turbo, same conditions, same order."""
    from transformers.generation.logits_process import (
        LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
        TopKLogitsWarper, TopPLogitsWarper)
    procs = LogitsProcessorList()
    if temperature > 0 and temperature != 1.0:
        procs.append(TemperatureLogitsWarper(temperature))
    if top_k > 0:
        procs.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p))
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    return procs


def top_p_margin(logits, history, params):
    """Distance of the nearest cumulative probability to the top-p cut (1 - top_p)."""
    procs = reference_processors(params["temperature"], params["top_k"], 1.0, 1.0)
    scores = procs(history[None], logits[None].clone())
    if params["top_p"] >= 1.0:
        return None
    sorted_logits, _ = torch.sort(scores, descending=False)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    finite = cum[cum > 0]
    return float((finite - (1 - params["top_p"])).abs().min())


def run_stages(t3, hp, T3Cond, text_tokens, speaker_emb, prompt_tokens, tf_tokens):
    with torch.inference_mode():
        cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=prompt_tokens)
        cond_emb = t3.prepare_conditioning(cond)
        cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=prompt_tokens)
        start = hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
        embeds, len_cond = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text_tokens,
                                                   speech_tokens=start, cfg_weight=0.0)
        out = t3.tfmr(inputs_embeds=embeds, use_cache=True)
        prefill_hidden = out[0]
        prefill_logits = t3.speech_head(prefill_hidden[:, -1:])[:, -1, :]

        # Teacher forcing: the same input with a fixed speech-token sequence
        # after the start token, one forward over the whole sequence.
        cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=prompt_tokens)
        tf_embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text_tokens,
                                               speech_tokens=tf_tokens, cfg_weight=0.0)
        tf_hidden = t3.tfmr(inputs_embeds=tf_embeds, use_cache=False)[0]
        n_speech = tf_tokens.size(1)
        tf_logits = t3.speech_head(tf_hidden[:, -n_speech:])

        # The same logits step by step through the KV cache, as inference_turbo
        # feeds them (only the new token's embedding, no position argument).
        steps = [prefill_logits]
        past = out.past_key_values
        for j in range(1, n_speech):
            o = t3.tfmr(inputs_embeds=t3.speech_emb(tf_tokens[:, j:j + 1]), past_key_values=past,
                        use_cache=True)
            past = o.past_key_values
            steps.append(t3.speech_head(o[0])[:, -1, :])
        cached = torch.stack(steps, dim=1)
        cache_err = float((cached - tf_logits).abs().max())
    return {
        "cond_emb": cond_emb, "embeds": embeds, "len_cond": len_cond,
        "prefill_hidden": prefill_hidden, "prefill_logits": prefill_logits,
        "tf_embeds": tf_embeds, "tf_hidden": tf_hidden, "tf_logits": tf_logits,
        "cache_err": cache_err,
    }


def greedy(t3, T3Cond, text_tokens, speaker_emb, prompt_tokens, max_gen_len):
    """inference_turbo itself with top_k=1: one finite logit, so multinomial is argmax."""
    cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=prompt_tokens)
    torch.manual_seed(0)
    toks = t3.inference_turbo(cond, text_tokens, temperature=0.8, top_k=1, top_p=0.95,
                              repetition_penalty=1.2, max_gen_len=max_gen_len)
    return toks


def place_stop(t3, hp, T3Cond, text_tokens, speaker_emb, prompt_tokens):
    """Raise speech_head.bias[stop] so greedy decoding ends at a chosen step.

    Greedy decoding is the argmax of the raw logits, and the stop logit moves
    by exactly the bias change, so with margin_j = max logit - stop logit at
    step j, a shift between margin_k and min_{j<k} margin_j makes the stop token
    win first at step k and leaves the tokens before it unchanged.
    """
    stop = hp.stop_speech_token
    toks = greedy(t3, T3Cond, text_tokens, speaker_emb, prompt_tokens, STOP_STEP_RANGE[1] + 4)[0]
    assert not (toks == stop).any(), "random weights already stop: pick another seed"
    seq = torch.cat([torch.tensor([hp.start_speech_token]), toks[:-1]])[None]
    stages = run_stages(t3, hp, T3Cond, text_tokens, speaker_emb, prompt_tokens, seq)
    logits = stages["tf_logits"][0]
    margins = (logits.max(dim=-1).values - logits[:, stop]).tolist()
    best = None
    for k in range(STOP_STEP_RANGE[0], STOP_STEP_RANGE[1] + 1):
        before = min(margins[:k])
        gap = before - margins[k]
        if best is None or gap > best[1]:
            best = (k, gap)
    k, gap = best
    assert gap > 0.01, f"no step with a clear margin (best {best})"
    delta = margins[k] + gap / 2
    with torch.no_grad():
        t3.speech_head.bias[stop] += delta
    return k, delta, gap / 2


def save_stable(tensors, path, metadata):
    """safetensors with a byte-stable header (sorted keys).

    safetensors.torch.save_file writes __metadata__ from a hash map whose order
    changes from run to run.  Tensors go widest dtype first, then by name, so
    every one starts at an aligned offset.
    """
    codes = {torch.float32: "F32", torch.int64: "I64"}
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, blobs, offset = {}, [], 0
    for k in order:
        t = tensors[k].detach().cpu().contiguous()
        data = t.numpy().tobytes(order="C")
        header[k] = {"dtype": codes[t.dtype], "shape": list(t.shape),
                     "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    raw = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def build(args):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    llama_configs, T3, T3Cond, T3Config, punc_norm = import_reference()

    if args.full:
        name = "GPT2_medium"
        backbone = dict(llama_configs.LLAMA_CONFIGS[name])
        text_vocab = 50276
    else:
        name = TINY_NAME
        tok_dir = OUT_DIR / "tokenizer"
        text_vocab = write_tokenizer(tok_dir)
        backbone = dict(llama_configs.GPT2_MEDIUM_CONFIG)
        backbone.update(TINY_OVERRIDES)
        backbone["vocab_size"] = text_vocab
        llama_configs.LLAMA_CONFIGS[name] = backbone

    hp = turbo_hp(T3Config, name, text_vocab)
    torch.manual_seed(SEED_WEIGHTS)
    t3 = T3(hp)
    randomize(t3, SEED_WEIGHTS)
    t3.eval()

    if args.full:
        out = Path(args.full)
        out.mkdir(parents=True, exist_ok=True)
        sd = state_dict_for_checkpoint(t3)
        save_stable(sd, out / "t3_turbo_v1.safetensors", {"format": "pt"})
        (out / "t3_config.json").write_text(json.dumps(config_json(hp, backbone), indent=2) + "\n")
        n = sum(v.numel() for v in sd.values())
        print(f"wrote {out}/t3_turbo_v1.safetensors: {len(sd)} tensors, {n} parameters")
        return

    tokenizer = load_tokenizer_like_turbo(tok_dir, text_vocab)
    cases = []
    for text in TEXTS:
        normed, ids = tokenize_like_turbo(tokenizer, punc_norm, text)
        cases.append({"text": text, "normalized": normed, "ids": ids[0].tolist()})
    assert max(max(c["ids"]) for c in cases) >= text_vocab - len(TAGS), "no added token exercised"

    _, text_tokens = tokenize_like_turbo(tokenizer, punc_norm, GEN_TEXT)
    g = torch.Generator().manual_seed(SEED_INPUTS)
    speaker_emb = torch.randn(1, hp.speaker_embed_size, generator=g)
    speaker_emb = speaker_emb / speaker_emb.norm()
    prompt_tokens = torch.randint(0, 6561, (1, PROMPT_LEN), generator=g)
    tf_tokens = torch.cat([torch.tensor([[hp.start_speech_token]]),
                           torch.randint(0, 6561, (1, TF_SPEECH - 1), generator=g)], dim=1)

    stop_step, stop_delta, stop_gap = place_stop(t3, hp, T3Cond, text_tokens, speaker_emb, prompt_tokens)

    stages = run_stages(t3, hp, T3Cond, text_tokens, speaker_emb, prompt_tokens, tf_tokens)
    assert stages["cache_err"] < 1e-5, stages["cache_err"]
    assert (stages["tf_logits"][:, 0] - stages["prefill_logits"]).abs().max() < 1e-5

    greedy_tokens = greedy(t3, T3Cond, text_tokens, speaker_emb, prompt_tokens, GREEDY_MAX_GEN_LEN)[0]
    limit_tokens = greedy(t3, T3Cond, text_tokens, speaker_emb, prompt_tokens, LIMIT_MAX_GEN_LEN)[0]
    assert greedy_tokens.numel() == stop_step, (greedy_tokens.numel(), stop_step)
    assert limit_tokens.numel() == LIMIT_MAX_GEN_LEN + 1
    assert torch.equal(limit_tokens, greedy_tokens[:LIMIT_MAX_GEN_LEN + 1])

    # Sampler cases: (logits, history, params).  History is what inference_turbo
    # passes: the start token alone at the first step, then the generated tokens.
    turbo = {"temperature": 0.8, "top_k": 1000, "top_p": 0.95, "repetition_penalty": 1.2}
    gs = torch.Generator().manual_seed(SEED_SAMPLER)
    V = hp.speech_tokens_dict_size
    sampler_cases = []
    first = stages["prefill_logits"][0].clone()
    sampler_cases.append((first, torch.tensor([hp.start_speech_token]), turbo))
    # Shifted down so that kept tokens in the history have logits of both signs.
    wide = torch.randn(V, generator=gs) * 3.0 - 6.0
    order = torch.argsort(wide, descending=True)
    hist = torch.cat([order[:3], order[:2], order[500:504], order[2000:2002],
                      torch.tensor([hp.stop_speech_token])])
    sampler_cases.append((wide, hist, turbo))
    peaked = torch.randn(V, generator=gs) * 6.0
    o2 = torch.argsort(peaked, descending=True)
    sampler_cases.append((peaked, torch.cat([o2[:4], o2[10:12]]), turbo))
    sampler_cases.append((torch.randn(V, generator=gs) * 2.0, o2[:3].clone(),
                          {"temperature": 1.3, "top_k": 50, "top_p": 0.8, "repetition_penalty": 1.5}))
    sampler_cases.append((torch.randn(V, generator=gs), o2[:3].clone(),
                          {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}))

    io = {
        "text_tokens": text_tokens.contiguous(),
        "cond.speaker_emb": speaker_emb.contiguous(),
        "cond.cond_prompt_speech_tokens": prompt_tokens.contiguous(),
        "out.cond_emb": stages["cond_emb"].contiguous(),
        "out.prefill_embeds": stages["embeds"].contiguous(),
        "out.prefill_hidden": stages["prefill_hidden"].contiguous(),
        "out.prefill_logits": stages["prefill_logits"].contiguous(),
        "tf.speech_tokens": tf_tokens.contiguous(),
        "tf.embeds": stages["tf_embeds"].contiguous(),
        "tf.hidden": stages["tf_hidden"].contiguous(),
        "tf.logits": stages["tf_logits"].contiguous(),
        "gen.greedy.tokens": greedy_tokens.contiguous(),
        "gen.limit.tokens": limit_tokens.contiguous(),
    }
    sampler_meta = []
    margins = []
    for i, (logits, history, params) in enumerate(sampler_cases):
        procs = reference_processors(params["temperature"], params["top_k"], params["top_p"],
                                     params["repetition_penalty"])
        processed = procs(history[None], logits[None].clone())
        probs = F.softmax(processed, dim=-1)[0]
        io[f"sampler.{i}.logits"] = logits.contiguous()
        io[f"sampler.{i}.history"] = history.to(torch.int64).contiguous()
        io[f"sampler.{i}.probs"] = probs.contiguous()
        kept = int((probs > 0).sum())
        m = top_p_margin(logits, history, params)
        margins.append(m)
        sampler_meta.append(dict(params, kept=kept, top_p_margin=m))

    meta = {
        "config": json.dumps(config_json(hp, backbone)),
        "format_version": FORMAT_VERSION,
        "reference": "chatterbox-tts 0.1.7, transformers 5.2.0, torch 2.6.0",
        "seeds": json.dumps({"weights": SEED_WEIGHTS, "inputs": SEED_INPUTS, "sampler": SEED_SAMPLER}),
        "gen_text": GEN_TEXT,
        "greedy": json.dumps({"temperature": 0.8, "top_k": 1, "top_p": 0.95, "repetition_penalty": 1.2,
                              "max_gen_len": GREEDY_MAX_GEN_LEN, "limit_max_gen_len": LIMIT_MAX_GEN_LEN,
                              "stop_step": stop_step, "stop_bias_delta": stop_delta,
                              "stop_margin": stop_gap}),
        "sampler": json.dumps(sampler_meta),
        "len_cond": str(stages["len_cond"]),
    }

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    sd = state_dict_for_checkpoint(t3)
    save_stable(sd, OUT_DIR / "t3_tiny.safetensors", {"format": "pt", "format_version": FORMAT_VERSION})
    save_stable(io, OUT_DIR / "t3_tiny_io.safetensors", meta)
    (OUT_DIR / "t3_tiny_config.json").write_text(json.dumps(config_json(hp, backbone), indent=2) + "\n")
    (OUT_DIR / "t3_text_cases.json").write_text(
        json.dumps({"reference": meta["reference"], "cases": cases}, ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8")

    # Read back.
    back = load_file(str(OUT_DIR / "t3_tiny_io.safetensors"))
    for k, v in io.items():
        assert torch.equal(back[k], v), k
    back = load_file(str(OUT_DIR / "t3_tiny.safetensors"))
    for k, v in sd.items():
        assert torch.equal(back[k], v), k

    print(f"text tokens {text_tokens.tolist()}")
    print(f"greedy tokens ({greedy_tokens.numel()}, stop at step {stop_step}, delta {stop_delta:.4f}, "
          f"margin {stop_gap:.4f}): {greedy_tokens.tolist()}")
    print(f"limit tokens: {limit_tokens.tolist()}")
    print(f"kv-cache vs full forward: {stages['cache_err']:.2e}")
    for i, m in enumerate(sampler_meta):
        print(f"sampler case {i}: {m}")
    n = sum(v.numel() for v in sd.values())
    print(f"weights: {len(sd)} tensors, {n} parameters")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", metavar="DIR", help="write GPT-2 medium sized random weights to DIR")
    args = ap.parse_args()
    build(args)


if __name__ == "__main__":
    sys.exit(main())
