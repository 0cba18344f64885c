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

Early exit: a spoken result under routing.speech_accept is not routed on its words: they are the grammar's
nearest phrase, not what was said, so tiers 1-2 would only map the same phrase back to the same intent. If
the recogniser also gave an open transcript of the turn (``open_text``: what the caller said, from an
open-vocabulary second pass), the tiers route that instead, each with its own threshold; otherwise, or when
no tier is sure of it, routing ends with no intent and the engine reprompts.

Each tier that ran is recorded with its best guess, confidence and cost in seconds, so a call's trace
shows why it went where it went and what it cost. When no tier accepts, the decision has no intent: the
engine does not guess (it reprompts, then offers the keypad menu, then an agent).

One router per dialplan version, shared by every call on it: the example embeddings are computed once,
when the version is loaded. ``route`` holds no per-call state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from voiceivr.dialplan.model import Dialplan, Routing
from voiceivr.dialplan.slots import normalise
from voiceivr.dialplan.tiers import (
    Embeddings,
    Encoder,
    ExactPhrase,
    IntentClassifier,
    Keywords,
    Llm,
    Tier,
    TierResult,
    intent_phrases,
)


@dataclass(frozen=True)
class RoutingDecision:
    intent: str | None  # None: no tier was confident; do not guess
    tier: int | None
    confidence: float
    cost_s: float
    tiers: tuple[TierResult, ...] = field(default_factory=tuple)
    on_open_text: bool = False  # the tiers routed the open transcript, not the recogniser's (unsure) words

    @property
    def accepted(self) -> bool:
        return self.intent is not None


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
        self.phrases = intent_phrases(dialplan)
        self._exact = ExactPhrase(self.phrases)
        chain: list[Tier] = []
        for n in self.tiers:
            if n == 0:
                chain.append(self._exact)
            elif n == 1:
                chain.append(Keywords(self.phrases, self.routing))
            elif n == 2 and self.encoder is not None:
                chain.append(Embeddings(self.phrases, self.routing, self.encoder))
            elif n == 3 and self.llm is not None:
                chain.append(Llm(self.phrases, self.routing, self.llm))
        self.chain: tuple[Tier, ...] = tuple(chain)

    def route(self, text: str, candidates: Sequence[str], recognition: float = 1.0,
              open_text: str = "") -> RoutingDecision:
        """The intent among ``candidates`` (names of intents and global intents) that ``text`` asks for.
        ``recognition``: the recogniser's calibrated confidence in ``text`` (1.0 for typed text and keys).
        ``open_text``: an open-vocabulary transcript of the same speech, routed instead of ``text`` when the
        recogniser is unsure of ``text``."""
        cands = [c for c in candidates if c in self.phrases]
        norm = normalise(text)
        if not (norm or open_text) or not cands:
            return RoutingDecision(None, None, 0.0, 0.0, ())
        if recognition < self.routing.speech_accept:
            guess = self._exact.decide(text, norm, cands).intent if norm else None
            unsure = TierResult(0, guess, round(recognition, 4), 0.0, False,
                                note="recognition below routing.speech_accept")
            open_norm = normalise(open_text)
            if not open_norm:
                return RoutingDecision(None, None, recognition, 0.0, (unsure,))
            decision = self._run_chain(open_text, open_norm, cands)
            opened = tuple(replace(r, note=(r.note + "; " if r.note else "") + "open transcript")
                           for r in decision.tiers)
            return replace(decision, tiers=(unsure, *opened), on_open_text=True)
        if not norm:
            return RoutingDecision(None, None, 0.0, 0.0, ())
        return self._run_chain(text, norm, cands)

    def _run_chain(self, text: str, norm: str, cands: Sequence[str]) -> RoutingDecision:
        results: list[TierResult] = []
        for tier in self.chain:
            t0 = self.timer()
            res = tier.decide(text, norm, cands)
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
