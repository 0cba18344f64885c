"""Secrets at rest: a call that logs in with PIN 1234 and reads back a one-time code leaves neither anywhere.

The call is the ``secret-at-rest`` abuse scenario's: the real session, dialplan engine and safe path (SMS through
the twilio client to the local fake) on the real database (SQLite and PostgreSQL), symbolic audio
(voiceivr/testing/speech.py). It is recorded as the SIP edge records it, stored by the call store and its logs are
captured; the PIN is said aloud, a code is mistyped on the keypad and the right one is read out. Replays of masked
recordings of real speech are in test_replay.py; a real SIP call in test_e2e_bank.py.
"""

from __future__ import annotations

import dataclasses
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest

from voiceivr import metrics
from voiceivr.call import events as ev
from voiceivr.call.dialplan_brain import DialplanBrain
from voiceivr.db.models import Turn
from voiceivr.dialplan.io import Listen
from voiceivr.sim import abuse
from voiceivr.sim.abuse.secret_at_rest import AtRest, found, spoken


def test_found_sees_digits_words_and_keys_but_not_numbers_that_merely_contain_them() -> None:
    assert found("1234", "caller keyed '1234' (terminator)") and found("1234", {"transcript": "dtmf|1234"})
    assert found("1234", "my pin is one two three four") and found("1234", ["x", {"t": 1, "text": "1 2 3 4"}])
    assert found("1234", [{"digit": d} for d in "91234#"]) and found("1234", {"pin": 1234})
    for innocent in ("t=12.1234", "e2e 1234.5 ms", "sha 9f1234ab", "call 0b7e-12345", {"t": 1234.0}, "****"):
        assert not found("1234", innocent), innocent


def _call(w: abuse.World, at_rest: AtRest) -> tuple[str, dict[str, str], list[float]]:
    """Places the scenario's call; returns its id, the secrets it gave and when it read secrets out."""
    sc = next(s for s in abuse.catalogue() if s.name == "secret-at-rest")
    assert sc.script is not None and sc.at_rest is not None
    w.reset()
    ctx = abuse.Ctx(w)
    call_id, steps, _ = abuse.place_call(w, sc.script(ctx), at_rest=at_rest)
    assert steps and all(s.as_expected for s in steps), steps  # in step with the engine all along
    secrets = sc.at_rest(ctx)
    assert secrets["the PIN"] == "1234" and len(secrets["the code"]) == 6
    return call_id, secrets, [s.at for s in steps if s.detail == "[secret]"]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_login_and_a_code_leave_no_secret_behind(db_url: str, tmp_path: Path, cheap_embeddings: None) -> None:
    with abuse.world(db_url, tmp_path) as w:
        at_rest = AtRest()
        try:
            call_id, secrets, read_out = _call(w, at_rest)
            assert len(read_out) == 2 and at_rest.leaks(w.engine, secrets, read_out) == []
            session, recording = at_rest.session, at_rest.recording
            assert session is not None and recording is not None
            with w.engine.connect() as conn:
                turns = conn.execute(sa.select(Turn.__table__.c.input_kind, Turn.__table__.c.transcript)
                                     .where(Turn.__table__.c.call_id == call_id)
                                     .order_by(Turn.__table__.c.idx)).fetchall()
            doc = json.loads(recording.json_path.read_text())
            with wave.open(str(recording.wav_path), "rb") as wav:
                caller = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)[:, 0]
            logs = at_rest.logs.records
            timeline = session.timeline
        finally:
            at_rest.close()
        metrics.observe_call(session.summary(), [])
        exposition = generate_latest(metrics.REGISTRY).decode()

    # The turns are all there, the secret ones without their content.
    assert [(k, t) for k, t in turns if t == "[secret]"] == [("speech", "[secret]"), ("dtmf", "[secret]"),
                                                           ("speech", "[secret]")]
    assert ("dtmf", abuse.ALICE_ACCOUNT) in [tuple(t) for t in turns]  # what is not secret stays readable
    masked = [e for e in doc["events"] if e["type"] == "dtmf" and e.get("secret")]
    assert len(masked) == 6 and not any("digit" in e for e in masked)
    # The caller channel is silence over each paused span, and the spoken PIN and code fall inside them.
    spans = doc["secret_spans"]
    assert len(spans) == 2 and all(not np.any(caller[int(a * 8000):int(b * 8000)]) for a, b in spans)
    said = [e for e in timeline if isinstance(e, ev.TranscriptFinal) and e.secret]
    assert len(said) == 2 and all(any(a <= e.speech_start and e.speech_end <= b for a, b in spans) for e in said)
    assert np.any(caller), "the caller's other answers are still recorded"
    for name, secret in secrets.items():
        for where, value in (("turns", [list(t) for t in turns]), ("timeline", [e.to_dict() for e in timeline]),
                             ("recording JSON", doc), ("logs", logs), ("metrics", exposition)):
            assert not found(secret, value), f"{name} in {where}"
    assert logs, "the capture saw the call's log records"


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_the_scenario_catches_a_session_that_keeps_secrets(monkeypatch: pytest.MonkeyPatch,
                                                           cheap_embeddings: None) -> None:
    """Negative control: a dialplan brain that never says the answer is a secret (as before secret input existed)
    fails the scenario, and the verdict says where the secrets went."""
    convert = DialplanBrain._convert

    def never_secret(self: DialplanBrain, *args: Any) -> list[Any]:
        return [dataclasses.replace(o, secret=False) if isinstance(o, Listen) else o for o in convert(self, *args)]

    monkeypatch.setattr(DialplanBrain, "_convert", never_secret)
    card = abuse.simulate(only=["secret-at-rest"])
    (r,) = card.results
    assert not r.passed and r.verdict.startswith("GOT THROUGH: "), r.verdict
    for where in ("the PIN in turns", "the PIN in timeline", "the mistyped code in recording JSON", "the code in turns",
                  "a secret read out at "):
        assert where in r.verdict, r.verdict
    assert not card.ok


def test_the_spoken_form_of_digits() -> None:
    assert spoken("1234") == "one two three four" and spoken("907") == "nine zero seven"
