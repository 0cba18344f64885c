"""The dialplan format is declared once (voiceivr.dialplan.schema): the loader and the JSON Schema agree on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from voiceivr.demo.actions import registry as demo_registry
from voiceivr.dialplan.loader import check_text
from voiceivr.dialplan.schema import FALLBACK, NODE, Number, dialplan_schema

ROOT = Path(__file__).resolve().parents[1]


def _hello_with(change: dict[str, object], where: str = "top") -> tuple[str, dict[str, object]]:
    doc = yaml.safe_load((ROOT / "dialplans" / "hello.yaml").read_text())
    if where == "top":
        doc.update(change)
    else:
        doc["nodes"]["welcome"].update(change)
    return yaml.safe_dump(doc, sort_keys=False), doc


@pytest.mark.parametrize("name", [n for n, kind in FALLBACK.fields if isinstance(kind, Number)])
def test_a_number_out_of_its_declared_range_is_refused_by_both(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    kind = FALLBACK[name]
    assert isinstance(kind, Number)
    text, doc = _hello_with({"fallback": {name: kind.hi + 1}})
    _, problems = check_text(text, "hello.yaml", demo_registry())
    what = "a whole number" if kind.whole else "a number"
    assert [p.message for p in problems] == [f"fallback.{name} must be {what} from {kind.lo:g} to {kind.hi:g}"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, dialplan_schema())


def test_an_undeclared_key_is_refused_by_both_and_the_loader_lists_the_declared_ones() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    text, doc = _hello_with({"gotoo": "welcome"}, where="node")
    _, problems = check_text(text, "hello.yaml", demo_registry())
    assert f"unknown key 'gotoo' in node welcome; expected one of: {', '.join(NODE.names)}" in [
        p.message for p in problems
    ]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(json.dumps(doc)), dialplan_schema())
