#!/usr/bin/env python3
"""Replay speed on one core, and what a call costs in engine-seconds, with and without our cost controls.

The same calls run through the whole pipeline (real VAD, STT, TTS, router, dialplan, safe path, scratch
database) on the replay driver's virtual clock:

* the recorded bank call of tests/fixtures/calls/ (login, balance, transfer attempt),
* a caller who asks for the opening hours and says goodbye,
* a caller who keys through a balance enquiry,
* a caller who says nothing for two minutes (the case the silence sleep is for).

Configurations compared on exactly those calls:

* ``tiered``: the shipped settings: router tiers 0 -> 1 -> 2 with early exit; after 30 s of silence the call
  sleeps (no reprompts, VAD only) and ends politely at 60 s;
* ``embeddings only``: every utterance goes to the MiniLM tier (no cheap tiers first);
* ``no sleep``: reprompts go on for as long as the caller stays silent (until 120 s);
* ``STT always on``: what feeding the recogniser every frame would cost instead of only while the VAD hears
  speech (measured by running the recogniser over the calls' whole caller channels).

    .venv/bin/python scripts/bench_replay.py [--write]   # --write puts the table into docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.audio.frames import split_frames  # noqa: E402
from voiceivr.audio.wav import read_wav  # noqa: E402
from voiceivr.call.driver import drive  # noqa: E402
from voiceivr.call.media import MediaChannel  # noqa: E402
from voiceivr.policy.gate import SessionBinding  # noqa: E402
from voiceivr.replay import load_call, scratch_database  # noqa: E402
from voiceivr.runtime import CallRuntime  # noqa: E402
from voiceivr.settings import Settings, load_settings  # noqa: E402
from voiceivr.sim.callers import scripted as cs  # noqa: E402
from voiceivr.sim.callers import steps as st  # noqa: E402

PHRASES = ROOT / "tests" / "fixtures" / "audio" / "phrases"
RECORDED = ROOT / "tests" / "fixtures" / "calls" / "bank_call.json"
SECTION = "## Replay speed and cost per call"


def phrase(intent: str) -> np.ndarray:
    return read_wav(PHRASES / f"{intent}__espeak-us__tel.wav").mono()


def scripted_calls() -> dict[str, list[st.Step]]:
    return {
        "hours by voice": [st.Wait(8.0, silence_s=0.1), st.Wait(30.0),
                           st.Play("", phrase("opening_hours")), st.Wait(30.0), st.Play("", phrase("goodbye")),
                           st.Wait(10), st.Hangup()],
        "balance by keypad": [st.Wait(8.0, silence_s=0.1), st.Wait(30.0), st.Dtmf("2", gap_s=0.2),
                              st.Wait(30.0), st.Dtmf("10000001#", gap_s=0.2), st.Wait(30.0),
                              st.Dtmf("1234#", gap_s=0.2), st.Wait(30.0), st.Dtmf("2", gap_s=0.2), st.Wait(30.0),
                              st.Play("", phrase("goodbye")), st.Wait(10), st.Hangup()],
        "silent caller": [st.Pause(120.0), st.Hangup()],
    }


@dataclasses.dataclass
class Run:
    call: str
    audio_s: float
    wall_s: float
    engine_s: float
    by_engine: dict[str, float]
    resolved: int
    outcome: str
    caller_pcm: np.ndarray


def run_call(settings: Settings, name: str, script: list[st.Step] | None, tmp: Path) -> Run:
    db = scratch_database(tmp / f"{name.replace(' ', '_')}-{time.monotonic_ns()}.sqlite3", settings)
    runtime = CallRuntime.build(settings, db=db, dialplan_file=ROOT / "dialplans" / "bank.yaml", stt_workers=0,
                                store_calls=False)
    call_id = f"bench-{name}"
    session, brain, _ = runtime.new_session(call_id, MediaChannel(8000), SessionBinding(call_id))
    t0 = time.perf_counter()
    if script is None:
        recorded = load_call(RECORDED)
        result = drive(session, recorded.caller, control=recorded.control, tail_s=3.0)
    else:
        result = drive(session, cs.ScriptedCaller(script), tail_s=2.0, max_s=200.0, line_codec="pcmu")
    wall = time.perf_counter() - t0
    summary = session.summary()
    runtime.close()
    db.dispose()
    return Run(name, result.seconds, wall, float(sum(summary["engine_seconds"].values())),
               dict(summary["engine_seconds"]), brain.resolved_tasks(), summary["outcome"], result.caller)


def continuous_stt_seconds(settings: Settings, pcm: np.ndarray) -> float:
    """Recogniser CPU if it were fed every frame of the caller channel (10 s turns, the menu's grammar)."""
    from voiceivr.speech.registry import build_stt_in_process

    stt = build_stt_in_process(settings)
    grammar = ["check my balance", "transfer money", "what are your opening hours", "goodbye", "main menu",
               "talk to an agent", "yes", "no"]
    spent = 0.0
    for start in range(0, len(pcm), 80_000):
        stream = stt.stream(8000, grammar)
        for f in split_frames(pcm[start:start + 80_000], 8000):
            stream.feed(f)
        stream.finish()
        spent += stream.engine_seconds
    return spent


def configs(base: Settings) -> dict[str, Settings]:
    def with_(**kw: Any) -> Settings:
        s = dataclasses.replace(base)
        for section, values in kw.items():
            setattr(s, section, dataclasses.replace(getattr(s, section), **values))
        return s

    return {
        "tiered": base,
        "embeddings only": with_(dialplan={"tiers": [2]}),
        "no sleep": with_(call={"idle_sleep_s": 1e9, "idle_hangup_s": 1e9}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="put the results into docs/benchmarks.md")
    parser.add_argument("--repeats", type=int, default=3, help="replays of the recorded call for the speed figure")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the goal says

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        base, _ = load_settings(environ={"VOICEIVR_PLUGINS_ENABLED": "demo"}, config_file=ROOT / "absent.toml")
        base.paths.var_dir = tmp
        base.speech.prompt_cache_dir = str(tmp / "prompts")

        speeds = []
        for _ in range(args.repeats):
            r = run_call(base, "recorded bank call", None, tmp)
            speeds.append(r.audio_s / r.wall_s)
        speed_line = (f"| recorded bank call ({r.audio_s:.0f} s, {len(load_call(RECORDED).control)} keys) | "
                      f"{statistics.median(speeds):.0f}x (min {min(speeds):.0f}x, {args.repeats} runs) |")

        # One unmeasured pass first: the scripted calls' prompts go into the shared prompt cache here, so their
        # synthesis is not charged to whichever configuration happens to run first.
        for name, script in scripted_calls().items():
            run_call(base, name, script, tmp)
        results: dict[str, list[Run]] = {}
        for label, settings in configs(base).items():
            runs = [run_call(settings, "recorded bank call", None, tmp)]
            runs += [run_call(settings, name, script, tmp) for name, script in scripted_calls().items()]
            results[label] = runs
            print(f"{label}: " + ", ".join(f"{r.call} {r.engine_s:.3f}s/{r.resolved} tasks ({r.outcome})"
                                           for r in runs), flush=True)
        always = [continuous_stt_seconds(base, r.caller_pcm) for r in results["tiered"]]

    lines = [SECTION, "", "Command: `.venv/bin/python scripts/bench_replay.py --write` (pinned to one core)  ",
             f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
             "shared with other work, so wall-clock figures are noisy", "",
             "| replay | x real time, one core |", "|---|---|", speed_line, "",
             "Engine-seconds (CPU inside VAD, STT, TTS and router tiers) on the same calls:", "",
             "| configuration | " + " | ".join(r.call for r in results["tiered"]) + " | per call | per resolved task |",
             "|---|" + "---|" * (len(results["tiered"]) + 2)]
    for label, runs in results.items():
        total = sum(r.engine_s for r in runs)
        tasks = sum(r.resolved for r in runs)
        cells = " | ".join(f"{r.engine_s:.3f} ({r.resolved})" for r in runs)
        lines.append(f"| {label} | {cells} | {total / len(runs):.3f} | "
                     f"{(total / tasks) if tasks else float('nan'):.3f} |")
    tiered = results["tiered"]
    always_cells = " | ".join(
        f"{r.engine_s - sum(v for k, v in r.by_engine.items() if k.startswith('stt')) + a:.3f}"
        for r, a in zip(tiered, always, strict=True))
    total_always = sum(r.engine_s - sum(v for k, v in r.by_engine.items() if k.startswith("stt")) + a
                       for r, a in zip(tiered, always, strict=True))
    tasks = sum(r.resolved for r in tiered)
    lines.append(f"| STT always on (estimate) | {always_cells} | {total_always / len(tiered):.3f} | "
                 f"{total_always / tasks if tasks else float('nan'):.3f} |")
    lines += ["", "(n) after a figure: caller tasks the call resolved. Router cost by tier and the other engines' "
              "shares are in each call's `engine_seconds` (`voiceivr replay --json`, `voiceivr stats`).", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = ROOT / "docs" / "benchmarks.md"
        doc = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
        if SECTION in doc:
            start = doc.index(SECTION)
            nxt = doc.find("\n## ", start + len(SECTION))
            doc = doc[:start] + text + (doc[nxt + 1:] if nxt >= 0 else "")
        else:
            doc = doc.rstrip() + "\n\n" + text
        path.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    main()
