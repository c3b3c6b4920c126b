"""Time the PyTorch reference Chatterbox Turbo on the same weights and inputs as
voxpool's bench (`benches/chatterbox.rs`).

    python tools/chatterbox_bench_reference.py --t3 /tmp/t3-full --s3gen /tmp/s3gen-full \
        --hift /tmp/hift-full --gen 50 --runs 3 --threads 2

Builds T3 (Turbo hyper-parameters, GPT-2 medium) and `S3Gen(meanflow=True)` as
`ChatterboxTurboTTS.from_local` does, and loads the full-size random weights the
fixture scripts write with `--full`: `t3_turbo_v1.safetensors` (all of T3),
`s3gen_full.safetensors` (the flow, `flow.*`) and `hift_full.safetensors` (the
vocoder, `mel2wav.*`); together they are `s3gen_meanflow.safetensors` less the
voice-cloning modules (speech tokenizer, speaker encoder), which inference with a
ready voice never runs. Then, with torch threads = `--threads`:

- T3: the prefill of [speaker, 375 prompt tokens, 40 text tokens, start] and
  `--gen` cached decode steps, each step as in `T3.inference_turbo` (speech
  embedding, backbone with the KV cache, speech head, Turbo's default logits
  processors) but picking the arg-max of the processed logits among the 6561
  audio tokens instead of sampling, and never stopping: a fixed amount of work.
- S3Gen: `flow_inference` and `hift_inference` (+ the fade-in) on the 100 speech
  tokens and the 250-token prompt of `s3gen_full_io.safetensors` (case 0).
- End to end: the T3 run, its tokens with the three silence tokens appended, and
  `S3Gen.inference` with that prompt, as `ChatterboxTurboTTS.generate` does less the
  watermark (voxpool adds none).

Inputs follow the same formulas as `benches/chatterbox.rs`. Alone, every
measurement is the median of `--runs` runs after one warm-up run and it prints one
JSON object; with `--serve` it loads once and times one run per request read from
stdin (the bench alternates them with its own runs, see `serve`).
"""
import argparse
import contextlib
import json
import resource
import sys
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

warnings.filterwarnings("ignore")

SPEECH_VOCAB = 6561  # ids at or above are start/stop, never audio
S3GEN_SIL = 4299


def text_ids(n):
    """Deterministic text ids (same formula as benches/chatterbox.rs)."""
    return [1000 + (i * 37) % 40000 for i in range(n)]


def prompt_ids(n):
    """Deterministic voice-prompt speech tokens (same formula as benches/chatterbox.rs)."""
    return [(i * 37 + 11) % SPEECH_VOCAB for i in range(n)]


def build(args):
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config

    # ChatterboxTurboTTS.from_local, Turbo hyper-parameters.
    hp = T3Config(text_tokens_dict_size=50276)
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    t3 = T3(hp)
    t3.load_state_dict(load_file(str(args.t3 / "t3_turbo_v1.safetensors")))
    del t3.tfmr.wte
    t3.eval()

    s3gen = S3Gen(meanflow=True)
    weights = load_file(str(args.s3gen / "s3gen_full.safetensors"))
    weights.update(load_file(str(args.hift / "hift_full.safetensors")))
    missing, unexpected = s3gen.load_state_dict(weights, strict=False)
    # Only the voice-cloning modules stay random (the flow and the vocoder are complete).
    assert not unexpected, unexpected
    assert all(k.startswith(("tokenizer.", "speaker_encoder.")) for k in missing), missing
    s3gen.eval()
    return t3, s3gen


def processors():
    """The LogitsProcessorList of `inference_turbo` with `generate`'s defaults."""
    from transformers.generation.logits_process import (
        LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
        TopKLogitsWarper, TopPLogitsWarper)
    return LogitsProcessorList([TemperatureLogitsWarper(0.8), TopKLogitsWarper(1000),
                                TopPLogitsWarper(0.95), RepetitionPenaltyLogitsProcessor(1.2)])


def pick(procs, history, logits):
    scores = procs(history, logits).clone()
    scores[:, SPEECH_VOCAB:] = -float("inf")
    return scores.argmax(dim=-1, keepdim=True)


