"""The A/B split of new calls between two dialplan versions: the caller's number from SIP, the sticky hash and its
share (unit), the split in the store and the live version for new calls (SQLite and PostgreSQL), its audit rows,
and outcomes per version in `voiceivr stats`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from voiceivr.audit.chain import AuditTrail
from voiceivr.db.models import Call
from voiceivr.demo.actions import registry as demo_registry
from voiceivr.dialplan.router import IntentRouter
from voiceivr.dialplan.split import (
    Split,
    SplitRefused,
    bucket,
    caller_number,
    clear_split,
    get_split,
    set_split,
    takes_split,
)
from voiceivr.dialplan.store import LiveDialplans, publish
from voiceivr.stats import compute_stats

ROOT = Path(__file__).resolve().parents[1]
HELLO = (ROOT / "dialplans" / "hello.yaml").read_text()
NOW = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)


def _split(percent: int, version_id: int = 7) -> Split:
    return Split("bank", version_id, 3, percent, NOW, "admin:pat")


@pytest.mark.parametrize("uri, number", [
    ("sip:+15550100@127.0.0.1:5070;transport=udp", "+15550100"),
    ('"Alice" <sip:+1-555-0100@pbx.example>;tag=abc', "+15550100"),
    ("tel:+1 (555) 0100", "+15550100"),
    ("sips:Bob@example.com", "bob"),
    ("sip:anonymous@anonymous.invalid", ""),
    ("sip:@host", ""),
    ("", ""),
    ("not a uri", ""),
])
def test_the_callers_number_comes_from_the_sip_from_uri(uri: str, number: str) -> None:
    assert caller_number(uri) == number


def test_the_split_is_sticky_per_caller_and_gives_the_share_asked() -> None:
    rng = random.Random(18)
    numbers = list({f"+1555{rng.randrange(10**7):07d}" for _ in range(10_400)})[:10_000]
    assert len(numbers) == 10_000
    twenty = _split(20)
    chosen = {n for n in numbers if takes_split(twenty, n)}
    assert abs(len(chosen) / len(numbers) - 0.20) <= 0.015
    assert all(takes_split(twenty, n) == (n in chosen) for n in numbers)  # the same caller, the same side
    # A bigger share keeps everyone who had the split's version (buckets below 20 % are below 50 % too).
    assert chosen <= {n for n in numbers if takes_split(_split(50), n)}
    # Another split (another version) draws its callers afresh: not the same 20 %.
    other = {n for n in numbers if takes_split(_split(20, version_id=8), n)}
    assert abs(len(other) / len(numbers) - 0.20) <= 0.015 and len(other & chosen) < 0.3 * len(chosen)
    assert {bucket("bank", 7, n) for n in numbers[:50]} == {bucket("bank", 7, n) for n in numbers[:50]}
    assert all(0 <= bucket("bank", 7, n) < 10_000 for n in numbers[:200])


def _hello_versions(engine: Engine) -> None:
    reg = demo_registry()
    publish(engine, HELLO, "hello.yaml", reg, "setup")
    publish(engine, HELLO.replace("Hello!", "Hi there!"), "hello.yaml", reg, "setup")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_split_gives_its_version_to_its_callers_and_is_audited(migrated_engine: Engine) -> None:
    _hello_versions(migrated_engine)
    live = LiveDialplans(migrated_engine, "hello", demo_registry(), lambda p: IntentRouter(p, tiers=(0, 1)))
    callers = [f"+1555010{i:04d}" for i in range(400)]
    assert {live.for_new_call(c).version for c in callers} == {2}  # no split: the live version for all
    with pytest.raises(SplitRefused, match="is the live version"):
        set_split(migrated_engine, "hello", 2, 20, actor="admin:pat")
    with pytest.raises(SplitRefused, match="has no version 9"):
        set_split(migrated_engine, "hello", 9, 20, actor="admin:pat")
    with pytest.raises(SplitRefused, match="1 to 99"):
        set_split(migrated_engine, "hello", 1, 100, actor="admin:pat")
    with pytest.raises(SplitRefused, match="no published dialplan"):
        set_split(migrated_engine, "nope", 1, 20, actor="admin:pat")
    assert get_split(migrated_engine, "hello") is None  # nothing stored by the refusals

    split = set_split(migrated_engine, "hello", 1, 30, actor="admin:pat", note="older greeting")
    assert get_split(migrated_engine, "hello") == split
    first = {c: live.for_new_call(c).version for c in callers}
    assert first == {c: live.for_new_call(c).version for c in callers}  # sticky: every call of a caller
    share = sum(v == 1 for v in first.values()) / len(callers)
    assert 0.22 < share < 0.38, share
    assert "Hello!" in next(live.for_new_call(c) for c in callers if first[c] == 1).plan.nodes["welcome"].say[0].text
    assert live.for_new_call().version == 2  # no key (a health check): the live one

    set_split(migrated_engine, "hello", 1, 60, actor="cli")  # changed: everyone on version 1 stays there
    assert all(live.for_new_call(c).version == 1 for c in callers if first[c] == 1)
    assert clear_split(migrated_engine, "hello", actor="admin:pat")
    assert not clear_split(migrated_engine, "hello", actor="admin:pat")  # nothing to clear, nothing audited
    assert {live.for_new_call(c).version for c in callers} == {2}

    rows = [r for r in AuditTrail(migrated_engine).rows() if r.kind == "dialplan.split"]
    got = [(r.actor, json.loads(r.payload)["action"], json.loads(r.payload).get("percent")) for r in rows]
    assert got == [("admin:pat", "set", 30), ("cli", "set", 60), ("admin:pat", "clear", None)]
    assert json.loads(rows[1].payload)["before"] == {"version": 1, "percent": 30}
    assert AuditTrail(migrated_engine).verify().ok


def _call(engine: Engine, call_id: str, version_id: int | None, outcome: str | None, tasks: int = 0) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(Call).values(
            id=call_id, started_at=NOW, ended_at=None if outcome is None else NOW + dt.timedelta(seconds=40),
            node="n", source="sip", dialplan_version_id=version_id, outcome=outcome, resolved_tasks=tasks,
            engine_seconds=1.0, stats_json=json.dumps({"barge_ins": 1})))


def test_stats_compare_outcomes_per_version(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from voiceivr.cli import cli
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine

    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    _hello_versions(engine)
    with engine.connect() as conn:
        v1, v2 = conn.execute(sa.text("SELECT id FROM dialplan_versions ORDER BY version")).scalars().all()
    for i in range(4):
        _call(engine, f"a{i}", v1, "resolved" if i < 3 else "transferred", tasks=1)
    for i in range(2):
        _call(engine, f"b{i}", v2, "abandoned")
    _call(engine, "b2", v2, None)
    _call(engine, "c0", None, "resolved")
    report = compute_stats(engine, NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1))
    by = {r["label"]: r for r in report["by_version"]}
    assert list(by) == ["no published version", "hello v1", "hello v2"]
    assert by["hello v1"]["outcomes"] == {"resolved": 3, "transferred": 1} and by["hello v1"]["calls"] == 4
    assert by["hello v1"]["outcome_share"]["resolved"] == 0.75 and by["hello v1"]["resolved_per_call"] == 1.0
    assert by["hello v1"]["duration_s"]["p50"] == 40.0 and by["hello v1"]["barge_ins"] == 4
    assert by["hello v2"]["outcomes"] == {"abandoned": 2, "in progress": 1}
    assert sum(r["calls"] for r in report["by_version"]) == report["calls"] == 8

    monkeypatch.setenv("VOICEIVR_DATABASE_URL", sqlite_url)
    out = CliRunner().invoke(cli, ["stats", "--since", "2026-12-06T11:00", "--until", "2026-12-06T13:00"])
    assert out.exit_code == 0, out.output
    lines = {ln.split()[0] + " " + ln.split()[1]: ln for ln in out.output.splitlines() if ln.startswith("hello v")}
    assert "3 (75%)" in lines["hello v1"] and "1 (25%)" in lines["hello v1"]
    assert "2 (67%)" in lines["hello v2"]
    engine.dispose()


class _Stop(Exception):
    pass


def test_a_new_sip_call_is_given_the_callers_number_and_the_runtime_splits_on_it(
        migrated_engine: Engine, cheap_embeddings: None) -> None:
    """The wiring: the SIP edge's From URI becomes the split's key at the call's start (voiceivr.live), and the
    runtime's plan for a new call follows the split for that key (no number: the call id)."""
    from voiceivr.call.handler import CallInfo
    from voiceivr.live import SessionHandler
    from voiceivr.runtime import CallRuntime
    from voiceivr.settings import load_settings

    _hello_versions(migrated_engine)
    set_split(migrated_engine, "hello", 1, 50, actor="test")
    settings = load_settings()[0]
    settings = dataclasses.replace(settings, dialplan=dataclasses.replace(settings.dialplan, live_name="hello"))
    runtime = CallRuntime(settings, db=migrated_engine, vad=None, stt=None, tts=None,  # type: ignore[arg-type]
                          prompt_cache=None, registry=demo_registry())
    split = get_split(migrated_engine, "hello")
    assert split is not None
    numbers = [f"+1555020{i:04d}" for i in range(40)]
    assert [runtime.plan_for_new_call(n).version_id for n in numbers] == \
        [split.version_id if takes_split(split, n) else runtime.plan_for_new_call().version_id for n in numbers]
    assert len({runtime.plan_for_new_call(n).label for n in numbers}) == 2  # both sides seen: hello v1, hello v2

    seen: dict[str, object] = {}

    class Runtime:
        def new_session(self, call_id: str, *_args: object, **kwargs: object) -> None:
            seen.update(kwargs, call_id=call_id)
            raise _Stop

    class Handler:
        runtime = Runtime()

    info = CallInfo("c-1", from_uri="sip:+1-555-0200@10.0.0.5:5060;transport=udp")
    with pytest.raises(_Stop):
        SessionHandler.start(Handler(), info, None, None)  # type: ignore[arg-type]
    assert seen["caller"] == "+15550200" and seen["call_id"] == "c-1"


