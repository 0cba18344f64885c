#!/usr/bin/env python3
"""What the open transcript alone would route, per front end and decode option: a quick look before a full
evaluation.

    .venv/bin/python scripts/probe_open_transcript.py [--set dev] [--conditions clean,pink10,babble10]
        [--denoise off,webrtc2,dfn3] [--beam 1,5] [--limit 80] [--json out.json]

Each main-menu clip of the understanding set (in-domain requests and out-of-domain ones) is put on the line as
the evaluation does and cut to its turn (``PRE_S`` of line before the words, 300 ms after them), the front end
runs over the turn's audio alone (a cold stream, as the open transcript would run it on an unsure turn), Whisper
transcribes it and the bank router's tiers 1-2 route its words as the menu would route an open transcript. It
skips the session (turn taking) and the grammar recogniser (which decides whether the turn is unsure), so it
tells what Whisper can give, not what a call gets: confirm with scripts/eval_understanding.py. Per variant it
prints menu requests right / wrong / not understood and out-of-domain requests sent to a task, for the
transcripts Whisper's own filters keep (``usable``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import eval_understanding as eu  # noqa: E402
import make_understanding_set as uset  # noqa: E402

from voiceivr.audio.wav import read_wav  # noqa: E402
from voiceivr.settings import Settings  # noqa: E402
from voiceivr.speech.stt.open_transcript import WhisperTranscriber, model_dir  # noqa: E402

PRE_S = 0.3  # the VAD's pre-roll: the turn starts a little before the words
TASKS = ("hours", "balance", "transfer", "address", "lost_card")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="dev", choices=("dev", "heldout"))
    ap.add_argument("--conditions", default="clean,pink10,babble10")
    ap.add_argument("--denoise", default="off", help="front ends, comma separated (voiceivr.speech.denoise.ENGINES)")
    ap.add_argument("--beam", default="1", help="Whisper beam sizes, comma separated")
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--cache", type=Path, default=ROOT / "var" / "understanding")
    ap.add_argument("--json", type=Path, help="write every clip's transcript and route here")
    args = ap.parse_args()

    from voiceivr.demo.actions import registry as demo_registry
    from voiceivr.dialplan.loader import load_file
    from voiceivr.dialplan.router import make_router
    from voiceivr.speech.denoise import build_denoiser
    settings = Settings()
    plan = load_file(ROOT / "dialplans" / "bank.yaml", demo_registry())
    router = make_router(plan, list(settings.dialplan.tiers), embedding_model=settings.dialplan.embedding_model)
    menu = plan.node(plan.main_menu)
    cands = [r.intent for r in menu.routes] + list(plan.globals)
    # the evaluation's own seeded sample (eval_understanding.pick over --limit 150): the same menu clips
    clips = [c.to_json() for c in eu.pick(uset.plan_clips((args.set,)), 150, uset.SEED)
             if c.node == "menu" and c.kind != "bad_input"][: args.limit]
    if missing := [c["render"] for c in clips if not (args.cache / c["render"]).is_file()]:
        raise SystemExit(f"{len(missing)} clips not rendered in {args.cache}: run scripts/eval_understanding.py "
                         f"--set {args.set} --limit 150 once")
    talkers = uset.load_talkers(args.cache)
    whisper = WhisperTranscriber(model_dir(settings.speech), 1)
    rows: list[dict[str, Any]] = []
    pre = int(PRE_S * uset.RATE)
    lead = int(uset.LEAD_S * uset.RATE)
    for cond in args.conditions.split(","):
        turns = []
        for c in clips:
            speech = read_wav(args.cache / c["render"]).mono()
            x = uset.play(speech, cond, c["id"], talkers)
            turns.append((c, x[lead - pre : lead + len(speech) + int(0.3 * uset.RATE)]))
        for dn in args.denoise.split(","):
            engine = build_denoiser(dn)
            for beam in (int(b) for b in args.beam.split(",")):
                t0 = time.perf_counter()
                for c, x in turns:
                    y = engine.whole(x, uset.RATE)[0] if engine is not None else x
                    got = whisper.transcribe(y, uset.RATE, beam_size=beam)
                    d = router.route("", cands, 0.0, got.text) if got.text else None
                    rows.append(dict(cond=cond, denoise=dn, beam=beam, id=c["id"], kind=c["kind"],
                                     expected=c["expected"], said=c["text"], text=got.text,
                                     avg_logprob=round(got.avg_logprob, 3), no_speech=round(got.no_speech_prob, 3),
                                     usable=got.usable, intent=d.intent if d else None, cpu_s=got.cpu_s))
                print(f"{cond} {dn} beam {beam}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"{'condition':10} {'front end':8} {'beam':>4} {'right':>5} {'wrong':>5} {'none':>5} {'ood->task':>9}"
          f" {'CPU p50 ms':>10}")
    for key in dict.fromkeys((r["cond"], r["denoise"], r["beam"]) for r in rows):
        rs = [r for r in rows if (r["cond"], r["denoise"], r["beam"]) == key]
        ind = [r for r in rs if r["expected"] != "ood"]
        got = [(r, r["intent"] if r["usable"] else None) for r in ind]
        right = sum(i == r["expected"] for r, i in got)
        wrong = sum(i is not None and i != r["expected"] for r, i in got)
        ood = sum(r["usable"] and r["intent"] in TASKS for r in rs if r["expected"] == "ood")
        cpu = 1000 * float(np.median([r["cpu_s"] for r in rs]))
        print(f"{key[0]:10} {key[1]:8} {key[2]:>4} {right:>5} {wrong:>5} {len(ind) - right - wrong:>5} "
              f"{ood:>9} {cpu:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
