"""Flagging instruction-like content in untrusted text: caller speech, slot values, tool results, CRM notes,
SMS replies.

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
from typing import Literal
from urllib.parse import unquote

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


# ----------------------------------------------------------------------------------------------- rules
#
# Every pattern must run in time linear in the text: Python's regex engine backtracks, and a gap such as
# ``.*`` or ``[^.]*`` between two phrases retries the rest of the text from every place the first phrase could
# start (quadratic; three gaps made "lost phone so ..." take seconds on 1.6 kB, with the GIL held, on the
# call's thread). So no pattern has an unbounded gap, a nested unbounded repeat or an unbounded lookaround
# (tests/test_injection.py checks the compiled patterns); "A, later B" is a :class:`Seq` instead, matched
# piece by piece with plain searches that each start where the previous piece ended.


@dataclass(frozen=True)
class Seq:
    """Phrases that must occur in this order: in one sentence (no full stop between them, what ``[^.]*``
    meant), anywhere later in the text (``within="text"``, what ``.*`` meant), or anywhere in any order
    (``within="any order"``). ``unless``: the first phrase does not count when this pattern follows it later
    in the text (what ``(?!.*X)`` meant)."""

    pieces: tuple[str, ...]
    within: Literal["sentence", "text", "any order"] = "sentence"
    unless: str | None = None

    def __init__(self, *pieces: str, within: Literal["sentence", "text", "any order"] = "sentence",
                 unless: str | None = None) -> None:
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "within", within)
        object.__setattr__(self, "unless", unless)


Rule = str | Seq

_AGENT_OBJ = (
    r"(?:instructions?|instruction set|rules?|prompts?|guidelines?|directives?|directions?|programming|"
    r"policy|policies|safeguards?|restrictions?|limits?|protocols?|training|constraints|orders)"
)
_CHECK = (
    r"(?:verification|verify(?:ing)?|confirmation|confirm(?:ing)?|(?:security |confirmation |verification |"
    r"one[- ]time |text |sms )?(?:code|passcode|otp)s?|one[- ]time pass(?:code|word)|read[- ]?back|"
    r"authentication|two[- ]factor|2fa|security(?: checks?| questions?)?|fraud (?:checks?|flags?)|"
    r"safe path|checks?|text message)"
)
_MONEY = r"(?:transfer|send|move|wire|release|approve|process|pay|execute)"

RULES: dict[str, list[tuple[str, Rule]]] = {
    "direct_override": [
        ("ignore-instructions",
         rf"\b(?:ignore|disregard|forget|override|bypass|drop|cancel|reset|abandon|stop following|"
         rf"don'?t follow|do not follow)\b(?!\s+my\b)(?:\s+\w+){{0,4}}?\s+{_AGENT_OBJ}\b"),
        ("ignore-above", r"\b(?:ignore|disregard)\s+(?:all\s+|everything\s+)?(?:the\s+)?above\b"),
        ("forget-everything", r"\bforget (?:everything|all)(?: you (?:were|have been) told| above| before)\b"),
        ("new-instructions", rf"\b(?:new|updated|real|your new)\s+(?:{_AGENT_OBJ}|rule|task)\s*(?::|is|are)"),
        ("from-now-on", r"\bfrom now on,? you\b"),
        ("skip-check",
         rf"\b(?:skip|bypass|disable|turn off|switch off|waive|remove|circumvent|avoid|suspend)\b(?:\s+\w+){{0,3}}?"
         rf"\s+{_CHECK}"),
        ("no-check-needed",
         rf"\b(?:don'?t|do not|you (?:will|should|must) never|no need to|not)\s+"
         rf"(?:ask|require|need|request|read|send|use)\w*"
         rf"(?:\s+\w+){{0,3}}?\s+(?:for\s+)?(?:any\s+|a\s+|the\s+)?{_CHECK}"),
        ("no-readback", r"\b(?:don'?t|do not|no need to)\s+(?:read|repeat|say)\s+(?:back\s+)?(?:the\s+)?"
                        r"(?:amount|details|transfer|payee)\b"),
        ("approve-everything", r"\bapprove (?:everything|all\b|any (?:transfer|payment|request|new)|every)"),
        ("without-check", rf"\bwithout (?:any |a |the |asking for (?:a |the )?)?{_CHECK}"),
        ("must-not-ask", r"\bmust not (?:ask|require|request)\b"),
        ("mark-confirmed", r"\b(?:mark|treat|consider|set)\s+(?:this|it|me|the \w+)(?:\s+\w+)?\s+as\s+"
                           r"(?:confirmed|verified|approved|authori[sz]ed|pre-?approved|trusted)\b"),
        ("change-policy", Seq(
            r"\b(?:change|set|raise|increase|lower|update|modify)\s+(?:your |the )?(?:policy|threshold|"
            r"(?:(?:daily|transfer|withdrawal) )?(?:threshold|limit)|risk(?: level)?)\b",
            r"\b(?:to|so)\b",
            r"\b(?:unlimited|million|low|no code|don'?t need|doesn'?t need|without)\b", within="text")),
        ("set-risk", r"\bset (?:the )?risk (?:level )?to\b"),
        ("no-code-needed", Seq(r"\b(?:transfers?|amounts?|payments?)\b", rf"\b(?:need|require)s? no {_CHECK}")),
        ("obey", r"\b(?:obey|do what i say|follow (?:my|the hidden|the following) (?:command|instruction)s?)\b"),
        ("override-auth", r"\boverride (?:authori[sz]ation|enabled|code|token|accepted)\b"),
        ("safety-off", r"\b(?:ignore|override|disable)\b(?:\s+\w+){0,3}?\s+(?:safety|security)\b"),
        ("ignore-system-prompt", r"\b(?:ignore|disregard)\s+(?:the\s+|your\s+)?system prompt"),
        ("say-approved", r"\bsay (?:that )?the (?:transfer|payment) (?:was|is) (?:approved|done|complete)"),
        ("ignore-amount", rf"\bignore (?:the )?(?:amount|limit|fraud|policy|{_CHECK})"),
        ("ignore-whatever", r"\bignore (?:whatever|what) (?:the )?(?:policy|rules?|system)\b"),
    ],
    "role_play": [
        ("you-are-now", r"\byou(?: are|'re|re) (?:now|no longer)\b(?!\s+(?:connected|speaking|talking|through|"
                        r"being|on hold|in the queue|transferred))"),
        ("different-assistant", r"\byou are (?:a |an )?(?:different|new|another|second) (?:assistant|ai|bot|agent)\b"
                                r"|\badmin rights\b"),
        ("pretend", r"\bpretend (?:to be|you(?:'re| are)|that (?:you|the|i)|the \w+ (?:already|was|is)|"
                    r"i (?:already|am|have|entered))"),
        ("act-as", Seq(r"\b(?:act|behave|respond|answer)(?: like| as)(?: if)? (?:a|an|the|my|if|you|though)\b",
                       unless=r"\b(?:quickly|fast|soon)\b")),
        ("role-play", r"\brole[- ]?play"),
        ("play-the-role", Seq(r"\bplay the role of\b", unless=r"\b(?:primary|joint|account holder)\b")),
        ("imagine", Seq(r"\b(?:imagine|suppose|hypothetically)\b", r"\b(?:you|ai)\b",
                        r"\b(?:no|without|allowed|rules|restrictions|could|can)\b")),
        ("modes", r"\b(?:developer|god|admin|jailbreak|unrestricted|dan|debug|test|maintenance|sudo|root)\s+mode\b"
                  r"(?!\s+on my phone)"),
        ("dan", r"\bdo anything now\b|\bjailbreak"),
        ("game", r"\blet'?s (?:play a game|pretend)\b"),
        ("no-restrictions", r"\b(?:no|without any|free of) (?:rules|restrictions|limits|filters)\b"),
        ("persona", r"\b(?:assume|adopt|take on) the (?:persona|role|identity)\b"),
        ("stay-in-character", r"\bstay in character\b"),
        ("simulate", r"\bsimulate (?:a version of )?(?:yourself|being|an? \w+ that)\b"),
        ("story-then-do", Seq(r"\b(?:story|poem|script) in which\b", r"\b(?:then|now) do it\b", within="text")),
        ("evil-twin", r"\b(?:evil|unfiltered|uncensored) (?:twin|version|assistant|bot|ai)\b"),
        ("accomplice", r"\bbe my (?:accomplice|partner in crime)\b"),
        ("always-yes", r"\balways (?:says? yes|approves?|agrees?)\b"),
        ("you-are-my", r"\byou are (?:my|a|an) (?:lawyer|manager|supervisor|boss|helpful assistant that)\b"),
    ],
    "fake_system": [
        ("role-tag", r"(?:^|[\s\[\(<{\"'.,;:])(?:system|admin|operator|assistant|developer|supervisor|root|override|"
                     r"sysadmin|compliance|security team|ai|model)\s*(?::|\]|>|\)|-\s)"),
        ("chat-markup", r"<\|im_(?:start|end)\|>|<\|?(?:system|endoftext)\|?>|</?(?:system|instructions?|"
                        r"admin|prompt)>|\[/?(?:inst|system|admin|instruction)\]"),
        ("markdown-instruction", r"#{2,}\s*(?:instruction|system|prompt)"),
        ("system-message", r"\b(?:system|admin|operator|developer|security|new system)\s+(?:message|prompt|"
                           r"instruction|notice|directive|update|note)\b"),
        ("message-from", r"\b(?:message|directive|instruction|notice|policy update|memo) from (?:the )?(?:bank|"
                         r"system|administrator|admin|developer|security|management|headquarters|it)\b"),
        ("this-is-the", r"\b(?:this is|i am|i'm|here is) (?:the |a |your )?(?:system administrator|system|"
                        r"developer|admin(?:istrator)?|root|it department|engineering|compliance team|"
                        r"security team)\b(?!\s+(?:at|for|in)\b)"),
        ("team-here", r"\b(?:compliance|security|fraud|it|engineering) (?:team|department) (?:here|says)\b"),
        ("note-to-ai", r"\b(?:note|instruction|message|p\.?s\.?|instructions) (?:to|for) (?:the )?(?:ai|assistant|"
                       r"agent|model|bot|voice agent|ai model|ai assistant)\b"),
        ("to-the-model", r"\bto the (?:model|ai|assistant|bot)\b"),
        ("addressed-agent", r"\b(?:attention|hey|dear|okay|ok)?,?\s*(?:ai|assistant|agent|bot)\s*(?:,|:)?\s*"
                            r"(?:should|must|transfer|approve|bypass|skip|also|tell|do not|don'?t|disable)\b"),
        ("assistant-should", r"\b(?:assistant|ai|agent|model|bot)s?\b(?:\s+\w+){0,2}\s+(?:should|must|shall)\s+"
                             r"(?:proceed|approve|skip|bypass|disable|not|tell|read|ignore|transfer)"),
        ("override-claim", r"\b(?:admin|supervisor|manager|security|system)\s+override\b|"
                           r"\b(?:system|root)\s+(?:admin|administrator)\b"),
        ("caller-verified", Seq(
            r"\b(?:caller|user|customer|code|authentication|verification)\b(?:\s+\w+){0,3}\s+"
            r"(?:has been |was |is |passed |accepted|complete|pre-?approved|verified)"
            r"(?:verified|authenticated|accepted|approved|complete|pre-?approved|all checks|trusted)?",
            r"\b(?:proceed|go ahead|continue|skip|approve|transfer|future|set|bypass|ignore)\b", within="text")),
        ("auth-suspended", rf"\b(?:authentication|verification|{_CHECK}) (?:is |are )?(?:suspended|down|offline|"
                           r"disabled|not required|not needed)\b"),
        ("admin-session", r"\b(?:begin|start|open) (?:an? )?(?:admin|root|privileged) session\b|"
                          r"\bauthori[sz]ation level\b"),
        ("treat-valid", rf"\b(?:treat|consider|accept) (?:all |any |every )?{_CHECK} as (?:valid|correct)\b"),
        ("end-of-transcript", r"\bend of (?:transcript|conversation|prompt)\b"),
        ("authorized-you", r"\b(?:has|have) authori[sz]ed you to\b|\byou are authori[sz]ed to (?:skip|bypass|"
                           r"approve|release|disable|override)\b"),
        ("json-role", r"[\"']role[\"']\s*:\s*[\"'](?:system|developer|assistant)[\"']"),
    ],
    "social_engineering": [
        ("tell-me-code",
         r"\b(?:tell|read|give|say|show|spell|repeat|send)\b(?:\s+\w+){0,2}?\s+(?:me\s+)?(?:back\s+)?"
         r"(?:the|my|that|your)\s+(?:\w+\s+)?(?:code|otp|passcode|pin|password|security answer)\b"
         r"(?!\s+(?:again|later|by text))"),
        ("what-code", r"\bwhat (?:was|is) (?:the|my) (?:one[- ]time |verification |security )?(?:code|otp|pin|"
                      r"passcode|security answer)\b(?!\s+(?:for|on my card))"),
        ("pin-on-file", r"\b(?:pin|password|security answer|code) (?:on file|for account)\b"),
        ("reveal-prompt", r"\b(?:reveal|show|print|repeat|display|output|tell me|what are)\b(?:\s+\w+){0,2}?\s+"
                          r"(?:your\s+)?(?:system prompt|(?:hidden|initial|internal|secret|original|"
                          r"system)\s+(?:instructions|rules|prompt|configuration)|configuration|"
                          r"instructions verbatim|prompt)\b"),
        ("verbatim", r"\bverbatim\b"),
        ("claims-authority", Seq(
            r"\b(?:i'?m|i am|this is|as) (?:the |a |an |your )?(?:branch manager|bank (?:manager|employee|officer)|"
            r"employee|teller|supervisor|police|fbi|officer|authori[sz]ed officer|fraud department|developer|"
            r"auditor|from the fraud department|from the bank)\b",
            r"\b(?:skip|bypass|without|no code|override|approve|authori[sz]e|release|instruct|transfer|read me|code|"
            r"show me|test)\b", within="text")),
        ("already-verified", Seq(
            r"\b(?:already|was|been|got) (?:verified|confirmed|authenticated|approved)\b",
            r"\b(?:skip|no code|not needed|no need|without|so)\b", within="text")),
        ("other-agent-said", r"\b(?:other|previous|last) agent (?:said|told|promised)\b"),
        ("someone-approved", Seq(r"\b(?:manager|boss|supervisor|account holder|wife|husband|she|he)\b",
                                 r"\b(?:approved|said it'?s fine|told me you can|gave me permission|authori[sz]ed)\b")),
        ("permission-without", Seq(r"\bpermission\b", r"\bwithout\b")),
        ("urgency-bypass", Seq(r"\b(?:emergency|urgent|right now|immediately|hospital|lose my house|this once)\b",
                               r"\b(?:without|skip|bypass|no code|just approve|approve it|send it)\b",
                               within="any order")),
        ("pressure", r"\byou (?:must|have to|need to) (?:transfer|send|approve|release|process)\b"
                     r"|\byou'?ll be responsible\b|\byou(?:'ll| will) be (?:fired|sued|liable)\b"),
        ("flattery", Seq(r"\b(?:good|smart|helpful) (?:bots?|assistants?|ai)\b", r"\b(?:would|always)\b")),
        ("five-star", Seq(r"\b(?:five|5)[- ]star\b", r"\bif you\b")),
        ("secrecy", r"\bdon'?t tell (?:anyone|anybody|the bank)\b"),
        ("law-requires", r"\blaw requires you\b|\blegally (?:required|obliged) to (?:skip|process|transfer)\b"),
        ("audit-pressure", r"\b(?:being audited|to pass the audit|compliance test)\b"),
        ("trust-me-skip", Seq(r"\btrust me\b", rf"\b(?:no need|skip|without|{_CHECK} (?:is not|isn'?t))")),
        ("redirect-code", r"\bsend (?:the |my )?code to (?:my |this |a )?(?:new|other|different)\b"),
        ("new-number-then-send", Seq(r"\b(?:change|update) the (?:phone|number) on file\b",
                                     r"\b(?:then|and) send\b")),
        ("instead-of-file", r"\binstead of the (?:one|number) on file\b"),
        ("instructing-you", r"\bi(?:'m| am) instructing you\b|\bi order you\b|\bi command you\b"),
        ("lost-phone-skip", Seq(r"\b(?:lost|dead|broken)\b", r"\bphone\b", r"\b(?:so|just)\b",
                                r"\b(?:skip|approve|bypass|without)\b")),
        ("show-config", r"\bshow me your (?:configuration|settings|rules|prompt|code)\b"),
        ("rules-about-skipping", r"\b(?:rules|policy) about (?:skipping|bypassing)\b"),
        ("accomplice-move", r"\bhelp me move money out\b"),
    ],
    "hidden_payload": [
        ("sql", r"'\)?\s*;\s*(?:drop|delete|update|insert|select)\b|--\s*$|\bunion\s+select\b|\bor\s+1\s*=\s*1\b"),
        ("template", Seq(r"\{\{", r"\}\}", within="text")),
        ("template-dollar", Seq(r"\$\{", r"\}", within="text")),
        ("template-wiki", Seq(r"\[\[", r"\]\]", within="text")),
        ("template-erb", Seq(r"<%", r"%>", within="text")),
        ("script", r"<\s*script\b|javascript:|onerror\s*="),
        ("jndi", r"\$\{jndi:"),
    ],
}



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
_FOREIGN = [  # a few translations of the classic override, for callers who switch language to slip past
    re.compile(r"\bignor(?:ez|a|e|ieren sie|iere)\b.{0,30}\b(?:instructions?|instrucciones|anweisungen|istruzioni|"
               r"règles|reglas|regeln|regole)\b", re.IGNORECASE),
]


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
    variants = [base, spelled, _letters(spelled, _NATO), _letters(spelled, _SPOKEN)]
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
    for rx in _FOREIGN:
        if rx.search(text):
            cats.append("direct_override")
            rules.append("direct_override/foreign-language")
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
