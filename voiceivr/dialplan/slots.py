"""Typed slot values and their parsers: what a caller says or keys, turned into canonical values.

Every parser *finds* a value inside an utterance ("transfer fifty dollars to savings" holds the amount
"fifty dollars"), so one sentence can fill several slots. A value right after "not" is a rejected one:
"no, fifty, not fifteen" gives fifty. Parsers never guess: an utterance that holds no clear value gives
``None`` and the engine asks again.

Canonical values: money is :class:`Money` (integer cents), digit strings are ``str`` of 0-9, yes/no is
``bool``, dates are :class:`datetime.date`, a choice is the option's key, free text and addresses are ``str``
(bounded and checked in :mod:`voiceivr.dialplan.freetext`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rapidfuzz import fuzz

from voiceivr.policy.confirm import read_answer

SlotType = Literal["money", "digits", "yesno", "date", "choice", "text", "address"]
SLOT_TYPES: tuple[str, ...] = ("money", "digits", "yesno", "date", "choice", "text", "address")
FREE_TEXT_TYPES: tuple[str, ...] = ("text", "address")  # the whole answer is the value (voiceivr.dialplan.freetext)


@dataclass(frozen=True, order=True)
class Money:
    """An amount of money in integer cents (never a float)."""

    cents: int

    def spoken(self) -> str:
        dollars, cents = divmod(self.cents, 100)
        unit = "dollar" if dollars == 1 else "dollars"
        return f"{dollars} {unit} {cents:02d} cents"

    def __str__(self) -> str:
        dollars, cents = divmod(self.cents, 100)
        return f"${dollars:,}.{cents:02d}"


@dataclass(frozen=True)
class Option:
    key: str
    synonyms: tuple[str, ...]  # lower-case phrases, the key included
    dtmf: str | None = None
    say: str = ""  # how to speak it ("your savings account"); the key if empty


@dataclass(frozen=True)
class Parsed:
    value: Any
    start: int  # token index where the value was found (orders values inside one utterance)
    cue: str | None = None  # the word right before it ("from", "to"), used to assign it to the right slot


# --- tokens ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\$?\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?|[a-z]+(?:'[a-z]+)?|\$|#|\*")


def tokens(text: str) -> list[str]:
    text = text.lower().replace("-", " ").replace("’", "'")
    return _TOKEN.findall(text)


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces: the form grammar phrases are compared in."""
    return " ".join(tokens(text))


_NEGATORS = frozenset({"not", "isn't", "wasn't", "never"})


def _negated(toks: Sequence[str], start: int) -> bool:
    """ "not fifteen", "not the checking": a negator right before the value (past a determiner)."""
    i = start - 1
    while i >= 0 and toks[i] in ("the", "my", "a", "an", "your"):
        i -= 1
    return i >= 0 and toks[i] in _NEGATORS


_DETERMINERS = frozenset({"my", "the", "your", "our", "a", "an", "me"})


def _cue(toks: Sequence[str], start: int) -> str | None:
    """The word that introduces a value ("from", "to"), looking past "my"/"the"."""
    i = start - 1
    while i >= 0 and toks[i] in _DETERMINERS:
        i -= 1
    return toks[i] if i >= 0 else None


# --- numbers in words -----------------------------------------------------------------------------------

UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
         "nine": 9}
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
         "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}
SCALES = {"thousand": 1000, "million": 1_000_000}
NUMBER_WORDS = frozenset(UNITS) | frozenset(TEENS) | frozenset(TENS) | frozenset(SCALES) | {"hundred"}


def _numeric_token(tok: str) -> float | None:
    t = tok.lstrip("$").replace(",", "")
    try:
        return float(t) if t else None
    except ValueError:
        return None


