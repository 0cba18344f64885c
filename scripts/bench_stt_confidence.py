#!/usr/bin/env python3
"""What the pocketsphinx grammar confidence costs: CPU per second of caller speech with no phone loop and with
the phone loop at each beam (setting speech.pocketsphinx_phone_beam; docs/speech.md, "Confidence").

    .venv/bin/python scripts/bench_stt_confidence.py [--beams 1e-15,1e-10] [--repeats 2]

Every telephone phrase fixture (tests/fixtures/audio, 8 kHz; the long readings left out) is streamed, 20 ms at
a time, through one PocketsphinxEngine per variant with the bank menu's grammar, ``--repeats`` times. The
variants take turns clip by clip, so load from other work on the shared machine falls on all of them alike.
CPU is the stream's own ``engine_seconds`` (thread time inside the engine, the phone loop included) over the
audio it consumed. Printed per variant: the total, and the median / p95 of the per-clip figures; the
difference to "off" is what the confidence adds per second of speech.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fit_stt_confidence import menu_phrases  # noqa: E402

from tests.support.speech_fixtures import entries, frames  # noqa: E402
from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine  # noqa: E402


def engines(beams: list[float]) -> dict[str, PocketsphinxEngine]:
    variants = {"off": PocketsphinxEngine(score_grammar_results=False)}
    for beam in beams:
        variants[f"phone loop {beam:g}"] = PocketsphinxEngine(phone_loop_beam=beam)
    return variants


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beams", default="1e-15,1e-10", help="comma-separated phone-loop beams to compare")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    phrases, _ = menu_phrases(ROOT / "dialplans" / "bank.yaml")
    files = [e["file"] for e in entries("phrase", "tel") if e["intent"] != "long"]
    variants = engines([float(b) for b in args.beams.split(",")])
    per_clip: dict[str, list[float]] = {name: [] for name in variants}
    totals: dict[str, list[float]] = {name: [0.0, 0.0] for name in variants}  # cpu s, audio s
    for _ in range(args.repeats):
        for file in files:
            for name, engine in variants.items():
                stream = engine.stream(8000, phrases)
                for frame in frames(file):
                    stream.feed(frame)
                result = stream.finish()
                per_clip[name].append(1000 * stream.engine_seconds / result.audio_seconds)
                totals[name][0] += stream.engine_seconds
                totals[name][1] += result.audio_seconds
    print(f"{len(files)} telephone phrase fixtures x {args.repeats}, bank menu grammar "
          f"({len(phrases)} phrases); CPU ms per second of speech")
    print("| variant | total | per clip p50 | per clip p95 | added over off (total) |")
    print("|---|---:|---:|---:|---:|")
    base = 1000 * totals["off"][0] / totals["off"][1]
    for name, values in per_clip.items():
        total = 1000 * totals[name][0] / totals[name][1]
        print(f"| {name} | {total:.1f} | {np.percentile(values, 50):.1f} | {np.percentile(values, 95):.1f} | "
              f"{total - base:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
