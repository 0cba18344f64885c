"""``voiceivr replay``: run a recorded call through the whole pipeline on a virtual clock.

Input: a mono caller WAV (any rate; resampled to the call rate), or a recording made by the SIP edge
(``<call_id>.json`` + stereo ``<call_id>.wav``, caller left, agent right: docs/recordings.md), whose key
presses and media moves are replayed at their times. The same call session, dialplan engine, router, safe
path and speech engines as a live call run frame by frame; nothing waits for wall time (unless
``--realtime``), so a replay runs many times faster than the call took, and two runs of the same input give
the same timeline.

Replays never touch the operator's data: actions run against a scratch SQLite database with the tables and
sample data of the enabled plugins (``--keep-db`` keeps it for inspection). The dialplan is ``--dialplan FILE``,
else the live published version in the configured database, else ``dialplans/<live_name>.yaml``.

Figures in the output that are wall-clock measurements (stage latencies other than e2e, engine-seconds,
replay speed) are grouped under ``wall`` in ``--json``; everything else is deterministic.

A recording holds no PIN or one-time code (its key presses are masked and its audio silenced while the caller gave
one): the replay says how many such inputs it lacks and runs without them, or with the operator's values given by
``--secret`` (:mod:`voiceivr.replay_secrets`). The replayed session masks them again in everything it prints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click
import numpy as np

from voiceivr.audio.frames import FRAME_MS, Pcm
from voiceivr.audio.resample import resample
from voiceivr.audio.wav import read_wav
from voiceivr.call import events as ev
from voiceivr.call.driver import DriveResult, EchoPath, drive
from voiceivr.call.media import MediaChannel
from voiceivr.call.secrecy import MASK
from voiceivr.call.session import CallSession
from voiceivr.policy.gate import SessionBinding
from voiceivr.replay_input import (
    RECORDING_FORMAT,
    ReplayInputError,
    control_events,
    read_recording,
    sip_facts,
    wav_beside,
)
from voiceivr.replay_secrets import MaskedInput, masked_inputs, note, supply
from voiceivr.runtime import CallRuntime
from voiceivr.settings import Settings


@dataclass
class RecordedCall:
    source: Path
    caller: Pcm
    rate: int
    control: list[tuple[float, ev.SystemEvent]] = field(default_factory=list)
    sip: dict[str, Any] = field(default_factory=dict)
    agent: Pcm | None = None  # what the live agent said, if this is a SIP recording
    masked: list[MaskedInput] = field(default_factory=list)  # secret inputs the recording does not hold
    # When the recorded call started (a SIP recording says): schedule: nodes take the branch the caller got,
    # whenever the replay runs. None (a bare WAV): the replay's own start.
    started_at: dt.datetime | None = None

    @property
    def duration(self) -> float:
        return len(self.caller) / self.rate


def load_call(path: Path, rate: int = 8000) -> RecordedCall:
    """A caller WAV or a SIP-edge recording (its .json or its .wav)."""
    path = Path(path)
    if not path.exists():
        raise ReplayInputError(f"{path}: no such file")
    doc: dict[str, Any] | None = None
    wav_path = path
    if path.suffix.lower() == ".json":
        doc = read_recording(path)
        if doc is None:
            raise ReplayInputError(f"{path}: not a voiceivr recording (format {RECORDING_FORMAT} expected)")
        wav_path = wav_beside(doc, path)
    else:
        sidecar = path.with_suffix(".json")
        if sidecar.exists():
            doc = read_recording(sidecar, beside_wav=True)
    audio = read_wav(wav_path)
    agent = None
    if audio.channels == 1:
        caller = audio.pcm
    elif audio.channels == 2:
        caller, agent = audio.pcm[:, 0].copy(), audio.pcm[:, 1].copy()
    else:
        raise ReplayInputError(f"{wav_path}: {audio.channels} channels; expected mono caller audio or a "
                               "stereo recording (caller left, agent right)")
    if audio.rate != rate:
        caller = resample(caller, audio.rate, rate)
        agent = resample(agent, audio.rate, rate) if agent is not None else None
    return RecordedCall(path, caller.astype(np.int16), rate, control_events(doc) if doc else [],
                        sip_facts(doc) if doc else {}, agent, _masked(path, doc) if doc else [],
                        _started_at(path, doc) if doc else None)


def _started_at(path: Path, doc: dict[str, Any]) -> dt.datetime | None:
    raw = doc.get("started_at")
    if raw is None:
        return None
    try:
        when = dt.datetime.fromisoformat(str(raw))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ReplayInputError(f"{path}: started_at {str(raw)[:40]!r} is not a date and time with its offset "
                               "(2026-12-24T16:30:00+00:00)")
    return when


def _masked(path: Path, doc: dict[str, Any]) -> list[MaskedInput]:
    try:
        return masked_inputs(doc)
    except ValueError as exc:
        raise ReplayInputError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------------------------- running


@dataclass
class ReplayResult:
    call: RecordedCall
    session: CallSession
    drive: DriveResult
    wall_s: float
    dialplan: str
    secrets_supplied: int = 0  # masked inputs put back from --secret values

    @property
    def secret_note(self) -> str:
        return note(self.call.masked, self.secrets_supplied)

    @property
    def speed(self) -> float:
        return self.drive.seconds / self.wall_s if self.wall_s > 0 else float("inf")

    def timeline(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.session.timeline]

    def to_json(self) -> dict[str, Any]:
        summary = self.session.summary()
        latency = summary["latency"]
        return {
            "input": str(self.call.source),
            "dialplan": self.dialplan,
            "audio_s": round(self.drive.seconds, 2),
            "outcome": summary["outcome"],
            "resolved_tasks": summary["resolved_tasks"],
            "secret_inputs": {"masked": [m.to_json() for m in self.call.masked], "supplied": self.secrets_supplied,
                              "note": self.secret_note},
            "timeline": self.timeline(),
            "e2e_ms": latency.get("e2e", {}),
            "wall": {
                "replay_s": round(self.wall_s, 3),
                "x_realtime": round(self.speed, 1),
                "latency_ms": {k: v for k, v in latency.items() if k != "e2e"},
                "engine_seconds": summary["engine_seconds"],
                "budget_breaches": summary["budget_breaches"],
            },
        }


def scratch_database(path: Path, settings: Settings, *, own_key: bool = True) -> Any:
    """A fresh SQLite database with the schema of the core and of the enabled plugins, and the sample data each
    of those plugins seeds, for actions that must not touch real data. Its audit trail is keyed with a key of its
    own (``own_key``) or, when it is kept for inspection, with this process's audit key; it writes no checkpoints."""
    from voiceivr.audit.config import bind, scratch_config
    from voiceivr.db import migrate
    from voiceivr.db.engine import make_engine
    from voiceivr.db.plugins import enabled_schemas

    engine = make_engine(f"sqlite:///{path}")
    bind(engine, scratch_config(path.parent, own_key=own_key, every_rows=0, every_s=0))
    migrate.upgrade(engine, plugins=settings.plugins.enabled)
    for _name, schema in enabled_schemas(settings.plugins.enabled):
        if schema.seed is not None:
            schema.seed(engine)
    return engine