def parse_number_words(toks: Sequence[str], i: int) -> tuple[int, int] | None:
    """An integer spelled in words starting at ``toks[i]`` -> (value, index after it), or None.

    Grammar-ish: only well-formed sequences combine ("twenty one" is 21; "fifty fifteen" is 50, then 15).
    """
    total = 0
    current = 0
    last: str | None = None
    j = i
    while j < len(toks):
        t = toks[j]
        nxt = toks[j + 1] if j + 1 < len(toks) else ""
        if t == "a" and last is None and nxt in ("hundred", "thousand", "million"):
            current, last = 1, "unit"
        elif t in UNITS and last in (None, "tens", "hundred", "scale", "and"):
            if last is None and t == "zero":
                current, last = 0, "unit"
            else:
                current += UNITS[t]
                last = "unit"
        elif t in TEENS and last in (None, "hundred", "scale", "and"):
            current += TEENS[t]
            last = "teen"
        elif t in TENS and last in (None, "hundred", "scale", "and"):
            current += TENS[t]
            last = "tens"
        elif t == "hundred" and last in ("unit", "teen", "tens") and current < 100:
            current *= 100
            last = "hundred"
        elif t in SCALES and last in ("unit", "teen", "tens", "hundred"):
            total += current * SCALES[t]
            current = 0
            last = "scale"
        elif t == "and" and last in ("hundred", "scale") and (nxt in UNITS or nxt in TEENS or nxt in TENS):
            last = "and"
        else:
            break
        j += 1
    if last is None or last == "and":
        return None
    return total + current, j


# --- money ----------------------------------------------------------------------------------------------

_DOLLAR_WORDS = frozenset({"dollar", "dollars", "bucks", "usd"})
_CENT_WORDS = frozenset({"cent", "cents"})


def _read_number(toks: Sequence[str], i: int) -> tuple[float, int, bool] | None:
    """A number at i, as words or digits -> (value, index after, had a $ sign)."""
    value = _numeric_token(toks[i])
    if value is not None:
        return value, i + 1, toks[i].startswith("$")
    if toks[i] == "$" and i + 1 < len(toks):
        inner = _read_number(toks, i + 1)
        if inner:
            return inner[0], inner[1], True
        return None
    words = parse_number_words(toks, i)
    if words is None:
        return None
    return float(words[0]), words[1], False


def extract_money(text: str, *, bare_numbers: bool = True) -> Parsed | None:
    """Money in an utterance: "$1,250.50", "fifty dollars", "one thousand two hundred fifty dollars and fifty
    cents", "75 cents"; a bare number ("fifty") counts when ``bare_numbers`` (the caller was asked for an
    amount)."""
    toks = tokens(text)
    found: list[Parsed] = []
    i = 0
    while i < len(toks):
        got = _read_number(toks, i)
        if got is None:
            i += 1
            continue
        value, j, dollar_sign = got
        cents: int | None = None
        explicit = dollar_sign
        if j < len(toks) and toks[j] in _DOLLAR_WORDS:
            explicit = True
            cents = round(value * 100)
            j += 1
            k = j + 1 if j < len(toks) and toks[j] == "and" else j
            if k < len(toks):
                more = _read_number(toks, k)
                # "and fifty cents", or a last number without its word: "twenty five dollars fifty" is $25.50
                with_word = more is not None and more[1] < len(toks) and toks[more[1]] in _CENT_WORDS
                if more and more[0] < 100 and more[0] == int(more[0]) and (with_word or more[1] == len(toks)):
                    cents += round(more[0])
                    j = more[1] + 1 if with_word else more[1]
        elif j < len(toks) and toks[j] in _CENT_WORDS:
            explicit = True
            cents = round(value)
            j += 1
        elif (j < len(toks) and not dollar_sign and not _negated(toks, i)
              and (after := _read_number(toks, j)) is not None and not toks[j].startswith("$")):
            # Two numbers in a row with no unit between: "two fifty" is $2.50 in a shop and $250 for a transfer,
            # "one twenty five" $1.25 or $125. No guess: neither is an amount (the caller is asked again).
            i = after[1]
            continue
        elif dollar_sign or bare_numbers:
            cents = round(value * 100)
        if cents is not None and (explicit or bare_numbers) and not _negated(toks, i):
            found.append(Parsed(Money(cents), i, _cue(toks, i)))
        i = j
    return found[0] if found else None


# --- digit strings --------------------------------------------------------------------------------------

_DIGIT_WORDS = {**{k: str(v) for k, v in UNITS.items()}, "oh": "0", "o": "0"}
_FILLERS = frozenset({"and", "uh", "um", "er", "dash", "space"})
_REPEAT = {"double": 2, "triple": 3}


def _starts_digits(toks: Sequence[str], i: int) -> bool:
    """Does a digit string go on at ``toks[i]``? ("oh" is a zero only inside one: "oh twelve", not "oh, okay")."""
    return i < len(toks) and (toks[i] in _DIGIT_WORDS or toks[i] in TEENS or toks[i] in TENS or toks[i] in _REPEAT
                              or bool(re.fullmatch(r"\d+", toks[i])))


