"""The open transcript's word on an unsure slot answer (voiceivr/dialplan/second_opinion.py): how Whisper's
numerals parse into slot values, and which reading of an answer heard twice is acted on."""

from __future__ import annotations

import pytest

from voiceivr.dialplan.second_opinion import digits_conflict, reconcile
from voiceivr.dialplan.slots import Money, Parsed, extract_digits, extract_money, parse_yesno
from voiceivr.speech.stt.open_transcript import OpenTranscript, collapse_repeats, looping


@pytest.mark.parametrize(("whisper", "cents"), [
    ("$250.00", 25000), ("250", 25000), ("$1,500", 150000), ("$25.50", 2550), ("99 cents", 99),
    ("$200", 20000), ("$125.", 12500), ("200-dodderm", 20000), ("40 bucks", 4000),
    ("Two hundred fifty dollars.", 25000),
])
def test_whisper_amounts_parse_as_the_amount(whisper: str, cents: int) -> None:
    got = extract_money(whisper, bare_numbers=True)
    assert got is not None and got.value == Money(cents)


@pytest.mark.parametrize("said", ["two fifty", "two fifty dollars", "one twenty five", "twenty five fifty"])
def test_two_numbers_in_a_row_are_no_amount(said: str) -> None:
    # $2.50 to a shop, $250 to a bank: asked again, never guessed (it was $2.00 and $1.00 before)
    assert extract_money(said, bare_numbers=True) is None
    # a unit word between them, a negated one, or a $ sign still reads as before
    assert extract_money("twenty five dollars fifty").value == Money(2550)  # type: ignore[union-attr]
    assert extract_money("not fifteen, fifty").value == Money(5000)  # type: ignore[union-attr]


@pytest.mark.parametrize(("whisper", "digits"), [
    ("1-8-8-1.", "1881"), ("876-543-21", "87654321"), ("908-17263.", "90817263"), ("One, two, three, four.", "1234"),
    ("12 34", "1234"), ("4 3 2 1", "4321"), ("even 5151", "5151"), ("My pin is 4321.", "4321"),
])
def test_whisper_digit_strings_parse_as_the_digits(whisper: str, digits: str) -> None:
    got = extract_digits(whisper, len(digits), len(digits))
    assert got is not None and got.value == digits


def test_a_decimal_point_is_no_digit_string() -> None:
    # "3141.9226" for "three one four one five nine two six": Whisper heard a number, not the digits
    assert extract_digits("3141.9226", 8, 8) is None


def _p(value: object) -> Parsed:
    return Parsed(value, 0)


def test_both_readings_must_agree_on_a_value() -> None:
    assert reconcile("money", _p(Money(5000)), _p(Money(5000))).verdict == "agree"
    assert reconcile("money", _p(Money(8000)), _p(Money(5000))).verdict == "disagree"
    assert reconcile("digits", _p("9191"), _p("5151")).value is None
    agreed = reconcile("yesno", _p(False), _p(False))
    assert (agreed.verdict, agreed.value) == ("agree", False)


def test_the_open_transcript_alone_fills_words_never_numbers() -> None:
    assert reconcile("choice", None, _p("checking")).value == "checking"
    assert reconcile("yesno", None, _p(True)).verdict == "open"
    assert reconcile("digits", None, _p("1881")).verdict == "none"
    assert reconcile("money", None, _p(Money(15000))).verdict == "none"
    # the grammar's reading alone stays as it was (routing.slot_min_confidence decides)
    assert reconcile("money", _p(Money(5000)), None).verdict == "grammar"
    with pytest.raises(ValueError, match="address"):
        reconcile("address", None, None)


def test_digits_the_grammar_cannot_hold_are_a_disagreement() -> None:
    assert digits_conflict("02812253", "I know 817263.")  # not a whole answer, but other digits
    assert digits_conflict("28131253", "I know 8172.53")
    assert not digits_conflict("55501234", "Time time time near a 1-2-3-4.")  # Whisper missed the start
    assert not digits_conflict("1881", "It means in Taiwan.")
    assert not digits_conflict("1881", "1-8-1 1-8-1 1-8-1 1-8-8-1 1-8-")  # a loop around the grammar's digits
    got = reconcile("digits", _p("02812253"), None, "I know 817263.")
    assert got.verdict == "disagree" and got.value is None
    assert reconcile("digits", _p("55501234"), None, "near a 1-2-3-4").verdict == "grammar"


def test_yes_and_no_in_whisper_punctuation() -> None:
    assert parse_yesno("No. No. No.").value is False  # type: ignore[union-attr]
    assert parse_yesno("Yes, please.").value is True  # type: ignore[union-attr]
    assert parse_yesno("No thanks.").value is False  # type: ignore[union-attr]
    assert parse_yesno("The Earth.") is None


@pytest.mark.parametrize("loop", [
    "42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42 42",
    "Nope Nope Nope Nope Nope Nope Nope Nope Nope Nope Nope Nope Nope Nope Nope Nope",
    "Taiwan Taiwan Taiwan Taiwan Taiwan Taiwan Taiwan Taiwan Taiwan Taiwan Taiwan",
])
def test_a_repetition_loop_is_no_transcript(loop: str) -> None:
    assert looping(loop)
    assert not OpenTranscript(loop, -0.1, 0.01, 0.1, 4.0).usable


@pytest.mark.parametrize("text", ["42 42", "Yes, please. Yes, please.", "876-543-21",
                                  "What is the balance in my checking account right now?"])
def test_real_answers_are_no_loop(text: str) -> None:
    assert not looping(text)
    assert OpenTranscript(text, -0.3, 0.01, 0.1, 4.0).usable


@pytest.mark.parametrize(("whisper", "collapsed"), [
    ("Check my balance. Check my balance. Check my balance. Check m", "Check my balance."),
    ("No. No. No.", "No."),
    ("Yes, please. Yes, please.", "Yes, please."),
    ("$25.50", "$25.50"),  # a decimal point ends no sentence
    ("I lost my card. Can you help?", "I lost my card. Can you help?"),
])
def test_a_sentence_said_over_and_over_is_said_once(whisper: str, collapsed: str) -> None:
    assert collapse_repeats(whisper) == collapsed
