"""The A/B split in the console over real HTTP (SQLite and PostgreSQL): a publisher sets it, it is audited with
the admin's name, others are refused, and the stats page compares the two versions' outcomes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.console import BANK, RunningConsole, page_csrf, running_console, seed, sign_in
from voiceivr.audit.chain import AuditTrail
from voiceivr.db.models import Call
from voiceivr.dialplan.split import get_split
from voiceivr.dialplan.store import list_versions


@pytest.fixture
def console(migrated_engine: Engine) -> Iterator[RunningConsole]:
    seed(migrated_engine)
    with running_console(migrated_engine) as running:
        yield running


@pytest.mark.slow  # a real console over HTTP: over 1 s
def test_a_publisher_sets_a_split_it_is_audited_and_stats_compare_the_versions(console: RunningConsole) -> None:
    url = console.url
    pat, _ = sign_in(url, "pat")
    token = page_csrf(pat, url)
    edited = BANK.replace("How can I help you today?", "What can I do for you?")
    pat.post(f"{url}/dialplans/bank/publish", data={"text": edited, "csrf": token, "note": "friendlier"})
    assert "No split" in pat.get(f"{url}/dialplans/bank").text

    viewer, _ = sign_in(url, "vera")
    r = viewer.post(f"{url}/dialplans/bank/split", data={"version": "1", "percent": "20",
                                                         "csrf": page_csrf(viewer, url)})
    assert r.status_code == 403 and "publisher" in r.text
    r = pat.post(f"{url}/dialplans/bank/split", data={"version": "1", "percent": "20"})
    assert r.status_code == 403  # no CSRF token
    for bad, status in (({"version": "2", "percent": "20"}, 409), ({"version": "1", "percent": "100"}, 409),
                        ({"version": "1", "percent": "x"}, 400)):
        r = pat.post(f"{url}/dialplans/bank/split", data={**bad, "csrf": token})
        assert r.status_code == status, (bad, r.text)
    assert get_split(console.engine, "bank") is None

    r = pat.post(f"{url}/dialplans/bank/split", data={"version": "1", "percent": "20", "note": "old greeting",
                                                      "csrf": token})
    assert r.status_code == 200 and "split set: version 1 gets 20 % of new calls" in r.text
    assert 'id="split-state">Version 1 gets <strong>20 %</strong>' in r.text
    split = get_split(console.engine, "bank")
    assert split is not None and (split.version, split.percent, split.set_by) == (1, 20, "admin:pat")

    rows = [r for r in AuditTrail(console.engine).rows() if r.kind == "console.split"]
    assert [(r.actor, r.payload_obj()["version"], r.payload_obj()["percent"]) for r in rows] == [("admin:pat", 1, 20)]
    audit_page = viewer.get(f"{url}/audit").text
    assert "console.split" in audit_page and "admin:pat" in audit_page

    v1, v2 = list_versions(console.engine, "bank")
    now = dt.datetime.now(dt.UTC)
    with console.engine.begin() as conn:
        for n, (vid, outcome) in enumerate([(v1.id, "resolved"), (v1.id, "transferred"), (v2.id, "resolved"),
                                            (v2.id, "resolved"), (v2.id, "resolved")]):
            conn.execute(sa.insert(Call).values(
                id=f"20000000-0000-4000-8000-00000000000{n}", started_at=now - dt.timedelta(minutes=5),
                ended_at=now - dt.timedelta(minutes=4), node="n", source="sip", dialplan_version_id=vid,
                outcome=outcome, resolved_tasks=1, engine_seconds=0.5, stats_json=json.dumps({"barge_ins": 0})))
    html = viewer.get(f"{url}/stats", params={"since": "1h"}).text
    table = html[html.index('id="by-version"'):]
    assert '<tr data-version="bank v1">' in table and '<tr data-version="bank v2">' in table
    row1 = table[table.index('data-version="bank v1"'):table.index('data-version="bank v2"')]
    assert "1 (50 %)" in row1 and "60" in row1  # resolved and transferred once each; 60 s long
    row2 = table[table.index('data-version="bank v2"'):]
    assert "3 (100 %)" in row2

    r = pat.post(f"{url}/dialplans/bank/split", data={"action": "clear", "csrf": token})
    assert r.status_code == 200 and "split ended" in r.text and get_split(console.engine, "bank") is None
    kinds = [r.payload_obj()["action"] for r in AuditTrail(console.engine).rows() if r.kind == "console.split"]
    assert kinds == ["set", "clear"] and AuditTrail(console.engine).verify().ok
