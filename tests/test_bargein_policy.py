"""The barge-in policy (voiceivr/call/bargein.py), one row per case: the prompt's state and what was heard in,
the decision out. The session's own tests (tests/test_session.py) check that the decisions are carried out."""

from __future__ import annotations

import pytest

from voiceivr.call.bargein import (
    Decision,
    Heard,
    PromptState,
    Rules,
    decide,
    grammar_over_prompt,
    is_backchannel,
    may_be_backchannel,
)
from voiceivr.settings import CallSettings

NONE, IGNORE, BARGE, WAIT, WAIT_AND_HOLD, CANCEL, BACKCHANNEL, HOLD_VAD, HOLD_ENERGY, RELEASE = (
    Decision.NONE, Decision.IGNORE, Decision.BARGE, Decision.WAIT, Decision.WAIT_AND_HOLD, Decision.CANCEL,
    Decision.BACKCHANNEL, Decision.HOLD_VAD, Decision.HOLD_ENERGY, Decision.RELEASE,
)

WORDS = ("uh-huh", "okay", "yeah")
IGNORE_BC = Rules(barge_in=True, min_speech_ms=200, hold="energy", hold_confirm_s=0.16, backchannel="ignore",
                  backchannel_max_ms=600, backchannel_words=WORDS)
WORDS_LATER = Rules(barge_in=True, min_speech_ms=200, hold="energy", backchannel="ignore", backchannel_max_ms=900,
                    backchannel_words=("uh huh", "okay"), word_min_ms=300)
BARGE_BC = Rules(barge_in=True, min_speech_ms=200, hold="vad", backchannel="barge", backchannel_words=WORDS)
NO_HOLD = Rules(barge_in=True, min_speech_ms=200, hold="off", backchannel="barge", backchannel_words=WORDS)
NO_BARGE = Rules(barge_in=False, min_speech_ms=200, hold="energy", backchannel="ignore", backchannel_words=WORDS)

IDLE = PromptState(playing=False)
PLAYING = PromptState(playing=True, interruptible=True)
READBACK = PromptState(playing=True, interruptible=False)
HELD = PromptState(playing=True, interruptible=True, held=True, held_s=0.2)
HELD_JUST_NOW = PromptState(playing=True, interruptible=True, held=True, held_s=0.04)

