"""The open transcript's word on an unsure answer: a slot's value or a read-back's yes/no (issue 14).

When the grammar recogniser is unsure of a turn (calibrated confidence under ``speech.open_transcript_below``) and
the turn is not secret, the recogniser also hands over an open-vocabulary transcript of the same audio
(:mod:`voiceivr.speech.stt.open_transcript`, ``Utterance.open_text``). Both readings go through the slot's own
parser, and :func:`reconcile` says what to do with the two values:

- **the same value**: it is taken, even under ``routing.slot_min_confidence`` (two recognisers that share no
  search agree on it);
- **different values**: neither; the caller is asked again. A grammar always ends on one of its phrases, so an
  unsure grammar that says "nine one nine one" while the open transcript says "5151" is the case a wrong value
  comes from, and a wrong amount or card read back is worse than a reprompt;
- **only the grammar has a value**: as without a second opinion (``routing.slot_min_confidence`` decides). The
  open transcript often has no value where the grammar is right: Whisper hears a synthetic "savings" as "Caving"
  and "yes" as "the Earth";
- **only the open transcript has a value**: taken for words (a choice, yes/no: "my checking account." against a
  grammar that heard the global "what did you say"), never for numbers. Whisper's numbers alone are wrong too often
  to fill a slot ("fifty dollars" -> "$150." for three voices of the development set, "8, 7, 6, 9, 4, 3, 2, 1").

Whisper writes numbers as numerals ("$25.50", "1-8-8-1", "876-543-21", "$1,500"); the slot parsers
(:mod:`voiceivr.dialplan.slots`) read those as they read words, so nothing here rewrites numbers. A numeral with a
decimal point in a digit string ("3141.9226") is not a digit string: it stays unparsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from voiceivr.dialplan.slots import Parsed, digit_strings

# Slot types whose value may come from the open transcript alone (words; numbers need the grammar's agreement).
ALONE_TYPES = frozenset({"choice", "yesno"})
# Slot types the second opinion reads at all (free text and addresses are the whole answer, dates are not asked
# by a grammar).
READ_TYPES = frozenset({"choice", "yesno", "digits", "money"})

Verdict = Literal["agree", "disagree", "grammar", "open", "none"]


@dataclass(frozen=True)
class Reading:
    """What to do with an answer read twice: ``value`` to take (None: take none), and why."""

    verdict: Verdict
    parsed: Parsed | None  # the reading to act on (the grammar's when both agree: its token positions)

    @property
    def value(self) -> Any:
        return self.parsed.value if self.parsed is not None else None


def reconcile(slot_type: str, grammar: Parsed | None, open_: Parsed | None, open_text: str = "") -> Reading:
    """The answer to act on, from the grammar's reading and the open transcript's (see the module's rules).
    ``open_text``: the open transcript itself, for a digit string: digits it holds that cannot be part of the
    grammar's are a disagreement even when they are not a whole answer (:func:`digits_conflict`)."""
    if slot_type not in READ_TYPES:
        raise ValueError(f"no second opinion for a {slot_type!r} slot; only {sorted(READ_TYPES)}")
    if grammar is not None and open_ is not None:
        return Reading("agree", grammar) if grammar.value == open_.value else Reading("disagree", None)
    if grammar is not None and slot_type == "digits" and digits_conflict(str(grammar.value), open_text):
        return Reading("disagree", None)
    if grammar is not None:
        return Reading("grammar", grammar)
    if open_ is not None and slot_type in ALONE_TYPES:
        return Reading("open", open_)
    return Reading("none", None)


def digits_conflict(grammar_digits: str, open_text: str) -> bool:
    """Does the open transcript hold digits the grammar's digit string cannot contain? Runs of two or more
    digits (Whisper's "I know 817263." for "nine oh eight one seven two six three", against the grammar's
    "02812253"), split at anything that is not a digit, a decimal point too ("8172.53"). A run that is part of
    the grammar's string ("1-2-3-4" of "55501234": Whisper missed the start), or that holds all of it (Whisper's
    "1-8-1 1-8-1 1-8-8-1 1-8-" around the grammar's "1881": a loop), is no conflict."""
    return any(len(run) >= 2 and run not in grammar_digits and grammar_digits not in run
               for run in digit_strings(open_text))
