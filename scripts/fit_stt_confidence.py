#!/usr/bin/env python3
"""Fit the pocketsphinx grammar confidence (voiceivr/speech/stt/pocketsphinx_stt.py: CALIBRATION) on the
understanding evaluation's development set, and report how well it is calibrated.

    .venv/bin/python scripts/fit_stt_confidence.py [--set dev] [--conditions clean,pink10] [--every 1]
        [--phone-beam 1e-15]

Every main-menu clip of the set (examples, paraphrases, hesitations, false starts, out-of-domain requests, bad
input) is played on its line condition (make_understanding_set.play: the lead-in, the words, the tail) into one
grammar stream with the main menu's phrases, as the call session listens there. A result is *right* when its
phrase belongs to the clip's expected intent. The score (grammar path - phone-loop path per frame) is fitted
to right/not right with a logistic regression; printed: the coefficients, the expected calibration error
(10 equal-width bins) and, per threshold, how many results would be accepted right, accepted wrong, and
rejected (a reprompt). Tune on dev only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import make_understanding_set as uset  # noqa: E402

from voiceivr.audio.frames import split_frames  # noqa: E402
from voiceivr.dialplan.slots import normalise  # noqa: E402
from voiceivr.speech.stt.pocketsphinx_stt import PHONE_LOOP_BEAM, PocketsphinxEngine, calibrated  # noqa: E402


def menu_phrases(bank: Path) -> tuple[list[str], dict[str, str]]:
    """The main menu's grammar (every intent's and global's examples and keywords) and phrase -> intent."""
    doc = yaml.safe_load(bank.read_text(encoding="utf-8"))
    phrases: list[str] = []
    owner: dict[str, str] = {}
    for name, intent in [*doc["intents"].items(), *doc["global_intents"].items()]:
        for p in [*intent.get("examples", []), *intent.get("keywords", [])]:
            phrases.append(p)
            owner.setdefault(normalise(p), name)
    return phrases, owner


def fit_logistic(x: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """Maximum-likelihood (a, b) of P(y=1) = sigmoid(a*x + b), by Newton's method (tiny ridge for safety)."""
    w = np.zeros(2)
    X = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + 1e-6 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-6 * np.eye(2)
        w -= np.linalg.solve(hess, grad)
    return float(w[0]), float(w[1])


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[idx == k].mean() - y[idx == k].mean()) * (idx == k).sum()
                     for k in range(bins) if (idx == k).any()) / len(p))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="dev")
    ap.add_argument("--conditions", default="clean,pink10")
    ap.add_argument("--every", type=int, default=1, help="take every Nth clip (a quicker, smaller sample)")
    ap.add_argument("--phone-beam", type=float, default=PHONE_LOOP_BEAM,
                    help="the phone loop's beam (setting speech.pocketsphinx_phone_beam) to fit at")
    ap.add_argument("--cache", type=Path, default=ROOT / "var" / "understanding")
    args = ap.parse_args()
    phrases, owner = menu_phrases(ROOT / "dialplans" / "bank.yaml")
    engine = PocketsphinxEngine(phone_loop_beam=args.phone_beam)
    talkers = uset.load_talkers(args.cache)
    clips = [c for c in uset.plan_clips((args.set,)) if c.node == "menu"][:: args.every]
    scores: list[float] = []
    right: list[int] = []
    nothing = unscored = 0
    cpu_phone = audio_s = 0.0
    for cond in args.conditions.split(","):
        for c in clips:
            speech = uset.read_wav(args.cache / c.render).mono()
            line = uset.play(speech, cond, c.id, talkers)
            stream = engine.stream(8000, phrases)
            for frame in split_frames(line, 8000):
                stream.feed(frame)
            result = stream.finish()
            cpu_phone += stream.engine_seconds
            audio_s += len(line) / 8000
            if not result.text:
                nothing += 1
                continue
            if result.score is None:
                unscored += 1
                continue
            scores.append(result.score)
            right.append(int(owner.get(normalise(result.text)) == c.expected))
    x, y = np.array(scores), np.array(right, dtype=float)
    a, b = fit_logistic(x, y)
    p = 1 / (1 + np.exp(-(a * x + b)))
    p_now = np.array([calibrated(s, engine.calibration) for s in x])
    print(f"{len(clips)} clips x {args.conditions}: {len(x)} results ({int(y.sum())} right), "
          f"{nothing} nothing heard, {unscored} unscored")
    print(f"fitted CALIBRATION = ({a:.4f}, {b:.4f}); ECE fitted {ece(p, y):.3f}, with the code's {ece(p_now, y):.3f}")
    print(f"grammar + phone loop CPU: {1000 * cpu_phone / audio_s:.1f} ms per second of audio")
    auc = float(np.mean([(x[y == 1][:, None] > x[y == 0][None, :]).mean()])) if y.any() and (1 - y).any() else 0.0
    print(f"AUC {auc:.3f}; score median right {np.median(x[y == 1]):.2f}, not right {np.median(x[y == 0]):.2f}")
    print("threshold (calibrated) | accepted right | accepted wrong | reprompted")
    for t in (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        acc = p_now >= t
        print(f"{t:.1f} | {int((acc & (y == 1)).sum())} | {int((acc & (y == 0)).sum())} | {int((~acc).sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
