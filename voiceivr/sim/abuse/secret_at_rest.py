"""What a call leaves behind holds no PIN and no one-time code: the checks of the ``secret-at-rest`` abuse scenario.

:class:`AtRest` watches one simulated call as a deployment would keep it: the call is recorded as the SIP edge
records it (:class:`~voiceivr.telephony.recording.CallRecording`, fed by the driver), its ``calls``/``turns`` rows
are stored by the real :class:`~voiceivr.call.store.CallStore`, and its log records are captured at DEBUG. After
the call, :meth:`AtRest.leaks` looks for each secret in all of it, in the call's audit trail (which holds
evidence, but never a PIN or a code in clear) and its action runs, and checks that the recording's caller channel
is silence over every paused span and wherever the caller read a secret out.

A secret is found where its digits stand on their own in a text (``1234``, ``1 2 3 4``, ``1-2-3-4``; not inside a
longer number, a float or a hex digest), where its words are ("one two three four"), or where the single digits
of a list of key presses spell it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import tempfile
import wave
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.audit.chain import AuditTrail
from voiceivr.call.media import MediaChannel
from voiceivr.call.session import CallSession
from voiceivr.call.store import CallStore
from voiceivr.db.models import ActionRun, Turn
from voiceivr.telephony.recording import CallRecording

READ_OUT_S = 0.4
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_STANDARD_LOG_FIELDS = frozenset(vars(logging.makeLogRecord({})))


def spoken(digits: str) -> str:
    """How a caller reads digits out: "1234" -> "one two three four"."""
    return " ".join(WORDS[int(d)] for d in digits)


def _patterns(secret: str) -> list[re.Pattern[str]]:
    digits = r"[ -]?".join(secret)
    # Not inside a longer number, a word, a hex digest or a float ("240.000000", "1234.5").
    return [re.compile(rf"(?<![0-9A-Za-z])(?<!\d\.){digits}(?![0-9A-Za-z])(?!\.\d)"),
            re.compile(rf"\b{spoken(secret)}\b", re.IGNORECASE)]


def found(secret: str, value: Any) -> bool:
    """Does ``value`` (text, or JSON-like data) hold ``secret`` (a run of digits)?"""
    if not secret:
        return False
    patterns = _patterns(secret)

    def walk(v: Any) -> bool:
        if isinstance(v, str):
            return any(p.search(v) for p in patterns)
        if isinstance(v, bool | float):
            return False
        if isinstance(v, int):
            return str(v) == secret
        if isinstance(v, Mapping):
            return any(walk(k) or walk(x) for k, x in v.items())
        if isinstance(v, list | tuple):
            keys = "".join(str(x["digit"]) for x in v if isinstance(x, Mapping) and len(str(x.get("digit", ""))) == 1)
            return secret in keys or any(walk(x) for x in v)
        return False

    return walk(value)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v if isinstance(v, str | int | float | bool | None) else repr(v)
                  for k, v in vars(record).items() if k not in _STANDARD_LOG_FIELDS and not k.startswith("_")}
        self.records.append({"logger": record.name, "msg": record.getMessage(), **extras})


class _AsBefore(logging.Filter):
    """On the process's own log handlers while the capture runs at DEBUG: pass only what they passed before."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


class AtRest:
    """Keeps what one call leaves behind, then looks for secrets in it. Use :meth:`call` around the call."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="voiceivr-at-rest-")
        self.directory = Path(self._dir.name)
        self.logs = _Capture()
        self.recording: CallRecording | None = None
        self.session: CallSession | None = None
        self.call_id = ""

    @contextlib.contextmanager
    def call(self, call_id: str, session: CallSession, engine: Engine) -> Iterator[CallRecording]:
        """Around one call: capture the logs, record it, store it. Yields the recorder to give the driver."""
        media: MediaChannel = session.media
        self.call_id, self.session = call_id, session
        self.recording = CallRecording(self.directory, call_id, media.rate, {"call_id": call_id}, secret=media.secret)
        store = CallStore(engine, node="abuse-sim")
        started = dt.datetime.now(dt.UTC)
        root = logging.getLogger("voiceivr")
        level = root.level
        as_before = _AsBefore(root.getEffectiveLevel())
        handlers = logging.getLogger().handlers
        for h in handlers:
            h.addFilter(as_before)
        root.addHandler(self.logs)
        root.setLevel(logging.DEBUG)
        try:
            store.call_started(call_id, source="sim", started_at=started)
            yield self.recording
            store.call_ended(call_id, session.timeline, session.summary(), started)
        finally:
            root.removeHandler(self.logs)
            root.setLevel(level)
            for h in handlers:
                h.removeFilter(as_before)
            self.recording.finish(hangup={"by": "caller"})
            self.recording.flush(final=True)

    def leaks(self, engine: Engine, secrets: Mapping[str, str], read_out_at: Sequence[float] = ()) -> list[str]:
        """Where the call left any of ``secrets`` (name -> digits), e.g. ``["the PIN in turns"]``; empty if nowhere.
        ``read_out_at``: when (call seconds) the caller started reading a secret out."""
        assert self.recording is not None and self.session is not None, "leaks() after call()"
        def rows(table: sa.Table) -> list[dict[str, Any]]:
            with engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.select(table).where(table.c.call_id == self.call_id))]

        turns = rows(Turn.__table__)  # type: ignore[arg-type]
        doc = json.loads(self.recording.json_path.read_text(encoding="utf-8"))
        places: dict[str, Any] = {
            "turns": turns,
            "timeline": [e.to_dict() for e in self.session.timeline],
            "recording JSON": doc,
            "logs": self.logs.records,
            "audit trail": [{"kind": r.kind, **r.payload_obj()} for r in AuditTrail(engine).rows()
                            if r.call_id == self.call_id],
            "action runs": rows(ActionRun.__table__),  # type: ignore[arg-type]
        }
        out = [f"{name} in {where}" for name, secret in secrets.items()
               for where, value in places.items() if found(secret, value)]
        if not turns:
            out.append("no turns stored (nothing was checked there)")
        return out + self._audio_problems(doc, read_out_at)

    def _audio_problems(self, doc: Mapping[str, Any], read_out_at: Sequence[float]) -> list[str]:
        assert self.recording is not None
        with wave.open(str(self.recording.wav_path), "rb") as w:
            caller = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)[:, 0]
        rate = self.recording.rate
        spans = [(float(a), float(b)) for a, b in doc.get("secret_spans", [])]
        problems = []
        if any(np.any(caller[int(a * rate):int(b * rate)]) for a, b in spans):
            problems.append("caller audio in a paused span of the recording WAV")
        for t in read_out_at:  # the first READ_OUT_S of what the caller said: every spoken secret lasts longer
            if np.any(caller[int(t * rate):int((t + READ_OUT_S) * rate)]):
                problems.append(f"a secret read out at {t:.2f} s in the recording WAV")
        return problems

    def close(self) -> None:
        self._dir.cleanup()
