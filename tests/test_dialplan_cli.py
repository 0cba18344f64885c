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


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_publish_list_show_and_simulate(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    seeded = runner.invoke(cli, ["demo", "seed"])
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
    # The safe path is in this build: the transfer waits for its read-back, a yes and a code (TOTP: no SMS
    # provider is configured here); without them nothing runs.
    decide = [e for e in out["events"] if e["event"] == "gate" and e["call"] == "decide"][-1]
    assert decide["allowed"] is True and decide["path"] == "safe" and decide["channels"] == ["totp"]
    assert not [e for e in out["events"] if e["event"] == "gate" and e["call"] == "execute"
                and e["request_id"] == decide["request_id"]]
    text = runner.invoke(cli, ["dialplan", "simulate", str(ROOT / "dialplans" / "hello.yaml"), "--say",
                               "when are you open"])
    assert "We're open Monday to Friday" in text.output and "call hangup" in text.output
    usage = runner.invoke(cli, ["dialplan", "simulate", str(ROOT / "dialplans" / "hello.yaml"), "--shout", "x"])
    assert usage.exit_code == 2


@pytest.mark.parametrize(("args", "words"), [
    (["--today", "2026-13-45"], "Invalid value for '--today': '2026-13-45' is not a date (2026-12-24) or a date and "
                                "time"),
    (["--today", "2026-12-24", "--tz", "Mars/Base"], "Invalid value for '--tz': unknown time zone 'Mars/Base'"),
    (["--tiers", "x"], "Invalid value for '--tiers': 'x' is not a list of router tiers"),
    (["--tiers", "0,9"], "Invalid value for '--tiers': '0,9' is not a list of router tiers"),
    (["--tiers", ","], "Invalid value for '--tiers': ',' is not a list of router tiers"),
    (["--dtmf", "12a"], "--dtmf '12a': keys are 0-9, * and #"),
    (["--dtmf="], "--dtmf '': keys are 0-9, * and #"),
])
def test_simulate_refuses_bad_option_values_in_one_line(runner: CliRunner, args: list[str], words: str) -> None:
    # --today and --tiers were parsed inside the command: ValueError tracebacks; a --dtmf of letters was
    # silently keyed into the call.
    result = runner.invoke(cli, ["dialplan", "simulate", str(ROOT / "dialplans" / "hello.yaml"), *args,
                                 "--say", "when are you open"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and words in errors[0], result.output
