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
#
# Money: "fifty", "a hundred and twenty five dollars", "fifteen hundred", "one thousand five hundred", "twenty five
# dollars and fifty cents", "ninety nine cents". Cents always carry their word: with "and <number>" allowed on its
# own, "twenty five dollars and fifty cents" came back as "twenty five dollar and fifty two" ($25.00) and "ninety
# nine cents" as "eighty nine and eight" ($89.00) (understanding evaluation, dev, clean). Hundreds counted past
# ten only as callers say them ("fifteen hundred", "twenty five hundred"; never "fifty hundred", which "fifteen
# hundred" and "fifty" became when it was allowed).
_MONEY_RULES = """<digit> = one | two | three | four | five | six | seven | eight | nine;
<teen> = ten | eleven | twelve | thirteen | fourteen | fifteen | sixteen | seventeen | eighteen | nineteen;
<tens> = twenty | thirty | forty | fifty | sixty | seventy | eighty | ninety;
<below100> = <digit> | <teen> | <tens> [<digit>];
<below1000> = <below100> | (<digit> | a) hundred [[and] <below100>];
<hundreds> = (<teen> | <tens> <digit>) hundred [[and] <below100>];
<number> = <below1000> [thousand [[and] <below1000>]] | a thousand [[and] <below1000>] | <hundreds>;
<cents> = <below100> (cents | cent);
<money> = <number> [dollars | dollar | bucks] [[and] <cents>] | <cents> | zero;
"""

# Digit strings: one digit word at a time ("one two three four"), in pairs ("twelve thirty four", "forty two",
# "double five"), after a short lead-in ("my pin is", "it ends in"). The grammar counts digits, not words, so
# "twelve thirty four" is a four-digit answer and a decode is never a wrong length. Pairs are aligned from the
# first digit (as callers group them); a free mix of pairs and single digits made the grammar grow as 1.8^length
# (16 digits: 44 s to compile), aligned pairs grow linearly.
DIGIT_LEADINS: tuple[str, ...] = (
    "it's", "it is", "that's", "my pin is", "my number is", "my account number is", "the number is", "it ends in",
    "ends in", "the last four are", "the last four digits are",
)
_DIGIT_UNITS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_RULES = """<d> = zero | oh | one | two | three | four | five | six | seven | eight | nine;
<nz> = one | two | three | four | five | six | seven | eight | nine;
<teen> = ten | eleven | twelve | thirteen | fourteen | fifteen | sixteen | seventeen | eighteen | nineteen;
<tens> = twenty | thirty | forty | fifty | sixty | seventy | eighty | ninety;
<two> = <d> <d> | <teen> | <tens> [<nz>] | double <d>;
"""
DIGIT_PIECES = {**{w: 1 for w in _DIGIT_UNITS}, **{w: 2 for w in _ONES[10:]},
                **{w: 2 for w in _TENS[2:]}}  # digits each word stands for ("twelve": 2)


def _digits_rules(lo: int, hi: int) -> tuple[str, str]:
    """JSGF for lo to hi digits: <nK> is exactly K digits, as pairs (each two digit words or one number word) and,
    for an odd K, one more digit first or last."""
    rules = [_DIGIT_RULES]
    for k in range(lo, hi + 1):
        pairs = " ".join(["<two>"] * (k // 2))
        body = pairs if k % 2 == 0 else f"<d> {pairs} | {pairs} <d>" if pairs else "<d>"
        rules.append(f"<n{k}> = {body.strip()};\n")
    lengths = " | ".join(f"<n{k}>" for k in range(lo, hi + 1))
    if DIGIT_LEADINS:
        rules.append(f"<leadin> = {' | '.join(' '.join(normalize(p)) for p in DIGIT_LEADINS)};\n")
    rules.append(f"<digits> = {'[<leadin>] ' if DIGIT_LEADINS else ''}({lengths});\n")
    return "".join(rules), "<digits>"


def _digits_range(name: str) -> tuple[int, int] | None:
    """ "digits:8" -> (8, 8), "digits:4-6" -> (4, 6); None if ``name`` is not a digits grammar."""
    m = re.fullmatch(r"digits:(\d+)(?:-(\d+))?", name)
    if m is None:
        return None
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 1 <= lo <= hi <= MAX_REPEAT:
        raise GrammarError(f"built-in grammar {name!r}: a digit string is 1 to {MAX_REPEAT} digits with lo <= hi")
    return lo, hi


def digits_grammar(lo: int, hi: int) -> str:
    """The name of the built-in grammar for a digit string of lo to hi digits."""
    return f"digits:{lo}" if lo == hi else f"digits:{lo}-{hi}"


BUILTIN_GRAMMARS: dict[str, tuple[str, str]] = {"money": (_MONEY_RULES, "<money>")}
# every word the money grammar can produce: the rule bodies without rule names and JSGF punctuation
MONEY_WORDS = frozenset(re.findall(r"(?<![<\w])[a-z]+(?![>\w])", re.sub(r"^<\w+> =", "", _MONEY_RULES, flags=re.M)))
DIGIT_WORDS = frozenset(DIGIT_PIECES) | {"double"} | {w for p in DIGIT_LEADINS for w in normalize(p)}


def builtin_rules(name: str) -> tuple[str, str]:
    """A built-in grammar's JSGF rules and top rule: "money", or "digits:N" / "digits:LO-HI"."""
    if name in BUILTIN_GRAMMARS:
        return BUILTIN_GRAMMARS[name]
    lengths = _digits_range(name)
    if lengths is None:
        raise GrammarError(f"no built-in grammar {name!r}; known: {', '.join(sorted(BUILTIN_GRAMMARS))}, digits:N, "
                           "digits:LO-HI")
    return _digits_rules(*lengths)


def builtin_words(name: str) -> frozenset[str]:
    """Every word a built-in grammar can produce (for recognisers that take a word list, not a structure)."""
    builtin_rules(name)  # a GrammarError for a name that is none
    return MONEY_WORDS if name == "money" else DIGIT_WORDS


def spoken_digit_count(words: Sequence[str]) -> int | None:
    """How many digits a digit-grammar utterance says ("my pin is twelve thirty four": 4), or None if it is not
    one (a word outside the grammar, a lead-in anywhere but first, "double" without its digit)."""
    text = " ".join(words)
    for leadin in sorted((" ".join(normalize(p)) for p in DIGIT_LEADINS), key=len, reverse=True):
        if text.startswith(leadin + " "):
            words = text[len(leadin) + 1:].split()
            break
    count, i = 0, 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if (w == "double" and nxt in _DIGIT_UNITS) or (w in _TENS[2:] and nxt in _DIGIT_UNITS[2:]):
            count, i = count + 2, i + 2  # "double five", "thirty four"
        elif w in DIGIT_PIECES:
            count, i = count + DIGIT_PIECES[w], i + 1
        else:
            return None
    return count or None


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
    phrases in a row. ``builtin`` ("money", "digits:8", "digits:4-6"): also an utterance of that built-in
    grammar.

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
    builtin_grammar = builtin_rules(builtin) if builtin is not None else None
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
    if builtin_grammar is not None:
        rules, top = builtin_grammar
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
    lengths = _digits_range(builtin) if builtin else None
    if lengths is not None and (count := spoken_digit_count(words)) is not None:
        return lengths[0] <= count <= lengths[1]
    if sequence and repeat is not None:
        return repeat[0] <= len(words) <= repeat[1] and all(w in sequence for w in words)
    if repeat is not None:
        vocabulary = {w for p in phrases for w in p.split()}
        return bool(words) and all(w in vocabulary for w in words)
    return False
