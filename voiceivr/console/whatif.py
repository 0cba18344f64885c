"""What-if: replay recorded calls against the live version and against a draft, and say per call what changed.

Each side gets the whole pipeline of ``voiceivr replay`` (the same engines, a scratch database seeded by the
enabled plugins, a prompt cache of its own), so the only difference between the two runs of a call is the
dialplan. Recordings hold no PIN or one-time code: a replay runs without them, as ``voiceivr replay`` does, and
says so; both sides lack the same inputs, so what differs is still the draft's doing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import re
import tempfile
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.errors import VoiceivrError
from voiceivr.settings import Settings

MAX_CHOSEN = 20


@dataclass(frozen=True)
class Recording:
    call_id: str
    path: Path
    recorded_at: dt.datetime
    seconds: float | None


def recordings(settings: Settings, limit: int = 50) -> list[Recording]:
    """The newest SIP-edge recordings (``<recording dir>/<date>/<call_id>.json``), newest first."""
    root = settings.recordings_dir()
    if not root.is_dir():
        return []
    found = sorted(root.glob("*/*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
    return [Recording(p.stem, p, dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC), _duration(p)) for p in found]


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def recording_of(settings: Settings, call_id: str) -> Path | None:
    """The recording of one call, if there is one (the id must be a call id: it is never a pattern or a path)."""
    root = settings.recordings_dir()
    if not UUID_RE.match(call_id) or not root.is_dir():
        return None
    return next(iter(sorted(root.glob(f"*/{call_id}.json"))), None)


def playable_wav(path: Path) -> bytes:
    """A recording as a 16-bit PCM stereo WAV (caller left, agent right) that any browser plays; the file itself
    may be G.711. Secret input is already silence in it (docs/recordings.md)."""
    from voiceivr.replay import load_call

    call = load_call(path)
    agent = call.agent if call.agent is not None else np.zeros_like(call.caller)
    frames = np.stack([np.asarray(call.caller, dtype="<i2"), np.asarray(agent, dtype="<i2")], axis=1)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(call.rate)
        w.writeframes(frames.tobytes())
    return out.getvalue()


def _duration(path: Path) -> float | None:
    """The recording's own ``duration_s``, if its JSON is small enough to be a recording and says so."""
    try:
        if path.stat().st_size > 4 * 1024 * 1024:
            return None
        value = json.loads(path.read_text(encoding="utf-8")).get("duration_s")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Behaviour:
    """What one replay of a call did, in the terms an admin compares."""

    intents: list[str] = field(default_factory=list)
    outcome: str = ""
    actions: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, timeline: list[dict[str, Any]], outcome: str) -> Behaviour:
        intents = [str(e["intent"]) for e in timeline if e["type"] == "IntentRecognized"]
        actions = [f"{e['detail'].get('action')} ({'ok' if e['detail'].get('ok') else 'failed'})"
                   for e in timeline if e["type"] == "Note" and e.get("kind") == "action_result"]
        prompts = [str(e["text"]) for e in timeline if e["type"] == "PromptStarted"]  # what began to play
        return cls(intents, outcome or "", actions, prompts)


@dataclass(frozen=True)
class CallDiff:
    recording: Recording
    live: Behaviour | None = None
    draft: Behaviour | None = None
    error: str = ""
    note: str = ""  # secret inputs the recording lacks
    # What the agent said on each side, as WAV files (mono, the call's rate); not part of to_json().
    live_audio: bytes = field(default=b"", repr=False)
    draft_audio: bytes = field(default=b"", repr=False)

    @property
    def changed(self) -> list[str]:
        if self.live is None or self.draft is None:
            return []
        return [f.name for f in dataclasses.fields(Behaviour)
                if getattr(self.live, f.name) != getattr(self.draft, f.name)]

    def to_json(self) -> dict[str, Any]:
        live, draft = self.live or Behaviour(), self.draft or Behaviour()
        return {
            "call_id": self.recording.call_id, "recorded_at": self.recording.recorded_at.isoformat(timespec="seconds"),
            "error": self.error, "note": self.note, "changed": self.changed,
            "live": dataclasses.asdict(live), "draft": dataclasses.asdict(draft),
            "prompts_gone": [p for p in live.prompts if p not in draft.prompts],
            "prompts_new": [p for p in draft.prompts if p not in live.prompts],
        }


@contextmanager
def _runtime(settings: Settings, text: str, workdir: Path) -> Iterator[Any]:
    from voiceivr.call.budget import StageStats
    from voiceivr.replay import scratch_database
    from voiceivr.runtime import CallRuntime

    workdir.mkdir()
    plan = workdir / "dialplan.yaml"
    plan.write_text(text, encoding="utf-8")
    # A prompt cache of its own: espeak-ng's output depends on what it synthesised before (see voiceivr.replay).
    settings = dataclasses.replace(settings, speech=dataclasses.replace(
        settings.speech, prompt_cache_dir=str(workdir / "prompts")))
    db = scratch_database(workdir / "scratch.sqlite3", settings)
    runtime = CallRuntime.build(settings, db=db, dialplan_file=plan, stt_workers=0, store_calls=False,
                                stats=StageStats())
    try:
        yield runtime
    finally:
        runtime.close()
        db.dispose()


def wav_bytes(pcm: Any, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return out.getvalue()


def _replay(runtime: Any, recording: Recording) -> tuple[Behaviour, str, bytes]:
    from voiceivr.replay import load_call, run_replay

    result = run_replay(runtime, load_call(recording.path))
    behaviour = Behaviour.of(result.timeline(), str(result.session.summary()["outcome"]))
    return behaviour, result.secret_note, wav_bytes(result.drive.agent, result.call.rate)


def compare(settings: Settings, live_text: str, draft_text: str, chosen: list[Recording]) -> list[CallDiff]:
    """Each chosen call replayed against both versions. A call that cannot be replayed (a damaged recording) is
    reported as such; the others go on."""
    diffs: dict[str, CallDiff] = {r.call_id: CallDiff(r) for r in chosen}
    with tempfile.TemporaryDirectory(prefix="voiceivr-whatif-") as tmp:
        for side, text in (("live", live_text), ("draft", draft_text)):
            with _runtime(settings, text, Path(tmp) / side) as runtime:
                for r in chosen:
                    if diffs[r.call_id].error:
                        continue
                    try:
                        behaviour, note, audio = _replay(runtime, r)
                    except (VoiceivrError, ValueError, OSError) as exc:
                        diffs[r.call_id] = CallDiff(r, error=f"cannot replay this recording: {exc}")
                        continue
                    d = diffs[r.call_id]
                    diffs[r.call_id] = (dataclasses.replace(d, live=behaviour, live_audio=audio) if side == "live"
                                        else dataclasses.replace(d, draft=behaviour, note=note, draft_audio=audio))
    return [diffs[r.call_id] for r in chosen]
