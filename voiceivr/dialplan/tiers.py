"""The intent router's tiers, each an object with one interface: :meth:`Tier.decide`.

A tier reads the caller's words (as said, and normalised) against the candidate intents and returns its best
guess as a :class:`TierResult`, accepted or not. Tier 0 matches an example phrase exactly, tier 1 keywords and
fuzzy matches, tier 2 sentence embeddings (MiniLM), tier 3 an LLM.
:class:`~voiceivr.dialplan.router.IntentRouter` runs them in order, times each one and stops at the first that
accepts; the thresholds each tier accepts at are the dialplan's ``routing`` settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from rapidfuzz import fuzz

from voiceivr.dialplan.llm import LlmAnswer, LlmIntentOption
from voiceivr.dialplan.model import Dialplan, Routing
from voiceivr.dialplan.slots import normalise


class Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class IntentClassifier(Protocol):
    def classify(self, text: str, options: Sequence[LlmIntentOption]) -> LlmAnswer: ...


@dataclass(frozen=True)
class TierResult:
    tier: int
    intent: str | None  # the tier's best guess, accepted or not
    confidence: float
    cost_s: float
    accepted: bool
    runner_up: str | None = None
    runner_up_confidence: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class _Phrases:
    name: str
    examples: tuple[str, ...]  # normalised
    keywords: tuple[str, ...]  # normalised
    description: str


Phrases = Mapping[str, _Phrases]


def intent_phrases(dialplan: Dialplan) -> Phrases:
    """Every intent's and global's examples and keywords, normalised once, for the tiers to match against."""
    phrases: dict[str, _Phrases] = {}
    for i in dialplan.intents.values():
        phrases[i.name] = _Phrases(i.name, tuple(normalise(e) for e in i.examples),
                                   tuple(normalise(k) for k in i.keywords), i.description or i.label)
    for g in dialplan.globals.values():
        phrases[g.name] = _Phrases(g.name, tuple(normalise(e) for e in g.examples),
                                   tuple(normalise(k) for k in g.keywords), g.name.replace("_", " "))
    return phrases


class Tier(Protocol):
    number: int

    def decide(self, text: str, norm: str, cands: Sequence[str]) -> TierResult:
        """The tier's guess among ``cands`` for ``text`` (``norm``: the same words normalised)."""
        ...


class ExactPhrase:
    """Tier 0: the utterance *is* one of the dialplan's example phrases."""

    number = 0

    def __init__(self, phrases: Phrases) -> None:
        self.phrases = phrases

    def decide(self, text: str, norm: str, cands: Sequence[str]) -> TierResult:
        for c in cands:
            if norm in self.phrases[c].examples:
                return TierResult(0, c, 1.0, 0.0, True, note="exact phrase")
        return TierResult(0, None, 0.0, 0.0, False)


class Keywords:
    """Tier 1: keyword phrases, and fuzzy matches to the examples (rapidfuzz)."""

    number = 1

    def __init__(self, phrases: Phrases, routing: Routing) -> None:
        self.phrases = phrases
        self.routing = routing

    def decide(self, text: str, norm: str, cands: Sequence[str]) -> TierResult:
        padded = f" {norm} "
        scores: dict[str, float] = {}
        keyword_len: dict[str, int] = {}
        for c in cands:
            p = self.phrases[c]
            hits = [k for k in p.keywords if k and f" {k} " in padded]
            if hits:
                keyword_len[c] = max(len(k) for k in hits)
            fz = max((fuzz.ratio(norm, e) for e in p.examples), default=0.0) / 100.0
            scores[c] = fz
        note = "fuzzy"
        if keyword_len:
            # A keyword phrase is strong evidence; the longest match wins ("lost card" over "card").
            best_len = max(keyword_len.values())
            leaders = [c for c, n in keyword_len.items() if n == best_len]
            for c in keyword_len:
                scores[c] = max(scores[c], 0.90 if c in leaders and len(leaders) == 1 else 0.80)
            note = "keyword"
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        best, best_s = ranked[0]
        second, second_s = ranked[1] if len(ranked) > 1 else (None, 0.0)
        ok = best_s >= self.routing.fuzzy_accept and best_s - second_s >= self.routing.margin
        return TierResult(1, best, round(best_s, 4), 0.0, ok, second, round(second_s, 4), note)


class Embeddings:
    """Tier 2: sentence embeddings (MiniLM) against the examples, computed once when the tier is built."""

    number = 2

    def __init__(self, phrases: Phrases, routing: Routing, encoder: Encoder) -> None:
        self.routing = routing
        self.encoder = encoder
        self._example_owner: list[str] = []
        texts: list[str] = []
        for p in phrases.values():
            for e in p.examples:
                self._example_owner.append(p.name)
                texts.append(e)
        self._example_matrix: np.ndarray | None = None
        if texts:
            self._example_matrix = self.encoder.encode(texts)
        self._owner_array = np.array(self._example_owner)

    def decide(self, text: str, norm: str, cands: Sequence[str]) -> TierResult:
        if self._example_matrix is None:
            return TierResult(2, None, 0.0, 0.0, False, note="no examples")
        vec = self.encoder.encode([norm])[0]
        sims = self._example_matrix @ vec
        scores: dict[str, float] = {}
        for c in cands:
            mask = self._owner_array == c
            if mask.any():
                scores[c] = float(sims[mask].max())
        if not scores:
            return TierResult(2, None, 0.0, 0.0, False, note="no examples")
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        best, best_s = ranked[0]
        second, second_s = ranked[1] if len(ranked) > 1 else (None, 0.0)
        ok = best_s >= self.routing.embedding_accept and best_s - second_s >= self.routing.margin
        return TierResult(2, best, round(best_s, 4), 0.0, ok, second, round(second_s, 4), "cosine")


class Llm:
    """Tier 3: an LLM (OpenAI-compatible) picks among the candidates, given their descriptions and examples."""

    number = 3

    def __init__(self, phrases: Phrases, routing: Routing, llm: IntentClassifier) -> None:
        self.phrases = phrases
        self.routing = routing
        self.llm = llm

    def decide(self, text: str, norm: str, cands: Sequence[str]) -> TierResult:
        options = [LlmIntentOption(c, self.phrases[c].description, self.phrases[c].examples) for c in cands]
        answer = self.llm.classify(text, options)
        ok = answer.intent is not None and answer.confidence >= self.routing.llm_accept
        return TierResult(3, answer.intent, round(answer.confidence, 4), 0.0, ok, note=answer.error or "llm")
