#!/usr/bin/env python3
"""What the open transcript costs per unsure turn: Whisper base over the words of each main-menu clip.

    .venv/bin/python scripts/bench_open_transcript.py [--set dev] [--condition clean] [--limit 60] [--threads 1]
        [--turns menu|answers]

Each main-menu clip (``--turns answers``: each slot answer and read-back answer that may get one, i.e. not the
PINs) of the understanding set (scripts/make_understanding_set.py) is put on the line as the evaluation does,
then cut to its words (what the session feeds a turn's recogniser: the clip's pause before the words is left out,
300 ms of line kept after them), and transcribed once by voiceivr.speech.stt.open_transcript.WhisperTranscriber.
Reports CPU seconds (process time) and wall time per turn and per second of speech, p50/p95, and the windows used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import eval_understanding as eu  # noqa: E402
import make_understanding_set as uset  # noqa: E402

from voiceivr.audio.wav import read_wav  # noqa: E402
from voiceivr.settings import Settings  # noqa: E402
from voiceivr.speech.denoise import build_denoiser  # noqa: E402
from voiceivr.speech.stt.open_transcript import WhisperTranscriber, model_dir  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="dev", choices=("dev", "heldout"))
    ap.add_argument("--condition", default="clean", choices=tuple(uset.CONDITIONS))
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--turns", default="menu", choices=("menu", "answers"),
                    help="menu requests, or the non-secret slot and read-back answers")
    ap.add_argument("--denoise", default="off", help="suppress the turn's noise first, as "
                    "speech.open_transcript_denoise does (voiceivr.speech.denoise.ENGINES)")
    ap.add_argument("--cache", type=Path, default=ROOT / "var" / "understanding")
    args = ap.parse_args()

    def wanted(c: uset.Clip) -> bool:
        if args.turns == "menu":
            return c.node == "menu" and c.kind != "bad_input"
        return c.node not in ("menu", "pin")  # a PIN never gets an open transcript

    # the clips of the evaluation's seeded sample (--limit 150), not the cache's manifest.json: that lists
    # whatever the last evaluation run picked
    clips = [c.to_json() for c in eu.pick(uset.plan_clips((args.set,)), 150, uset.SEED) if wanted(c)]
    if not clips:
        raise SystemExit(f"no {args.set} {args.turns} clips in the evaluation's sample")
    if missing := [c["render"] for c in clips if not (args.cache / c["render"]).is_file()]:
        raise SystemExit(f"{len(missing)} clips not rendered in {args.cache}: run scripts/eval_understanding.py "
                         f"--set {args.set} --limit 150 once")
    clips = clips[:: max(1, len(clips) // args.limit)][: args.limit]
    talkers = uset.load_talkers(args.cache)
    t0 = time.perf_counter()
    whisper = WhisperTranscriber(model_dir(Settings().speech), args.threads)
    load_s = time.perf_counter() - t0
    denoiser = build_denoiser(args.denoise)
    cpu, wall, per_s, windows, dn_per_s = [], [], [], [], []
    lead = int(uset.LEAD_S * uset.RATE)
    for c in clips:
        speech = read_wav(args.cache / c["render"]).mono()
        x = uset.play(speech, args.condition, c["id"], talkers)[lead : lead + len(speech) + int(0.3 * uset.RATE)]
        w0 = time.perf_counter()
        dn_cpu = 0.0
        if denoiser is not None:  # as OpenTranscriptStream does: a cold stream over the turn, 20 ms at a time
            x, dn_cpu = denoiser.whole(x, uset.RATE)
            dn_per_s.append(dn_cpu / (len(x) / uset.RATE))
        got = whisper.transcribe(x, uset.RATE)
        wall.append(time.perf_counter() - w0)
        cpu.append(got.cpu_s + dn_cpu)
        per_s.append(cpu[-1] / (len(x) / uset.RATE))
        windows.append(got.window_s)

    def pct(v: list[float]) -> str:
        return f"p50 {1000 * np.median(v):.0f} ms, p95 {1000 * np.percentile(v, 95):.0f} ms"

    print(f"{len(clips)} {args.set} {args.turns} clips, {args.condition}, {args.threads} thread(s), "
          f"front end {args.denoise}; "
          f"model load {load_s:.2f} s")
    print(f"CPU per turn:             {pct(cpu)}")
    print(f"wall per turn:            {pct(wall)}")
    print(f"CPU per second of speech: {pct(per_s)}")
    if dn_per_s:
        print(f"of which {args.denoise} per second of audio: {pct(dn_per_s)}")
    print(f"windows (s): {dict(sorted((w, windows.count(w)) for w in set(windows)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
