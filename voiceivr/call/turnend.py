"""When a caller's turn is over, on every turn: the whole-phrase rule, the grammar's state and an end-of-turn model.

:class:`TurnEnding` is the decision for one turn, asked on every quiet frame after speech. In order:

1. the words so far are a whole expected phrase, or all the digits a digit entry can take, or a whole phrase but
   for its last word (the recogniser's partial leaves out the last word said until the final): over after
   ``fast_end_of_turn_ms`` of quiet (today's fast path);
2. the grammar wants more (a digit slot expecting 8 digits has 4, even granting the partial its lagging word):
   nothing but ``entry_wait_ms`` of quiet ends it, the model is not asked;
3. the words so far end on a word no sentence ends on ("I would like to", "my card was", "um"): only
   ``max_silence_ms`` ends it, the model is not asked (it takes such pauses for ends: bench_turns). Live, the
   partial's last word is the one before the caller's last, so the rule looks one word back: without it
   (tried 2026-12-06 #4) fewer turns waited on dev (e2e p95 590 against 680 ms) but bench_turns cut 26 % of
   the paused turns on clean lines (docs/benchmarks.md);
4. once the quiet has lasted ``quiet_ms``, the end-of-turn model is asked (and again every ``every_ms`` while the
   quiet goes on): a probability of ``threshold`` or more ends the turn;
5. ``max_silence_ms`` of quiet ends it whatever the model says.

It is a pure decision apart from the model, which it is handed as a function (the tests give it a fake one), so
the live turn detector (:mod:`voiceivr.call.turns`) and scripts/bench_turns.py run the same code. The rules
detector asks only :func:`fast_reason` (rule 1, phrases; the lag only with ``call.end_of_turn_partial_lag``).
:class:`TurnRules` are the settings it reads: the call's (``call.turn_detector``, ``call.smart_turn_*``), with a
dialplan node's ``turn:`` over them (:class:`voiceivr.dialplan.io.TurnSpec`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from voiceivr.dialplan.io import Listen, TurnSpec
from voiceivr.settings import CallSettings

DETECTORS = ("rules", "smart_turn")

# How many digits a word is (grammar state of a digit entry). "oh" is a zero as callers say it.
_DIGIT_WORDS = {w: 1 for w in ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")}
_DIGIT_WORDS.update({"double": 0, "triple": 0})  # "double five" is two digits: counted by what follows
_UNITS = frozenset(("one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))
_TEENS = frozenset(("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                    "eighteen", "nineteen"))
_TENS = frozenset(("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"))


@dataclass(frozen=True)
class TurnRules:
    """What ends a turn (call settings, a node's ``turn:`` over them)."""

    detector: str = "rules"  # rules: VAD end + end_of_turn_ms (today's); smart_turn: the model decides
    fast_ms: int = 200  # quiet after a whole expected phrase
    quiet_ms: int = 200  # quiet before the model is asked
    every_ms: int = 250  # asked again this often while the quiet goes on
    threshold: float = 0.9  # probability of a complete turn that ends it
    max_silence_ms: int = 800  # quiet that ends a turn whatever the model says
    entry_wait_ms: int = 800  # quiet that ends an entry the grammar says is unfinished

    @classmethod
    def of(cls, s: CallSettings) -> TurnRules:
        if s.turn_detector not in DETECTORS:
            raise ValueError(f"call.turn_detector must be one of {', '.join(DETECTORS)}, not {s.turn_detector!r}")
        return cls(s.turn_detector, s.fast_end_of_turn_ms, s.smart_turn_quiet_ms, s.smart_turn_every_ms,
                   s.smart_turn_threshold, s.turn_max_silence_ms, s.turn_entry_wait_ms)

    def over(self, spec: TurnSpec | None) -> TurnRules:
        """These rules with a node's ``turn:`` over them."""
        if spec is None:
            return self
        changes = {k: v for k, v in (("detector", spec.detector), ("threshold", spec.threshold),
                                     ("max_silence_ms", spec.max_silence_ms), ("entry_wait_ms", spec.entry_wait_ms))
                   if v is not None}
        return replace(self, **changes)  # type: ignore[arg-type]


def digit_range(listen: Listen) -> tuple[int, int]:
    """The fewest and most digits an answer to ``listen`` has ((0, 0): not a digit entry)."""
    if listen.builtin and listen.builtin.startswith("digits:"):
        m = re.fullmatch(r"digits:(\d+)(?:-(\d+))?", listen.builtin)
        return (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
    if listen.repeat is not None and listen.sequence and set(listen.sequence) & _DIGIT_WORDS.keys():
        return listen.repeat
    return (0, 0)


def fewest_digits(listen: Listen) -> int:
    """How many digits an answer to ``listen`` needs at least (0: not a digit entry)."""
    return digit_range(listen)[0]


def digits_said(words: str) -> int:
    """Digits in a partial transcript: "double five" is two, "forty two" and "eleven" are two, "forty" is two
    (callers group digits as numbers, and the recogniser hears digits as numbers: "four two" as "forty two")."""
    n, times, tens = 0, 1, False
    for w in words.lower().replace("-", " ").split():
        if w == "double":
            times, tens = 2, False
        elif w == "triple":
            times, tens = 3, False
        elif w in _DIGIT_WORDS or w.isdigit():
            if not (tens and w in _UNITS):  # "forty two": the two is the forty's second digit
                n += times * (len(w) if w.isdigit() else 1)
            times, tens = 1, False
        elif w in _TEENS:
            n, times, tens = n + 2, 1, False
        elif w in _TENS:
            n, times, tens = n + 2, 1, True
        else:
            tens = False
    return n


# Words a caller's turn does not end on: articles, prepositions, auxiliaries, conjunctions, fillers.
_UNFINISHED = ("a an the my your our their his her its to of for from with about at into and or but because if so is "
               "are was were be been am we they can could would should will want need like um uh er erm well")
UNFINISHED_LAST_WORDS = frozenset(_UNFINISHED.split())


def ends_unfinished(words: str) -> bool:
    """Do the words so far end on a word no turn ends on ("I would like to")?"""
    last = words.lower().replace(",", " ").split()[-1:]
    return bool(last) and last[0] in UNFINISHED_LAST_WORDS


# The recogniser's partial transcript lags its audio by about a word: pocketsphinx's hypothesis in mid-utterance
# leaves out the word still being decoded, and more quiet fed to it does not bring it in (only the final does).
# Through the session on dev, "what are your opening" was the partial of "what are your opening hours", "cancel
# my" of "cancel my card", "two oh oh oh oh two" of eight digits: the turns waited for the longest silence.
PARTIAL_LAG_WORDS = 1


def short_of_a_phrase(phrases: Iterable[str]) -> frozenset[str]:
    """Every whole phrase without its last word ("check my" of "check my balance"): a partial that is one of
    them has most likely lost its last word to the recogniser's lag (single words are left out: no words)."""
    out = set()
    for p in phrases:
        words = " ".join(p.lower().split()).rsplit(" ", 1)
        if len(words) == 2:
            out.add(words[0])
    return frozenset(out)


def fast_reason(words: str, *, whole_phrase: Callable[[str], bool], nearly_phrase: Callable[[str], bool],
                most_digits: int = 0, lag: int = PARTIAL_LAG_WORDS) -> str:
    """Why the words so far end a turn after only ``fast_end_of_turn_ms`` of quiet ("": they do not). "phrase": a
    whole expected phrase, or all the digits a digit entry can take; with ``lag`` (words the partial lags by; 0 or
    1), "phrase_lag": a whole phrase but for its last word. A digit entry short of its last digit is not granted
    the lag (ending those sooner changed pocketsphinx's final: docs/speech.md); :meth:`TurnEnding.unfinished_entry`
    grants it to the entry's wait instead. The rules detector grants the lag only when
    ``call.end_of_turn_partial_lag`` says so; :class:`TurnEnding` always does."""
    if not words:
        return ""
    if whole_phrase(words) or (most_digits > 0 and digits_said(words) >= most_digits):  # no digit can follow
        return "phrase"
    if lag > 0 and nearly_phrase(words):  # the partial lags: the caller has most likely said the last word
        return "phrase_lag"
    return ""


Model = Callable[[], float]  # the probability that the turn so far is complete (runs the model on its audio)


class TurnEnding:
    """The end-of-turn decision for one turn (its own state: when the model was last asked, what it said)."""

    def __init__(self, rules: TurnRules, *, whole_phrase: Callable[[str], bool], fewest_digits: int = 0,
                 most_digits: int = 0, nearly_phrase: Callable[[str], bool] = lambda words: False) -> None:
        self.rules = rules
        self.whole_phrase = whole_phrase
        self.nearly_phrase = nearly_phrase
        self.fewest_digits = fewest_digits
        self.most_digits = most_digits
        self.asked_at_ms: float | None = None  # quiet (ms) at which the model was last asked in this quiet
        self.last_p: float | None = None
        self.decisions = 0
        self.reason = ""  # why the turn ended: phrase | model | max_silence | entry

    def speech(self) -> None:
        """The caller is speaking again: a new quiet starts the questions over."""
        self.asked_at_ms = None

    def unfinished_entry(self, words: str) -> bool:
        """Fewer digits than the entry needs, even granting the partial its lagging last word."""
        return self.fewest_digits > 0 and digits_said(words) + PARTIAL_LAG_WORDS < self.fewest_digits

    def over(self, quiet_ms: float, words: str, model: Model | None) -> bool:
        """Is the turn over after ``quiet_ms`` of quiet, with ``words`` heard so far? ``model`` is asked at most
        once per call here, and only where it can change the answer."""
        r = self.rules
        fast = fast_reason(words, whole_phrase=self.whole_phrase, nearly_phrase=self.nearly_phrase,
                           most_digits=self.most_digits)
        if fast:  # the model could only say so later
            return quiet_ms >= r.fast_ms and self._end(fast)
        if self.unfinished_entry(words):
            return quiet_ms >= r.entry_wait_ms and self._end("entry")
        if quiet_ms >= r.max_silence_ms:
            return self._end("max_silence")
        if model is None or quiet_ms < r.quiet_ms or ends_unfinished(words):
            return False
        if self.asked_at_ms is not None and quiet_ms - self.asked_at_ms < r.every_ms:
            return False
        self.asked_at_ms = quiet_ms
        self.decisions += 1
        self.last_p = model()
        return self.last_p >= r.threshold and self._end("model")

    def _end(self, reason: str) -> bool:
        self.reason = reason
        return True