def test_the_split_command_shows_sets_refuses_and_clears(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from voiceivr.cli import cli
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine

    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    _hello_versions(engine)
    monkeypatch.setenv("VOICEIVR_DATABASE_URL", sqlite_url)
    run = CliRunner().invoke
    assert "hello: no split" in run(cli, ["dialplan", "split", "hello"]).output
    r = run(cli, ["dialplan", "split", "hello", "--version", "2", "--percent", "20"])
    assert r.exit_code == 1 and "hello version 2 is the live version" in r.output
    assert run(cli, ["dialplan", "split", "hello", "--version", "1"]).exit_code == 2  # --percent missing
    r = run(cli, ["dialplan", "split", "hello", "--version", "1", "--percent", "20", "--by", "ops:kim"])
    assert r.exit_code == 0 and "version 1 now gets 20 % of new calls" in r.output
    assert "version 1 gets 20 % of new calls" in run(cli, ["dialplan", "split", "hello"]).output
    assert "split cleared" in run(cli, ["dialplan", "split", "hello", "--clear"]).output
    rows = [r for r in AuditTrail(engine).rows() if r.kind == "dialplan.split"]
    assert [(r.actor, json.loads(r.payload)["action"]) for r in rows] == [("ops:kim", "set"), ("cli", "clear")]
    engine.dispose()
