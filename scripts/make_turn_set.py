#!/usr/bin/env python3
"""The end-of-turn set: caller turns with and without mid-turn pauses, spoken by several voices.

    .venv/bin/python scripts/make_turn_set.py [--cache var/turns] [--voices-per-item 2] [--seed 17] [--list]

Each item (ITEMS) is one or more pieces of speech; between pieces the caller pauses 300-700 ms (drawn with the
seed). Kinds: ``complete`` (one breath), ``paused`` (a natural pause mid-sentence), ``digits`` (a number read in
groups), ``hesitation`` ("um ... transfer"), ``trailing`` (the turn ends but sounds unfinished: "... so"). Each
item is spoken by ``--voices-per-item`` voices of make_understanding_set.py's development set (espeak-ng
variants and piper's joe), chosen with the seed.

A mid-turn pause must sound like one: a piece synthesised on its own ends with a sentence's falling pitch, which
no caller pausing mid-sentence has. So the whole turn is synthesised once with a comma between pieces (both
voices then pause with the pitch of an unfinished phrase), and the pieces are cut at the clip's longest quiet
gaps, one per comma; scripts/bench_turns.py lays them out again with the drawn pauses and plays them over a
line condition (make_understanding_set.Line: G.711, clean or pink noise at 10 dB). Renders are cached (8 kHz,
telephone band, level-normalised, trimmed to the audible start and end); ``manifest.json`` in the cache lists
the clips, their pieces and pauses, so the set is the same on every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))
sys.path.append(str(ROOT / "scripts"))

from make_understanding_set import RATE, VOICES, Renderer, voice_named  # noqa: E402

from voiceivr.audio.wav import read_wav, write_wav  # noqa: E402

DEFAULT_CACHE = ROOT / "var" / "turns"
SEED = 17
PAUSE_MS = (300, 700)

# (kind, pieces, digits the answer needs: 0 = not a digit entry)
ITEMS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("complete", ("I want to check my balance",), 0),
    ("complete", ("what are your opening hours",), 0),
    ("complete", ("yes",), 0),
    ("complete", ("no thanks",), 0),
    ("complete", ("checking",), 0),
    ("complete", ("transfer me to an agent please",), 0),
    ("complete", ("I lost my card",), 0),
    ("complete", ("can you tell me the balance of my savings account",), 0),
    ("complete", ("one two three four five six seven eight",), 8),
    ("paused", ("I would like to", "check my balance"), 0),
    ("paused", ("can you tell me", "your opening hours"), 0),
    ("paused", ("my card was", "stolen yesterday"), 0),
    ("paused", ("I need to pay", "my credit card bill"), 0),
    ("paused", ("I want to talk to", "someone about a loan"), 0),
    ("paused", ("what is the balance", "on my savings account"), 0),
    ("digits", ("one two three four", "five six seven eight"), 8),
    ("digits", ("four four seven", "two nine one", "zero five"), 8),
    ("digits", ("nine eight seven six", "five four three two"), 8),
    ("hesitation", ("um", "transfer"), 0),
    ("hesitation", ("uh", "I need an agent"), 0),
    ("hesitation", ("well um", "the balance please"), 0),
    ("hesitation", ("so", "I was thinking", "about a new card"), 0),
    ("trailing", ("I think that's it so",), 0),
    ("trailing", ("my card is blocked or something",), 0),
    ("trailing", ("I was just wondering about my balance and",), 0),
)


def seed_for(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def trim(x: np.ndarray, rate: int = RATE) -> np.ndarray:
    """The audible part: from the first to the last 10 ms within 40 dB of the loudest."""
    n = rate // 100
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    e = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    loud = np.flatnonzero(e > e.max() - 40)
    return x[loud[0] * n : (loud[-1] + 1) * n] if len(loud) else x


def quiet_gaps(x: np.ndarray, rate: int = RATE) -> list[tuple[int, int]]:
    """(start, end) samples of the runs of 10 ms more than 40 dB under the loudest, inside the clip."""
    n = rate // 100
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    e = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    quiet = e < e.max() - 40
    gaps, i = [], 0
    while i < len(quiet):
        j = i
        while j < len(quiet) and quiet[j]:
            j += 1
        if j > i and i > 0 and j < len(quiet):
            gaps.append((i * n, j * n))
        i = max(j, i + 1)
    return gaps


def split(x: np.ndarray, pieces: int) -> list[np.ndarray]:
    """The clip cut at its ``pieces - 1`` longest quiet gaps (the commas), the gaps left out."""
    gaps = sorted(sorted(quiet_gaps(x), key=lambda g: g[1] - g[0])[len(quiet_gaps(x)) - (pieces - 1):]) \
        if pieces > 1 else []
    if len(gaps) != pieces - 1:
        raise ValueError(f"{pieces - 1} pauses wanted, {len(gaps)} found")
    bounds = [0] + [b for g in gaps for b in g] + [len(x)]
    return [x[bounds[2 * k]:bounds[2 * k + 1]] for k in range(pieces)]


def plan(voices_per_item: int = 2, seed: int = SEED) -> list[dict[str, Any]]:
    dev = [v for v in VOICES if v.set == "dev"]
    clips = []
    for i, (kind, pieces, digits) in enumerate(ITEMS):
        rng = np.random.default_rng(seed_for(seed, i))
        for v in rng.choice(len(dev), size=voices_per_item, replace=False):
            voice = dev[int(v)]
            pauses = [int(rng.integers(PAUSE_MS[0], PAUSE_MS[1] + 1)) for _ in pieces[1:]]
            key = hashlib.sha1(", ".join(pieces).encode()).hexdigest()[:16]
            renders = [f"renders/{voice.name}/{key}-{k}.wav" for k in range(len(pieces))]
            clips.append({"id": f"{i:02d}-{voice.name}", "kind": kind, "pieces": list(pieces), "voice": voice.name,
                          "pauses_ms": pauses, "renders": renders, "digits": digits})
    return clips


def build(cache: Path, clips: list[dict[str, Any]]) -> None:
    renderer = Renderer()
    made = 0
    for clip in clips:
        if all((cache / r).exists() for r in clip["renders"]):
            continue
        whole = trim(renderer.speech(voice_named(clip["voice"]), ", ".join(clip["pieces"])))
        for render, piece in zip(clip["renders"], split(whole, len(clip["pieces"])), strict=True):
            (cache / render).parent.mkdir(parents=True, exist_ok=True)
            write_wav(cache / render, trim(piece), RATE)
            made += 1
    (cache / "manifest.json").write_text(json.dumps({"rate": RATE, "clips": clips}, indent=1))
    print(f"{len(clips)} clips, {made} new renders in {cache}", file=sys.stderr)


def clip_speech(cache: Path, clip: dict[str, Any]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The clip's speech with its pauses (int16, 8 kHz) and each piece's (start, end) in seconds."""
    parts: list[np.ndarray] = []
    spans = []
    t = 0
    for k, render in enumerate(clip["renders"]):
        if k:
            gap = int(clip["pauses_ms"][k - 1] * RATE / 1000)
            parts.append(np.zeros(gap, np.int16))
            t += gap
        x = read_wav(cache / render).mono()
        parts.append(x)
        spans.append((t / RATE, (t + len(x)) / RATE))
        t += len(x)
    return np.concatenate(parts), spans


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--voices-per-item", type=int, default=2)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--list", action="store_true", help="print the clips, render nothing")
    a = ap.parse_args()
    clips = plan(a.voices_per_item, a.seed)
    if a.list:
        for c in clips:
            print(c["id"], c["kind"], " | ".join(c["pieces"]), c["pauses_ms"])
        return 0
    build(a.cache, clips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
