#!/usr/bin/env python3
"""Reference Japanese phonemes from Python misaki 0.9.4 for voxpool's Japanese
G2P agreement test (tests/g2p_japanese.rs).

Reads tests/fixtures/g2p/ja/sentences.txt (one sentence per line) and writes

    tests/fixtures/g2p/ja/reference.tsv   sentence<TAB>phonemes
    tests/fixtures/g2p/ja/tokens.jsonl    per sentence, the text misaki's cutlet
                                          gives MeCab and MeCab's tokens:
                                          [surface, char_type, is_unk, pron, kana]

The phonemes are `misaki.ja.JAG2P()(sentence)[0]`, what Kokoro 0.9.4's
`KPipeline('j')` speaks: the default version 'cutlet' (fugashi's MeCab with the
unidic-lite 1.0.8 dictionary, misaki's num2kana, jaconv, mojimoji, NFKC and
misaki/data/ja_words.txt).

fugashi prefers the full `unidic` package over `unidic-lite` when both are
installed, so make sure only unidic-lite is:

    python3.11 -m venv /tmp/g2p-ja
    /tmp/g2p-ja/bin/pip install "misaki[ja]==0.9.4" unidic-lite==1.0.8
    /tmp/g2p-ja/bin/pip uninstall -y unidic
    /tmp/g2p-ja/bin/python tools/g2p_reference_ja.py
"""

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests/fixtures/g2p/ja"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=Path, default=FIXTURES / "sentences.txt")
    parser.add_argument("--out", type=Path, default=FIXTURES / "reference.tsv")
    parser.add_argument("--tokens", type=Path, default=FIXTURES / "tokens.jsonl")
    args = parser.parse_args()

    from misaki import ja

    g2p = ja.JAG2P()
    cutlet = g2p.cutlet
    dictionary = cutlet.tagger.dictionary_info[0]["filename"]
    if "unidic_lite" not in dictionary:
        raise SystemExit(f"fugashi uses {dictionary}, not unidic-lite: pip uninstall unidic")

    sentences = [
        line.rstrip("\n")
        for line in args.sentences.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    rows, token_rows = [], []
    for sentence in sentences:
        phonemes, _ = g2p(sentence)
        rows.append(f"{sentence}\t{phonemes}\n")
        text = cutlet._normalize_text(sentence)
        tokens = [
            [w.surface, w.char_type, bool(w.is_unk), w.feature.pron, w.feature.kana]
            for w in cutlet.tagger(text)
        ]
        token_rows.append(json.dumps({"text": text, "tokens": tokens}, ensure_ascii=False) + "\n")
    args.out.write_text("".join(rows), encoding="utf-8")
    args.tokens.write_text("".join(token_rows), encoding="utf-8")
    print(f"wrote {len(rows)} sentences to {args.out} and {args.tokens}")


if __name__ == "__main__":
    main()
