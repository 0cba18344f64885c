"""The router's tiers as objects: each decides on its own, and the router runs the ones it was given, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from voiceivr.demo.actions import registry as demo_registry
from voiceivr.dialplan.loader import load_file
from voiceivr.dialplan.model import Dialplan
from voiceivr.dialplan.router import IntentRouter
from voiceivr.dialplan.slots import normalise
from voiceivr.dialplan.tiers import ExactPhrase, Keywords, Llm, intent_phrases

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plan() -> Dialplan:
    return load_file(ROOT / "dialplans" / "bank.yaml", demo_registry())


def test_each_tier_decides_alone(plan: Dialplan) -> None:
    phrases = intent_phrases(plan)
    cands = list(plan.intents) + list(plan.globals)
    text = "What's my balance?"
    exact = ExactPhrase(phrases).decide(text, normalise(text), cands)
    assert (exact.tier, exact.intent, exact.accepted, exact.note) == (0, "balance", True, "exact phrase")
    text = "are you guys open on saturdays"
    assert not ExactPhrase(phrases).decide(text, normalise(text), cands).accepted
    kw = Keywords(phrases, plan.routing).decide(text, normalise(text), cands)
    assert (kw.tier, kw.intent, kw.accepted) == (1, "hours", True)


def test_the_router_chains_only_the_tiers_it_can_run(plan: Dialplan) -> None:
    assert [t.number for t in IntentRouter(plan, tiers=(1, 0)).chain] == [0, 1]
    # tier 3 without a model is left out, as before
    assert [t.number for t in IntentRouter(plan, tiers=(0, 1, 3)).chain] == [0, 1]
    assert not any(isinstance(t, Llm) for t in IntentRouter(plan, tiers=(0, 3)).chain)
