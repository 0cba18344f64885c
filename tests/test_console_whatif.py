"""What-if in the console: recorded calls replayed through the whole pipeline against the live version and a
draft, over real HTTP (real pocketsphinx on the recorded audio, the demo bank's scratch database)."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from tests.support.console import BANK, RunningConsole, page_csrf, recorded_calls, running_console, seed, sign_in
from tests.support.db_templates import MigratedTemplates

pytestmark = pytest.mark.slow


@pytest.fixture
def console(sqlite_url: str, tmp_path: Path,
            migrated_templates: MigratedTemplates) -> Iterator[tuple[RunningConsole, list[str]]]:
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine

    migrated_templates.fill(sqlite_url)  # migrated once per run (tests/support/db_templates.py)
    engine: Engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    seed(engine)
    ids = recorded_calls(tmp_path / "recordings", 3)
    with running_console(engine, recordings=tmp_path / "recordings") as running:
        yield running, ids
    engine.dispose()


def test_what_if_shows_per_call_what_the_draft_changes(console: tuple[RunningConsole, list[str]]) -> None:
    running, ids = console
    s, _ = sign_in(running.url, "eddie")
    page = s.get(f"{running.url}/dialplans/bank").text
    assert all(i in page for i in ids)  # the recordings are offered
    token = page_csrf(s, running.url)
    draft = BANK.replace("How can I help you today?", "What can I do for you today?")
    r = s.post(f"{running.url}/api/whatif", json={"text": draft, "name": "bank", "calls": ids[:2]},
               headers={"X-CSRF-Token": token}, timeout=300)
    assert r.status_code == 200, r.text
    calls = r.json()["calls"]
    assert [c["call_id"] for c in calls] == [ids[1], ids[0]]  # newest first
    for c in calls:
        assert not c["error"]
        assert c["changed"] == ["prompts"]  # same intents, outcome and actions: only the menu's words
        assert c["live"]["intents"][:2] == ["balance", "transfer"] and c["draft"]["intents"] == c["live"]["intents"]
        assert any("How can I help you today?" in p for p in c["prompts_gone"])
        assert any("What can I do for you today?" in p for p in c["prompts_new"])
    clip = s.get(f"{running.url}{calls[0]['draft_audio']}")
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(clip.content)) as w:
        assert w.getframerate() == 8000 and 60 < w.getnframes() / 8000 < 80  # the whole call (69 s), agent side
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.abs(samples).max() > 1000  # it speaks
    other, _ = sign_in(running.url, "pat")
    assert other.get(f"{running.url}{calls[0]['draft_audio']}").status_code == 404  # clips are their admin's

    unchanged = s.post(f"{running.url}/api/whatif", json={"text": BANK, "name": "bank", "calls": [ids[2]]},
                       headers={"X-CSRF-Token": token}, timeout=300).json()["calls"]
    assert [c["changed"] for c in unchanged] == [[]]  # the live version against itself: deterministic

    r = s.post(f"{running.url}/api/whatif", json={"text": "name: bank\n", "name": "bank", "calls": ids},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 422 and r.json()["problems"]
    r = s.post(f"{running.url}/api/whatif", json={"text": BANK, "name": "bank", "calls": ["../../etc/passwd"]},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 404  # a call id is looked up among the recordings, never used as a path


def test_a_calls_page_plays_its_recording(console: tuple[RunningConsole, list[str]]) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from voiceivr.db.models import Call

    running, ids = console
    with running.engine.begin() as conn:
        for call_id in (ids[0], "20000000-0000-4000-8000-000000000000"):
            conn.execute(sa.insert(Call).values(id=call_id, started_at=dt.datetime.now(dt.UTC), node="n",
                                                source="sip", resolved_tasks=0, engine_seconds=0.0))
    s, _ = sign_in(running.url, "vera")
    assert 'id="recording"' in s.get(f"{running.url}/calls/{ids[0]}").text
    clip = s.get(f"{running.url}/calls/{ids[0]}/recording.wav")
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(clip.content)) as w:  # G.711 on disk, 16-bit PCM for the browser
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert 68 < w.getnframes() / 8000 < 70
    assert 'id="recording"' not in s.get(f"{running.url}/calls/20000000-0000-4000-8000-000000000000").text
    assert s.get(f"{running.url}/calls/20000000-0000-4000-8000-000000000000/recording.wav").status_code == 404
    assert s.get(f"{running.url}/calls/*/recording.wav").status_code == 404  # never a glob pattern