def run_replay(
    runtime: CallRuntime,
    call: RecordedCall,
    *,
    echo: EchoPath | None = None,
    realtime: bool = False,
    tail_s: float = 3.0,
    secrets: list[str] | None = None,
) -> ReplayResult:
    """``secrets``: values for the recording's masked inputs, in order (ValueError if they do not fit)."""
    given, supplied = supply(call.masked, secrets or [], call.agent, call.rate)
    if given:
        call = dataclasses.replace(call, control=sorted([*call.control, *given], key=lambda pair: pair[0]))
    call_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"replay:{call.source.resolve()}"))
    sip = call.sip
    remote = sip.get("remote_media") or {}
    binding = SessionBinding(call_id, str(sip.get("sip_call_id", "")), str(sip.get("local_tag", "")),
                             str(sip.get("remote_tag", "")),
                             f"{remote.get('host')}:{remote.get('port')}" if remote else "")
    media = MediaChannel(call.rate)
    session, _brain, choice = runtime.new_session(call_id, media, binding, now=call.started_at)
    started = dt.datetime.now(dt.UTC)
    if runtime.store is not None:
        runtime.store.call_started(call_id, source="replay", dialplan_version_id=choice.version_id,
                                   started_at=started)
    t0 = time.perf_counter()
    if realtime:
        result = _drive_realtime(session, call, echo, tail_s)
    else:
        result = drive(session, call.caller, control=call.control, echo=echo, tail_s=tail_s)
    wall = time.perf_counter() - t0
    if runtime.store is not None:
        runtime.store.call_ended(call_id, session.timeline, session.summary(), started)
    return ReplayResult(call, session, result, wall, choice.label, supplied)