CASES = [
    # (name, rules, prompt, heard, decision)
    # a window of speech or a loud line before any turn: hold (go quiet) or not
    ("tentative: speech over a prompt holds it", IGNORE_BC, PLAYING, Heard("tentative", vad_onset=True), HOLD_VAD),
    ("tentative: our own echo does not", IGNORE_BC, PLAYING, Heard("tentative", vad_onset=True, echo=True), NONE),
    ("tentative: a loud caller line holds (energy)", IGNORE_BC, PLAYING,
     Heard("tentative", loud_onset=True, caller_dominant=True), HOLD_ENERGY),
    ("tentative: loud but our echo dominates", IGNORE_BC, PLAYING, Heard("tentative", loud_onset=True), NONE),
    ("tentative: loud line, hold by VAD only", BARGE_BC, PLAYING,
     Heard("tentative", loud_onset=True, caller_dominant=True), NONE),
    ("tentative: holds are off", NO_HOLD, PLAYING, Heard("tentative", vad_onset=True), NONE),
    ("tentative: barge-in is off", NO_BARGE, PLAYING, Heard("tentative", vad_onset=True), NONE),
    ("tentative: nothing plays", IGNORE_BC, IDLE, Heard("tentative", vad_onset=True), NONE),
    # a held prompt with no speech in sight
    ("quiet: a confirmed-long hold is released", IGNORE_BC, HELD, Heard("quiet"), RELEASE),
    ("quiet: too soon to release", IGNORE_BC, HELD_JUST_NOW, Heard("quiet"), NONE),
    ("quiet: the VAD still hears an onset", IGNORE_BC, HELD, Heard("quiet", vad_onset=True), NONE),
    ("quiet: a barge-in is pending", IGNORE_BC, HELD, Heard("quiet", pending=True), NONE),
    ("quiet: the prompt is not held", IGNORE_BC, PLAYING, Heard("quiet"), NONE),
    # the VAD's start event of a turn
    ("start: nothing plays", IGNORE_BC, IDLE, Heard("start", speech_ms=300), NONE),
    ("start: over a read-back, no answer", IGNORE_BC, READBACK, Heard("start", speech_ms=300), IGNORE),
    ("start: over a read-back, barge-in off still no answer", NO_BARGE, READBACK, Heard("start"), IGNORE),
    ("start: barge-in is off", NO_BARGE, PLAYING, Heard("start", speech_ms=300), NONE),
    ("start: backchannels ignored, wait for words (held)", IGNORE_BC, PLAYING, Heard("start", speech_ms=300),
     WAIT_AND_HOLD),
    ("start: long enough already, backchannels barge", BARGE_BC, PLAYING, Heard("start", speech_ms=200), BARGE),
    ("start: too short yet, hold and wait", BARGE_BC, PLAYING, Heard("start", speech_ms=80), WAIT_AND_HOLD),
    ("start: too short yet, holds off", NO_HOLD, PLAYING, Heard("start", speech_ms=80), WAIT),
    # each frame of a turn whose barge-in is pending
    ("speech: the prompt has finished", IGNORE_BC, IDLE, Heard("speech", speech_ms=900), CANCEL),
    ("speech: now an uninterruptible prompt", IGNORE_BC, READBACK, Heard("speech", speech_ms=900), CANCEL),
    ("speech: longer than any backchannel", IGNORE_BC, PLAYING, Heard("speech", speech_ms=600), BARGE),
    ("speech: a real word", IGNORE_BC, PLAYING, Heard("speech", speech_ms=250, words="balance"), BARGE),
    ("speech: a backchannel word", IGNORE_BC, PLAYING, Heard("speech", speech_ms=250, words=" Uh-Huh "), WAIT),
    ("speech: no words yet", IGNORE_BC, PLAYING, Heard("speech", speech_ms=250), WAIT),
    ("speech: min speech reached (backchannels barge)", BARGE_BC, PLAYING, Heard("speech", speech_ms=200), BARGE),
    ("speech: words do not count when backchannels barge", BARGE_BC, PLAYING,
     Heard("speech", speech_ms=100, words="balance"), WAIT),
    # the end of a turn whose barge-in is still pending
    ("end: a backchannel lets the prompt go on", IGNORE_BC, PLAYING, Heard("end", words="okay"), BACKCHANNEL),
    ("end: an answer cuts the prompt", IGNORE_BC, PLAYING, Heard("end", words="check my balance"), BARGE),
    ("end: the prompt already finished", IGNORE_BC, IDLE, Heard("end", words="check my balance"), CANCEL),
    ("end: backchannels barge", BARGE_BC, PLAYING, Heard("end", words="okay"), BARGE),
    ("end: a run of backchannels", IGNORE_BC, PLAYING, Heard("end", words="okay okay, yeah"), BACKCHANNEL),
    ("end: a cough (short, no word) lets the prompt go on", IGNORE_BC, PLAYING, Heard("end", speech_ms=250),
     BACKCHANNEL),
    ("end: long sound with no word cuts", IGNORE_BC, PLAYING, Heard("end", speech_ms=900), BARGE),
    ("end: a cough barges when backchannels do", BARGE_BC, PLAYING, Heard("end", speech_ms=250), BARGE),
    ("end: 'stop' cuts", IGNORE_BC, PLAYING, Heard("end", speech_ms=250, words="stop"), BARGE),
    ("end: 'no' cuts", IGNORE_BC, PLAYING, Heard("end", speech_ms=200, words="no"), BARGE),
    ("speech: 'wait' cuts on the word", IGNORE_BC, PLAYING, Heard("speech", speech_ms=150, words="wait"), BARGE),
    ("speech: a first partial word is a guess", WORDS_LATER, PLAYING, Heard("speech", speech_ms=200, words="the"),
     WAIT),
    ("speech: a word after word_min_ms cuts", WORDS_LATER, PLAYING, Heard("speech", speech_ms=300, words="stop"),
     BARGE),
    ("speech: 'uh' may become 'uh huh'", WORDS_LATER, PLAYING, Heard("speech", speech_ms=400, words="uh"), WAIT),
    ("speech: 'okay uh' may still", WORDS_LATER, PLAYING, Heard("speech", speech_ms=400, words="okay uh"), WAIT),
    ("speech: 'uh transfer' will not", WORDS_LATER, PLAYING, Heard("speech", speech_ms=400, words="uh transfer"),
     BARGE),
    ("speech: 'okay okay' is still a backchannel", IGNORE_BC, PLAYING,
     Heard("speech", speech_ms=300, words="okay okay"), WAIT),
    # a key press
    ("dtmf: nothing plays", IGNORE_BC, IDLE, Heard("dtmf"), NONE),
    ("dtmf: over a read-back", IGNORE_BC, READBACK, Heard("dtmf"), IGNORE),
    ("dtmf: over a prompt", IGNORE_BC, PLAYING, Heard("dtmf"), BARGE),
    ("dtmf: barge-in is off", NO_BARGE, PLAYING, Heard("dtmf"), NONE),
]


@pytest.mark.parametrize(("rules", "prompt", "heard", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(rules: Rules, prompt: PromptState, heard: Heard, expected: Decision) -> None:
    assert decide(rules, prompt, heard) is expected


def test_backchannel_words_match_loosely() -> None:
    assert is_backchannel(IGNORE_BC, "Uh huh")
    assert is_backchannel(IGNORE_BC, "  YEAH ")
    assert not is_backchannel(IGNORE_BC, "yeah sure")
    assert is_backchannel(IGNORE_BC, "okay, uh-huh yeah")
    assert not is_backchannel(IGNORE_BC, "")
    assert not is_backchannel(IGNORE_BC, "okay stop")


def test_partials_that_may_still_become_backchannels() -> None:
    assert may_be_backchannel(WORDS_LATER, "uh") and may_be_backchannel(WORDS_LATER, "okay uh")
    assert not may_be_backchannel(WORDS_LATER, "uh no") and not may_be_backchannel(WORDS_LATER, "huh")


def test_over_a_prompt_the_grammar_knows_backchannels_and_stop_words() -> None:
    grammar = ("check my balance", "no")
    wider = grammar_over_prompt(WORDS_LATER, grammar)
    assert wider[:2] == grammar and "uh huh" in wider and "stop" in wider and wider.count("no") == 1
    assert grammar_over_prompt(WORDS_LATER, ()) == ()  # free speech hears any word already
    assert grammar_over_prompt(BARGE_BC, grammar) == grammar  # backchannels barge: nothing to tell apart


def test_rules_from_settings() -> None:
    rules = Rules.of(CallSettings(barge_in_hold="energy", barge_in_hold_confirm_ms=160))
    assert rules.hold == "energy" and rules.hold_confirm_s == pytest.approx(0.16)
    assert Rules.of(CallSettings(barge_in_hold="vad")).hold_confirm_s == 0.0
    with pytest.raises(ValueError, match="barge_in_hold must be energy, vad or off"):
        Rules.of(CallSettings(barge_in_hold="loud"))
