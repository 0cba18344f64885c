#!/usr/bin/env python3
"""Where a call's CPU goes in its worker thread: thread CPU per second of call, by stage of the session.

    VOICEIVR_PLUGINS_ENABLED=demo .venv/bin/python scripts/bench_call_cpu.py [CALL.wav] [--dialplan FILE]

Replays a recorded call (default: the bank call of tests/fixtures/calls/) through the whole pipeline, as
``voiceivr replay`` does, with each listed stage of the session wrapped in a ``time.thread_time`` meter (about
1 µs per call of the meter itself, against tens of µs per stage: a profiler's overhead would be larger than most
stages). Reported per stage: ms of CPU per second of call and µs per call of the stage. Stages nest
(``CallSession.process`` holds the others); the recogniser runs in this thread here, while under ``voiceivr
serve`` it runs in a helper process (``TurnDetector.feed`` is then a pipe write). The replay runs on one thread,
so the figures do not depend on the machine's load as much as wall-clock ones (caches and SMT still do).
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = [
    ("voiceivr.call.session", "CallSession.process"),
    ("voiceivr.call.session", "CallSession._hear"),
    ("voiceivr.call.turns", "TurnDetector.feed"),
    ("voiceivr.speech.vad", "SileroVadStream.feed"),
    ("voiceivr.speech.vad", "SileroVad.infer"),
    ("voiceivr.call.turns", "TurnDetector.caller_frame"),
    ("voiceivr.call.echo", "EchoCanceller.process"),
    ("voiceivr.call.turns", "TurnDetector.track_level"),
    ("voiceivr.call.levelgate", "LevelGate.feed"),
    ("voiceivr.call.session", "CallSession._fill_outbox"),
    ("voiceivr.call.playback", "Playback.fill"),
    ("voiceivr.call.session", "CallSession._track_playback"),
    ("voiceivr.call.session", "CallSession._drain_control"),
    ("voiceivr.call.session", "CallSession._timers"),
    ("voiceivr.call.media", "MediaChannel.deliver"),
    ("voiceivr.call.media", "MediaChannel.read"),
]

cpu: dict[str, float] = collections.defaultdict(float)
calls: collections.Counter[str] = collections.Counter()


def meter(module: str, qualname: str) -> None:
    owner: Any = importlib.import_module(module)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def metered(*args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            cpu[qualname] += time.thread_time() - t0
            calls[qualname] += 1

    setattr(owner, name, metered)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("call", nargs="?", default=str(ROOT / "tests" / "fixtures" / "calls" / "bank_call.wav"))
    p.add_argument("--dialplan", default=str(ROOT / "dialplans" / "bank.yaml"))
    args = p.parse_args()
    os.environ.setdefault("VOICEIVR_CONFIG", os.devnull)
    for module, qualname in STAGES:
        meter(module, qualname)
    from voiceivr.cli import cli

    frames_before = calls["CallSession.process"]
    try:
        cli.main(["replay", args.call, "--dialplan", args.dialplan, "--json"], standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            return int(exc.code) if isinstance(exc.code, int) else 1
    frames = calls["CallSession.process"] - frames_before
    if not frames:
        print("bench_call_cpu: the replay processed no frame", file=sys.stderr)
        return 1
    seconds = frames * 0.02
    print(f"\n{frames} frames = {seconds:.1f} s of call; thread CPU per second of call, by stage:", file=sys.stderr)
    for name, spent in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"{name:32s} {spent / seconds * 1000:7.2f} ms/s   {spent / calls[name] * 1e6:8.1f} us x {calls[name]}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
