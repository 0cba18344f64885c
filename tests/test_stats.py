"""Calls and turns stored from the session timeline; `voiceivr stats`; the Prometheus endpoint."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.support.session import barge_in_run
from voiceivr import metrics
from voiceivr.call.store import CallStore, turns_from_timeline
from voiceivr.cli import cli
from voiceivr.db.models import Call, Turn
from voiceivr.stats import compute_stats, parse_when


def _store_one(engine: sa.Engine, call_id: str, started: dt.datetime) -> None:
    session, *_ = barge_in_run()
    store = CallStore(engine, node="test-node")
    store.call_started(call_id, source="test", started_at=started)
    summary = session.summary()
    store.call_ended(call_id, session.timeline, summary, started)


def test_turns_come_from_the_timeline() -> None:
    session, *_ = barge_in_run()
    turns = turns_from_timeline(session.timeline)
    assert len(turns) == 1
    (turn,) = turns
    assert turn.input_kind == "speech" and turn.transcript == "tell me about opening hours please"
    assert turn.barged_in and turn.prompt_played_ms is not None and turn.prompt_played_ms > 1000


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_calls_are_stored_and_summarised(migrated_engine: sa.Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    _store_one(migrated_engine, "c-1", now - dt.timedelta(minutes=5))
    _store_one(migrated_engine, "c-2", now - dt.timedelta(minutes=3))
    CallStore(migrated_engine).call_started("c-3", source="test", started_at=now - dt.timedelta(minutes=1))
    _store_one(migrated_engine, "c-old", now - dt.timedelta(days=3))
    with migrated_engine.connect() as conn:
        row = conn.execute(sa.select(Call).where(Call.id == "c-1")).one()
        assert row.outcome == "completed" and row.node == "test-node" and row.ended_at is not None
        assert json.loads(row.stats_json)["barge_ins"] == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(Turn)).scalar_one() == 3
    report = compute_stats(migrated_engine, now - dt.timedelta(hours=1), now)
    assert report["calls"] == 3
    assert report["outcomes"] == {"completed": 2, "in progress": 1}
    assert report["barge_ins"] == 2
    assert report["stages"]["e2e"]["count"] == 2 and report["stages"]["e2e"]["p50"] > 0


def test_stats_command(db_url: str) -> None:
    runner = CliRunner()
    env = {"VOICEIVR_DATABASE_URL": db_url}
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    from voiceivr.db.engine import make_engine

    engine = make_engine(db_url)
    _store_one(engine, "c-1", dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2))
    engine.dispose()
    result = runner.invoke(cli, ["stats", "--since", "1h"], env=env)
    assert result.exit_code == 0, result.output
    assert "calls 1" in result.output and "barge-ins 1" in result.output
    e2e = next(line for line in result.output.splitlines() if line.startswith("e2e"))
    assert e2e.split()[1] == "1"
    result = runner.invoke(cli, ["stats", "--since", "1h", "--json"], env=env)
    assert json.loads(result.output)["calls"] == 1
    result = runner.invoke(cli, ["stats", "--since", "yesterday-ish"], env=env)
    assert result.exit_code == 1 and "cannot read the time" in result.output


def test_parse_when() -> None:
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    assert parse_when("2h", now) == dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
    assert parse_when("2026-11-24T08:30", now) == dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC)


def test_metrics_endpoint_serves_stage_histograms(metrics_server: None) -> None:
    session, *_ = barge_in_run()
    summary = session.summary()
    metrics.observe_call(summary, [0.1])
    port = metrics.serve(0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'voiceivr_stage_latency_seconds_bucket{le="0.4",stage="e2e"}' in text
    assert "voiceivr_barge_ins_total" in text and 'voiceivr_calls_total{outcome="completed"}' in text
