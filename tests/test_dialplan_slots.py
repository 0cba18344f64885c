"""Typed slot parsers: money, digits, yes/no, dates, choices."""

from __future__ import annotations

import datetime as dt

import pytest

from voiceivr.dialplan.slots import (
    Money,
    Option,
    all_choices,
    extract_choice,
    extract_date,
    extract_digits,
    extract_money,
    parse_yesno,
    spoken,
)


@pytest.mark.parametrize(("text", "cents"), [
    ("fifty dollars", 5000),
    ("$1,250.50", 125050),
    ("one thousand two hundred fifty dollars and fifty cents", 125050),
    ("transfer fifty dollars to savings", 5000),
    ("75 cents", 75),
    ("a hundred and five dollars", 10500),
    ("fifteen hundred", 150000),
    ("twenty-five dollars and five cents", 2505),
    ("send 300 bucks to mom", 30000),
    ("no, fifty, not fifteen", 5000),
    ("not fifteen, fifty", 5000),
    ("two million dollars", 200_000_000),
    # spoken forms the money grammar takes (voiceivr/speech/stt/grammar.py), each to its value
    ("fifty", 5000),
    ("a hundred dollars", 10000),
    ("one hundred and twenty five dollars", 12500),
    ("fifteen hundred dollars", 150000),
    ("twenty five hundred", 250000),
    ("one thousand five hundred", 150000),
    ("a thousand and one dollars", 100100),
    ("a hundred and twenty dollars fifty cents", 12050),
    ("a hundred and twenty dollars and fifty cents", 12050),
    ("twenty five dollars and fifty cents", 2550),
    ("twenty five dollars fifty", 2550),
    ("ninety nine cents", 99),
    ("seventy five bucks", 7500),
    ("one dollar", 100),
    ("twelve hundred and fifty dollars", 125000),
])
def test_money(text: str, cents: int) -> None:
    got = extract_money(text)
    assert got is not None and got.value == Money(cents)


def test_money_needs_a_unit_unless_asked() -> None:
    assert extract_money("transfer to account 2", bare_numbers=False) is None
    assert extract_money("fifty", bare_numbers=True).value == Money(5000)  # type: ignore[union-attr]
    assert extract_money("I want to check my balance") is None


@pytest.mark.parametrize(("text", "digits"), [
    ("one zero zero zero zero zero zero one", "10000001"),
    ("it is 1000 0001", "10000001"),
    ("oh four double five", "0455"),
    ("my pin is four three two one", "4321"),
    ("twelve thirty four", "1234"),
    # spoken forms the digit grammar takes, each to its value
    ("forty two forty two", "4242"),
    ("it ends in five one five one", "5151"),
    ("two oh oh oh oh oh oh two", "20000002"),
    ("double five one two", "5512"),
    ("oh twelve thirty four", "01234"),
    ("nineteen oh five", "1905"),
    ("ten ten", "1010"),
    ("one two thirty four", "1234"),
    ("my account number is one two three four five six seven eight", "12345678"),
])
def test_digits(text: str, digits: str) -> None:
    got = extract_digits(text, 4, 8)
    assert got is not None and got.value == digits


def test_oh_is_a_zero_only_inside_a_digit_string() -> None:
    assert extract_digits("oh okay", 1, 8) is None
    assert extract_digits("oh twelve", 1, 8).value == "012"  # type: ignore[union-attr]


def test_digits_length_bounds() -> None:
    assert extract_digits("one two three", 4, 4) is None
    assert extract_digits("1234 not 4321", 4, 4).value == "1234"  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "value"), [
    ("yes", True), ("yeah that's right", True), ("correct", True), ("no", False),
    ("no, I meant savings", False), ("not correct", False), ("yes, no wait", False), ("I don't know", None),
])
def test_yesno(text: str, value: bool | None) -> None:
    got = parse_yesno(text)
    assert (got.value if got else None) == value


TODAY = dt.date(2026, 11, 25)  # a Wednesday


@pytest.mark.parametrize(("text", "date"), [
    ("today", TODAY), ("tomorrow", dt.date(2026, 11, 26)), ("next friday", dt.date(2026, 11, 27)),
    ("March 15th", dt.date(2027, 3, 15)), ("the 3rd of May 2027", dt.date(2027, 5, 3)),
    ("3/15/2026", dt.date(2026, 3, 15)), ("2026-03-15", dt.date(2026, 3, 15)),
    ("on the twenty first of december", dt.date(2026, 12, 21)),
])
def test_dates(text: str, date: dt.date) -> None:
    got = extract_date(text, TODAY)
    assert got is not None and got.value == date


def test_dates_in_the_past() -> None:
    assert extract_date("last monday", TODAY).value == dt.date(2026, 11, 23)  # type: ignore[union-attr]
    assert extract_date("March 15th", TODAY, prefer="past").value == dt.date(2026, 3, 15)  # type: ignore[union-attr]
    assert extract_date("February 30th", TODAY) is None


OPTIONS = [Option("savings", ("savings", "savings account")), Option("checking", ("checking", "current account")),
           Option("mom", ("mom", "my mother"))]


def test_choices() -> None:
    assert extract_choice("to my saving", OPTIONS).value == "savings"  # type: ignore[union-attr]
    assert extract_choice("savings, not checking", OPTIONS).value == "savings"  # type: ignore[union-attr]
    assert extract_choice("not checking", OPTIONS) is None
    hits = all_choices("from checking to savings", OPTIONS)
    assert [(h.value, h.cue) for h in hits] == [("checking", "from"), ("savings", "to")]


def test_spoken() -> None:
    assert spoken(Money(5000)) == "50 dollars 00 cents"
    assert spoken(Money(125050)) == "1250 dollars 50 cents"
    assert spoken("4242") == "4 2 4 2"
    assert spoken(dt.date(2026, 3, 15)) == "Sunday, March 15, 2026"
