"""The `voiceivr dialplan` and `voiceivr bank` commands, as an admin runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from voiceivr.cli import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("VOICEIVR_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("VOICEIVR_DIALPLAN_TIERS", "0,1")
    return CliRunner()


def test_validate(runner: CliRunner) -> None:
    ok = runner.invoke(cli, ["dialplan", "validate", str(ROOT / "dialplans" / "bank.yaml"),
                             str(ROOT / "dialplans" / "hello.yaml")])
    assert ok.exit_code == 0 and "bank.yaml: ok" in ok.output
    broken = ROOT / "tests" / "dialplans" / "broken"
    bad = runner.invoke(cli, ["dialplan", "validate", str(broken / "unknown_node.yaml"), str(broken / "dead_end.yaml")])
    assert bad.exit_code == 1
    assert f"{broken / 'unknown_node.yaml'}:6:11: node a.goto: unknown node 'nowhere'" in bad.output
    assert f"{broken / 'dead_end.yaml'}:7:3: node b is a dead end" in bad.output


def test_schema_is_json(runner: CliRunner) -> None:
    out = runner.invoke(cli, ["dialplan", "schema"])
    assert out.exit_code == 0 and json.loads(out.stdout)["required"] == ["name", "start", "nodes"]


def test_publish_list_show_and_simulate(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    seeded = runner.invoke(cli, ["bank", "seed"])
    assert "c-1001 Alice Martin (added)" in seeded.output
    pub = runner.invoke(cli, ["dialplan", "publish", str(ROOT / "dialplans" / "bank.yaml"), "--by", "ops"])
    assert pub.exit_code == 0 and "published bank version 1" in pub.output
    broken = runner.invoke(cli, ["dialplan", "publish", str(ROOT / "tests" / "dialplans" / "broken" / "dead_end.yaml")])
    assert broken.exit_code == 1 and "not published" in broken.output
    listed = runner.invoke(cli, ["dialplan", "list"])
    assert "bank" in listed.output and "live" in listed.output
    shown = runner.invoke(cli, ["dialplan", "show", "bank"])
    assert "name: bank" in shown.output
    sim = runner.invoke(cli, ["dialplan", "simulate", str(ROOT / "dialplans" / "bank.yaml"), "--json",
                              "--say", "check my balance", "--dtmf", "10000001", "--dtmf", "1234",
                              "--say", "savings", "--say", "transfer fifty dollars to savings"])
    assert sim.exit_code == 0, sim.output
    out = json.loads(sim.stdout)
    prompts = [e["text"] for e in out["events"] if e["event"] == "say"]
    assert "Your savings balance is 10000 dollars 00 cents." in prompts
    # Without the safe path on this build, the transfer is refused, never faked.
    decide = [e for e in out["events"] if e["event"] == "gate" and e["call"] == "decide"][-1]
    assert decide["allowed"] is False and "safe path is not available" in decide["reasons"][0]
    text = runner.invoke(cli, ["dialplan", "simulate", str(ROOT / "dialplans" / "hello.yaml"), "--say",
                               "when are you open"])
    assert "We're open Monday to Friday" in text.output and "call hangup" in text.output
    usage = runner.invoke(cli, ["dialplan", "simulate", str(ROOT / "dialplans" / "hello.yaml"), "--shout", "x"])
    assert usage.exit_code == 2
