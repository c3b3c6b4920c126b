#!/usr/bin/env python3
"""Reference phonemes of Kokoro's espeak-ng languages, for tests/g2p_espeak.rs.

Kokoro 0.9.4's `KPipeline(lang)` reads Spanish (`e`), French (`f`), Hindi (`h`),
Italian (`i`) and Brazilian Portuguese (`p`) with `misaki.espeak.EspeakG2P`, which
runs phonemizer's espeak backend on the espeak-ng library bundled in
`espeakng_loader`. This script runs exactly that on
`tests/fixtures/g2p/<lang>/sentences.txt` (one sentence a line) and writes
`tests/fixtures/g2p/<lang>/reference.tsv` (`sentence<TAB>phonemes`).

Setup (a virtual environment outside the repository):

    python3 -m venv /tmp/g2pref
    /tmp/g2pref/bin/pip install misaki==0.9.4 phonemizer-fork espeakng-loader
    /tmp/g2pref/bin/python tools/g2p_reference_espeak.py

With `--library /usr/lib/x86_64-linux-gnu/libespeak-ng.so.1` the same pipeline runs
on another espeak-ng build (the system's, with its own data unless `--data-path`
is given). It writes `reference-<version>.tsv` next to `reference.tsv` and prints,
per language, how many sentences differ from the bundled library's output.
"""

import argparse
import pathlib
import sys

from misaki.espeak import EspeakG2P
from phonemizer.backend.espeak.wrapper import EspeakWrapper

LANGUAGES = {"es": "es", "fr": "fr-fr", "hi": "hi", "it": "it", "pt": "pt-br"}
FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "g2p"


def read_tsv(path):
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        sentence, _, phonemes = line.partition("\t")
        rows[sentence] = phonemes
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="another libespeak-ng shared library")
    parser.add_argument("--data-path", help="espeak-ng-data of --library (default: its own)")
    parser.add_argument("languages", nargs="*", default=list(LANGUAGES))
    args = parser.parse_args()

    if args.library:
        EspeakWrapper.set_library(args.library)
        EspeakWrapper.set_data_path(args.data_path)

    for lang in args.languages:
        g2p = EspeakG2P(language=LANGUAGES[lang])
        version = ".".join(str(v) for v in g2p.backend._espeak.version)
        folder = FIXTURES / lang
        sentences = [
            s for s in (folder / "sentences.txt").read_text(encoding="utf-8").splitlines() if s.strip()
        ]
        rows = [(s, g2p(s)[0]) for s in sentences]
        name = f"reference-{version}.tsv" if args.library else "reference.tsv"
        with open(folder / name, "w", encoding="utf-8") as out:
            for sentence, phonemes in rows:
                out.write(f"{sentence}\t{phonemes}\n")
        line = f"{lang}: {len(rows)} sentences, espeak-ng {version} -> {folder / name}"
        if args.library and (folder / "reference.tsv").exists():
            bundled = read_tsv(folder / "reference.tsv")
            differ = [s for s, p in rows if bundled.get(s) != p]
            line += f"; {len(differ)} differ from reference.tsv"
            for s in differ:
                line += f"\n    {s}\n      bundled: {bundled.get(s)}\n      {version}: {dict(rows)[s]}"
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