def _digit_runs(toks: Sequence[str]) -> list[tuple[str, int]]:
    """Runs of digits spoken one by one (or as digits) -> [(digits, start index)]."""
    runs: list[tuple[str, int]] = []
    cur = ""
    start = -1
    i = 0
    while i < len(toks):
        t = toks[i]
        piece: str | None = None
        step = 1
        if re.fullmatch(r"\d[\d,]*", t):
            piece = t.replace(",", "")
        elif t in _DIGIT_WORDS and (t not in ("o", "oh") or cur or _starts_digits(toks, i + 1)):
            piece = _DIGIT_WORDS[t]
        elif t in TEENS:
            piece = str(TEENS[t])
        elif t in TENS:
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            if nxt in UNITS and nxt != "zero":
                piece, step = str(TENS[t] + UNITS[nxt]), 2
            else:
                piece = str(TENS[t])
        elif t in _REPEAT and i + 1 < len(toks) and toks[i + 1] in _DIGIT_WORDS:
            piece, step = _DIGIT_WORDS[toks[i + 1]] * _REPEAT[t], 2
        elif t in _FILLERS and cur:
            i += 1
            continue
        if piece is None:
            if cur:
                runs.append((cur, start))
            cur, start = "", -1
        else:
            if not cur:
                start = i
            cur += piece
        i += step
    if cur:
        runs.append((cur, start))
    return runs


def digit_strings(text: str) -> list[str]:
    """Every run of digits in ``text``, of any length, in words or numerals; a decimal point ends a run."""
    return [digits for digits, _ in _digit_runs(tokens(text.replace(".", " . ")))]


def extract_digits(text: str, min_len: int = 1, max_len: int = 32) -> Parsed | None:
    toks = tokens(text)
    for digits, start in _digit_runs(toks):
        if min_len <= len(digits) <= max_len and not _negated(toks, start):
            return Parsed(digits, start, _cue(toks, start))
    return None


# --- yes / no -------------------------------------------------------------------------------------------

def _has_phrase(norm: str, phrase: str) -> int:
    m = re.search(rf"(?:^| ){re.escape(phrase)}(?: |$)", norm)
    return m.start() if m else -1


def parse_yesno(text: str) -> Parsed | None:
    """True for yes, False for no; a "no" anywhere wins over a "yes" ("yes, no wait" is a no). The words are the
    policy's (voiceivr.policy.confirm), the same a read-back's confirmation is judged by."""
    answer = read_answer(text)
    return None if answer is None else Parsed(answer.yes, answer.start)


# --- dates ----------------------------------------------------------------------------------------------

MONTHS = {m: i + 1 for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                                          "september", "october", "november", "december"))}
MONTHS.update({m[:3]: i for m, i in list(MONTHS.items())})
MONTHS["sept"] = 9
WEEKDAYS = {d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
            "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
            "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
            "twentieth": 20, "thirtieth": 30}


def _day_at(toks: Sequence[str], i: int) -> tuple[int, int] | None:
    """A day of month at i: "15", "15th", "fifteenth", "twenty first" -> (day, index after)."""
    if i >= len(toks):
        return None
    t = toks[i]
    m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?", t)
    if m:
        return int(m.group(1)), i + 1
    if t in ORDINALS:
        return ORDINALS[t], i + 1
    if t in ("twenty", "thirty") and i + 1 < len(toks) and toks[i + 1] in ORDINALS and ORDINALS[toks[i + 1]] < 10:
        return TENS[t] + ORDINALS[toks[i + 1]], i + 2
    return None


