"""Slot answers said aloud and recognised by pocketsphinx through the grammars the dialplan engine hands it:
digit strings (one by one, in pairs, after a lead-in), amounts, and yes/no at a read-back.

The audio is espeak-ng (its default voice) rendered at 8 kHz, with a line's noise floor and G.711 mu-law, as a
caller on a phone line; the grammars are the bank dialplan's (its globals beside the answer, as a call has them).
Figures on many voices and line conditions: scripts/eval_understanding.py (docs/speech.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voiceivr.audio import g711
from voiceivr.audio.frames import split_frames
from voiceivr.demo.actions import registry as demo_registry
from voiceivr.dialplan.loader import load_file
from voiceivr.dialplan.slots import extract_digits, extract_money, parse_yesno
from voiceivr.policy.confirm import grammar_phrases
from voiceivr.speech.stt.grammar import digits_grammar
from voiceivr.speech.stt.pocketsphinx_stt import UNSCORED_CONFIDENCE, PocketsphinxEngine
from voiceivr.speech.tts.espeak import EspeakEngine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def voices() -> Iterator[tuple[EspeakEngine, PocketsphinxEngine]]:
    # What the grammars let through, not how sure the recogniser is: unscored, a result that ended on a whole
    # phrase says so with UNSCORED_CONFIDENCE (the confidence itself is tested in test_stt_pocketsphinx.py).
    yield EspeakEngine(), PocketsphinxEngine(score_grammar_results=False)


def _globals() -> list[str]:
    plan = load_file(ROOT / "dialplans" / "bank.yaml", demo_registry())
    return [p for g in plan.globals.values() for p in (*g.examples, *g.keywords)]


def _agent() -> list[str]:
    agent = load_file(ROOT / "dialplans" / "bank.yaml", demo_registry()).globals["agent"]
    return [*agent.examples, *agent.keywords]


def _heard(voices: tuple[EspeakEngine, PocketsphinxEngine], text: str, grammar: list[str],
           builtin: str | None = None) -> tuple[str, float]:
    tts, stt = voices
    speech = tts.synthesize(text, 8000).pcm.astype(np.float64)
    rng = np.random.default_rng(14)
    line = np.concatenate([np.zeros(2400), speech, np.zeros(4000)])
    line += rng.normal(0.0, 3.0, len(line))  # the line's floor (-80 dBFS): exact digital zeros are no phone call
    pcm = g711.ulaw_decode(g711.ulaw_encode(np.clip(np.rint(line), -32768, 32767).astype(np.int16)))
    stream = stt.stream(8000, grammar, builtin=builtin)
    for frame in split_frames(pcm, 8000):
        stream.feed(frame)
    result = stream.finish()
    return result.text, result.confidence


def test_four_digit_answers_as_callers_say_them(voices: tuple[EspeakEngine, PocketsphinxEngine]) -> None:
    said = {
        "one two three four": "1234", "twelve thirty four": "1234", "forty two forty two": "4242",
        "my pin is four three two one": "4321", "it ends in five one five one": "5151",
        "double five one two": "5512", "three one four one": "3141", "nine nine one one": "9911",
    }
    wrong = []
    for text, digits in said.items():
        heard, confidence = _heard(voices, text, _globals(), digits_grammar(4, 4))
        got = extract_digits(heard, 4, 4)
        assert got is not None and confidence == UNSCORED_CONFIDENCE, (text, heard)  # always four digits
        if got.value != digits:
            wrong.append(f"{text!r} heard as {heard!r}")
    assert len(wrong) <= 1, wrong


def test_a_long_digit_string_is_never_a_wrong_length(voices: tuple[EspeakEngine, PocketsphinxEngine]) -> None:
    """Eight digits said one by one, fast, by espeak: the decode swaps digits on a telephone line (the recogniser's
    16 kHz model misses the fricatives of "six", "seven", "zero": "five five five zero" came back as "five nine
    five zero"), but it is always eight digits, never an insertion or a dropped digit as with a free run of digit
    words ("one zero zero zero zero zero zero one" was 13003030)."""
    for text in ("five five five zero one two three four", "one two three four five six seven eight",
                 "one zero zero zero zero zero zero one", "twelve thirty four fifty six seventy eight"):
        heard, confidence = _heard(voices, text, _globals(), digits_grammar(8, 8))
        got = extract_digits(heard, 1, 32)
        assert got is not None and len(got.value) == 8 and confidence == UNSCORED_CONFIDENCE, (text, heard)


def test_amounts_as_callers_say_them(voices: tuple[EspeakEngine, PocketsphinxEngine]) -> None:
    said = {
        "fifteen hundred dollars": 150000, "one thousand five hundred dollars": 150000,
        "two hundred dollars": 20000, "three hundred and forty dollars": 34000, "a hundred dollars": 10000,
    }  # not "fifty": without its fricatives on a phone line it is "eighty" as often as not (docs/speech.md)
    wrong = []
    for text, cents in said.items():
        heard, _ = _heard(voices, text, _globals(), "money")
        got = extract_money(heard)
        assert got is not None, (text, heard)
        if got.value.cents != cents:  # "fifteen" is "eighteen" now and then (the same loss of the fricatives)
            wrong.append(f"{text!r} heard as {heard!r}")
    assert len(wrong) <= 1, wrong


def test_yes_and_no_at_a_read_back(voices: tuple[EspeakEngine, PocketsphinxEngine]) -> None:
    grammar = [*grammar_phrases(), *_agent()]
    noes = ("no", "no thanks", "nope", "that's wrong", "no cancel it", "no that's not right")
    for text in noes:  # a no is never heard as a yes
        heard, _ = _heard(voices, text, grammar)
        answer = parse_yesno(heard)
        assert answer is not None and answer.value is False, (text, heard)
    yeses = ("yes", "yes please", "that's right", "yes go ahead", "okay")
    for text in yeses:
        heard, _ = _heard(voices, text, grammar)
        answer = parse_yesno(heard)
        assert answer is not None and answer.value is True, (text, heard)
