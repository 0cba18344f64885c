#!/usr/bin/env python3
"""Backchannels and noises during a prompt: false barge-ins and missed interruptions, on a small labelled set.

    .venv/bin/python scripts/bench_backchannels.py [--voices 3]

A long interruptible prompt plays (espeak-ng, through the prompt cache); 1.5 s in, the caller says or makes
one sound of the set, over a G.711 line. Labelled ``go on`` (the prompt must not be cut): "uh-huh", "okay",
"mm", "yeah", "mm hmm", a cough (a shaped noise burst), a door (a thud). Labelled ``cut``: "stop", "wait",
"no", "agent please", "check my balance". Each spoken item by ``--voices`` voices (espeak-ng en-us, en-us+f3,
piper's joe), each noise with three seeds. The session is the real one (Silero VAD, pocketsphinx, the
barge-in policy of voiceivr/call/bargein.py) with ``call.backchannel`` = stop (today's default) and ignore,
and the recogniser listening with the node's grammar (a menu's phrases) or free speech (its language model).
A false barge-in: a ``go on`` item cut the prompt; a missed interruption: a ``cut`` item did not.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import signal

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))
sys.path.append(str(ROOT / "scripts"))

from make_understanding_set import VOICES, Renderer  # noqa: E402

from tests.support.fakes import ScriptedBrain  # noqa: E402
from voiceivr.call import brain as b  # noqa: E402
from voiceivr.call import events as ev  # noqa: E402
from voiceivr.call.driver import drive  # noqa: E402
from voiceivr.call.media import MediaChannel  # noqa: E402
from voiceivr.call.session import CallSession  # noqa: E402
from voiceivr.settings import Settings  # noqa: E402
from voiceivr.speech.registry import build_prompt_cache, build_stt, build_tts, build_vad  # noqa: E402

RATE = 8000
PROMPT = ("Thank you for calling First Bank. Please listen carefully as our menu options have changed. For your "
          "balance say balance. To transfer money say transfer. To hear our opening hours say hours.")
GRAMMAR = ["check my balance", "balance", "transfer money", "transfer", "opening hours", "hours", "agent please",
           "agent", "talk to a person", "goodbye", "repeat that", "yes", "no"]
GO_ON = ("uh-huh", "okay", "mm", "yeah", "mm hmm")
CUT = ("stop", "wait", "no", "agent please", "check my balance")
AT_S = 1.5


def cough(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(0.25 * RATE)
    burst = signal.sosfilt(signal.butter(4, [300, 2500], "bandpass", fs=RATE, output="sos"), rng.normal(0, 1, n))
    env = np.exp(-np.linspace(0, 6, n)) * np.minimum(1, np.linspace(0, 20, n))
    return np.asarray(burst * env / np.abs(burst).max() * 12000)


def door(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(0.3 * RATE)
    t = np.arange(n) / RATE
    thud = np.sin(2 * np.pi * rng.uniform(80, 160) * t) + 0.5 * rng.normal(0, 1, n)
    x = signal.sosfilt(signal.butter(2, [300, 3400], "bandpass", fs=RATE, output="sos"), thud * np.exp(-t * 25))
    return np.asarray(x / np.abs(x).max() * 16000)


def session(settings: Settings, free: bool) -> tuple[CallSession, ScriptedBrain]:
    brain = ScriptedBrain(greeting=[ev.Reply(0.0, prompt_id=1, text=PROMPT),
                                    b.Listen(grammar=() if free else tuple(GRAMMAR))],
                          replies=[[b.EndCall("done")]] * 3)
    s = CallSession(call_id="bc", media=MediaChannel(RATE), brain=brain, vad=build_vad(settings),
                    stt=build_stt(settings, workers=0), tts=build_tts(settings),
                    prompt_cache=build_prompt_cache(settings), settings=settings.call)
    return s, brain


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", type=int, default=3)
    a = ap.parse_args()
    renderer = Renderer()
    voices = [v for v in VOICES if v.name in ("espeak-us", "espeak-us-f", "piper-joe")][: a.voices]
    items: list[tuple[str, str, np.ndarray]] = []  # (label, what, audio)
    for v in voices:
        items += [("go on", w, renderer.speech(v, w)) for w in GO_ON]
        items += [("cut", w, renderer.speech(v, w)) for w in CUT]
    for seed in range(3):
        items += [("go on", "(cough)", cough(seed)), ("go on", "(door)", door(seed))]
    cache = tempfile.mkdtemp(prefix="bc-prompts-")
    print("| backchannel | recogniser | false barge-ins (go on, cut) | missed interruptions (cut, not cut) | "
          "false barge-ins by item |")
    print("|---|---|---|---|---|")
    for mode in ("stop", "ignore"):
        for free in (False, True):
            settings = Settings()
            settings.speech.prompt_cache_dir = cache
            settings.call = dataclasses.replace(settings.call, backchannel=mode)
            false_barge: list[str] = []
            missed: list[str] = []
            for label, what, audio in items:
                line = np.zeros(int(8 * RATE))
                start = int(AT_S * RATE)
                line[start:start + len(audio)] += audio
                line += np.random.default_rng(7).normal(0, 32768 * 10 ** (-55 / 20), len(line))
                pcm = np.clip(np.rint(line), -32768, 32767).astype(np.int16)
                s, _ = session(settings, free)
                drive(s, pcm, line_codec="pcmu", tail_s=1.0)
                cut = any(isinstance(e, ev.PromptCut) for e in s.timeline)
                if label == "go on" and cut:
                    false_barge.append(what)
                if label == "cut" and not cut:
                    missed.append(what)
            n_go = sum(1 for label, _, _ in items if label == "go on")
            n_cut = len(items) - n_go
            print(f"| {mode} | {'free speech' if free else 'grammar'} | {len(false_barge)} of {n_go} | "
                  f"{len(missed)} of {n_cut} ({', '.join(sorted(set(missed))) or '-'}) | "
                  f"{', '.join(sorted(set(false_barge))) or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