@torch.inference_mode()
def t3_generate(t3, cond, text, n_gen, procs):
    """`T3.inference_turbo` with arg-max picks and `n_gen` decode steps; returns
    (tokens [1, n_gen + 1], prefill seconds, decode seconds)."""
    t0 = time.perf_counter()
    start = t3.hp.start_speech_token * torch.ones_like(text[:, :1])
    embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text, speech_tokens=start,
                                        cfg_weight=0.0)
    out = t3.tfmr(inputs_embeds=embeds, use_cache=True)
    past = out.past_key_values
    logits = t3.speech_head(out[0][:, -1:])
    token = pick(procs, start, logits[:, -1, :])
    generated = [token]
    t1 = time.perf_counter()
    for _ in range(n_gen):
        out = t3.tfmr(inputs_embeds=t3.speech_emb(token), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = t3.speech_head(out[0])
        token = pick(procs, torch.cat(generated, dim=1), logits[:, -1, :])
        generated.append(token)
    t2 = time.perf_counter()
    return torch.cat(generated, dim=1), t1 - t0, t2 - t1, embeds.size(1)


def vocode(s3gen, tokens, ref_dict):
    """`S3Gen.inference`: (flow seconds, HiFT + fade-in seconds, audio [1, L])."""
    start = time.perf_counter()
    mel = s3gen.flow_inference(tokens, ref_dict=ref_dict, n_cfm_timesteps=2, finalize=True)
    mid = time.perf_counter()
    with torch.inference_mode():
        wav, _ = s3gen.hift_inference(mel.to(dtype=s3gen.dtype), None)
        wav[:, :len(s3gen.trim_fade)] *= s3gen.trim_fade
    return mid - start, time.perf_counter() - mid, wav


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


class Bench:
    """The models and inputs, built once; `run` times one repetition."""

    def __init__(self, args):
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        t0 = time.perf_counter()
        self.t3, self.s3gen = build(args)
        self.load_s = time.perf_counter() - t0
        self.args = args
        self.cond = T3Cond(speaker_emb=torch.ones(1, 256) / 16.0,
                           cond_prompt_speech_tokens=torch.LongTensor(
                               [prompt_ids(args.prompt_tokens)]),
                           emotion_adv=None)
        self.text = torch.LongTensor([text_ids(args.text_tokens)])
        self.io = load_file(str(args.s3gen / "s3gen_full_io.safetensors"))
        self.procs = processors()
        self.speech = self.get("speech_tokens")

    def get(self, key):
        return self.io[f"case0.{key}"]

    def ref_dict(self):
        """S3Gen.forward casts the dict's tensors in place: a fresh one per call."""
        return dict(prompt_token=self.get("prompt_token"),
                    prompt_token_len=torch.LongTensor([self.get("prompt_token").size(1)]),
                    prompt_feat=self.get("prompt_feat"), prompt_feat_len=None,
                    embedding=self.get("embedding"))

    def run(self, seed, s3gen=True):
        """One repetition: end to end as `generate` (less the watermark): T3, the
        audio tokens with three silence tokens appended, then `S3Gen.inference`
        (= flow_inference, hift_inference and the fade-in), each part timed; then,
        with `s3gen`, S3Gen alone on the fixture's 100 tokens and its prompt."""
        sr = 24000
        torch.manual_seed(seed)
        t = {}
        start = time.perf_counter()
        tokens, t["t3_prefill"], t["t3_decode"], t["prefill_positions"] = t3_generate(
            self.t3, self.cond, self.text, self.args.gen, self.procs)
        tokens = tokens[tokens < SPEECH_VOCAB]
        tokens = torch.cat([tokens, torch.LongTensor([S3GEN_SIL] * 3)])
        t["e2e_flow"], t["e2e_hift"], wav = vocode(self.s3gen, tokens, self.ref_dict())
        t["e2e"] = time.perf_counter() - start
        t["e2e_tokens"], t["e2e_audio_seconds"] = tokens.numel(), wav.size(1) / sr
        if s3gen:
            t["flow"], t["hift"], wav = vocode(self.s3gen, self.speech, self.ref_dict())
            t["audio_seconds"] = wav.size(1) / sr
        return t

    def facts(self):
        return {"torch": torch.__version__, "threads": self.args.threads,
                "load_seconds": self.load_s,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = sys.stdout
    # The reference prints progress on stdout; keep stdout for the JSON lines.
    with contextlib.redirect_stdout(sys.stderr):
        bench = Bench(args)
        if args.serve:
            serve(bench, out)
            return
        result = measure(bench)
    print(json.dumps(result), file=out)


def serve(bench, out):
    """One JSON line for the load, then one per request read from stdin:
    `run SEED` (end to end, then S3Gen alone), `e2e SEED` (end to end only),
    `facts` (load time and peak RSS so far); end of input ends it. The bench
    (`benches/chatterbox.rs`) alternates these with its own runs, so both sides see
    the same machine."""
    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    send(bench.facts())
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] in ("run", "e2e") and len(words) == 2:
            send(bench.run(int(words[1]), s3gen=words[0] == "run"))
        elif words[0] == "facts":
            send(bench.facts())
        else:
            send({"error": f"unknown request {line.strip()!r}"})


def measure(bench):
    """Medians of `--runs` runs after one warm-up run, as one JSON object."""
    args = bench.args
    keys = ("t3_prefill", "t3_decode", "e2e_flow", "e2e_hift", "e2e", "flow", "hift")
    times = {k: [] for k in keys}
    first = last = None
    for run in range(args.runs + 1):
        last = bench.run(run)
        if run == 0:  # warm-up
            first = last
            continue
        for k in keys:
            times[k].append(last[k])
    med = {k: median(v) for k, v in times.items()}
    return {
        **bench.facts(), "runs": args.runs, "first_run": first,
        "t3": {"prefill_positions": last["prefill_positions"],
               "prefill_seconds": med["t3_prefill"],
               "decode_steps": args.gen, "decode_seconds": med["t3_decode"]},
        "s3gen": {"speech_tokens": bench.speech.size(1),
                  "prompt_tokens": bench.get("prompt_token").size(1),
                  "audio_seconds": last["audio_seconds"], "flow_seconds": med["flow"],
                  "hift_seconds": med["hift"]},
        "e2e": {"speech_tokens": last["e2e_tokens"], "audio_seconds": last["e2e_audio_seconds"],
                "seconds": med["e2e"], "flow_seconds": med["e2e_flow"],
                "hift_seconds": med["e2e_hift"]},
    }


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--t3", type=Path, default=Path("/tmp/t3-full"))
    ap.add_argument("--s3gen", type=Path, default=Path("/tmp/s3gen-full"))
    ap.add_argument("--hift", type=Path, default=Path("/tmp/hift-full"))
    ap.add_argument("--gen", type=int, default=50, help="T3 decode steps")
    ap.add_argument("--text-tokens", type=int, default=40)
    ap.add_argument("--prompt-tokens", type=int, default=375)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--serve", action="store_true",
                    help="answer requests on stdin (see `serve`) instead of timing --runs")
    return ap.parse_args()


if __name__ == "__main__":
    main()
