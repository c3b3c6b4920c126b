"""Time to first audio of Chatterbox Turbo over HTTP, per streamed format and SSE.

    python3 tools/turbo_first_audio.py --voxpool target/release/voxpool \
        --models /tmp/turbo-models [--quant q4k f32] [--runs 3]

`--models` is a models folder holding a Turbo checkpoint, such as the full-size
random-weight one `tools/chatterbox_full_checkpoint.py` assembles. For each T3 weight
type the script starts `voxpool serve` on a free port with a throwaway SQLite file,
loads and warms the model with one request, then asks for the same sentence in the
built-in voice as pcm, mp3, opus, aac and SSE, `--runs` times in turns, and times
each request from sending it to the first bytes of audio: the first body bytes for
pcm, mp3 and aac, the first Ogg page with a granule position (past the Opus headers)
for opus, the first `speech.audio.delta` event for SSE. It then closes the
connection, which stops the synthesis, and waits for the model to go idle before the
next request. Prints the median, fastest and slowest per format.

Standard library only; the server is the only process that computes.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

FORMATS = ["pcm", "mp3", "opus", "aac", "sse"]
TEXT = "The quick brown fox jumps over the lazy dog by the river."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.load(r)


def wait_healthy(port, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("voxpool exited before it was ready")
        try:
            get_json(port, "/health")
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("voxpool did not become ready")


def wait_idle(port, model, seconds=30):
    """Until no request of `model` is in flight (the previous one has stopped)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        models = get_json(port, "/model/status")["models"]
        entry = next((m for m in models if m["model"] == model), None)
        if entry is None or not entry["in_flight"]:
            return
        time.sleep(0.1)


def ogg_audio_started(buf):
    """Whether `buf` (an Ogg stream's start) holds a page with granule > 0."""
    at = 0
    while at + 27 <= len(buf):
        if buf[at : at + 4] != b"OggS":
            return False
        granule = int.from_bytes(buf[at + 6 : at + 14], "little", signed=True)
        segments = buf[at + 26]
        if at + 27 + segments > len(buf):
            return False
        body = sum(buf[at + 27 : at + 27 + segments])
        if at + 27 + segments + body > len(buf):
            return False
        if granule > 0:
            return True
        at += 27 + segments + body
    return False


def first_audio(port, fmt, text):
    """Seconds from sending the request to its first audio."""
    body = {"model": "chatterbox-turbo", "input": text, "voice": "default"}
    if fmt == "sse":
        body.update(response_format="pcm", stream_format="sse")
    else:
        body["response_format"] = fmt
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("POST", "/v1/audio/speech", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{fmt}: HTTP {resp.status}: {resp.read()[:300]!r}")
    buf = b""
    try:
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                raise SystemExit(f"{fmt}: the answer ended before any audio")
            buf += chunk
            if fmt == "opus":
                done = ogg_audio_started(buf)
            elif fmt == "sse":
                done = b"speech.audio.delta" in buf
            else:
                done = True
            if done:
                return time.perf_counter() - started
    finally:
        conn.close()


def serve(binary, models, quant, db_dir):
    port = free_port()
    env = dict(
        os.environ,
        VOXPOOL_HOST="127.0.0.1",
        PORT=str(port),
        VOXPOOL_MODELS_DIR=str(models),
        VOXPOOL_DB_URL=f"sqlite:///{db_dir}/voxpool-{quant}.db",
        CHATTERBOX_T3_QUANT=quant,
    )
    log = open(os.path.join(db_dir, f"server-{quant}.log"), "w")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(port, proc)
    return port, proc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxpool", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--quant", nargs="+", default=["q4k", "f32"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--text", default=TEXT)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for quant in args.quant:
            port, proc = serve(args.voxpool, args.models, quant, tmp)
            try:
                started = time.perf_counter()
                first_audio(port, "pcm", args.text)  # loads (and quantises) the model
                print(f"{quant}: loaded and first answer in {time.perf_counter() - started:.1f} s",
                      file=sys.stderr)
                wait_idle(port, "chatterbox-turbo")
                first_audio(port, "pcm", args.text)  # warm
                wait_idle(port, "chatterbox-turbo")
                times = {fmt: [] for fmt in FORMATS}
                for _ in range(args.runs):
                    for fmt in FORMATS:
                        times[fmt].append(first_audio(port, fmt, args.text))
                        wait_idle(port, "chatterbox-turbo")
                results[quant] = times
            finally:
                proc.terminate()
                proc.wait(timeout=30)

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        "?",
    )
    print(f"Chatterbox Turbo, time to first audio over HTTP, warm, voice kept — {cpu}, "
          f"{os.cpu_count()} CPUs, {args.runs} runs per format")
    print(f"sentence: {args.text!r}")
    print(f"{'T3':<6} {'format':<7} {'median':>8} {'fastest':>8} {'slowest':>8}")
    for quant, times in results.items():
        for fmt, ts in times.items():
            print(f"{quant:<6} {fmt:<7} {statistics.median(ts):>7.2f}s {min(ts):>7.2f}s {max(ts):>7.2f}s")


if __name__ == "__main__":
    main()
