"""What the console does with dialplan text: check it, run a text conversation through it, publish it, roll back.

A draft is text pasted or typed in the browser; it is refused before parsing when it is larger than a dialplan
file may be (``yamlpos.MAX_BYTES``), and the YAML loader's own limits (depth, values, alias expansion) refuse
bombs. A simulation's actions run against a scratch database of this process (the enabled plugins' sample
data), never against the operator's data.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from voiceivr import yamlpos
from voiceivr.actions.registry import ActionRegistry
from voiceivr.audit.chain import append_in_transaction
from voiceivr.console.accounts import Admin
from voiceivr.dialplan.loader import check_text, sha256_text
from voiceivr.dialplan.model import Dialplan
from voiceivr.dialplan.router import IntentRouter
from voiceivr.dialplan.simulate import SimInput, describe
from voiceivr.dialplan.store import PublishResult, VersionRow, publish, rollback
from voiceivr.errors import VoiceivrError
from voiceivr.settings import Settings
from voiceivr.yamlpos import Problem

MAX_DRAFT_BYTES = yamlpos.MAX_BYTES
MAX_NOTE_CHARS = 500
MAX_SIM_STEPS = 50
DTMF_KEYS = frozenset("0123456789*#")


class DraftRefused(VoiceivrError):
    """Input the console will not even parse (too big, not text, a bad simulation script)."""


def check_size(text: str) -> None:
    """Refuses text that is too big to be a dialplan, or is not text a file could hold (a lone surrogate from a
    JSON escape: the YAML reader would choke on it)."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise DraftRefused(f"the dialplan has a character that is not text (at character {exc.start + 1}); "
                           "nothing was checked or stored") from None
    if size > MAX_DRAFT_BYTES:
        raise DraftRefused(f"the dialplan is {size:,} bytes; at most {MAX_DRAFT_BYTES:,} are accepted "
                           "(a dialplan has a few kilobytes; check what was pasted)")


def problems_of(text: str, registry: ActionRegistry, filename: str = "draft") -> list[Problem]:
    """Every problem, at its line and column, exactly as ``voiceivr dialplan validate`` prints them."""
    check_size(text)
    return check_text(text, filename, registry)[1]


