"""The loader: the shipped dialplans pass; each broken dialplan yields its file:line:col message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from voiceivr.demo.actions import registry as demo_registry
from voiceivr.dialplan.loader import DialplanInvalid, check_text, load_file
from voiceivr.dialplan.schema import dialplan_schema

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "tests" / "dialplans" / "broken"

# file -> (line, col, a piece of the message)
EXPECTED = {
    "yaml_syntax.yaml": (7, 1, "not valid YAML"),
    "unknown_node.yaml": (6, 11, "unknown node 'nowhere'"),
    "unreachable.yaml": (7, 3, "node orphan is unreachable"),
    "dead_end.yaml": (7, 3, "node b is a dead end"),
    "duplicate_dtmf.yaml": (11, 34, "duplicate DTMF key '1' in node menu: hours and balance"),
    "duplicate_dtmf_global.yaml": (12, 32, "duplicate DTMF key '0' in node menu: hours and the global intent agent"),
    "high_without_confirm.yaml": (21, 13, "high-risk action transfer_funds is reachable without confirmation"),
    "unknown_action.yaml": (6, 13, "unknown action 'launch_rockets'"),
    "unknown_slot_type.yaml": (4, 18, "unknown slot type 'colour'"),
    "undefined_variable.yaml": (7, 45, "uses {balance}, which is not defined"),
    "variable_not_on_every_path.yaml": (18, 19, "uses {amount}, which is not defined on every path"),
    "readback_missing_param.yaml": (24, 19, "readback does not say {to}"),
    "lower_risk.yaml": (21, 13, "can raise an action's risk but never lower it"),
    "secret_spoken.yaml": (12, 25, "speaks {pin}, a secret slot"),
    "secret_param_open_slot.yaml": (11, 47, "parameter pin of login is secret, so slot pin must be marked secret"),
    "unknown_key.yaml": (6, 5, "unknown key 'gotoo' in node a"),
    "loop_without_input.yaml": (4, 3, "nodes a -> b -> a loop without ever waiting"),
    "duplicate_key.yaml": (7, 3, "duplicate key 'a'"),
    "action_needs_login.yaml": (9, 13, "action get_balance needs an identified caller"),
    "interruptible_readback.yaml": (23, 74, "a readback is never interruptible"),
    "unknown_intent.yaml": (9, 7, "unknown intent 'hourz' (did you mean 'hours'?)"),
    "param_type_mismatch.yaml": (22, 24, "parameter amount is money, slot amount is date"),
    "address_from_text_slot.yaml": (21, 25, "parameter address is address, slot where is text"),
    "max_chars_out_of_range.yaml": (4, 33, "slots.memo.max_chars must be a whole number from 1 to 1000"),
}


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return demo_registry()


@pytest.mark.parametrize("name", ["bank.yaml", "hello.yaml", "hours.yaml"])
def test_shipped_dialplans_are_valid(name: str, registry) -> None:  # type: ignore[no-untyped-def]
    plan = load_file(ROOT / "dialplans" / name, registry)
    assert plan.nodes and plan.start in plan.nodes
    assert len(plan.sha256) == 64


def test_every_broken_dialplan_has_an_expectation() -> None:
    assert sorted(p.name for p in BROKEN.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_dialplan_reports_its_position(name: str, registry) -> None:  # type: ignore[no-untyped-def]
    path = BROKEN / name
    plan, problems = check_text(path.read_text(), str(path), registry)
    assert plan is None
    line, col, piece = EXPECTED[name]
    rendered = [str(p) for p in problems]
    assert any(r.startswith(f"{path}:{line}:{col}: ") and piece in r for r in rendered), rendered


def test_all_problems_are_reported_not_just_the_first(registry) -> None:  # type: ignore[no-untyped-def]
    text = (BROKEN / "unknown_node.yaml").read_text() + "  b:\n    say: Hi {oops}.\n    goto: elsewhere\n"
    _, problems = check_text(text, "x.yaml", registry)
    messages = " | ".join(p.message for p in problems)
    assert "unknown node 'nowhere'" in messages and "unknown node 'elsewhere'" in messages
    assert "is unreachable" in messages and "{oops}" in messages


def test_load_raises_with_every_problem(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DialplanInvalid) as exc:
        load_file(BROKEN / "unknown_slot_type.yaml", registry)
    assert len(exc.value.problems) == 2
    assert "unknown slot type" in str(exc.value)


def test_typed_objects(registry) -> None:  # type: ignore[no-untyped-def]
    plan = load_file(ROOT / "dialplans" / "bank.yaml", registry)
    transfer = plan.nodes["transfer"]
    assert transfer.requires_login and transfer.collect == ("amount", "to", "from")
    assert transfer.action is not None and transfer.action.risk == "high"
    assert transfer.action.confirm is not None
    assert transfer.action.confirm.readback.kind == "readback" and not transfer.action.confirm.readback.interruptible
    assert plan.slots["pin"].secret and plan.slots["amount"].max_amount is not None
    assert plan.nodes["greeting"].say[0].kind == "disclosure" and not plan.nodes["greeting"].say[0].interruptible
    assert {r.dtmf for r in plan.nodes["main_menu"].routes} == {"1", "2", "3", "4", "5"}


@pytest.mark.parametrize("name", ["bank.yaml", "hello.yaml", "hours.yaml"])
def test_json_schema_accepts_shipped_dialplans(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    # As an editor sees it: JSON, where a holiday's date is a string, not PyYAML's datetime.date.
    doc = json.loads(json.dumps(yaml.safe_load((ROOT / "dialplans" / name).read_text()), default=str))
    jsonschema.validate(doc, dialplan_schema())


def test_json_schema_rejects_unknown_keys() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = yaml.safe_load((BROKEN / "unknown_key.yaml").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, dialplan_schema())
    json.dumps(dialplan_schema())
