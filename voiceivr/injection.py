"""Flagging instruction-like content in untrusted text: caller speech, slot values, tool results, CRM notes,
SMS replies.

It sits on the bottom floor (it imports nothing of voiceivr but its rules and sound-alike words) because every
layer that takes in outside text scans it: the call (transcripts), the dialplan (slot values), the policy
(the gate's evidence) and the actions (a webhook's reply). What a finding *means* is the policy's.

The filter is a second line of defence. The first is that nothing here reads text for authority: policy,
confirmation and codes are code paths that no transcript can reach. What the filter adds is that text that
*looks like* an attempt to steer an agent cannot fill a slot of a high action (the gate refuses the request)
and is audited, so an attack is visible even when it could not have worked.

How it reads text: it normalises it (Unicode NFKC, zero-width characters dropped, homoglyphs folded,
leetspeak undone, letters spelled one by one joined, NATO and spoken letter names joined), also reads it
reversed, and decodes what looks encoded (base64, hex, percent and HTML escapes, ROT13 when announced),
then matches phrase rules per category. Rules aim at commands to the agent ("ignore your instructions",
"skip the code"), not at words ("system", "ignore", "code"): "ignore that, I meant savings" and "my name is
Will Systems" are not flagged.

Categories: ``direct_override``, ``role_play``, ``fake_system``, ``encoded`` (instruction found only after
decoding), ``social_engineering``, ``hidden_payload`` (markup or code in a field).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from voiceivr.injection_rules import RULES, Rule, Seq
from voiceivr.soundalike import join_soundalikes

__all__ = ["CATEGORIES", "MAX_SCAN_CHARS", "RULES", "Findings", "Seq", "scan", "scan_fields"]

CATEGORIES = (
    "direct_override",
    "role_play",
    "fake_system",
    "encoded",
    "social_engineering",
    "hidden_payload",
)


@dataclass(frozen=True)
class Findings:
    categories: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        return bool(self.categories)

    def merge(self, other: Findings) -> Findings:
        cats = tuple(dict.fromkeys(self.categories + other.categories))
        rules = tuple(dict.fromkeys(self.rules + other.rules))
        return Findings(cats, rules)



# ----------------------------------------------------------------------------------------------- matching


class _Matcher:
    """One compiled rule. Each search starts where the last one ended or at a sentence start, so a rule costs
    a bounded number of passes over the text whatever it contains."""

    def __init__(self, rule: Rule) -> None:
        seq = rule if isinstance(rule, Seq) else Seq(rule)
        # Text arrives lower-cased: case-insensitive matching costs sre twice as much per character.
        self.pieces = [re.compile(p) for p in seq.pieces]
        # The first piece without its leading \b: it matches wherever the piece does, and sre can then skip
        # ahead to the characters a match starts with instead of trying every position (10x faster on text
        # that holds none of the rule's words, which is nearly all text).
        self.quick = re.compile(seq.pieces[0].removeprefix(r"\b"))
        self.within = seq.within
        self.unless = re.compile(seq.unless) if seq.unless else None

    def search(self, text: str) -> bool:
        """Whether the rule matches ``text`` (lower case)."""
        if self.quick.search(text) is None:
            return False
        if self.within == "any order":
            return all(p.search(text) for p in self.pieces)
        if self.unless is not None:  # one piece: some match of it must come after the last ``unless`` match
            last = -1
            for m in self.unless.finditer(text):
                last = m.start()
            return any(m.end() > last for m in self.pieces[0].finditer(text))
        if self.within == "text" or len(self.pieces) == 1:
            return self._in_order(text, 0, len(text))
        start = 0
        while start <= len(text):
            end = text.find(".", start)
            end = len(text) if end < 0 else end
            if self._in_order(text, start, end):
                return True
            start = end + 1
        return False

    def _in_order(self, text: str, pos: int, end: int) -> bool:
        # The earliest match of each piece leaves the most room for the next: no other choice can succeed
        # where this one fails, so nothing is retried.
        for rx in self.pieces:
            m = rx.search(text, pos, end)
            if m is None:
                return False
            pos = m.end()
        return True


_COMPILED = {cat: [(name, _Matcher(rule)) for name, rule in rules] for cat, rules in RULES.items()}

# ----------------------------------------------------------------------------------------------- normalising

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
# Cyrillic and Greek letters that look like Latin ones.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "α": "a", "ο": "o", "ν": "v", "τ": "t", "ι": "i", "κ": "k",
    "А": "A", "Е": "E", "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "І": "I", "Ѕ": "S", "М": "M",
    "Н": "H", "К": "K", "В": "B",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_NATO = {
    "alfa": "a", "alpha": "a", "bravo": "b", "charlie": "c", "delta": "d", "echo": "e", "foxtrot": "f",
    "golf": "g", "hotel": "h", "india": "i", "juliet": "j", "juliett": "j", "kilo": "k", "lima": "l",
    "mike": "m", "november": "n", "oscar": "o", "papa": "p", "quebec": "q", "romeo": "r", "sierra": "s",
    "tango": "t", "uniform": "u", "victor": "v", "whiskey": "w", "xray": "x", "x-ray": "x", "yankee": "y",
    "zulu": "z",
}
# How letters sound when spoken one by one (a transcript of "I, G, N, O, R, E" often reads like this).
_SPOKEN = {
    "eye": "i", "gee": "g", "jee": "g", "en": "n", "oh": "o", "are": "r", "ar": "r", "ee": "e", "bee": "b",
    "see": "c", "sea": "c", "dee": "d", "ef": "f", "aitch": "h", "jay": "j", "kay": "k", "el": "l", "em": "m",
    "pee": "p", "cue": "q", "ess": "s", "tee": "t", "you": "u", "vee": "v", "ex": "x", "why": "y", "zee": "z",
    "zed": "z",
}
_SINGLE_LETTER_RUN = re.compile(r"\b(?:[a-z][\s.,\-_*]{1,3}){3,}[a-z]\b", re.IGNORECASE)
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){8,}\b")
_ROT13_CUE = re.compile(r"\brot(?:13| ?thirteen)\b", re.IGNORECASE)
_REVERSE_CUE = re.compile(r"\b(?:backwards|reversed?|in reverse)\b", re.IGNORECASE)
_DECODE_CUE = re.compile(
    r"\b(?:base ?64|decode|hex(?:adecimal)? string|encoded|cipher|first letters of)\b", re.IGNORECASE
)


def _join_spelled(text: str) -> str:
    """'i g n o r e' / 'i-g-n-o-r-e' -> 'ignore' (runs of four or more single letters)."""
    return _SINGLE_LETTER_RUN.sub(lambda m: re.sub(r"[\s.,\-_*]", "", m.group()), text)


def _letters(text: str, table: dict[str, str]) -> str:
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and words[j].lower().strip(",.;:") in table:
            j += 1
        if j - i >= 3:
            out.append("".join(table[w.lower().strip(",.;:")] for w in words[i:j]))
            i = j
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


def _decodings(text: str) -> list[str]:
    """Texts hidden inside ``text``: base64, hex, percent/HTML escapes, ROT13 and reversal when cued."""
    found: list[str] = []
    tokens: list[str] = []
    for m in _B64.finditer(text):
        token = m.group()
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        if decoded.isprintable() and sum(c.isalpha() for c in decoded) >= len(decoded) * 0.6:
            tokens.append(decoded)
    for m in _HEX.finditer(text):
        try:
            decoded = bytes.fromhex(m.group()).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            continue
        if decoded.isprintable():
            tokens.append(decoded)
    if tokens:  # read as one text, as sentences: a scan per token would cost a full pass of every rule each
        found.append(" . ".join(tokens))
    if "%" in text:
        found.append(unquote(text))
    if "&#" in text or "&" in text:
        found.append(html.unescape(text))
    if _ROT13_CUE.search(text):
        found.append(codecs.decode(text, "rot13"))
    if _REVERSE_CUE.search(text) or len(text) > 12:
        found.append(text[::-1])
    return found


def _normalised(text: str) -> tuple[str, bool]:
    """NFKC, zero-width characters dropped, homoglyphs folded, whitespace runs made one space: at most
    :data:`MAX_SCAN_CHARS` of it, and whether there was more (NFKC alone can make one character 18)."""
    nfkc = unicodedata.normalize("NFKC", text[:MAX_SCAN_CHARS])
    cut = len(text) > MAX_SCAN_CHARS or len(nfkc) > MAX_SCAN_CHARS
    base = nfkc[:MAX_SCAN_CHARS].translate(_ZERO_WIDTH).translate(_HOMOGLYPHS)
    return re.sub(r"\s+", " ", base).strip(), cut


def _variants(base: str) -> list[str]:
    """Readings of normalised text; none is longer than ``base``."""
    spelled = _join_spelled(base)
    variants = [base, spelled, _letters(spelled, _NATO), _letters(spelled, _SPOKEN),
                join_soundalikes(spelled.lower())]
    if re.search(r"[a-z][0-9@$!][a-z]|[0-9@$!][a-z]{2}", base, re.IGNORECASE):
        variants.append(base.lower().translate(_LEET))
    return list(dict.fromkeys(v for v in variants if v))


def _match(text: str) -> Findings:
    cats: list[str] = []
    rules: list[str] = []
    text = text.lower()
    for cat, compiled in _COMPILED.items():
        for name, matcher in compiled:
            if matcher.search(text):
                cats.append(cat)
                rules.append(f"{cat}/{name}")
                break
    return Findings(tuple(dict.fromkeys(cats)), tuple(rules))


_SPACELESS_HINTS = re.compile(
    r"ignore(?:all|the|your)?(?:previous|prior)?(?:instructions|rules)|bypass(?:the)?(?:verification|confirmation)|"
    r"disregard(?:your)?(?:programming|instructions|rules)|skip(?:the)?(?:verification|confirmation|code)"
)


# The most of one text the filter reads. A caller's turn is at most 15 s of speech (call.max_utterance_s, about
# 250 characters) and a free-text slot at most 1000 characters (the dialplan's max_chars); SMS replies and CRM
# notes fit too. The patterns are linear, but with every normalised, decoded and reversed reading a scan of
# 2000 characters of adversarial text still takes ~10 ms of CPU with the GIL held, on the call's thread; an
# unbounded text would stall the call (and every other call's media) for as long as the sender likes.
MAX_SCAN_CHARS = 2000


def scan(text: str) -> Findings:
    """Flag instruction-like content in one piece of untrusted text.

    Text longer than :data:`MAX_SCAN_CHARS` is flagged as it is (``hidden_payload/oversized``: what the filter
    cannot read cannot be trusted) and only its beginning is read for other findings."""
    if not text or not text.strip():
        return Findings()
    findings = Findings()
    base, cut = _normalised(text)
    if cut:
        findings = Findings(("hidden_payload",), ("hidden_payload/oversized",))
    variants = _variants(base)
    # Words broken into syllables ("ig nore pre vious in struc tions"): only whole phrases make sense here.
    if _SPACELESS_HINTS.search(re.sub(r"[\s.,\-]+", "", variants[0].lower())):
        findings = findings.merge(Findings(("encoded",), ("encoded/broken-words",)))
    plain = _match(variants[0])
    findings = findings.merge(plain)
    for v in variants[1:]:
        got = _match(v)
        if got.flagged and not plain.flagged:
            got = Findings(("encoded", *got.categories), ("encoded/normalised", *got.rules))
        findings = findings.merge(got)
    read = set(variants)
    for hidden in _decodings(variants[0]):
        if hidden in read:  # unquote or unescape found nothing to decode: the same text again
            continue
        read.add(hidden)
        got = _match(hidden)
        if not got.flagged:
            got = _match(_join_spelled(hidden))
        if got.flagged:
            findings = findings.merge(Findings(("encoded", *got.categories), ("encoded/decoded", *got.rules)))
    if _DECODE_CUE.search(variants[0]) and re.search(r"\b(?:follow|obey|execute|do what it says|and do|"
                                                     r"contains my real request|(?:is|are) the command)\b", variants[0],
                                                     re.IGNORECASE):
        findings = findings.merge(Findings(("encoded",), ("encoded/decode-and-obey",)))
    return findings


def scan_fields(fields: dict[str, object]) -> dict[str, Findings]:
    """Scan every string value of a slot mapping; returns the flagged ones by key."""
    out: dict[str, Findings] = {}
    for key, value in fields.items():
        if isinstance(value, str):
            f = scan(value)
            if f.flagged:
                out[key] = f
    return out
