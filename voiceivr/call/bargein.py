"""Barge-in policy: what caller speech or a key does to the prompt that is playing. A pure function.

:func:`decide` is given the prompt's state and what was heard and returns a :class:`Decision`; it keeps no
state and touches no audio. The session (:mod:`voiceivr.call.session`) carries the decision out: it holds,
releases or cuts the prompt (:mod:`voiceivr.call.playback`) and tells the brain. Each case has a row in
tests/test_bargein_policy.py.

The moments a decision is asked for (:class:`Heard`.what):

* ``tentative`` -- the VAD has one window of speech, or the line went loud, with no turn yet: hold the prompt
  (go quiet now, keep its place) and decide at the VAD's start event.
* ``start`` -- the VAD's start event of a new turn, during a prompt.
* ``speech`` -- each frame of a turn whose barge-in is pending (it started over a prompt but was not yet long
  or wordy enough to cut it).
* ``end`` -- the end of a turn whose barge-in is still pending: a backchannel ("uh-huh", "okay okay", "mm")
  lets the prompt go on, and so does a short sound with no word in it (a cough, a door: backchannel_max_ms at
  most); "stop", "wait", "no" or any other word cuts it (the ``speech`` frames before cut it on the first word).
* ``quiet`` -- a held prompt with no speech onset in sight: release it once the hold has had time to confirm.
* ``dtmf`` -- a key press during a prompt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from voiceivr.settings import CallSettings


class Decision(enum.Enum):
    NONE = "none"  # nothing to do to the prompt
    IGNORE = "ignore"  # the prompt is uninterruptible: this input is no answer to anything (it is overheard)
    BARGE = "barge"  # cut the prompt now
    WAIT = "wait"  # barge-in pending: decide later, the prompt goes on
    WAIT_AND_HOLD = "wait_and_hold"  # barge-in pending: decide later, the prompt goes quiet meanwhile
    CANCEL = "cancel"  # a pending barge-in is off: the prompt finished or cannot be cut
    BACKCHANNEL = "backchannel"  # the pending speech was an "uh-huh": the prompt goes on (release its hold)
    HOLD_VAD = "hold_vad"  # go quiet: the VAD heard a window of speech
    HOLD_ENERGY = "hold_energy"  # go quiet: the caller's line went loud
    RELEASE = "release"  # the sound that held the prompt did not become a barge-in: send the rest


@dataclass(frozen=True)
class PromptState:
    """The prompt being played, as barge-in sees it (``playing=False``: none)."""

    playing: bool
    interruptible: bool = True
    held: bool = False
    held_s: float = 0.0  # how long it has been held


@dataclass(frozen=True)
class Heard:
    what: Literal["tentative", "start", "speech", "end", "quiet", "dtmf"]
    speech_ms: float = 0.0  # caller speech so far in the turn (start, speech), or all of it (end)
    words: str = ""  # the turn's words so far (speech: partial; end: final)
    vad_onset: bool = False  # tentative/quiet: the VAD has a tentative onset
    echo: bool = False  # tentative: that onset is our own prompt coming back
    loud_onset: bool = False  # tentative: the caller's line went loud over its noise floor
    caller_dominant: bool = False  # tentative: the line is the caller's, not our echo (last frame)
    pending: bool = False  # quiet: a turn's barge-in is pending


@dataclass(frozen=True)
class Rules:
    """The call settings barge-in reads (call.barge_in*, call.backchannel*)."""

    barge_in: bool = True
    min_speech_ms: int = 200
    hold: str = "energy"  # energy | vad | off
    hold_confirm_s: float = 0.0  # energy holds only: how long a hold waits for the VAD to confirm speech
    backchannel: str = "ignore"
    backchannel_max_ms: int = 600
    backchannel_words: tuple[str, ...] = ()
    word_min_ms: int = 0  # backchannel = ignore: a word cuts the prompt only after this much speech

    @classmethod
    def of(cls, s: CallSettings) -> Rules:
        if s.barge_in_hold not in ("energy", "vad", "off"):
            raise ValueError(f"call.barge_in_hold must be energy, vad or off, not {s.barge_in_hold!r}")
        return cls(
            barge_in=s.barge_in,
            min_speech_ms=s.barge_in_min_speech_ms,
            hold=s.barge_in_hold,
            hold_confirm_s=s.barge_in_hold_confirm_ms / 1000 if s.barge_in_hold == "energy" else 0.0,
            backchannel=s.backchannel,
            backchannel_max_ms=s.backchannel_max_ms,
            backchannel_words=tuple(s.backchannel_words),
            word_min_ms=s.backchannel_word_ms,
        )


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.lower().replace("-", " ").replace(",", " ").replace(".", " ").split())


def is_backchannel(rules: Rules, text: str) -> bool:
    """Is ``text`` nothing but backchannel phrases ("uh huh", "okay okay", "yeah right")?"""
    words = _words(text)
    phrases = {p for p in (_words(w) for w in rules.backchannel_words) if p}
    if not words:
        return False
    covered = [True] + [False] * len(words)  # covered[i]: the first i words are backchannel phrases
    for i in range(len(words)):
        if covered[i]:
            for p in phrases:
                if words[i:i + len(p)] == p:
                    covered[i + len(p)] = True
    return covered[-1]


def may_be_backchannel(rules: Rules, text: str) -> bool:
    """Backchannels so far, or ending on the start of one ("uh" of "uh huh"): a partial transcript that may still
    turn out a backchannel."""
    if is_backchannel(rules, text):
        return True
    words = _words(text)
    for p in (_words(w) for w in rules.backchannel_words):
        for k in range(1, len(p)):
            if words[-k:] == p[:k] and (len(words) == k or is_backchannel(rules, " ".join(words[:-k]))):
                return True
    return False


BARGE_WORDS = ("stop", "wait", "hold on", "no")


def grammar_over_prompt(rules: Rules, grammar: tuple[str, ...]) -> tuple[str, ...]:
    """The phrases a turn that began over a prompt is recognised with: the node's, and (backchannel = ignore) the
    backchannels and the words that stop a prompt, so that a grammar recogniser can hear "uh-huh" as itself
    rather than as the nearest answer ("okay" came back as "goodbye")."""
    if rules.backchannel != "ignore" or not grammar:
        return grammar
    extra = [p for p in (*rules.backchannel_words, *BARGE_WORDS) if p not in grammar]
    return (*grammar, *extra)


def decide(rules: Rules, prompt: PromptState, heard: Heard) -> Decision:
    """What ``heard`` does to ``prompt``."""
    what = heard.what
    if what == "tentative":
        if not (rules.barge_in and prompt.playing and rules.hold != "off"):
            return Decision.NONE
        if heard.vad_onset and not heard.echo:
            return Decision.HOLD_VAD  # one window of speech over a prompt: go quiet now, decide at the start event
        if rules.hold == "energy" and heard.loud_onset and heard.caller_dominant:
            return Decision.HOLD_ENERGY  # the caller's line went loud: go quiet, let the VAD confirm
        return Decision.NONE
    if what == "quiet":
        if prompt.held and not heard.vad_onset and not heard.pending and prompt.held_s >= rules.hold_confirm_s:
            return Decision.RELEASE
        return Decision.NONE
    if what == "start":
        if not prompt.playing:
            return Decision.NONE
        if not prompt.interruptible:
            return Decision.IGNORE
        if not rules.barge_in:
            return Decision.NONE
        if rules.backchannel != "ignore" and heard.speech_ms >= rules.min_speech_ms:
            return Decision.BARGE
        return Decision.WAIT_AND_HOLD if rules.hold != "off" else Decision.WAIT
    if what == "speech":
        if not (prompt.playing and prompt.interruptible):
            return Decision.CANCEL
        long_enough = heard.speech_ms >= (
            rules.backchannel_max_ms if rules.backchannel == "ignore" else rules.min_speech_ms
        )
        words = heard.words.strip().lower()
        # a recogniser's first partial words are guesses ("okay" began as "the", "uh-huh" as "talk"): trusted
        # only after word_min_ms of speech
        substantive = bool(words) and rules.backchannel == "ignore" and not may_be_backchannel(rules, words) \
            and heard.speech_ms >= rules.word_min_ms
        return Decision.BARGE if long_enough or substantive else Decision.WAIT
    if what == "end":
        if rules.backchannel == "ignore" and is_backchannel(rules, heard.words):
            return Decision.BACKCHANNEL
        if rules.backchannel == "ignore" and not heard.words.strip() and 0 < heard.speech_ms < rules.backchannel_max_ms:
            return Decision.BACKCHANNEL  # a short sound with no word in it: a cough, a door, a breath
        return Decision.BARGE if prompt.playing and prompt.interruptible else Decision.CANCEL
    if what == "dtmf":
        if not prompt.playing:
            return Decision.NONE
        if not prompt.interruptible:
            return Decision.IGNORE
        return Decision.BARGE if rules.barge_in else Decision.NONE
    raise ValueError(f"not something heard: {what!r}")
