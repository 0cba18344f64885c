"""Published dialplan versions (table ``dialplan_versions``) and the live version new calls get.

``publish`` validates first: an invalid dialplan is refused and the live version stays. A version is the
YAML exactly as published, its sha256 and a number per dialplan name; the newest version of a name is live.

The server holds one :class:`LiveDialplans` and asks it, for each new call, :meth:`LiveDialplans.for_new_call`:
two cheap queries (the newest version's id, and the A/B split of :mod:`voiceivr.dialplan.split`, if any); a
version not seen before is loaded, validated and given its router (example embeddings) once, then cached. A
call keeps the :class:`LiveVersion` it started with, so a newly published version reaches new calls only and
never touches calls in progress. Record the version on the call with :func:`record_call`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from voiceivr.actions.registry import ActionRegistry
from voiceivr.db.models import Call, DialplanVersion
from voiceivr.dialplan.loader import load_text, sha256_text
from voiceivr.dialplan.model import Dialplan
from voiceivr.dialplan.router import IntentRouter
from voiceivr.dialplan.split import get_split, takes_split
from voiceivr.errors import VoiceivrError

log = logging.getLogger(__name__)
versions_t: sa.Table = DialplanVersion.__table__  # type: ignore[assignment]
calls_t: sa.Table = Call.__table__  # type: ignore[assignment]


class NoLiveDialplan(VoiceivrError):
    pass


@dataclass(frozen=True)
class VersionRow:
    id: int
    name: str
    version: int
    sha256: str
    published_at: dt.datetime
    published_by: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class PublishResult:
    version: VersionRow
    created: bool  # False: identical to the live version, nothing stored


def _row(m: sa.RowMapping) -> VersionRow:
    return VersionRow(m["id"], m["name"], m["version"], m["sha256"], m["published_at"], m["published_by"],
                      m["source"], m["note"])


def publish(
    engine: Engine, text: str, filename: str, registry: ActionRegistry, published_by: str = "", note: str = "",
    within: Callable[[Connection, VersionRow], None] | None = None,
) -> PublishResult:
    """Validate and store a new version; raises DialplanInvalid (nothing stored) if it has any problem.

    ``within`` runs in the same transaction once a new version is stored (e.g. to append its audit row, so
    the version and its audit row commit together or not at all)."""
    plan = load_text(text, filename, registry)
    digest = sha256_text(text)
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # Serialise publishers of one name so version numbers never collide.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": f"dialplan:{plan.name}"})
        newest = conn.execute(
            sa.select(versions_t).where(versions_t.c.name == plan.name).order_by(versions_t.c.version.desc()).limit(1)
        ).mappings().first()
        same = conn.execute(
            sa.select(versions_t).where(versions_t.c.name == plan.name, versions_t.c.sha256 == digest)
        ).mappings().first()
        if same is not None:
            if newest is not None and same["id"] == newest["id"]:
                return PublishResult(_row(same), created=False)
            raise VoiceivrError(
                f"{filename}: identical to {plan.name} version {same['version']}, which is no longer live",
                hint="published versions never change; to bring that content back, edit the file (a comment "
                     "will do) and publish it as a new version",
            )
        number = (newest["version"] if newest else 0) + 1
        new_id = conn.execute(versions_t.insert().values(
            name=plan.name, version=number, sha256=digest, source=text, published_at=dt.datetime.now(dt.UTC),
            published_by=published_by, note=note,
        ).returning(versions_t.c.id)).scalar_one()
        row = conn.execute(sa.select(versions_t).where(versions_t.c.id == new_id)).mappings().one()
        if within is not None:
            within(conn, _row(row))
    log.info("dialplan published", extra={"dialplan": plan.name, "version": number, "version_id": new_id})
    return PublishResult(_row(row), created=True)


def rollback(engine: Engine, name: str, version: int, registry: ActionRegistry, published_by: str = "",
             note: str = "", within: Callable[[Connection, VersionRow], None] | None = None) -> PublishResult:
    """Publish an earlier version's text again as the new live version.

    Versions never change and each content is stored once, so the text gets a comment line saying what it is;
    the rest is byte for byte the earlier version.
    """
    earlier = get_version(engine, name, version)
    live = get_version(engine, name)
    if live.version == earlier.version:
        raise VoiceivrError(f"{name} version {version} is already the live one", hint="pick an earlier version")
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = earlier.source if earlier.source.endswith("\n") else earlier.source + "\n"
    text += f"# rollback to version {version} at {when}{' by ' + published_by if published_by else ''}\n"
    why = f"rollback to version {version}" + (f": {note}" if note else "")
    return publish(engine, text, f"{name} v{version}", registry, published_by, why, within)


def list_versions(engine: Engine, name: str | None = None) -> list[VersionRow]:
    q = sa.select(versions_t).order_by(versions_t.c.name, versions_t.c.version)
    if name:
        q = q.where(versions_t.c.name == name)
    with engine.connect() as conn:
        return [_row(m) for m in conn.execute(q).mappings()]


def get_version(engine: Engine, name: str, version: int | None = None) -> VersionRow:
    q = sa.select(versions_t).where(versions_t.c.name == name)
    q = q.where(versions_t.c.version == version) if version is not None else q.order_by(
        versions_t.c.version.desc()).limit(1)
    with engine.connect() as conn:
        m = conn.execute(q).mappings().first()
    if m is None:
        what = f"{name} version {version}" if version is not None else name
        raise NoLiveDialplan(f"no published dialplan {what}", hint="publish one: voiceivr dialplan publish FILE")
    return _row(m)


@dataclass(frozen=True)
class LiveVersion:
    version_id: int
    version: int
    plan: Dialplan
    router: IntentRouter


class LiveDialplans:
    """The live version of one dialplan name, refreshed for new calls only. Thread-safe."""

    def __init__(self, engine: Engine, name: str, registry: ActionRegistry,
                 router_factory: Callable[[Dialplan], IntentRouter]) -> None:
        self.engine = engine
        self.name = name
        self.registry = registry
        self.router_factory = router_factory
        self._cache: dict[int, LiveVersion] = {}
        self._current: LiveVersion | None = None
        self._lock = threading.Lock()

    def for_new_call(self, key: str | None = None) -> LiveVersion:
        """The version a new call runs: the newest published one, or, while an A/B split of this name stands
        (:mod:`voiceivr.dialplan.split`), the split's version for the callers whose ``key`` (their number, else
        the call id) hashes into its share. Each version is loaded once; raises NoLiveDialplan if there is none.

        Two small queries per call (the newest version's id, the split): a version published from the console
        or the CLI reaches the next new call of a running server, with no restart."""
        with self.engine.connect() as conn:
            newest = conn.execute(
                sa.select(versions_t.c.id, versions_t.c.version)
                .where(versions_t.c.name == self.name).order_by(versions_t.c.version.desc()).limit(1)
            ).first()
            split = get_split(conn, self.name) if key is not None else None
            if newest is None:
                if self._current is not None:
                    return self._current
                raise NoLiveDialplan(f"no published dialplan named {self.name}",
                                     hint=f"publish it: voiceivr dialplan publish dialplans/{self.name}.yaml")
            live = self._load(conn, newest.id, newest.version, current=True)
            if split is None or split.version_id == live.version_id or key is None or not takes_split(split, key):
                return live
            try:
                return self._load(conn, split.version_id, split.version, current=False)
            except VoiceivrError as exc:  # a version that loaded once at its publish no longer does (code change)
                log.error("the split's dialplan version does not load; the call gets the live one",
                          extra={"dialplan": self.name, "version": split.version, "error": str(exc)})
                return live

    def _load(self, conn: Connection, version_id: int, version: int, *, current: bool) -> LiveVersion:
        with self._lock:
            cached = self._cache.get(version_id)
            if cached is not None:
                if current:
                    self._current = cached
                return cached
            source = conn.execute(sa.select(versions_t.c.source).where(versions_t.c.id == version_id)).scalar_one()
            try:
                plan = load_text(source, f"{self.name} v{version}", self.registry)
            except VoiceivrError as exc:
                # Validated at publish time; only a code change (e.g. a removed action) can get here.
                if self._current is None or not current:
                    raise
                log.error("newest dialplan version does not load; keeping the previous one",
                          extra={"dialplan": self.name, "version": version, "error": str(exc)})
                return self._current
            loaded = LiveVersion(version_id, version, plan, self.router_factory(plan))
            self._cache[version_id] = loaded
            if current:
                self._current = loaded
                log.info("new dialplan version live for new calls", extra={"dialplan": self.name, "version": version})
            return loaded


def record_call(engine: Engine, call_id: str, version_id: int | None, source: str = "sip",
                sip_call_id: str | None = None) -> None:
    """Create the call's row with the dialplan version that handles it (or set it, if the row exists)."""
    with engine.connect() as conn, conn.begin():
        exists = conn.execute(sa.select(calls_t.c.id).where(calls_t.c.id == call_id)).first()
        if exists:
            conn.execute(calls_t.update().where(calls_t.c.id == call_id).values(dialplan_version_id=version_id))
        else:
            conn.execute(calls_t.insert().values(
                id=call_id, started_at=dt.datetime.now(dt.UTC), node="", source=source, sip_call_id=sip_call_id,
                dialplan_version_id=version_id, resolved_tasks=0, engine_seconds=0.0, stats_json="{}"))
