#!/usr/bin/env python3
"""How well calls understand callers: every clip of the understanding set through the real call session.

    .venv/bin/python scripts/eval_understanding.py [--set dev|heldout|both] [--conditions clean,pink10,...]
        [--limit N] [--kinds yesno,digits,...] [--workers 2] [--set-option SECTION.KEY=VALUE ...]
        [--versus SECTION.KEY=VALUE ...] [--json] [--show]

The clips are scripts/make_understanding_set.py's (text lists in tests/fixtures/understanding/, renders in
var/understanding/, made here if missing). Each clip is one call on the virtual clock, as ``voiceivr replay``
runs one: the bank dialplan (dialplans/bank.yaml), the configured VAD, recogniser, router tiers and dialplan
engine, a scratch SQLite database with the demo bank. The caller hears the greeting and reaches the node the
clip belongs to with the keypad, as a caller who knows the menu would (main menu: nothing; account number:
2; PIN: 2 and the account number; the transfer's "is that right?": 3, the login, 5000# and 2; ...), waits for
the question to finish and says the clip. The channel condition (make_understanding_set.CONDITIONS) is on the
caller's line for the whole call (``--noise-at-turn`` puts it there only from just before the words).

Each clip gets one outcome: **right** (the expected intent or slot value), **wrong** (another intent, a global
such as "agent" or "goodbye", another value), **not understood** (a reprompt, or nothing heard), and for
out-of-domain requests **kept out** (no bank task: a reprompt or a global such as "agent") or **to a task**.
The first decision the dialplan took after the clip began counts: a task once entered is what the caller got.
Latency is the session's own ``e2e`` stage (end of the caller's speech -> first agent audio sent) of the
clip's turns, and ``capture`` (end of speech -> final transcript).

``--set-option`` (alias ``-o``) changes a setting for the run, checked like ``voiceivr config``; ``--versus``
runs the same clips again with those settings on top and prints both side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# PYTHONPATH first: another worktree's voiceivr (and its dialplans/bank.yaml) can be measured with this script
sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import make_understanding_set as uset  # noqa: E402

import voiceivr  # noqa: E402

CODE = Path(voiceivr.__file__).resolve().parent.parent  # the tree whose code is measured
BANK = CODE / "dialplans" / "bank.yaml"
TASKS = ("hours", "balance", "transfer", "address", "lost_card")  # the main menu's routes in bank.yaml
LOGIN = {"1234": "10000001", "4321": "20000001"}  # the demo bank's customers: PIN -> account number
DEFAULT_PIN = "1234"
MAX_CALL_S = 75.0
NOISE_TRACK_S = 30.0  # the line's noise is made this long and repeats (cheaper than a whole call's worth)
SETTLE_S = 4.0  # after the words: long enough for the end of turn, the decode and a reprompt to begin
TURN_WAIT_S = 25.0  # ... or longer while the session still holds a turn open (noise that sounds like speech
# keeps one open up to call.max_utterance_s): what it then makes of the turn is what the caller gets
REPLY_WAIT_S = 3.0  # after a decision: until its reply's first audio, for the e2e figure
UNINTERRUPTIBLE = frozenset({"Disclosure", "ReadBack", "CodeRequest"})


# ------------------------------------------------------------------------------------------ what to key


@dataclass(frozen=True)
class Where:
    """A point of the conversation: its phase ("menu", "slot", "confirm") and the slot asked, if any."""

    phase: str
    slot: str | None = None


def route(node: str, expected: str) -> tuple[list[tuple[Where, str]], Where]:
    """The keys that take a caller from the main menu to ``node`` (each pressed once the conversation is at
    its point), and where the clip is then said."""
    pin = expected if node == "pin" and expected in LOGIN else DEFAULT_PIN
    login = [(Where("slot", "account_number"), LOGIN[pin]), (Where("slot", "pin"), pin)]
    menu = Where("menu")
    if node == "menu":
        return [], menu
    if node == "account_number":
        return [(menu, "2")], Where("slot", "account_number")
    if node == "pin":
        return [(menu, "2"), login[0]], Where("slot", "pin")
    if node == "account":
        return [(menu, "2"), *login], Where("slot", "account")
    if node == "card_last4":
        return [(menu, "5"), *login], Where("slot", "card_last4")
    if node == "amount":
        return [(menu, "3"), *login], Where("slot", "amount")
    if node == "confirm":
        return [(menu, "3"), *login, (Where("slot", "amount"), "5000#"), (Where("slot", "to"), "2")], Where("confirm")
    raise ValueError(f"no route to node {node!r}")


# ------------------------------------------------------------------------------------------ classification


@dataclass(frozen=True)
class Outcome:
    result: str  # right | wrong | not_understood | kept_out | to_task | setup_failed
    got: str = ""  # the intent or value the call took ("" if none)
    final: bool = True  # a decision was taken (else: nothing yet; not_understood if it stays so)


PENDING = Outcome("not_understood", "", final=False)


def classify(node: str, expected: str, events: Iterable[Mapping[str, Any]]) -> Outcome:
    """The outcome of a clip from the timeline events (``Event.to_dict()``) from the moment it began: the first
    decision the dialplan took. Not final while nothing was decided."""
    pending_yes = False
    for e in events:
        kind = e.get("type")
        if kind == "IntentRecognized" and e.get("intent"):
            intent = str(e["intent"])
            if expected in ("ood", "none"):  # another business's request, or bad input: no bank task
                return Outcome("to_task" if intent in TASKS else "kept_out", intent)
            return Outcome("right" if intent == expected else "wrong", intent)
        if kind != "Note":
            continue
        note, d = e.get("kind"), e.get("detail") or {}
        if node == "confirm":
            if note == "confirm_answer":
                pending_yes = bool(d.get("yes"))
                if not pending_yes:
                    return Outcome("right" if expected == "no" else "wrong", "no")
            elif pending_yes and note == "ignored":
                pending_yes = False  # a yes the engine did not take (not confident): it asks again
            elif pending_yes and note == "gate" and d.get("call") == "confirm":
                ok = bool(d.get("ok"))
                if ok:
                    return Outcome("right" if expected == "yes" else "wrong", "yes")
                pending_yes = False
        elif note == "slot" and d.get("slot") == node:
            if node == "pin":  # secret: the value is masked; the login says whether it was the right PIN
                continue
            got = str(d.get("value", ""))
            return Outcome("right" if got == expected else "wrong", got)
        elif node == "pin" and note == "action_result" and d.get("action") == "login":
            return Outcome("right", expected) if d.get("ok") else Outcome("wrong", "another PIN")
    return PENDING


# ------------------------------------------------------------------------------------------ the caller


class EvalCaller:
    """Keys its way to the clip's node, waits for the question to finish, says the clip over the line condition,
    and hangs up once the outcome is known (implements :class:`voiceivr.call.driver.Caller`)."""

    def __init__(self, session: Any, brain: Any, clip: uset.Clip, line: uset.Line, speech: np.ndarray,
                 noise_at_turn: bool = False) -> None:
        self.session, self.conv = session, brain.conv
        self.clip, self.line, self.speech = clip, line, speech
        self.keys, self.target = route(clip.node, clip.expected)
        self.noise_at_turn = noise_at_turn
        self.hung_up = False
        self.done = False
        self.outcome: Outcome = PENDING
        self.said_at: float | None = None  # when the clip's audio started (line noise lead-in included)
        self.words_end: float | None = None
        self.timeline_at = 0  # index of the first timeline event after the clip began
        self.e2e_at = 0
        self.capture_at = 0
        self.early_turns = 0  # turns the line's noise made before the clip (false starts of the VAD)
        self._seen = 0
        self._playing: int | None = None
        self._uninterruptible = False
        self._quiet_since = 0.0
        self._turn_open = False
        self._pending_keys: list[tuple[float, str]] = []
        self._pos = 0
        self._decided_at: float | None = None
        self._e2e_at_decision = 0

    def _where(self) -> Where:
        return Where(self.conv.phase, self.conv.slot if self.conv.phase == "slot" else None)

    def _watch(self, t: float) -> None:
        timeline = self.session.timeline
        for e in timeline[self._seen :]:
            name = type(e).__name__
            if name == "PromptStarted":
                self._playing, self._uninterruptible = e.prompt_id, e.kind in UNINTERRUPTIBLE
            elif name in ("PromptPlayed", "PromptCut") and e.prompt_id == self._playing:
                self._playing, self._uninterruptible = None, False
                self._quiet_since = t
            elif name == "SpeechStarted":
                self._turn_open = True
            elif name == "TranscriptFinal":
                self._turn_open = False
                if self.said_at is None:
                    self.early_turns += 1
        self._seen = len(timeline)

    def frame(self, tick: int, heard: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        from voiceivr.call import events as ev

        t = tick * uset.FRAME_S
        self._watch(t)
        out: list[Any] = []
        while self._pending_keys and self._pending_keys[0][0] <= t:
            out.append(ev.DtmfDigit(t, digit=self._pending_keys.pop(0)[1], method="rfc4733"))
        if self.said_at is None and not self._pending_keys:
            self._next_step(t)
        words = None
        if self.said_at is not None:
            n = uset.FRAME_SAMPLES
            words = self.speech[self._pos : self._pos + n]
            self._pos += n
            self._decide(t)
        elif t > MAX_CALL_S - 10:
            self.outcome, self.hung_up = Outcome("setup_failed", f"never reached {self.target}"), True
        live = self.said_at is not None or not self.noise_at_turn
        return self.line.frame(tick, words, noise=live), out

    def _next_step(self, t: float) -> None:
        if self._uninterruptible:
            return
        where = self._where()
        if self.keys and where == self.keys[0][0]:
            digits = self.keys.pop(0)[1]
            self._pending_keys = [(t + 0.3 + 0.12 * k, d) for k, d in enumerate(digits)]
        elif not self.keys and where == self.target and self._playing is None and t - self._quiet_since >= 0.5:
            self.said_at = t
            self.words_end = t + len(self.speech) / uset.RATE
            self.timeline_at = len(self.session.timeline)
            self.e2e_at = len(self.session.latency.samples.get("e2e", []))
            self.capture_at = len(self.session.latency.samples.get("capture", []))

    def _decide(self, t: float) -> None:
        assert self.said_at is not None and self.words_end is not None
        e2e = len(self.session.latency.samples.get("e2e", []))
        if self._decided_at is None:
            events = (e.to_dict() for e in self.session.timeline[self.timeline_at :])
            self.outcome = classify(self.clip.node, self.clip.expected, events)
            if self.outcome.final:
                self._decided_at, self._e2e_at_decision = t, e2e
            elif (t >= self.words_end + SETTLE_S and not self._turn_open) or t >= self.words_end + TURN_WAIT_S:
                self.hung_up = True  # nothing decided: not understood
        elif e2e > self._e2e_at_decision or t >= self._decided_at + REPLY_WAIT_S:
            self.hung_up = True


# ------------------------------------------------------------------------------------------ one process


@dataclass
class ClipResult:
    clip: str
    set: str
    node: str
    kind: str
    expected: str
    voice: str
    condition: str
    result: str
    got: str
    transcripts: list[tuple[Any, ...]] = field(default_factory=list)
    intents: list[tuple[str, int | None, float]] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    capture_ms: list[float] = field(default_factory=list)
    early_turns: int = 0
    grammar_errors: int = 0  # turns the recogniser could not take the node's grammar for (a dialplan bug)
    error: str = ""


class Evaluator:
    """One process's call runtime (engines loaded once) on a scratch database, running clips one at a time."""

    def __init__(self, env: Mapping[str, str], cache: Path, noise_at_turn: bool = False) -> None:
        from voiceivr.call.budget import StageStats
        from voiceivr.replay import scratch_database
        from voiceivr.runtime import CallRuntime
        from voiceivr.settings import load_settings

        settings, _ = load_settings(environ=dict(env), config_file=ROOT / "absent.toml")
        if "demo" not in settings.plugins.enabled:  # the set is the demo bank's: its actions, its customers
            settings = dataclasses.replace(
                settings, plugins=dataclasses.replace(settings.plugins, enabled=[*settings.plugins.enabled, "demo"]))
        self._tmp = tempfile.TemporaryDirectory(prefix="voiceivr-eval-")
        tmp = Path(self._tmp.name)
        # a prompt cache of its own, as a replay has (the prompts' audio does not depend on other processes)
        settings = dataclasses.replace(
            settings, speech=dataclasses.replace(settings.speech, prompt_cache_dir=str(tmp / "prompts")))
        self.db = scratch_database(tmp / "eval.sqlite3", settings)
        self.runtime = CallRuntime.build(settings, db=self.db, dialplan_file=BANK, stt_workers=0, store_calls=False,
                                         stats=StageStats())
        self.cache = cache
        self.noise_at_turn = noise_at_turn
        self.talkers = uset.load_talkers(cache)
        self._n = 0

    def run(self, clip: uset.Clip, condition: str) -> ClipResult:
        import sqlalchemy as sa

        from voiceivr.audio.wav import read_wav
        from voiceivr.call import events as ev
        from voiceivr.call.driver import drive
        from voiceivr.call.media import MediaChannel
        from voiceivr.policy.gate import SessionBinding

        with self.db.begin() as conn:  # wrong PINs of earlier clips must not lock this clip's login out
            conn.execute(sa.text("DELETE FROM login_lockouts"))
        self._n += 1
        call_id = f"eval-{self._n}-{clip.id}"
        session, brain, _ = self.runtime.new_session(call_id, MediaChannel(uset.RATE), SessionBinding(call_id))
        speech = read_wav(self.cache / clip.render).mono()
        line = uset.Line(condition, clip.id, self.talkers, max_s=NOISE_TRACK_S)
        caller = EvalCaller(session, brain, clip, line, line.words(speech), self.noise_at_turn)
        drive(session, caller, max_s=MAX_CALL_S, tail_s=0.0)
        outcome = caller.outcome
        if not outcome.final and outcome.result == "not_understood" and clip.expected in ("ood", "none"):
            outcome = Outcome("kept_out")  # nothing taken: out of every task
        timeline = session.timeline[caller.timeline_at :] if caller.said_at is not None else []
        finals = [e for e in timeline if isinstance(e, ev.TranscriptFinal) and not e.ignored and not e.secret]
        notes = [e for e in timeline if isinstance(e, ev.Note)]
        samples = session.latency.samples
        return ClipResult(
            clip.id, clip.set, clip.node, clip.kind, clip.expected, clip.voice, condition, outcome.result, outcome.got,
            transcripts=[(e.text, round(e.confidence, 3), *((e.open_text,) if e.open_text else ())) for e in finals],
            intents=[(e.intent, e.tier, round(e.confidence, 3)) for e in timeline if isinstance(e, ev.IntentRecognized)]
            + [("", n.detail.get("tier"), round(float(n.detail.get("confidence", 0.0)), 3)) for n in notes
               if n.kind == "intent_unsure"],
            e2e_ms=[round(x, 1) for x in samples.get("e2e", [])[caller.e2e_at :]] if caller.said_at else [],
            capture_ms=[round(x, 1) for x in samples.get("capture", [])[caller.capture_at :]] if caller.said_at else [],
            early_turns=caller.early_turns,
            grammar_errors=sum(n.kind == "stt.grammar_error" for n in notes),
        )

    def close(self) -> None:
        self.runtime.close()
        self.db.dispose()
        self._tmp.cleanup()


