#!/usr/bin/env python3
"""End of turn, measured like the field (livekit/eot-bench): false cut-offs and dead air, today's rules and the
end-of-turn model side by side, over the turn set of scripts/make_turn_set.py.

    .venv/bin/python scripts/make_turn_set.py
    .venv/bin/python scripts/bench_turns.py [--cache var/turns] [--conditions clean,pink10] [--json out.json]
        [--rules-only]

Each clip is played over the line condition (G.711 mu-law; clean, or pink noise at 10 dB SNR) 20 ms at a
time through what a live call runs: Silero VAD (voiceivr.speech.vad, the default vad.* settings) and the turn
detector's level tracking and quiet (voiceivr.call.turns.TurnDetector.track_level / quiet_ms). The turn starts
at the VAD's first start event. Then, frame by frame:

* ``rules``: today's end of turn: the VAD's end of speech, then ``call.end_of_turn_ms`` (W) of silence since the
  speech ended (TurnDetector.silence_ends);
* ``rules+phrase`` (``+lag``): the same with the whole-phrase rule over a grammar of the set's turns, fed the
  lagging partial (words_by), without and with ``call.end_of_turn_partial_lag`` (a phrase but for its last word
  ends after ``fast_end_of_turn_ms`` of quiet: TurnDetector.fast_words); "guarded": not
  for a partial ending on an unfinished word; "prefixes, caught-up partial": the lag rule's worst case, phrases
  one word past a pause and a recogniser whose partial caught up in the pause (rules_lag_end);
* ``smart_turn``: voiceivr.call.turnend.TurnEnding, the live decision, with the Smart Turn v3.2 model on the
  turn's audio so far (300 ms before the onset on, as TurnDetector.begin keeps it): asked once the quiet has
  lasted W (``call.smart_turn_quiet_ms``), again every ``smart_turn_every_ms``, ``turn_max_silence_ms`` at most;
* ``smart_turn+grammar``: the same, told how many digits a digit entry needs and (from the script) the words
  said so far, less the last one, as the live recogniser's partial lags: 4 of 8 digits waits ``turn_entry_wait_ms``.

A cut-off: the turn was ended before the caller's last word (in a mid-turn pause, or between words). Dead air:
from the caller's last word to the decision, for turns not cut off; for the model the decision's own CPU time
is added (it runs on the call's worker). The whole-phrase rule (an expected phrase ends the turn after
``fast_end_of_turn_ms``) is the same for every detector and needs a transcript: it is not in these numbers.

"dead air at 5 %": the lowest mean dead air of any setting (rules: W; model: W, threshold, max silence) whose
cut-off rate over all clips of the condition is at most 5 %. Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))
sys.path.append(str(ROOT / "scripts"))

from make_turn_set import DEFAULT_CACHE, clip_speech  # noqa: E402
from make_understanding_set import FRAME_S, LEAD_S, RATE, Line  # noqa: E402

from voiceivr.audio.frames import Frame  # noqa: E402
from voiceivr.call.budget import Budgets, CallLatencies, EngineCosts  # noqa: E402
from voiceivr.call.turnend import (  # noqa: E402
    PARTIAL_LAG_WORDS,
    TurnEnding,
    TurnRules,
    ends_unfinished,
    fast_reason,
    short_of_a_phrase,
)
from voiceivr.call.turns import Turn, TurnDetector  # noqa: E402
from voiceivr.settings import CallSettings  # noqa: E402
from voiceivr.speech.endofturn import load  # noqa: E402
from voiceivr.speech.vad import SileroVad  # noqa: E402

TAIL_S = 2.5
PREROLL_S = 0.3
RULES_W = tuple(range(200, 2501, 50))
SMART_W = (150, 200, 300, 500)
SMART_THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)  # the default (call.smart_turn_threshold) must be here
SMART_MAX = (600, 800, 1000, 1200, 1500, 2000)  # and call.turn_max_silence_ms
EVERY_MS = 250
# The rules detector with the whole-phrase rule over a grammar of the set's turns (menu), the lag rule off and on
# (call.end_of_turn_partial_lag), and its worst case: phrases one word past a pause, a partial that caught up.
LAG_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("rules+phrase", {"lag": 0}),
    ("rules+phrase+lag", {"lag": 1}),
    ("rules+phrase+lag, guarded", {"lag": 1, "guard": True}),
    ("rules+phrase, prefixes, caught-up partial", {"lag": 0, "partial_lag": 0, "prefixes": True}),
    ("rules+phrase+lag, prefixes, caught-up partial", {"lag": 1, "partial_lag": 0, "prefixes": True}),
    ("rules+phrase+lag, guarded, prefixes, caught-up partial", {"lag": 1, "partial_lag": 0, "prefixes": True,
                                                                "guard": True}),
)
CUT_AT = (200, 300, 500)


@dataclass
class Run:
    """One clip over one condition: what the VAD and the level said, frame by frame, after the turn began."""

    clip: dict[str, Any]
    pcm: np.ndarray  # the line as heard, int16
    onset_k: int  # first frame of the turn
    onset_t: float
    end_t: float  # the caller's last word ends
    pieces_end: list[float]
    quiet_ms: list[float] = field(default_factory=list)  # per frame from onset_k: as TurnDetector.ending_says_over
    vad_silence_ms: list[float] = field(default_factory=list)  # since the VAD's end of speech (0: speaking)
    p: dict[int, tuple[float, float]] = field(default_factory=dict)  # frame -> (probability, seconds)


def listen(clip: dict[str, Any], cache: Path, condition: str, vad: SileroVad, s: CallSettings) -> Run | None:
    speech, spans = clip_speech(cache, clip)
    line = Line(condition, clip["id"], [], max_s=len(speech) / RATE + LEAD_S + TAIL_S + 1)
    words = line.words(speech)
    ticks = int(np.ceil((len(words) / RATE + TAIL_S) / FRAME_S))
    n = int(RATE * FRAME_S)
    pcm = np.concatenate([line.frame(k, words[k * n:(k + 1) * n]) for k in range(ticks)])
    stream = vad.stream(RATE)
    td = TurnDetector(s, call_id="bench", rate=RATE, vad=stream, stt=None,  # type: ignore[arg-type]
                      echo=None, denoise=None, latency=CallLatencies("bench", Budgets()), costs=EngineCosts())
    td.track_levels = True
    run: Run | None = None
    turn: Turn | None = None
    last_end: float | None = None
    for k in range(ticks):
        now = k * FRAME_S
        x = pcm[k * n:(k + 1) * n]
        td.track_level(x)
        for e in stream.feed(Frame(x, RATE, now)):
            if e.kind == "start" and run is None:
                run = Run(clip, pcm, k, e.t, LEAD_S + spans[-1][1], [LEAD_S + b for _, b in spans])
                turn = Turn(e.t, e.decided_at, None)
            if e.kind == "end":
                last_end = e.t
            if e.kind == "start":
                last_end = None
        if run is None or turn is None:
            continue
        quiet = td.quiet_ms(turn, now)
        vad_silence = 0.0 if last_end is None else (now + FRAME_S - last_end) * 1000
        run.quiet_ms.append(max(quiet, vad_silence))
        run.vad_silence_ms.append(vad_silence)
    return run


def words_by(run: Run, t: float, lag: int = PARTIAL_LAG_WORDS) -> str:
    """The recogniser's partial at ``t`` as the live one is: the words of the pieces said by then, less the last
    word said (pocketsphinx's partial leaves it out until the final: voiceivr/call/turnend.PARTIAL_LAG_WORDS)."""
    said = " ".join(p for p, end in zip(run.clip["pieces"], run.pieces_end, strict=True) if end <= t).split()
    return " ".join(said[: max(0, len(said) - lag)])


def rules_end(run: Run, w: int) -> float | None:
    for i, silence in enumerate(run.vad_silence_ms):
        if silence >= w:
            return (run.onset_k + i + 1) * FRAME_S
    return None


def menu(clips: list[dict[str, Any]], prefixes: bool) -> frozenset[str]:
    """The grammar of the rules+lag rows: every whole turn of the set as one expected phrase; with ``prefixes``
    (the worst case for the lag rule), also each paused turn's words up to its first pause and one word more
    ("my card was stolen" of "my card was, stolen yesterday"), which a caught-up partial in the pause is short of."""
    out = {" ".join(" ".join(c["pieces"]).lower().split()) for c in clips}
    if prefixes:
        out |= {f"{c['pieces'][0]} {c['pieces'][1].split()[0]}".lower() for c in clips if len(c["pieces"]) > 1}
    return frozenset(out)


def rules_lag_end(run: Run, w: int, grammar: frozenset[str], *, lag: int, partial_lag: int = PARTIAL_LAG_WORDS,
                  guard: bool = False) -> float | None:
    """The rules detector with the whole-phrase rule and call.end_of_turn_partial_lag = ``lag``
    (TurnDetector.fast_words: fast_end_of_turn_ms of quiet after the words), fed a partial ``partial_lag`` words
    behind the audio (0: a recogniser that caught up in the pause). ``guard``: the lag rule is not granted to a
    partial that ends on an unfinished word (turnend.ends_unfinished)."""
    short = short_of_a_phrase(grammar)  # as the live rules, no digit entry is granted the lag
    fast = CallSettings().fast_end_of_turn_ms
    for i, (quiet, silence) in enumerate(zip(run.quiet_ms, run.vad_silence_ms, strict=True)):
        now = (run.onset_k + i) * FRAME_S
        words = words_by(run, now, partial_lag)
        if lag == 0:  # as TurnDetector.fast_words: only a whole phrase
            why = "phrase" if words in grammar else ""
        else:
            why = fast_reason(words, whole_phrase=grammar.__contains__, nearly_phrase=short.__contains__, lag=lag)
        if guard and why == "phrase_lag" and ends_unfinished(words):
            why = ""
        if why and quiet >= fast:
            return now + FRAME_S
        if silence >= w:
            return now + FRAME_S
    return None


def smart_end(run: Run, model: Any, rules: TurnRules, grammar: bool, cpu: bool = True) -> tuple[float | None, int]:
    """When TurnEnding ends the turn (None: never in the clip), and how many times it asked the model. ``cpu``:
    the deciding run's own time delays the decision, as on the call's worker."""
    digits = run.clip["digits"] if grammar else 0  # the set's digit entries are of exactly that many
    ending = TurnEnding(rules, whole_phrase=lambda _w: False, fewest_digits=digits, most_digits=digits)
    cost = 0.0
    for i, quiet in enumerate(run.quiet_ms):
        k = run.onset_k + i
        now = k * FRAME_S
        if quiet <= 0:
            ending.speech()
            continue
        cost = 0.0

        def ask(k: int = k) -> float:
            nonlocal cost
            if k not in run.p:
                start = max(0, int((run.onset_t - PREROLL_S) * RATE))
                run.p[k] = model.complete(run.pcm[start:(k + 1) * int(RATE * FRAME_S)], RATE)
            cost = run.p[k][1]
            return run.p[k][0]

        if ending.over(quiet, words_by(run, now) if grammar else "", ask):
            return now + FRAME_S + (cost if cpu and ending.reason == "model" else 0.0), ending.decisions
    return None, ending.decisions


def score(runs: list[Run], ends: list[float | None]) -> dict[str, float]:
    cut = [e is not None and e < r.end_t - 1e-6 for r, e in zip(runs, ends, strict=True)]
    dead = [(e - r.end_t) * 1000 for r, e, c in zip(runs, ends, cut, strict=True) if not c and e is not None]
    paused = [c for r, c in zip(runs, cut, strict=True) if len(r.clip["pieces"]) > 1]
    return {"cut": float(np.mean(cut)), "cut_paused": float(np.mean(paused)) if paused else 0.0,
            "dead_mean": float(np.mean(dead)) if dead else float("nan"),
            "dead_p50": float(np.median(dead)) if dead else float("nan"),
            "dead_p95": float(np.percentile(dead, 95)) if dead else float("nan")}


def best_under(results: list[tuple[str, dict[str, float]]], target: float) -> tuple[str, dict[str, float]] | None:
    ok = [(name, r) for name, r in results if r["cut"] <= target + 1e-9]
    return min(ok, key=lambda x: x[1]["dead_mean"]) if ok else None


def gil_lateness(model: Any, decisions: int = 20) -> dict[str, float]:
    """The model's decisions in one thread (as on a call's worker), a 1 ms ticker in another (as the media
    clock): how late the ticker's wake-ups are while the model runs (features in numpy, inference in
    onnxruntime, which releases the GIL). Also the decisions' own wall time, idle of other work here."""
    import threading

    pcm = (np.random.default_rng(3).normal(0, 2000, 3 * RATE)).astype(np.int16)
    late: list[float] = []
    costs: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            time.sleep(0.001)
            late.append((time.perf_counter() - t - 0.001) * 1000)

    ticker = threading.Thread(target=tick)
    ticker.start()
    for _ in range(decisions):
        costs.append(model.complete(pcm, RATE)[1] * 1000)
    stop.set()
    ticker.join()
    return {"decision_p50": float(np.median(costs)), "decision_p95": float(np.percentile(costs, 95)),
            "late_p50": float(np.median(late)), "late_p99": float(np.percentile(late, 99)), "late_max": max(late)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--conditions", default="clean,pink10")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--gil", action="store_true", help="only: how late a 1 ms ticker thread is while the model runs")
    ap.add_argument("--rules-only", action="store_true", help="only the rules rows (no end-of-turn model: quick)")
    a = ap.parse_args()
    if a.gil:
        g = gil_lateness(load(CallSettings().smart_turn_model))
        print(f"decision (3 s turn): p50 {g['decision_p50']:.0f} ms, p95 {g['decision_p95']:.0f} ms; 1 ms ticker "
              f"lateness meanwhile: p50 {g['late_p50']:.2f} ms, p99 {g['late_p99']:.2f} ms, max {g['late_max']:.1f} ms")
        return 0
    manifest = json.loads((a.cache / "manifest.json").read_text())
    s = CallSettings()
    vad = SileroVad()
    model = None if a.rules_only else load(s.smart_turn_model)
    out: dict[str, Any] = {}
    lines = ["| condition | detector | cut-offs at 200 / 300 / 500 ms (paused turns) | dead air at 5 % cut-offs: "
             "mean / p50 / p95 ms (setting) | at 2 % | model decisions per turn |",
             "|---|---|---|---|---|---|"]
    costs: list[float] = []
    for condition in a.conditions.split(","):
        runs = [r for c in manifest["clips"] if (r := listen(c, a.cache, condition, vad, s)) is not None]
        missed = len(manifest["clips"]) - len(runs)
        table: dict[str, Any] = {"clips": len(runs), "no_speech_heard": missed}
        rules_results = [(f"W={w}", score(runs, [rules_end(r, w) for r in runs])) for w in RULES_W]
        table["rules"] = dict(rules_results)
        row = {name: dict(rules_results)[f"W={w}"] for w in CUT_AT for name in [f"W={w}"]}
        cuts = " / ".join(f"{row[f'W={w}']['cut']:.0%} ({row[f'W={w}']['cut_paused']:.0%})" for w in CUT_AT)
        lines.append(f"| {condition} | rules | {cuts} | {fmt(best_under(rules_results, 0.05))} | "
                     f"{fmt(best_under(rules_results, 0.02))} | 0 |")
        clips = manifest["clips"]
        for label, row_kw in LAG_ROWS:
            kw = dict(row_kw)
            grammar = menu(clips, prefixes=bool(kw.pop("prefixes", False)))
            lag_results = [(f"W={w}", score(runs, [rules_lag_end(r, w, grammar, **kw) for r in runs]))
                           for w in RULES_W]
            table[label] = dict(lag_results)
            d = dict(lag_results)
            cuts = " / ".join(f"{d[f'W={w}']['cut']:.0%} ({d[f'W={w}']['cut_paused']:.0%})" for w in CUT_AT)
            lines.append(f"| {condition} | {label} | {cuts} | {fmt(best_under(lag_results, 0.05))} | "
                         f"{fmt(best_under(lag_results, 0.02))} | 0 |")
        for grammar in () if a.rules_only else (False, True):
            results = []
            free = []  # the same without the model's CPU time: what the decisions alone are worth
            asks: dict[str, float] = {}
            for w, thr, mx in itertools.product(SMART_W, SMART_THRESHOLDS, SMART_MAX):
                if mx <= w:
                    continue
                rules = TurnRules("smart_turn", quiet_ms=w, every_ms=EVERY_MS, threshold=thr, max_silence_ms=mx)
                ends = []
                n_asks = 0
                for r in runs:
                    e, n = smart_end(r, model, rules, grammar)
                    ends.append(e)
                    n_asks += n
                name = f"W={w} p>={thr} max={mx}"
                results.append((name, score(runs, ends)))
                free.append((name, score(runs, [smart_end(r, model, rules, grammar, cpu=False)[0] for r in runs])))
                asks[name] = n_asks / len(runs)
            label = "smart_turn+grammar" if grammar else "smart_turn"
            table[label] = dict(results)
            d = dict(results)
            at = [d[f"W={w} p>={s.smart_turn_threshold} max={s.turn_max_silence_ms}"] for w in CUT_AT]
            cuts = " / ".join(f"{r['cut']:.0%} ({r['cut_paused']:.0%})" for r in at)
            default = asks.get(f"W={s.smart_turn_quiet_ms} p>={s.smart_turn_threshold} max={s.turn_max_silence_ms}",
                               0.0)
            lines.append(f"| {condition} | {label} | {cuts} | {fmt(best_under(results, 0.05))} | "
                         f"{fmt(best_under(results, 0.02))} | {default:.1f} |")
            lines.append(f"| {condition} | {label}, decisions free of CPU | | {fmt(best_under(free, 0.05))} | "
                         f"{fmt(best_under(free, 0.02))} | |")
        costs += [c for r in runs for _, c in r.p.values()]
        out[condition] = table
    ms = np.array(costs or [0.0]) * 1000
    print("\n".join(lines))
    print(f"\nmodel cost per decision (features + inference, one thread, wall): median {np.median(ms):.0f} ms, "
          f"p95 {np.percentile(ms, 95):.0f} ms over {len(ms)} decisions; rules: a comparison (< 0.01 ms)")
    print(f"cut-offs of smart_turn columns: W = call.smart_turn_quiet_ms, threshold {s.smart_turn_threshold}, max "
          f"silence {s.turn_max_silence_ms} ms (the defaults); rules: W = call.end_of_turn_ms (default "
          f"{s.end_of_turn_ms})")
    for condition in out:
        if condition == "cost_ms":
            continue
        t = out[condition]
        default = f"W={s.smart_turn_quiet_ms} p>={s.smart_turn_threshold} max={s.turn_max_silence_ms}"
        rows = [("rules, defaults", t["rules"][f"W={s.end_of_turn_ms}"])]
        rows += [(f"{label}, defaults", t[label][f"W={s.end_of_turn_ms}"]) for label, _ in LAG_ROWS]
        rows += [(f"{label}, defaults", t[label][default]) for label in ("smart_turn", "smart_turn+grammar")
                 if label in t]
        for label, r in rows:
            print(f"{condition} {label}: cut-offs {r['cut']:.0%} (paused turns {r['cut_paused']:.0%}), dead air mean "
                  f"{r['dead_mean']:.0f} / p50 {r['dead_p50']:.0f} / p95 {r['dead_p95']:.0f} ms")
    if a.json:
        out["cost_ms"] = {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)), "n": len(ms)}
        a.json.write_text(json.dumps(out, indent=1))
    return 0


def fmt(best: tuple[str, dict[str, float]] | None) -> str:
    if best is None:
        return "not reached"
    name, r = best
    return f"{r['dead_mean']:.0f} / {r['dead_p50']:.0f} / {r['dead_p95']:.0f} ({name}; cut {r['cut']:.0%})"


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = main()
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    sys.exit(rc)
