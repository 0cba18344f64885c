"""Words of an attack that a recogniser (or a caller dodging the filter) splits into sound-alike pieces, joined
back: "by pass the code" -> "bypass the code", "very fication" -> "verification", "devil oper mode" ->
"developer mode".

Two or three short words are joined when their sound key -- a rough phonetic skeleton: consonants as they
sound, each run of vowels inside the word one mark, none at either end -- is the key of a word the injection
rules care about. Only runs of several words are joined, never one word for another, and only into words
with three or more consonant sounds: "in her" sounds like "ignore" to this key, so "ignore" is left to the
broken-words check of :mod:`voiceivr.injection`. The joined text is one more reading the rules are
applied to; a rule must still match all of it, so "by pass the queue" stays harmless.
"""

from __future__ import annotations

import functools
import re

# Words the rules are built from that a recogniser writes as several (the instruction's verbs and objects).
VOCABULARY = (
    "bypass", "disregard", "forget", "override", "instructions", "instruction", "verification", "confirmation",
    "authentication", "developer", "system", "passcode", "verified", "confirm", "verify", "disable", "security",
    "previous", "programming", "guidelines", "restrictions", "approve", "approved", "authorised", "authorized",
    "administrator", "assistant", "unrestricted", "pretend",
)
_MAX_PIECE = 8  # letters; a longer word is a word of its own, not a piece of one
_REPLACEMENTS = (("ph", "f"), ("ck", "k"), ("wr", "r"), ("kn", "n"), ("gn", "n"), ("tion", "shn"), ("sion", "shn"),
                 ("shun", "shn"), ("cian", "shn"), ("qu", "kw"), ("q", "k"), ("x", "ks"), ("z", "s"), ("dg", "j"))


@functools.lru_cache(maxsize=4096)
def _raw_key(word: str) -> str:
    w = word
    for a, b in _REPLACEMENTS:
        w = w.replace(a, b)
    w = re.sub(r"c(?=[eiy])", "s", w).replace("c", "k")
    w = re.sub(r"(?<=[^aeiouysctw])h", "", w)  # a silent h (not in sh, th, ch, wh)
    w = re.sub(r"(.)\1+", r"\1", w)
    return re.sub(r"[aeiouy]+", "*", w)


def sound_key(word: str) -> str:
    """The phonetic skeleton of a word: "verification" and "very fication" both give ``v*r*f*k*shn``."""
    return _finish(_raw_key(re.sub(r"[^a-z]", "", word.lower())))


def _finish(key: str) -> str:
    # Pieces meet here: a doubled sound or an h after a consonant across the join ("develop her"), and no
    # vowel at either end ("off thin tick cation" is "authentication" without its first sound).
    key = re.sub(r"(?<=[^*sctw])h", "", key)
    return re.sub(r"(.)\1+", r"\1", key).strip("*")


def _consonants(key: str) -> int:
    return len(key.replace("*", "").replace("sh", "s").replace("th", "t"))


_BY_KEY = {sound_key(w): w for w in VOCABULARY if _consonants(sound_key(w)) >= 3}
_WORD = re.compile(r"[a-z]+")


def join_soundalikes(text: str) -> str:
    """``text`` (lower case) with runs of two or three short words that sound like one rule word joined into
    it. Linear: each word starts at most two candidate runs, and a word's key is computed once."""
    tokens = text.split(" ")
    cores = [t.rstrip(".,;:!?") for t in tokens]  # punctuation may end the last piece of a run, not the others
    keys = [_raw_key(c) if len(c) <= _MAX_PIECE and _WORD.fullmatch(c) else "" for c in cores]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        word, span = None, 3
        while span >= 2 and word is None:
            run = range(i, i + span)
            if run.stop <= len(tokens) and all(keys[j] for j in run) and all(cores[j] == tokens[j] for j in run[:-1]):
                word = _BY_KEY.get(_finish("".join(keys[j] for j in run)))
            span -= 1
        if word is None:
            out.append(tokens[i])
            i += 1
        else:
            last = i + span  # the run was span + 1 words long
            out.append(word + tokens[last][len(cores[last]):])
            i = last + 1
    return " ".join(out)