_worker: Evaluator | None = None


def _init(env: dict[str, str], cache: str, noise_at_turn: bool) -> None:
    global _worker
    import logging

    # Budget breaches on a busy machine are expected here, not news; grammar errors are counted per clip instead
    # of logged on every turn.
    logging.disable(logging.ERROR)
    _worker = Evaluator(env, Path(cache), noise_at_turn)


def _run(task: tuple[dict[str, Any], str]) -> ClipResult:
    assert _worker is not None
    clip = uset.Clip(**task[0])
    try:
        return _worker.run(clip, task[1])
    except Exception as exc:  # one clip's failure is a figure in the report, not the end of the run
        return ClipResult(clip.id, clip.set, clip.node, clip.kind, clip.expected, clip.voice, task[1], "error", "",
                          error=f"{type(exc).__name__}: {exc}")


def run_all(clips: Sequence[uset.Clip], conditions: Sequence[str], env: Mapping[str, str], cache: Path, workers: int,
            noise_at_turn: bool = False) -> list[ClipResult]:
    # long calls (slot nodes) first, so the pool does not end on one worker's long tail
    tasks = sorted(((c.to_json(), cond) for c in clips for cond in conditions),
                   key=lambda t: (t[0]["node"] == "menu", t[0]["id"], t[1]))
    if workers <= 1:
        _init(dict(env), str(cache), noise_at_turn)
        try:
            return [_run(t) for t in tasks]
        finally:
            assert _worker is not None
            _worker.close()
    with multiprocessing.get_context("spawn").Pool(workers, _init, (dict(env), str(cache), noise_at_turn)) as pool:
        out, t0 = [], time.perf_counter()
        for n, result in enumerate(pool.imap_unordered(_run, tasks, chunksize=2), 1):
            out.append(result)
            if n % 200 == 0:  # a long run says how far it got
                print(f"{n}/{len(tasks)} calls, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return out


# ------------------------------------------------------------------------------------------ reporting


def pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def _pcts(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def summarise(results: Sequence[ClipResult]) -> dict[str, Any]:
    """Per set, per condition, per kind: counts of each outcome, rates, e2e and capture p50/p95."""

    def block(rows: Sequence[ClipResult]) -> dict[str, Any]:
        indomain = [r for r in rows if r.node == "menu" and r.expected not in ("ood", "none")]
        ood = [r for r in rows if r.expected == "ood"]
        bad = [r for r in rows if r.expected == "none"]
        slots = [r for r in rows if r.node != "menu"]
        count = Counter(r.result for r in rows)
        e2e = [x for r in rows for x in r.e2e_ms]
        cap = [x for r in rows for x in r.capture_ms]
        out: dict[str, Any] = {
            "clips": len(rows),
            "outcomes": dict(count),
            "intent": {"n": len(indomain), **{k: sum(r.result == k for r in indomain)
                                              for k in ("right", "wrong", "not_understood")}},
            "ood": {"n": len(ood), "kept_out": sum(r.result == "kept_out" for r in ood),
                    "to_task": sum(r.result == "to_task" for r in ood),
                    "to_global": sum(r.result == "kept_out" and bool(r.got) for r in ood)},
            "bad_input": {"n": len(bad), "kept_out": sum(r.result == "kept_out" for r in bad),
                          "errors": sum(r.result == "error" for r in bad)},
            "slots": {"n": len(slots), **{k: sum(r.result == k for r in slots)
                                          for k in ("right", "wrong", "not_understood")}},
            "e2e_ms": {"n": len(e2e), "p50": _pcts(e2e)[0], "p95": _pcts(e2e)[1]},
            "capture_ms": {"n": len(cap), "p50": _pcts(cap)[0], "p95": _pcts(cap)[1]},
            "setup_failed": count.get("setup_failed", 0),
            "errors": count.get("error", 0),
            "early_turns": sum(r.early_turns for r in rows),
            "grammar_errors": sum(r.grammar_errors > 0 for r in rows),
        }
        return out

    report: dict[str, Any] = {}
    for set_name in dict.fromkeys(r.set for r in results):
        rows = [r for r in results if r.set == set_name]
        conds = list(dict.fromkeys(r.condition for r in rows))
        report[set_name] = {
            "conditions": {c: block([r for r in rows if r.condition == c]) for c in conds},
            "kinds": {k: {c: block([r for r in rows if r.kind == k and r.condition == c]) for c in conds}
                      for k in dict.fromkeys(r.kind for r in rows)},
            "voices": {v: block([r for r in rows if r.voice == v]) for v in sorted({r.voice for r in rows})},
        }
    return report


def condition_table(rep: Mapping[str, Any]) -> list[str]:
    out = ["| condition | in-domain requests | right | wrong | not understood | out-of-domain | kept out "
           "(of which to a global) | slot answers | right | wrong | not understood | e2e p50 / p95 ms | "
           "bad input kept out | turns on noise before the words |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cond, b in rep["conditions"].items():
        i, o, s = b["intent"], b["ood"], b["slots"]
        extra = f" ({b['setup_failed']} never reached their node)" if b["setup_failed"] else ""
        extra += f" ({b['errors']} errors)" if b.get("errors") else ""
        extra += f" ({b['grammar_errors']} heard without their grammar)" if b.get("grammar_errors") else ""
        out.append(f"| {cond}{extra} | {i['n']} | {pct(i['right'], i['n'])} | {pct(i['wrong'], i['n'])} | "
                   f"{pct(i['not_understood'], i['n'])} | {o['n']} | {pct(o['kept_out'], o['n'])} ({o['to_global']}) | "
                   f"{s['n']} | {pct(s['right'], s['n'])} | {pct(s['wrong'], s['n'])} | "
                   f"{pct(s['not_understood'], s['n'])} | {b['e2e_ms']['p50']:.0f} / {b['e2e_ms']['p95']:.0f} | "
                   f"{b['bad_input']['kept_out']}/{b['bad_input']['n']} | {b['early_turns']} |")
    return out


def kind_table(rep: Mapping[str, Any]) -> list[str]:
    conds = list(rep["conditions"])
    out = ["| kind (n per condition) | " + " | ".join(conds) + " |", "|---|" + "---:|" * len(conds)]
    for kind, per in rep["kinds"].items():
        cells = []
        n = 0
        for c in conds:
            b = per[c]
            n = b["clips"]
            if kind in ("ood", "bad_input"):
                k = b[kind]
                cells.append(f"{pct(k['kept_out'], k['n'])} kept out")
            else:
                cnt = b["outcomes"]
                cells.append(f"{pct(cnt.get('right', 0), n)} / {pct(cnt.get('wrong', 0), n)}")
        out.append(f"| {kind} ({n}) | " + " | ".join(cells) + " |")
    return out


def text_report(report: Mapping[str, Any]) -> str:
    out = []
    for set_name, rep in report.items():
        out.append(f"### {set_name}\n")
        out += condition_table(rep)
        out.append("")
        out.append("Right / wrong by kind (the rest: not understood; out-of-domain: kept out of every task):\n")
        out += kind_table(rep)
        out.append("")
    return "\n".join(out)


def versus_table(a: Mapping[str, Any], b: Mapping[str, Any], label_a: str, label_b: str) -> str:
    out = [f"| set, condition | in-domain right / wrong: {label_a} | {label_b} | out-of-domain kept out: {label_a} | "
           f"{label_b} | slots right / wrong: {label_a} | {label_b} | e2e p95 ms: {label_a} | {label_b} |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for set_name, rep in a.items():
        for cond, x in rep["conditions"].items():
            y = b.get(set_name, {}).get("conditions", {}).get(cond)
            if y is None:
                continue

            def rw(block: Mapping[str, Any], key: str) -> str:
                k = block[key]
                return f"{pct(k['right'], k['n'])} / {pct(k['wrong'], k['n'])}"

            out.append(f"| {set_name}, {cond} | {rw(x, 'intent')} | {rw(y, 'intent')} | "
                       f"{pct(x['ood']['kept_out'], x['ood']['n'])} | {pct(y['ood']['kept_out'], y['ood']['n'])} | "
                       f"{rw(x, 'slots')} | {rw(y, 'slots')} | {x['e2e_ms']['p95']:.0f} | {y['e2e_ms']['p95']:.0f} |")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ command line


def settings_env(assignments: Sequence[str]) -> dict[str, str]:
    """``call.end_of_turn_ms=500`` -> ``VOICEIVR_CALL_END_OF_TURN_MS=500``, checked the way voiceivr reads
    settings: a misspelt key or a bad value stops the run instead of silently measuring the defaults."""
    from voiceivr.errors import ConfigError
    from voiceivr.settings import env_var, load_settings

    env = {}
    for a in assignments:
        key, sep, value = a.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set-option wants SECTION.KEY=VALUE, got {a!r}")
        env[env_var(section, name)] = value
    try:
        _, info = load_settings(environ=env, config_file=ROOT / "absent.toml")
    except ConfigError as exc:
        raise SystemExit(f"--set-option: {exc}") from None
    unknown = set(env) - {i.source for i in info}
    if unknown:
        raise SystemExit(f"--set-option: no such setting for {', '.join(sorted(unknown))} (voiceivr config show)")
    return env


def pick(clips: Sequence[uset.Clip], limit: int | None, seed: int) -> list[uset.Clip]:
    """``limit`` clips per set, a seeded sample stratified by node and kind (so a small run still has some of
    everything)."""
    if not limit:
        return list(clips)
    out: list[uset.Clip] = []
    for set_name in dict.fromkeys(c.set for c in clips):
        groups: dict[tuple[str, str], list[uset.Clip]] = defaultdict(list)
        for c in clips:
            if c.set == set_name:
                groups[(c.node, c.kind)].append(c)
        rng = np.random.default_rng(uset.seed_for(seed, "limit", set_name))
        for g in groups.values():
            rng.shuffle(g)
        total = sum(len(g) for g in groups.values())
        taken = 0
        while taken < min(limit, total):  # round robin over the groups
            for g in groups.values():
                if g and taken < limit:
                    out.append(g.pop())
                    taken += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="sets", default="dev", choices=("dev", "heldout", "both"),
                    help="which clips (default dev; tune on dev only)")
    ap.add_argument("--conditions", default=",".join(uset.CONDITIONS),
                    help=f"comma-separated, of: {', '.join(uset.CONDITIONS)} (default all)")
    ap.add_argument("--limit", type=int, help="at most N clips per set (a seeded sample with some of every kind)")
    ap.add_argument("--kinds", help="comma-separated item kinds to keep (e.g. yesno,digits,amount,choice), after the "
                    "--limit sample is drawn, so the clips are the same as the full run's")
    ap.add_argument("--voices-per-item", type=int, default=3, help="voices each item is said in (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--set-option", "-o", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a setting for this run (repeatable)")
    ap.add_argument("--versus", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="also run the same clips with this setting on top, and compare (repeatable)")
    ap.add_argument("--noise-at-turn", action="store_true",
                    help="the line condition only from just before the words (default: the whole call)")
    ap.add_argument("--cache", type=Path, default=uset.DEFAULT_CACHE)
    ap.add_argument("--json", action="store_true", help="print the summary and every clip's result as JSON")
    ap.add_argument("--show", action="store_true", help="print every clip that was not right")
    args = ap.parse_args()
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if unknown := [c for c in conditions if c not in uset.CONDITIONS]:
        ap.error(f"unknown condition(s) {', '.join(unknown)}; conditions: {', '.join(uset.CONDITIONS)}")
    env = settings_env(args.set_option)
    versus_env = settings_env(args.set_option + args.versus) if args.versus else None
    sets = uset.SETS if args.sets == "both" else (args.sets,)
    clips = pick(uset.plan_clips(sets, args.voices_per_item), args.limit, uset.SEED)
    if args.kinds:
        kinds = {k.strip() for k in args.kinds.split(",") if k.strip()}
        clips = [c for c in clips if c.kind in kinds]
        if not clips:
            ap.error(f"--kinds {args.kinds}: no clip of those kinds in the sample")
    uset.build(args.cache, clips, quiet=True)
    runs: list[tuple[str, dict[str, str]]] = [("main", env)] + ([("versus", versus_env)] if versus_env else [])
    out: dict[str, Any] = {"command": " ".join(sys.argv[1:]), "code": str(CODE), "clips": len(clips),
                           "conditions": conditions,
                           "settings": args.set_option, "runs": {}}
    for name, run_env in runs:
        t0 = time.perf_counter()
        results = run_all(clips, conditions, run_env, args.cache, args.workers, args.noise_at_turn)
        wall = time.perf_counter() - t0
        results.sort(key=lambda r: (r.set, r.condition, r.clip))
        out["runs"][name] = {"wall_s": round(wall, 1), "summary": summarise(results),
                             "results": [dataclasses.asdict(r) for r in results]}
        if args.show and not args.json:
            for r in results:
                if r.result not in ("right", "kept_out"):
                    print(f"[{r.set} {r.condition} {r.voice}] {r.node}/{r.kind} expected {r.expected}: {r.result} "
                          f"{r.got!r} heard {r.transcripts} {r.error}")
    if args.json:
        json.dump(out, sys.stdout, indent=1, default=str)
        print()
        return 0
    main_run = out["runs"]["main"]
    print(text_report(main_run["summary"]))
    n_calls = len(main_run["results"])
    print(f"{n_calls} calls ({len(clips)} clips x {len(conditions)} conditions) in {main_run['wall_s']:.0f} s on "
          f"{args.workers} worker(s); settings: {', '.join(args.set_option) or 'defaults'}; code: {CODE}")
    if versus_env is not None:
        other = out["runs"]["versus"]
        print(f"\nversus {', '.join(args.versus)} ({other['wall_s']:.0f} s):\n")
        print(text_report(other["summary"]))
        print(versus_table(main_run["summary"], other["summary"], "A", "B"))
        print(f"\nA: {', '.join(args.set_option) or 'defaults'}; B: A + {', '.join(args.versus)}")
    errors = [r for r in main_run["results"] if r["result"] == "error"]
    if errors:
        print(f"{len(errors)} clip(s) failed with an error, e.g. {errors[0]['error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