def parse_script(script: str) -> list[SimInput]:
    """One caller input per line: ``say TEXT``, ``dtmf DIGITS``, ``no-input`` or ``hangup`` (blank lines and
    lines starting with # are skipped; an ``at`` line is :func:`script_start`'s)."""
    steps: list[SimInput] = []
    try:
        script.encode("utf-8")
    except UnicodeEncodeError:
        raise DraftRefused("the caller's lines have a character that is not text") from None
    for n, raw in enumerate(script.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.lower().rstrip(":"), rest.strip()
        if word == "say" and rest:
            steps.append(SimInput("say", rest[:500]))
        elif word == "dtmf" and rest and set(rest) <= DTMF_KEYS:
            steps.append(SimInput("dtmf", rest[:64]))
        elif word == "at":
            continue
        elif word in ("no-input", "hangup") and not rest:
            steps.append(SimInput("no_input" if word == "no-input" else "hangup"))
        else:
            raise DraftRefused(f"caller line {n}: {line[:60]!r} is not a caller input",
                               hint="one per line: say TEXT, dtmf DIGITS (0-9 * #), no-input, hangup; "
                                    "at 2026-12-24T16:30-05:00 for when the call starts")
        if len(steps) > MAX_SIM_STEPS:
            raise DraftRefused(f"at most {MAX_SIM_STEPS} caller inputs per simulation")
    return steps


def script_start(script: str) -> dt.datetime | None:
    """An ``at 2026-12-24T16:30-05:00`` line: when the simulated call starts, for ``schedule:`` nodes (a time
    without an offset is UTC). None: now."""
    found: dt.datetime | None = None
    for n, raw in enumerate(script.splitlines(), 1):
        word, _, rest = raw.strip().partition(" ")
        if word.lower().rstrip(":") != "at":
            continue
        if found is not None:
            raise DraftRefused(f"caller line {n}: a call starts once; give one at line")
        try:
            found = dt.datetime.fromisoformat(rest.strip()[:40])
        except ValueError:
            raise DraftRefused(f"caller line {n}: {raw.strip()[:60]!r} is not a start time",
                               hint="at 2026-12-24T16:30-05:00 (a date, a time and its UTC offset)") from None
        if found.tzinfo is None:
            found = found.replace(tzinfo=dt.UTC)
    return found


@dataclass(frozen=True)
class Simulation:
    lines: list[str]
    ended: str


class Simulator:
    """Runs drafts through the engine of ``voiceivr dialplan simulate``, with actions against a scratch database
    made on first use and kept for this process."""

    def __init__(self, settings: Settings, registry: ActionRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._db: Engine | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._lock = threading.Lock()
        self._plans: OrderedDict[str, tuple[Dialplan, IntentRouter]] = OrderedDict()

    def scratch(self) -> Engine:
        from voiceivr.replay import scratch_database

        with self._lock:
            if self._db is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="voiceivr-console-")
                self._db = scratch_database(Path(self._tmp.name) / "simulate.sqlite3", self.settings)
            return self._db

    def run(self, text: str, script: str) -> Simulation:
        from voiceivr.dialplan import simulate as sim
        from voiceivr.dialplan.gates import gate_for
        from voiceivr.policy.gate import SessionBinding

        check_size(text)
        steps = parse_script(script)
        start = script_start(script)
        plan, router = self._built(text)
        call_id = str(uuid.uuid4())
        gate = gate_for(self.registry, self.scratch(), SessionBinding(call_id=call_id), settings=self.settings)
        result = sim.run(plan, steps, gate=gate, router=router, call_id=call_id, registry=self.registry,
                         today=start.date() if start else None, now=start)
        lines = [line for line in (describe(e) for e in result.events) if line]
        if result.unused_inputs:
            lines.append(f"({result.unused_inputs} input(s) not used: the call had ended)")
        return Simulation(lines, result.ended or "still open when the inputs ran out")

    def _built(self, text: str) -> tuple[Dialplan, IntentRouter]:
        """The draft's plan and router; the last few are kept, since an admin simulates one draft many times and
        embedding its examples costs more than the conversation."""
        from voiceivr.dialplan.loader import load_text
        from voiceivr.dialplan.router import make_router

        key = sha256_text(text)
        with self._lock:
            if key in self._plans:
                self._plans.move_to_end(key)
                return self._plans[key]
        plan = load_text(text, "draft", self.registry)
        s = self.settings.dialplan
        router = make_router(plan, list(s.tiers), embedding_model=s.embedding_model,
                             embedding_threads=s.embedding_threads, llm_url=s.llm_url, llm_model=s.llm_model,
                             llm_api_key=s.llm_api_key, llm_timeout_s=s.llm_timeout_s)
        with self._lock:
            self._plans[key] = (plan, router)
            while len(self._plans) > 4:
                self._plans.popitem(last=False)
        return plan, router

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()


def _audited(kind: str, admin: Admin, extra: dict[str, Any]) -> Any:
    def within(conn: Connection, v: VersionRow) -> None:
        append_in_transaction(conn, kind, {"dialplan": v.name, "version": v.version, "version_id": v.id,
                                           "sha256": v.sha256, **extra}, actor=admin.actor)
    return within


def clean_note(note: str) -> str:
    note = " ".join(note.split())
    if len(note) > MAX_NOTE_CHARS:
        raise DraftRefused(f"a note may have at most {MAX_NOTE_CHARS} characters")
    return note


def publish_draft(engine: Engine, text: str, registry: ActionRegistry, admin: Admin, note: str) -> PublishResult:
    """Validate and publish; the version and its audit row commit together. DialplanInvalid: nothing stored."""
    check_size(text)
    note = clean_note(note)
    return publish(engine, text, "draft", registry, admin.name, note, _audited("console.publish", admin,
                                                                               {"note": note}))


def rollback_to(engine: Engine, name: str, version: int, registry: ActionRegistry, admin: Admin,
                note: str) -> PublishResult:
    note = clean_note(note)
    return rollback(engine, name, version, registry, admin.name, note,
                    _audited("console.rollback", admin, {"to_version": version, "note": note}))


