"""Intent routing in tiers, cheapest first, with early exit when no tier is sure.

=====  ====================================  ===============================================
tier   how                                   accepts when
=====  ====================================  ===============================================
0      DTMF key; the utterance *is* one of   a key always; words when the recogniser's
       the dialplan's example phrases        confidence >= routing.speech_accept
1      keyword phrases, fuzzy match to the   score >= routing.fuzzy_accept and it beats the
       examples (rapidfuzz)                  runner-up by routing.margin
2      sentence embeddings (MiniLM) against  cosine >= routing.embedding_accept, and margin
       the examples                          over the runner-up
3      an LLM (OpenAI-compatible), optional  the model's confidence >= routing.llm_accept
=====  ====================================  ===============================================

Early exit: a spoken result under routing.speech_accept ends routing with no intent. Its words are the
grammar's nearest phrase, not what was said, so tiers 1-2 would only map the same phrase back to the same
intent; the engine reprompts instead.

Each tier that ran is recorded with its best guess, confidence and cost in seconds, so a call's trace
shows why it went where it went and what it cost. When no tier accepts, the decision has no intent: the
engine does not guess (it reprompts, then offers the keypad menu, then an agent).

One router per dialplan version, shared by every call on it: the example embeddings are computed once,
when the version is loaded. ``route`` holds no per-call state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
class RoutingDecision:
    intent: str | None  # None: no tier was confident; do not guess
    tier: int | None
    confidence: float
    cost_s: float
    tiers: tuple[TierResult, ...] = field(default_factory=tuple)

    @property
    def accepted(self) -> bool:
        return self.intent is not None


@dataclass(frozen=True)
class _Phrases:
    name: str
    examples: tuple[str, ...]  # normalised
    keywords: tuple[str, ...]  # normalised
    description: str


class IntentRouter:
    def __init__(
        self,
        dialplan: Dialplan,
        *,
        tiers: Sequence[int] = (0, 1, 2),
        encoder: Encoder | None = None,
        llm: IntentClassifier | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.routing: Routing = dialplan.routing
        self.timer = timer
        self.tiers = tuple(sorted(set(tiers)))
        self.encoder = encoder if 2 in self.tiers else None
        self.llm = llm if 3 in self.tiers else None
        if 2 in self.tiers and encoder is None:
            raise ValueError("tier 2 needs an encoder")
        phrases: dict[str, _Phrases] = {}
        for i in dialplan.intents.values():
            phrases[i.name] = _Phrases(i.name, tuple(normalise(e) for e in i.examples),
                                       tuple(normalise(k) for k in i.keywords), i.description or i.label)
        for g in dialplan.globals.values():
            phrases[g.name] = _Phrases(g.name, tuple(normalise(e) for e in g.examples),
                                       tuple(normalise(k) for k in g.keywords), g.name.replace("_", " "))
        self.phrases: Mapping[str, _Phrases] = phrases
        self._example_owner: list[str] = []
        texts: list[str] = []
        for p in phrases.values():
            for e in p.examples:
                self._example_owner.append(p.name)
                texts.append(e)
        self._example_matrix: np.ndarray | None = None
        if self.encoder is not None and texts:
            self._example_matrix = self.encoder.encode(texts)
        self._owner_array = np.array(self._example_owner)

    # -- the tiers --

    def route(self, text: str, candidates: Sequence[str], recognition: float = 1.0) -> RoutingDecision:
        """The intent among ``candidates`` (names of intents and global intents) that ``text`` asks for.
        ``recognition``: the recogniser's calibrated confidence in ``text`` (1.0 for typed text and keys)."""
        cands = [c for c in candidates if c in self.phrases]
        norm = normalise(text)
        results: list[TierResult] = []
        if not norm or not cands:
            return RoutingDecision(None, None, 0.0, 0.0, ())
        if recognition < self.routing.speech_accept:
            guess = self._tier0(norm, cands).intent
            unsure = TierResult(0, guess, round(recognition, 4), 0.0, False,
                                note="recognition below routing.speech_accept")
            return RoutingDecision(None, None, recognition, 0.0, (unsure,))
        for tier in self.tiers:
            t0 = self.timer()
            if tier == 0:
                res = self._tier0(norm, cands)
            elif tier == 1:
                res = self._tier1(norm, cands)
            elif tier == 2:
                res = self._tier2(norm, cands)
            elif tier == 3 and self.llm is not None:
                res = self._tier3(text, cands)
            else:
                continue
            res = TierResult(res.tier, res.intent, res.confidence, self.timer() - t0, res.accepted, res.runner_up,
                             res.runner_up_confidence, res.note)
            results.append(res)
            if res.accepted:
                break
        cost = sum(r.cost_s for r in results)
        won = next((r for r in results if r.accepted), None)
        if won is None:
            return RoutingDecision(None, None, max((r.confidence for r in results), default=0.0), cost,
                                   tuple(results))
        return RoutingDecision(won.intent, won.tier, won.confidence, cost, tuple(results))

    def _tier0(self, norm: str, cands: Sequence[str]) -> TierResult:
        for c in cands:
            if norm in self.phrases[c].examples:
                return TierResult(0, c, 1.0, 0.0, True, note="exact phrase")
        return TierResult(0, None, 0.0, 0.0, False)

    def _tier1(self, norm: str, cands: Sequence[str]) -> TierResult:
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

    def _tier2(self, norm: str, cands: Sequence[str]) -> TierResult:
        if self.encoder is None or self._example_matrix is None:
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

    def _tier3(self, text: str, cands: Sequence[str]) -> TierResult:
        assert self.llm is not None
        options = [LlmIntentOption(c, self.phrases[c].description, self.phrases[c].examples) for c in cands]
        answer = self.llm.classify(text, options)
        ok = answer.intent is not None and answer.confidence >= self.routing.llm_accept
        return TierResult(3, answer.intent, round(answer.confidence, 4), 0.0, ok, note=answer.error or "llm")


def make_router(dialplan: Dialplan, tiers: Sequence[int], *, embedding_model: str = "", embedding_threads: int = 1,
                llm_url: str = "", llm_model: str = "", llm_api_key: str = "", llm_timeout_s: float = 2.0
                ) -> IntentRouter:
    """A router as the settings describe it (the shared MiniLM encoder for tier 2; tier 3 only with a URL)."""
    encoder = None
    if 2 in tiers:
        from voiceivr.dialplan.embeddings import shared_encoder

        encoder = shared_encoder(embedding_model, embedding_threads)
    llm = None
    if 3 in tiers and llm_url:
        from voiceivr.dialplan.llm import ChatCompletionsClient

        llm = ChatCompletionsClient(llm_url, llm_model, llm_api_key, llm_timeout_s)
    return IntentRouter(dialplan, tiers=[t for t in tiers if t != 3 or llm is not None], encoder=encoder, llm=llm)
