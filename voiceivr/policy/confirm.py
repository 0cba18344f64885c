"""What counts as a yes or a no to a read-back: one lexicon and one confidence threshold, owned by the policy.

The dialplan engine builds its confirm grammar from :func:`grammar_phrases`, reads the caller's answer with
:func:`read_answer` and checks :attr:`ConfirmRules.min_confidence` before it calls ``gate.confirm``; the gate
decides with :func:`is_explicit_yes` and the same threshold. So a word the engine hears as a yes is a yes to
the gate, and a yes the gate would refuse is never passed on as one (before, "absolutely" was a yes to the
engine and a ``not_a_yes`` to the gate, and the transfer was abandoned).

An explicit yes is a short answer made only of yes phrases and courtesy words ("yes", "absolutely, go ahead",
"yes please, thank you"), with no negation anywhere. A yes inside a longer sentence ("yes but make it five
hundred") is an answer the engine asks again for; a no phrase anywhere makes the whole answer a no ("yes, no
wait" is a no).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from voiceivr.settings import PolicySettings

# Phrases are lower case, words separated by one space; apostrophes are optional when matched ("thats right").
YES_PHRASES: tuple[str, ...] = (
    "yes", "yeah", "yep", "yup", "yes please", "correct", "right", "that's right", "that is right",
    "that's correct", "that is correct", "sure", "confirm", "confirmed", "affirmative", "go ahead", "ok", "okay",
    "please do", "absolutely", "definitely", "do it", "of course", "certainly",
)
NO_PHRASES: tuple[str, ...] = (
    "no", "nope", "nah", "negative", "wrong", "incorrect", "not right", "not correct", "that's wrong", "cancel",
    "don't do", "do not", "stop", "not that", "wait", "hold on", "never", "absolutely not", "definitely not",
    "of course not", "certainly not", "not really",
)
# Words that are no answer by themselves ("I don't know") but make a yes beside them no yes ("yes, don't").
NEGATIONS: tuple[str, ...] = ("not", "don't", "isn't", "never")
# Words that may go with a yes without making it less explicit.
COURTESY: tuple[str, ...] = (
    "please", "thanks", "thank you", "send it", "send the code", "and", "it", "that", "the transfer",
    "the payment", "the change", "um", "uh", "erm", "oh",
)
MAX_ANSWER_WORDS = 8  # longer than this is a sentence, not an answer to "is that right?"

DTMF_YES = "1"
DTMF_NO = "2"

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _words(text: str) -> list[str]:
    """Lower-case words, apostrophes dropped ("That's" and "thats" read alike)."""
    return [w.replace("'", "") for w in _TOKEN.findall(text.lower().replace("’", "'"))]


def _phrase_words(phrases: tuple[str, ...]) -> list[list[str]]:
    return sorted((_words(p) for p in phrases), key=len, reverse=True)  # longest first: "yes please" > "yes"


_YES = _phrase_words(YES_PHRASES)
_NO = _phrase_words(NO_PHRASES)
_NEGATION_WORDS = frozenset(w for p in NEGATIONS for w in _words(p))
_COURTESY = _phrase_words(COURTESY)


def _match_at(words: list[str], i: int, phrases: list[list[str]]) -> int:
    """Length of the longest phrase starting at word ``i``, or 0."""
    for p in phrases:
        if words[i:i + len(p)] == p:
            return len(p)
    return 0


@dataclass(frozen=True)
class Answer:
    yes: bool  # False: a no (a no phrase anywhere wins)
    explicit: bool  # a yes made only of yes phrases and courtesy words, short, not negated; a no always is
    start: int  # index of the first word of the answer (orders it among other values of an utterance)


def read_answer(text: str) -> Answer | None:
    """The caller's yes or no, or None if the text holds neither."""
    words = _words(text)
    first_no = next((i for i in range(len(words)) if _match_at(words, i, _NO)), None)
    if first_no is not None:
        return Answer(False, True, first_no)
    i, first_yes, extra = 0, None, False
    while i < len(words):
        n = _match_at(words, i, _YES)
        if n:
            first_yes = i if first_yes is None else first_yes
        else:
            n = _match_at(words, i, _COURTESY)
            extra = extra or not n
            n = n or 1
        i += n
    if first_yes is None:
        return None
    negated = any(w in _NEGATION_WORDS for w in words)
    return Answer(True, not extra and not negated and len(words) <= MAX_ANSWER_WORDS, first_yes)


# How callers put two of them together ("yes please", "no that's wrong"): a short answer word, then a phrase that
# says the same again or a courtesy. A grammar recogniser must have the whole answer as one path: with "no" alone,
# "no thanks" came back as the dialplan's global "go back" and "no cancel it" as "go ahead" (understanding
# evaluation, dev, clean: 22 of 33 yes/no answers right, 7 wrong; with these pairs 33 of 33).
YES_LEADS: tuple[str, ...] = ("yes", "yeah", "okay")
YES_FOLLOWERS: tuple[str, ...] = (
    "please", "thanks", "thank you", "go ahead", "that's right", "that's correct", "correct", "do it",
)
NO_LEADS: tuple[str, ...] = ("no", "nope", "nah")
NO_FOLLOWERS: tuple[str, ...] = (
    "thanks", "thank you", "that's wrong", "that's not right", "cancel it", "cancel", "it's not", "it isn't", "wait",
    "don't", "stop", "not right", "not that", "it's wrong", "wrong",
)


def grammar_phrases() -> tuple[str, ...]:
    """What a grammar recogniser listens for after "is that right?": every yes and no phrase, and the pairs callers
    make of them (every one reads as the answer it was built for: tests/test_confirm.py)."""
    pairs = [f"{lead} {follower}" for lead in YES_LEADS for follower in YES_FOLLOWERS]
    pairs += [f"{lead} {follower}" for lead in NO_LEADS for follower in NO_FOLLOWERS]
    return tuple(dict.fromkeys((*YES_PHRASES, *NO_PHRASES, *pairs)))


@dataclass(frozen=True)
class ConfirmRules:
    """The policy's rules for a yes; the engine asks the gate for them (``gate.confirmation``)."""

    min_confidence: float  # policy.confirm_min_confidence: a spoken yes recognised below it is not a yes

    @classmethod
    def default(cls) -> ConfirmRules:
        """The rules of the default policy settings (for gates built without settings: simulations, tests)."""
        return cls(PolicySettings().confirm_min_confidence)

    def confident(self, evidence_kind: str, confidence: float) -> bool:
        return evidence_kind != "speech" or confidence >= self.min_confidence


class Answered(Protocol):
    """What :func:`is_explicit_yes` reads of an answer: a :class:`~voiceivr.policy.gate.Evidence` (named by its
    shape, as gate.py imports this module for :class:`ConfirmRules`)."""

    @property
    def kind(self) -> str: ...

    @property
    def text(self) -> str: ...


def is_explicit_yes(evidence: Answered) -> bool:
    """DTMF 1, or a short answer of yes phrases (and courtesy words) with no negation."""
    text = evidence.text.strip()
    if evidence.kind == "dtmf":
        return text == DTMF_YES
    answer = read_answer(text)
    return answer is not None and answer.yes and answer.explicit
