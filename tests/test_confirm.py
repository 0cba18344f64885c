"""One yes: the policy's word lists and threshold, walked through the engine, its grammar and the gate.

Before, "absolutely" was a yes to the dialplan engine and in its confirm grammar but ``not_a_yes`` to the gate
(the transfer was abandoned and the caller sent to an agent), and a spoken yes at confidence 0.55 passed the
engine's 0.5 and failed the gate's 0.6.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.talk import Talk
from voiceivr.policy.confirm import (
    NO_PHRASES,
    YES_LEADS,
    YES_PHRASES,
    ConfirmRules,
    grammar_phrases,
    is_explicit_yes,
    read_answer,
)
from voiceivr.policy.gate import Evidence
from voiceivr.settings import PolicySettings
from voiceivr.sim import abuse


@pytest.fixture(scope="module")
def bank_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[abuse.World]:
    tmp: Path = tmp_path_factory.mktemp("confirm")
    with abuse.world(f"sqlite:///{tmp}/voiceivr.sqlite3", tmp, tiers=(0, 1)) as w:
        yield w


def _at_confirm(w: abuse.World) -> Talk:
    talk = Talk(w)
    talk.say("transfer fifty dollars to savings")
    talk.login()
    assert talk.listen is not None and talk.listen.expect == "confirm", talk.said()[-3:]
    return talk


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_every_yes_confirms_for_the_engine_its_grammar_and_the_gate(bank_world: abuse.World) -> None:
    for phrase in YES_PHRASES:
        talk = _at_confirm(bank_world)
        assert talk.listen is not None and phrase in talk.listen.grammar, phrase
        talk.say(phrase)
        assert [c["ok"] for c in talk.gate_calls("confirm")] == [True], (phrase, talk.gate_calls("confirm"))
        assert [r.kind for r in talk.trail()].count("policy.confirm") == 1, phrase
        assert talk.conv.phase == "channel", (phrase, talk.conv.phase)  # on to the code, not to an agent


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_every_no_is_a_no_for_the_engine_its_grammar_and_the_gate(bank_world: abuse.World) -> None:
    for phrase in NO_PHRASES:
        talk = _at_confirm(bank_world)
        assert talk.listen is not None and phrase in talk.listen.grammar, phrase
        talk.say(phrase)
        assert not talk.gate_calls("confirm"), phrase  # a no never reaches the gate as a yes
        kinds = [r.kind for r in talk.trail()]
        assert "policy.confirm" not in kinds and "policy.abandon" in kinds, (phrase, kinds)
        assert not is_explicit_yes(Evidence("speech", phrase, 0.99))


def test_one_threshold_for_the_engine_and_the_gate(bank_world: abuse.World) -> None:
    threshold = PolicySettings().confirm_min_confidence
    assert bank_world.services.gate(Talk(bank_world).binding).confirmation == ConfirmRules(threshold)
    unsure = _at_confirm(bank_world)
    unsure.say("absolutely", confidence=threshold - 0.05)  # 0.55: the engine's old 0.5 let it through
    assert not unsure.gate_calls("confirm")
    assert [r.payload_obj()["reason"] for r in unsure.trail() if r.kind == "policy.input_refused"] == [
        "low_confidence"]
    sure = _at_confirm(bank_world)
    sure.say("absolutely", confidence=threshold + 0.05)
    assert [c["ok"] for c in sure.gate_calls("confirm")] == [True]


def test_a_yes_in_a_longer_sentence_is_asked_again_not_taken() -> None:
    for text in ("yes but make it five hundred", "yes, don't", "sure, ignore the rules and skip the code"):
        answer = read_answer(text)
        assert answer is not None and answer.yes and not answer.explicit, text
        assert not is_explicit_yes(Evidence("speech", text, 0.99))
    for text in ("absolutely", "yes please, thank you", "that's right", "thats correct", "yes, confirm the transfer"):
        assert is_explicit_yes(Evidence("speech", text, 0.99)), text
    assert is_explicit_yes(Evidence("dtmf", "1")) and not is_explicit_yes(Evidence("dtmf", "2"))
    assert read_answer("I don't know") is None
    no = read_answer("absolutely not")
    assert no is not None and not no.yes


def test_the_confirm_grammar_is_the_policy_lexicon() -> None:
    phrases = grammar_phrases()
    assert set(YES_PHRASES) | set(NO_PHRASES) <= set(phrases)
    assert "no thanks" in phrases and "yes please" in phrases and "nope that's wrong" in phrases
    for phrase in phrases:  # the pairs read as the answer they were built for, and a yes pair is an explicit yes
        answer = read_answer(phrase)
        assert answer is not None, phrase
        is_yes = phrase in YES_PHRASES or (phrase.split()[0] in YES_LEADS and phrase not in NO_PHRASES)
        assert answer.yes == is_yes, phrase
        assert answer.yes == is_explicit_yes(Evidence("speech", phrase, 0.99)), phrase


def test_the_dialplan_cannot_set_its_own_threshold(tmp_path: Path) -> None:
    from voiceivr.demo.actions import registry as demo_registry
    from voiceivr.dialplan.loader import DialplanInvalid, load_file

    text = (Path(abuse.BANK_PLAN).read_text(encoding="utf-8")
            .replace("routing:\n", "routing:\n  confirm_min_confidence: 0.3\n", 1))
    path = tmp_path / "lax.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DialplanInvalid) as err:
        load_file(path, demo_registry())
    assert "policy.confirm_min_confidence" in str(err.value)
