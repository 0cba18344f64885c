"""Calls lost with their process (voiceivr/call/lost.py): leases, marking a dead owner's calls ``lost``, and
counting them in ``voiceivr stats`` and on ``/metrics``; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from voiceivr import metrics
from voiceivr.call.lost import LOST, CallOwner, LeaseOptions, leases, mark_lost
from voiceivr.call.store import CallStore
from voiceivr.cli import cli
from voiceivr.db.models import Call
from voiceivr.stats import compute_stats

ROOT = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)
OPTS = LeaseOptions(heartbeat_s=1.0, lease_s=5.0)


class Clock:
    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def _row(engine: sa.Engine, call_id: str) -> sa.Row:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return conn.execute(sa.select(Call.outcome, Call.ended_at, Call.owner).where(Call.id == call_id)).one()


def _aware(ts: dt.datetime) -> dt.datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def _end(store: CallStore, call_id: str, started: dt.datetime) -> None:
    store.call_ended(call_id, [], {"outcome": "completed"}, started)


def test_a_dead_nodes_open_calls_are_marked_lost_once_its_lease_runs_out(migrated_engine: sa.Engine) -> None:
    clock = Clock()
    dead = CallOwner(migrated_engine, "node0", OPTS, clock=clock)
    alive = CallOwner(migrated_engine, "node1", OPTS, clock=clock, on_lost=(told := []).append)
    dead.beat()
    alive.beat()
    dead_store = CallStore(migrated_engine, node="node0", owner=dead.owner)
    alive_store = CallStore(migrated_engine, node="node1", owner=alive.owner)
    dead_store.call_started("d-open", source="sip", started_at=T0 - dt.timedelta(seconds=30))
    dead_store.call_started("d-done", source="sip", started_at=T0 - dt.timedelta(seconds=30))
    _end(dead_store, "d-done", T0 - dt.timedelta(seconds=30))
    alive_store.call_started("a-open", source="sip", started_at=T0)
    CallStore(migrated_engine, node="replay").call_started("no-owner", source="replay", started_at=T0)

    clock.advance(4.0)  # node0 is silent from here on; node1 keeps beating
    assert alive.beat() == 0  # node0's lease (until T0+5 s) still stands
    clock.advance(2.0)
    assert alive.beat() == 1 and told == [1]
    outcome, ended, owner = _row(migrated_engine, "d-open")
    assert outcome == LOST and owner == dead.owner
    assert _aware(ended) == T0  # node0's last heartbeat: the last moment it was known to carry the call
    assert _row(migrated_engine, "d-done").outcome == "completed"
    assert _row(migrated_engine, "a-open").outcome is None  # our own, alive
    assert _row(migrated_engine, "no-owner").outcome is None  # not a serving process's call: never judged
    assert alive.beat() == 0 and told == [1]  # marked once

    report = compute_stats(migrated_engine, T0 - dt.timedelta(hours=1), T0 + dt.timedelta(hours=1), now=clock())
    assert report["lost"] == 1 and report["outcomes"] == {"lost": 1, "completed": 1, "in progress": 2}


def test_a_lost_call_that_started_after_the_last_heartbeat_ends_at_its_start(migrated_engine: sa.Engine) -> None:
    clock = Clock()
    dead = CallOwner(migrated_engine, "node0", OPTS, clock=clock)
    dead.beat()
    started = T0 + dt.timedelta(seconds=0.5)
    CallStore(migrated_engine, owner=dead.owner).call_started("late", source="sip", started_at=started)
    clock.advance(10)
    assert CallOwner(migrated_engine, "node1", OPTS, clock=clock).beat() == 1
    assert _aware(_row(migrated_engine, "late").ended_at) == started


def test_stats_count_a_gone_owners_open_call_as_lost_before_anyone_marks_it(migrated_engine: sa.Engine) -> None:
    clock = Clock()
    owner = CallOwner(migrated_engine, "solo", OPTS, clock=clock)
    owner.beat()
    store = CallStore(migrated_engine, owner=owner.owner)
    store.call_started("c-1", source="sip", started_at=T0)
    since, until = T0 - dt.timedelta(hours=1), T0 + dt.timedelta(hours=1)
    assert compute_stats(migrated_engine, since, until, now=T0 + dt.timedelta(seconds=4))["outcomes"] == {
        "in progress": 1}
    # The only node died and nobody is left to mark its call: the lapsed lease alone says it is lost.
    assert compute_stats(migrated_engine, since, until, now=T0 + dt.timedelta(seconds=6))["lost"] == 1
    # A lease given up (clean stop) with a call still open: lost too.
    with migrated_engine.begin() as conn:
        conn.execute(leases.delete())
    assert compute_stats(migrated_engine, since, until, now=T0)["lost"] == 1
    assert _row(migrated_engine, "c-1").outcome is None  # stats only read


def test_a_dead_process_of_this_node_is_seen_at_once(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    """A worker killed with SIGKILL mid-call: the worker its supervisor starts again (same node) marks the call
    lost at its first beat, without waiting for the lease; a process of another node waits for the lease."""
    url = migrated_engine.url.render_as_string(hide_password=False)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line.startswith("READY "), line
        owner = line.split(" ", 1)[1]
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    assert _row(migrated_engine, "killed").owner == owner and _row(migrated_engine, "killed").outcome is None
    now = dt.datetime.now(dt.UTC)
    other_node = CallOwner(migrated_engine, "other", LeaseOptions(1, 60), clock=lambda: now)
    assert other_node.beat() == 0  # its 60 s lease has not run out: another node cannot tell it is dead
    restarted = CallOwner(migrated_engine, "node-k", LeaseOptions(1, 60), clock=lambda: now)
    assert restarted.beat() == 1
    assert _row(migrated_engine, "killed").outcome == LOST


CHILD = """
import sys
import time
from voiceivr.call.lost import CallOwner, LeaseOptions
from voiceivr.call.store import CallStore
from voiceivr.db.engine import make_engine
engine = make_engine(sys.argv[1])
owner = CallOwner(engine, "node-k", LeaseOptions(1, 60))
owner.start()
CallStore(engine, node="node-k", owner=owner.owner).call_started("killed", source="sip")
print("READY", owner.owner, flush=True)
time.sleep(60)
"""


def test_two_processes_marking_at_once_count_each_call_once(migrated_engine: sa.Engine) -> None:
    clock = Clock()
    dead = CallOwner(migrated_engine, "node0", OPTS, clock=clock)
    dead.beat()
    store = CallStore(migrated_engine, owner=dead.owner)
    for i in range(20):
        store.call_started(f"c-{i}", source="sip", started_at=T0)
    clock.advance(60)
    counts: list[int] = []
    markers = [CallOwner(migrated_engine, f"node{i}", OPTS, clock=clock) for i in (1, 2)]
    barrier = threading.Barrier(2)

    def mark(m: CallOwner) -> None:
        barrier.wait()
        counts.append(len(mark_lost(m.engine, clock(), m.node, m.owner)))

    threads = [threading.Thread(target=mark, args=(m,)) for m in markers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(counts) == 2 and sum(counts) == 20, counts  # both markings ran to the end, each call once
    with migrated_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(Call.outcome == LOST)).scalar_one() == 20


def test_lease_options_must_outlast_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="must outlast two heartbeats"):
        LeaseOptions(heartbeat_s=3, lease_s=5)
    with pytest.raises(ValueError, match="must outlast"):
        LeaseOptions(heartbeat_s=0, lease_s=5)


def test_stop_gives_the_lease_up_and_long_lapsed_leases_are_forgotten(migrated_engine: sa.Engine) -> None:
    clock = Clock()
    opts = LeaseOptions(heartbeat_s=1, lease_s=5, forget_after_s=100)
    old = CallOwner(migrated_engine, "gone", opts, clock=clock)
    old.beat()
    clock.advance(200)
    me = CallOwner(migrated_engine, "here", opts, clock=clock)
    me.start()
    with migrated_engine.connect() as conn:
        assert set(conn.execute(sa.select(leases.c.owner)).scalars()) == {me.owner}
    me.stop()
    with migrated_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(leases)).scalar_one() == 0


def test_the_serving_process_counts_lost_calls_on_metrics_and_stamps_its_calls(
        migrated_engine: sa.Engine, tmp_path: Path) -> None:
    """SessionHandler (what a worker of `voiceivr serve` runs) takes a lease at start, marks what died before it
    and counts it in voiceivr_calls_total{outcome="lost"}; its calls carry its owner."""
    from voiceivr.live import SessionHandler
    from voiceivr.settings import Settings

    gone = CallOwner(migrated_engine, "nodeX", OPTS, clock=lambda: T0)
    gone.beat()
    CallStore(migrated_engine, owner=gone.owner).call_started("orphan", source="sip", started_at=T0)
    before = metrics.CALLS.labels(LOST)._value.get()
    store = CallStore(migrated_engine, node="nodeY")
    runtime = SimpleNamespace(store=store, services=None, plan_for_new_call=lambda: None)
    settings = Settings()
    settings.metrics.port = 0
    handler = SessionHandler(settings, runtime)  # type: ignore[arg-type]
    try:
        assert handler.owner is not None and store.owner == handler.owner.owner
        assert _row(migrated_engine, "orphan").outcome == LOST
        assert metrics.CALLS.labels(LOST)._value.get() == before + 1
        store.call_started("mine", source="sip")
        assert _row(migrated_engine, "mine").owner == handler.owner.owner
    finally:
        handler.owner.stop()


def test_stats_command_prints_lost(db_url: str) -> None:
    runner = CliRunner()
    env = {"VOICEIVR_DATABASE_URL": db_url}
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    from voiceivr.db.engine import make_engine

    engine = make_engine(db_url)
    now = dt.datetime.now(dt.UTC)
    gone = CallOwner(engine, "n", OPTS, clock=lambda: now - dt.timedelta(minutes=5))
    gone.beat()
    CallStore(engine, owner=gone.owner).call_started("c", source="sip", started_at=now - dt.timedelta(minutes=5))
    engine.dispose()
    result = runner.invoke(cli, ["stats", "--since", "1h"], env=env)  # the lapsed lease alone says it is lost
    assert result.exit_code == 0, result.output
    assert "outcomes: lost 1" in result.output and "lost 1," in result.output
