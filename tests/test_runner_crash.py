"""kill -9 at 200+ random points of the action state machine: nothing twice, nothing unaudited.

The harness (voiceivr.sim.crashtest) runs in a subprocess that forks a worker per kill, so pytest's own
process is never forked.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _crash(url: str, kills: int, seed: int) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "voiceivr.sim.crashtest", "--db", url, "--kills", str(kills),
         "--seed", str(seed), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def _assert_clean(report: dict[str, object], kills: int) -> None:
    assert report["double_executions"] == 0, report
    assert report["executions_without_intent_row"] == 0, report
    assert report["executions_without_result_row"] == 0, report
    assert report["unresolved_runs"] == 0, report
    assert report["money_conserved"] is True and report["audit_ok"] is True, report
    assert int(report["point_kills"]) + int(report["timed_kills"]) >= kills  # type: ignore[call-overload]
    assert int(report["transfers"]) > 0 and int(report["remote_effects"]) > 0  # type: ignore[call-overload]
    assert report["ok"] is True


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_9_at_random_points_postgres(pg_url: str) -> None:
    report = _crash(pg_url, 290, seed=20261126)
    _assert_clean(report, 290)
    assert int(report["point_kills"]) >= 200  # type: ignore[call-overload]


@pytest.mark.slow
def test_kill_9_at_random_points_sqlite(sqlite_url: str) -> None:
    report = _crash(sqlite_url, 220, seed=7)
    _assert_clean(report, 220)
