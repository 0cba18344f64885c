"""Free-text slots: ``text`` (any short answer: a memo, a reason) and ``address`` (a postal address).

What a caller says at one of these becomes an action's parameter word for word, so it is where an
instruction to the agent would travel to a backend. Both are bounded (``max_chars``) and filtered (the
injection filter); an address must also look like one (:mod:`voiceivr.actions.address`). A value that fails is
refused at the slot, before any read-back, and the caller is asked again; the gate checks the parameter once
more (the address type, the filter) whatever the engine did.
"""

from __future__ import annotations

import re

from voiceivr.actions.address import MAX_ADDRESS_CHARS, address_problem, canonical_address
from voiceivr.dialplan.slots import NUMBER_WORDS, UNITS, Parsed, extract_text, parse_number_words
from voiceivr.injection import scan

DEFAULT_TEXT_CHARS = 200  # about 35 words: a memo or a reason, not a speech
DEFAULT_ADDRESS_CHARS = 120
MAX_TEXT_CHARS = 1000  # a dialplan's max_chars for a text slot, at most (the filter reads 2000)

_DIGITS = {**{k: str(v) for k, v in UNITS.items()}, "oh": "0"}
_WORD = re.compile(r"[A-Za-z]+")


def spoken_numbers_to_digits(text: str) -> str:
    """Numbers said in words, as a recogniser writes them, in digits: "forty two oak street" -> "42 oak
    street", "one oh one" -> "101", "two twenty one b" -> "221 b", "six two seven zero four" -> "62704"."""
    out: list[str] = []
    pos = 0
    words = list(_WORD.finditer(text))
    i = 0
    while i < len(words):
        j = i
        # A run of number words joined only by spaces or hyphens ("forty-two"); "and" inside one ("a hundred
        # and five") belongs to it.
        while j < len(words) and (words[j].group().lower() in NUMBER_WORDS or words[j].group().lower() == "oh"
                                  or (words[j].group().lower() == "and" and j > i and j + 1 < len(words)
                                      and words[j + 1].group().lower() in NUMBER_WORDS)
                                  or (words[j].group().lower() == "a" and j == i and j + 1 < len(words)
                                      and words[j + 1].group().lower() in ("hundred", "thousand"))):
            if j > i and text[words[j - 1].end():words[j].start()] not in (" ", "-"):
                break
            j += 1
        if j == i or (j - i == 1 and words[i].group().lower() == "oh"):
            i += 1
            continue
        toks = [w.group().lower() for w in words[i:j]]
        out.append(text[pos:words[i].start()])
        out.append(_run_digits(toks))
        pos = words[j - 1].end()
        i = j
    out.append(text[pos:])
    return "".join(out)


def _run_digits(toks: list[str]) -> str:
    if all(t in _DIGITS for t in toks):  # said digit by digit
        return "".join(_DIGITS[t] for t in toks)
    digits = ""
    k = 0
    while k < len(toks):  # "two twenty one": 2, then 21 -> 221, the way house numbers are said
        if toks[k] == "oh":
            digits, k = digits + "0", k + 1
            continue
        got = parse_number_words(toks, k)
        if got is None:
            k += 1
            continue
        value, k = got
        digits += str(value)
    return digits


def _tidy_case(value: str) -> str:
    """A transcript is lower case: "42 elm road" is stored as "42 Elm Road" (postcodes in capitals)."""
    if any(c.isupper() for c in value):
        return value
    return " ".join(w.upper() if any(c.isdigit() for c in w) else w.capitalize() for w in value.split(" "))


def extract_address(text: str) -> Parsed | None:
    """The address in an answer: lead-ins ("my new address is") dropped, spoken numbers in digits."""
    got = extract_text(text)
    if got is None:
        return None
    return Parsed(_tidy_case(canonical_address(spoken_numbers_to_digits(got.value))), 0)


def check_address(value: str, max_chars: int = DEFAULT_ADDRESS_CHARS) -> str | None:
    """Why an extracted address is refused (a reason without its words), or None."""
    problem = address_problem(value, min(max_chars, MAX_ADDRESS_CHARS))
    if problem is None and scan(value).flagged:
        problem = "flagged by the injection filter"
    return problem


def check_text(value: str, max_chars: int = DEFAULT_TEXT_CHARS) -> str | None:
    """Why a free-text answer is refused (a reason without its words), or None."""
    if len(value) > max_chars:
        return "too long"
    if scan(value).flagged:
        return "flagged by the injection filter"
    return None


def address_problem_in(text: str, max_chars: int = DEFAULT_ADDRESS_CHARS, *, filtered: bool = True) -> str | None:
    """What an address slot makes of an answer: why it is refused, or None. ``filtered=False``: the address
    check alone, without the injection filter (to measure each)."""
    got = extract_address(text)
    if got is None:
        return "nothing heard"
    if not filtered:
        return address_problem(got.value, min(max_chars, MAX_ADDRESS_CHARS))
    return check_address(got.value, max_chars)