def _year_at(toks: Sequence[str], i: int) -> tuple[int, int] | None:
    if i < len(toks) and re.fullmatch(r"\d{4}", toks[i]):
        return int(toks[i]), i + 1
    if i + 1 < len(toks) and toks[i] == "twenty":  # "twenty twenty six"
        rest = parse_number_words(toks, i + 1)
        if rest and 0 <= rest[0] < 100:
            return 2000 + rest[0], rest[1]
    return None


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def extract_date(text: str, today: dt.date, prefer: Literal["future", "past"] = "future") -> Parsed | None:
    """Dates as callers say them: "today", "tomorrow", "next friday", "March 15th", "the 3rd of May 2026",
    "3/15/2026", "2026-03-15". Without a year, the nearest such date in the ``prefer`` direction."""
    low = text.lower()
    m = re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", low)
    if m:
        d = _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return Parsed(d, 0) if d else None
    m = re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", low)
    if m:
        yr = int(m.group(3)) if m.group(3) else None
        if yr is not None and yr < 100:
            yr += 2000
        return _resolve(today, int(m.group(1)), int(m.group(2)), yr, prefer)
    toks = tokens(text)
    for i, t in enumerate(toks):
        if t == "today":
            return Parsed(today, i)
        if t == "tomorrow":
            return Parsed(today + dt.timedelta(days=1), i)
        if t == "yesterday":
            return Parsed(today - dt.timedelta(days=1), i)
        if t in WEEKDAYS:
            delta = WEEKDAYS[t] - today.weekday()
            before = toks[i - 1] if i else ""
            if before == "last" or (prefer == "past" and before != "next"):
                delta = delta - 7 if delta >= 0 else delta
                if delta == -7 and before != "last":
                    delta = 0
            else:
                delta = delta + 7 if delta < 0 or (delta == 0 and before == "next") else delta
            return Parsed(today + dt.timedelta(days=delta), i)
        if t in MONTHS:  # "march 15th [2026]"
            day = _day_at(toks, i + 1)
            if day:
                year = _year_at(toks, day[1])
                return _resolve(today, MONTHS[t], day[0], year[0] if year else None, prefer, i)
        day = _day_at(toks, i)
        if day and (t in ORDINALS or re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)", t) or t in ("twenty", "thirty")):
            k = day[1] + 1 if day[1] < len(toks) and toks[day[1]] == "of" else day[1]
            if k < len(toks) and toks[k] in MONTHS:  # "the 3rd of may"
                year = _year_at(toks, k + 1)
                return _resolve(today, MONTHS[toks[k]], day[0], year[0] if year else None, prefer, i)
    return None


def _resolve(today: dt.date, month: int, day: int, year: int | None, prefer: str, at: int = 0) -> Parsed | None:
    if year is not None:
        d = _safe_date(year, month, day)
        return Parsed(d, at) if d else None
    d = _safe_date(today.year, month, day)
    if d is None:
        return None
    if prefer == "future" and d < today:
        d = _safe_date(today.year + 1, month, day)
    elif prefer == "past" and d > today:
        d = _safe_date(today.year - 1, month, day)
    return Parsed(d, at) if d else None


# --- choices and free text ------------------------------------------------------------------------------


def extract_choice(text: str, options: Sequence[Option]) -> Parsed | None:
    """The option named in the utterance (by any of its synonyms; a near miss of one word counts: STT
    writes "saving" for "savings"). An option right after "not" is skipped."""
    found = all_choices(text, options)
    return found[0] if found else None


def all_choices(text: str, options: Sequence[Option]) -> list[Parsed]:
    """Every option named in the utterance, in the order said (not the negated ones)."""
    toks = tokens(text)
    norm = " ".join(toks)
    hits: list[tuple[int, int, str]] = []  # (token index, -length, key)
    for opt in options:
        for syn in opt.synonyms:
            pos = _has_phrase(norm, syn)
            if pos >= 0:
                idx = len(norm[:pos].split())
                hits.append((idx, -len(syn), opt.key))
    if not hits:
        for i, tok in enumerate(toks):
            for opt in options:
                for syn in opt.synonyms:
                    if " " not in syn and len(syn) >= 4 and fuzz.ratio(tok, syn) >= 85:
                        hits.append((i, -len(syn), opt.key))
    out: list[Parsed] = []
    seen: set[int] = set()
    for idx, _neg_len, key in sorted(hits):
        if idx not in seen and not _negated(toks, idx):
            seen.add(idx)
            out.append(Parsed(key, idx, _cue(toks, idx)))
    return out


_TEXT_LEADINS = re.compile(
    r"^(?:(?:um|uh|so|well|okay|ok)[, ]+)*(?:it's|it is|that's|that is|my new \w+ is|the new \w+ is|new \w+ is|"
    r"i live at|i moved to|i've moved to)?\s*",
    re.IGNORECASE,
)


def extract_text(text: str, min_chars: int = 3) -> Parsed | None:
    cleaned = _TEXT_LEADINS.sub("", text.strip()).strip(" .,!?")
    return Parsed(cleaned, 0) if len(cleaned) >= min_chars else None


# --- speaking values ------------------------------------------------------------------------------------


def spoken(value: Any) -> str:
    """How a typed value is read to a caller."""
    if isinstance(value, Money):
        return value.spoken()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.date):
        return f"{value.strftime('%A, %B')} {value.day}, {value.year}"
    if isinstance(value, str) and value.isdigit() and len(value) > 1:
        return " ".join(value)
    return str(value)
