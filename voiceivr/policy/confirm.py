"""What counts as an explicit yes to a read-back."""

from __future__ import annotations

import re

from voiceivr.policy.gate import Evidence

YES_INTENTS = frozenset({"yes", "confirm", "affirm", "affirmative"})
_YES = re.compile(
    r"^(?:(?:yes|yeah|yep|yup|correct|confirm(?:ed)?|right|that'?s right|that is (?:right|correct)|"
    r"that'?s correct|affirmative|go ahead|do it|please do|ok(?:ay)?|sure)[\s,.!]*)+"
    r"(?:please|thanks|thank you|send it|do it|go ahead|confirm(?: the \w+)?|that'?s (?:right|correct))?[\s.!]*$",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(?:no|not|don'?t|cancel|stop|wait|wrong|never|nope|hold on)\b", re.IGNORECASE)
DTMF_YES = "1"


def is_explicit_yes(evidence: Evidence) -> bool:
    """DTMF 1, or a short affirmative with no negation. A yes buried in a longer sentence is not explicit."""
    text = evidence.text.strip()
    if evidence.kind == "dtmf":
        return text == DTMF_YES
    if _NEGATION.search(text):
        return False
    if _YES.match(text):
        return True
    # The router may have recognised the yes from a paraphrase; accept its verdict only for short answers.
    return (evidence.intent or "").lower() in YES_INTENTS and len(text.split()) <= 6
