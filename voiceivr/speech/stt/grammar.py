"""Turning the phrases a dialplan expects into a recognition grammar.

Phrases are written by people ("Check my balance!", "$50", "I'd like an agent"); recognizers want lowercase
dictionary words. :func:`normalize` does that (numbers spelled out, punctuation dropped, apostrophes kept
inside words); :func:`to_jsgf` writes a JSGF grammar with one alternative per phrase. Words that the
pronunciation dictionary lacks are a :class:`GrammarError` naming the word, the phrase and the fix, raised
when the grammar is built (at dialplan load), never mid-call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from voiceivr.errors import VoiceivrError


class GrammarError(VoiceivrError):
    """A phrase cannot be turned into a grammar (empty, or a word with no pronunciation)."""


_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> list[str]:
    """English words for 0 <= n < 10**9 ("one hundred twenty three"), as callers and IVRs say them."""
    if n < 0 or n >= 10**9:
        raise GrammarError(f"number {n} is out of range for a grammar (0 to 999,999,999)")
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + (number_words(n % 10) if n % 10 else [])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = number_words(n % size) if n % size else []
            return [*number_words(n // size), name, *rest]
    raise AssertionError(n)


_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "#": " number "}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


def normalize(phrase: str) -> list[str]:
    """Lowercase dictionary-style words: "Transfer $50, please!" -> transfer fifty dollars please."""
    text = phrase.lower().replace("’", "'")
    text = re.sub(r"\$(\d+)", r"\1 dollars", text)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    words: list[str] = []
    for token in _TOKEN.findall(text):
        if token.isdigit():
            words.extend(number_words(int(token)))
        elif any(c.isdigit() for c in token):
            for part in re.findall(r"\d+|[a-z']+", token):
                words.extend(number_words(int(part)) if part.isdigit() else [part])
        else:
            words.append(token)
    return words


def check_vocabulary(
    phrases: Sequence[str], known: Callable[[str], bool], fix_hint: str
) -> list[list[str]]:
    """Normalised phrases, every word known to the recognizer; else a GrammarError for the first unknown one.

    A word written in capitals that the dictionary lacks ("ATM", "PIN") is spelled out letter by letter
    when every letter is known, since that is how callers say acronyms.
    """
    out: list[list[str]] = []
    for phrase in phrases:
        words = normalize(phrase)
        if not words:
            raise GrammarError(f"grammar phrase {phrase!r} has no words")
        originals = {w.lower(): w for w in re.findall(r"[A-Za-z']+", phrase)}
        resolved: list[str] = []
        for word in words:
            if known(word):
                resolved.append(word)
                continue
            original = originals.get(word, "")
            if original.isupper() and len(original) <= 6 and all(known(c) for c in word):
                resolved.extend(word)
                continue
            raise GrammarError(
                f"grammar word {word!r} (in phrase {phrase!r}) is not in the recognizer's pronunciation dictionary",
                hint=fix_hint.format(word=word),
            )
        out.append(resolved)
    return out


MAX_REPEAT = 24  # longest phrase sequence a grammar spells out (card numbers are 16-19 digits)


# Built-in grammars, as VoiceXML has them: things callers say in a fixed structure that a phrase list cannot
# spell out. Each is JSGF rules plus the rule name that stands for one whole utterance.
_MONEY_RULES = """<digit> = one | two | three | four | five | six | seven | eight | nine;
<teen> = ten | eleven | twelve | thirteen | fourteen | fifteen | sixteen | seventeen | eighteen | nineteen;
<tens> = twenty | thirty | forty | fifty | sixty | seventy | eighty | ninety;
<below100> = <digit> | <teen> | <tens> [<digit>];
<below1000> = <below100> | (<digit> | a) hundred [[and] <below100>];
<number> = <below1000> [thousand [[and] <below1000>]] | a thousand [[and] <below1000>];
<money> = <number> [dollars | dollar] [and <below100> [cents | cent]] | <below100> (cents | cent) | zero;
"""
BUILTIN_GRAMMARS: dict[str, tuple[str, str]] = {"money": (_MONEY_RULES, "<money>")}
# every word the money grammar can produce: the rule bodies without rule names and JSGF punctuation
MONEY_WORDS = frozenset(re.findall(r"(?<![<\w])[a-z]+(?![>\w])", re.sub(r"^<\w+> =", "", _MONEY_RULES, flags=re.M)))


def to_jsgf(
    name: str,
    phrases: Sequence[Sequence[str]],
    repeat: tuple[int, int] | None = None,
    sequence: Sequence[str] = (),
    builtin: str | None = None,
) -> str:
    """A JSGF grammar accepting exactly one of the phrases.

    ``repeat=(lo, hi)`` with ``sequence`` words: also lo to hi of those words in a row (an account number read
    digit by digit) as an alternative to the phrases. ``repeat`` without ``sequence``: lo to hi of the
    phrases in a row. ``builtin`` ("money"): also an utterance of that built-in grammar.

    pocketsphinx keeps JSGF quotes as part of the word, so words go in bare; :func:`normalize` guarantees
    they are only lowercase letters and inner apostrophes.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise GrammarError(f"grammar name {name!r} must be an identifier")
    for phrase in [*phrases, *([w] for w in sequence)]:
        for word in phrase:
            if not re.fullmatch(r"[a-z0-9]+(?:'[a-z]+)*", word):
                raise GrammarError(f"grammar word {word!r} has characters a JSGF grammar cannot carry")
    unique = list(dict.fromkeys(" ".join(p) for p in phrases))
    words = list(dict.fromkeys(sequence))
    if builtin is not None and builtin not in BUILTIN_GRAMMARS:
        raise GrammarError(f"no built-in grammar {builtin!r}; known: {', '.join(sorted(BUILTIN_GRAMMARS))}")
    if not unique and not words and builtin is None:
        raise GrammarError("a grammar needs at least one phrase")
    if words and repeat is None:
        raise GrammarError("sequence words need a repeat=(fewest, most) range")
    body = "\n    | ".join(f"( {alt} )" for alt in unique)

    def run(rule: str, lo: int, hi: int) -> str:
        if not 1 <= lo <= hi <= MAX_REPEAT:
            raise GrammarError(f"a run of words must be 1 to {MAX_REPEAT} long with lo <= hi, got {(lo, hi)}")
        # lo required, then nested optionals: "<w> <w> [<w> [<w>]]" takes 2 to 4
        return " ".join([rule] * lo) + "".join(f" [{rule}" for _ in range(hi - lo)) + "]" * (hi - lo)

    head = f"#JSGF V1.0;\ngrammar {name};\n"
    if builtin is not None:
        rules, top = BUILTIN_GRAMMARS[builtin]
        alternatives = [top] + ([f"( {run('<w>', *repeat)} )"] if words and repeat else []) + (
            ["<phrase>"] if unique else [])
        rules += f"<w> = {' | '.join(words)};\n" if words else ""
        rules += f"<phrase> =\n      {body};\n" if unique else ""
        return f"{head}{rules}public <utterance> = {' | '.join(alternatives)};\n"
    if repeat is not None and not words:
        return f"{head}<one> =\n      {body};\npublic <utterance> = {run('<one>', *repeat)};\n"
    if words:
        assert repeat is not None
        alternatives = [f"( {run('<w>', *repeat)} )"] + (["<phrase>"] if unique else [])
        rules = f"<w> = {' | '.join(words)};\n" + (f"<phrase> =\n      {body};\n" if unique else "")
        return f"{head}{rules}public <utterance> = {' | '.join(alternatives)};\n"
    return f"{head}public <utterance> =\n      {body};\n"


def accepts(text: str, phrases: Sequence[str], sequence: Sequence[str], repeat: tuple[int, int] | None,
            builtin: str | None = None) -> bool:
    """Whether a hypothesis is a whole utterance of the grammar (a phrase, or a run of the right length)."""
    if text in phrases:
        return True
    words = text.split()
    if builtin == "money" and words and all(w in MONEY_WORDS for w in words) and words[-1] not in ("and", "a"):
        return True
    if sequence and repeat is not None:
        return repeat[0] <= len(words) <= repeat[1] and all(w in sequence for w in words)
    if repeat is not None:
        vocabulary = {w for p in phrases for w in p.split()}
        return bool(words) and all(w in vocabulary for w in words)
    return False
