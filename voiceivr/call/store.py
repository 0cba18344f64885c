"""Keeping calls and their turns in the database, from the session's timeline.

A ``calls`` row is written when the call starts (so a call whose process died still shows up, without an
end) and completed when it ends, with the outcome, the tasks it resolved, its engine-seconds and a
``stats_json`` summary: per-stage latencies, barge-ins and budget breaches. ``turns`` rows, one per caller
input, are derived from the timeline at the end. ``voiceivr stats`` and the benchmarks read these. A secret input
(a PIN, a one-time code) is a turn like any other, with ``[secret]`` for its transcript: the timeline never had it.

All writes happen on the call's worker thread, never on the media thread; a database error is logged
with the call id and does not end the call.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from voiceivr.call import events as ev
from voiceivr.call.secrecy import MASK
from voiceivr.db.models import Call, Turn

log = logging.getLogger(__name__)


@dataclass
class TurnRecord:
    idx: int
    t: float
    input_kind: str
    transcript: str | None
    node: str = ""
    intent: str | None = None
    tier: int | None = None
    confidence: float | None = None
    barged_in: bool = False
    prompt_played_ms: int | None = None
    latencies: dict[str, float] = field(default_factory=dict)


def turns_from_timeline(timeline: list[ev.Event]) -> list[TurnRecord]:
    """One record per caller input that reached the conversation, with what it was recognised as."""
    turns: list[TurnRecord] = []
    pending_cut: ev.PromptCut | None = None
    for e in timeline:
        new: TurnRecord | None = None
        if isinstance(e, ev.PromptCut):
            pending_cut = e
        elif isinstance(e, ev.TranscriptFinal) and not e.ignored:
            new = TurnRecord(len(turns), e.speech_start, "speech", MASK if e.secret else e.text,
                             confidence=e.confidence)
        elif isinstance(e, ev.DigitsCollected):
            new = TurnRecord(len(turns), e.t, "dtmf", MASK if e.secret else e.digits)
        elif isinstance(e, ev.NoInput):
            new = TurnRecord(len(turns), e.t, "none", None)
        elif isinstance(e, ev.IntentRecognized) and turns:
            turn = turns[-1]
            turn.intent, turn.tier, turn.node, turn.confidence = e.intent, e.tier, e.node, e.confidence
        if new is not None:
            if pending_cut is not None:  # this input is what cut the prompt short
                new.barged_in, new.prompt_played_ms = True, pending_cut.played_ms
                pending_cut = None
            turns.append(new)
    return turns


def call_stats(timeline: list[ev.Event], summary: dict[str, Any]) -> dict[str, Any]:
    barge_ins = [e for e in timeline if isinstance(e, ev.BargeIn)]
    return {
        "latency": summary.get("latency", {}),
        "latency_samples": summary.get("latency_samples", {}),
        "budget_breaches": summary.get("budget_breaches", []),
        "engine_seconds": summary.get("engine_seconds", {}),
        "barge_ins": len(barge_ins),
        "barge_in_decision_ms": [round((e.t - e.onset) * 1000, 1) for e in barge_ins],
        "echo_suppressed": sum(1 for e in timeline if isinstance(e, ev.EchoSuppressed)),
        "no_inputs": sum(1 for e in timeline if isinstance(e, ev.NoInput)),
        "duration_s": round(timeline[-1].t, 3) if timeline else 0.0,
    }


class CallStore:
    def __init__(self, engine: Engine, node: str = "", owner: str | None = None) -> None:
        self.engine = engine
        self.node = node
        self.owner = owner  # the serving process's lease (voiceivr/call/lost.py): its death marks the call lost

    def call_started(
        self,
        call_id: str,
        *,
        source: str,
        sip_call_id: str | None = None,
        caller_uri: str | None = None,
        dialplan_version_id: int | None = None,
        started_at: dt.datetime | None = None,
    ) -> None:
        row = {
            "id": call_id,
            "started_at": started_at or dt.datetime.now(dt.UTC),
            "node": self.node,
            "source": source,
            "sip_call_id": sip_call_id,
            "caller_uri": caller_uri,
            "dialplan_version_id": dialplan_version_id,
            "resolved_tasks": 0,
            "engine_seconds": 0.0,
            "stats_json": "{}",
            "owner": self.owner,
        }
        self._write(call_id, lambda conn: conn.execute(sa.insert(Call), row))

    def call_ended(
        self, call_id: str, timeline: list[ev.Event], summary: dict[str, Any], started_at: dt.datetime
    ) -> None:
        turns = turns_from_timeline(timeline)
        stats = call_stats(timeline, summary)
        ended_at = started_at + dt.timedelta(seconds=stats["duration_s"])

        def write(conn: sa.Connection) -> None:
            conn.execute(
                sa.update(Call)
                .where(Call.id == call_id)
                .values(
                    ended_at=ended_at,
                    outcome=summary.get("outcome") or "unknown",
                    resolved_tasks=int(summary.get("resolved_tasks", 0)),
                    engine_seconds=float(sum(stats["engine_seconds"].values())),
                    stats_json=json.dumps(stats, sort_keys=True),
                )
            )
            if turns:
                conn.execute(
                    sa.insert(Turn),
                    [
                        {
                            "call_id": call_id,
                            "idx": t.idx,
                            "started_at": started_at + dt.timedelta(seconds=t.t),
                            "node": t.node,
                            "input_kind": t.input_kind,
                            "transcript": t.transcript,
                            "intent": t.intent,
                            "tier": t.tier,
                            "confidence": t.confidence,
                            "prompt_played_ms": t.prompt_played_ms,
                            "barged_in": t.barged_in,
                            "latencies_json": json.dumps(t.latencies),
                        }
                        for t in turns
                    ],
                )

        self._write(call_id, write)

    def _write(self, call_id: str, fn: Any) -> None:
        try:
            with self.engine.begin() as conn:
                fn(conn)
        except SQLAlchemyError as exc:
            log.error("could not store call", extra={"call_id": call_id, "error": type(exc).__name__})