def _drive_realtime(session: CallSession, call: RecordedCall, echo: EchoPath | None, tail_s: float) -> DriveResult:
    """The same ticks as ``drive``, paced at 20 ms of wall time each (to listen along, or test timing)."""
    frame_s = FRAME_MS / 1000
    start = time.monotonic()
    ticks_done = 0

    class _Paced:
        """Wraps the session so each tick waits for its wall-clock moment."""

        def __getattr__(self, name: str) -> Any:
            return getattr(session, name)

        def process(self, frame: Any) -> None:
            nonlocal ticks_done
            ticks_done += 1
            delay = start + ticks_done * frame_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            session.process(frame)

    return drive(_Paced(), call.caller, control=call.control, echo=echo, tail_s=tail_s)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- printing


def _line(e: ev.Event) -> str | None:
    t = f"{e.t:7.2f}s"
    if isinstance(e, ev.PromptStarted):
        return f"{t}  agent     [{e.kind}] {e.text}"
    if isinstance(e, ev.PromptCut):
        return f"{t}  agent     cut after {e.played_ms} ms, {e.words_heard}/{e.words_total} words heard"
    if isinstance(e, ev.BargeIn):
        return f"{t}  barge-in  speech at {e.onset:.2f}s, decided {1000 * (e.t - e.onset):.0f} ms later"
    if isinstance(e, ev.SpeechStarted):
        return f"{t}  caller    speech starts" + (" (over a prompt)" if e.during_prompt else "")
    if isinstance(e, ev.TranscriptFinal):
        if e.ignored:
            return f"{t}  caller    (ignored: {e.ignored})"
        said = MASK if e.secret else repr(e.text)
        heard = f", open transcript {e.open_text!r}" if e.open_text and not e.secret else ""
        return f"{t}  caller    said {said} ({e.speech_start:.2f}-{e.speech_end:.2f}s, conf {e.confidence:.2f}{heard})"
    if isinstance(e, ev.DigitsCollected):
        return f"{t}  caller    keyed {MASK if e.secret else repr(e.digits)} ({e.reason})"
    if isinstance(e, ev.IntentRecognized):
        return f"{t}  intent    {e.intent or '(unsure)'} tier {e.tier} conf {e.confidence:.2f}"
    if isinstance(e, ev.NoInput):
        return f"{t}  caller    no input ({e.count})"
    if isinstance(e, ev.EchoSuppressed):
        return f"{t}  echo      our own prompt on the line, not taken for speech"
    if isinstance(e, ev.Note):
        d = e.detail
        if e.kind == "gate":
            extra = ", ".join(f"{k}={v}" for k, v in d.items()
                              if k not in ("call", "request_id") and v not in ("", None))
            return f"{t}  policy    {d.get('call')} {extra}"
        if e.kind in ("action_requested", "action_result", "transition", "slot", "rewind", "correction"):
            return f"{t}  {e.kind.split('_')[0]:<9} {json.dumps(d, sort_keys=True, default=str)}"
        return None
    if isinstance(e, ev.Transfer):
        return f"{t}  transfer  to {e.target}"
    if isinstance(e, ev.CallEnded):
        return f"{t}  end       {e.outcome} ({e.reason})"
    return None


def print_report(result: ReplayResult, out: TextIO | None = None) -> None:
    echo = click.echo
    echo(f"replay of {result.call.source} ({result.drive.seconds:.1f} s of audio) with {result.dialplan}", file=out)
    if result.secret_note:
        echo(f"note: {result.secret_note}", file=out)
    for e in result.session.timeline:
        line = _line(e)
        if line:
            echo(line, file=out)
    summary = result.session.summary()
    echo("", file=out)
    echo(f"{'stage':<10} {'n':>3} {'p50 ms':>8} {'p95 ms':>8} {'budget':>7}", file=out)
    for stage, row in summary["latency"].items():
        echo(f"{stage:<10} {int(row['count']):>3} {row['p50']:>8.1f} {row['p95']:>8.1f} {row['budget']:>7.0f}",
             file=out)
    echo(f"outcome {summary['outcome']}, resolved tasks {summary['resolved_tasks']}, "
         f"engine-seconds {sum(summary['engine_seconds'].values()):.3f}, "
         f"replayed at {result.speed:.0f}x real time", file=out)
