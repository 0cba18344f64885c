"""Signed checkpoints of the audit trail, kept outside the database.

A checkpoint says "at this time the trail had ``seq`` rows and its last link was ``head``", signed with Ed25519
(:mod:`voiceivr.audit.keys`). ``voiceivr audit verify`` checks the trail against every checkpoint it finds: a
trail with fewer rows than the newest one, or another link at a checkpoint's sequence number, was cut or
rewritten -- which no chain can show by itself, since a shortened chain is still a chain.

Checkpoints are useful only where the database's owner cannot reach: each is one JSON line appended to a file
(``audit.checkpoint_file``; opened with O_APPEND, locked, written in one call and fsynced, so the lines of many
processes stay whole) and, optionally, sent to syslog (``audit.checkpoint_syslog``), e.g. a remote log host.

Every process that appends writes them itself (:class:`Checkpointer`): a background thread signs the
*committed* head, read back from the database, every ``every_rows`` rows of the trail (when an append takes a
sequence number that is a multiple of it) and every ``every_s`` seconds while rows were appended. Lines may
land out of order when processes race; the newest checkpoint is the one with the highest sequence number.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from voiceivr.audit.keys import AuditKey, Keyring
from voiceivr.audit.records import canonical_json
from voiceivr.errors import ConfigError, VoiceivrError

log = logging.getLogger(__name__)

VERSION = 1
SYSLOG_TAG = "voiceivr-audit"
_SYSLOG_PRI = 14  # facility user, severity info


@dataclass(frozen=True)
class Checkpoint:
    """A head the trail must still have: the row at ``seq`` exists and carries ``hash``. ``source`` says where
    it came from (file and line, time), for the report."""

    seq: int
    hash: str
    source: str = ""


@dataclass(frozen=True)
class SignedCheckpoint:
    seq: int
    head: str
    time: str  # UTC, ISO 8601
    key_id: str
    by: str  # host:pid that wrote it (for people; it is signed like the rest)
    sig: str = ""  # Ed25519 over body(), hex

    def body(self) -> bytes:
        return canonical_json({"v": VERSION, "seq": self.seq, "head": self.head, "time": self.time,
                               "key_id": self.key_id, "by": self.by}).encode("utf-8")

    def line(self) -> str:
        return canonical_json({"v": VERSION, "seq": self.seq, "head": self.head, "time": self.time,
                               "key_id": self.key_id, "by": self.by, "sig": self.sig}) + "\n"

    @classmethod
    def sign(cls, key: AuditKey, seq: int, head: str, now: dt.datetime | None = None) -> SignedCheckpoint:
        when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        unsigned = cls(seq, head, when, key.key_id, f"{socket.gethostname()}:{os.getpid()}")
        return cls(seq, head, when, key.key_id, unsigned.by, key.signing_key.sign(unsigned.body()).hex())

    def signature_ok(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(bytes.fromhex(self.sig), self.body())
        except (InvalidSignature, ValueError):
            return False
        return True

    def anchor(self, where: str) -> Checkpoint:
        return Checkpoint(self.seq, self.head, f"{where} ({self.time})")


# ------------------------------------------------------------------------------------------- reading lines


class NotACheckpointFile(VoiceivrError):
    pass


def _parse(text: str) -> SignedCheckpoint | Checkpoint:
    """One line: a signed checkpoint, or the unsigned ``{"seq", "hash"}`` of ``audit checkpoint -o`` before
    signing existed. A prefix before the JSON (a syslog header) is skipped."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object")
    data = json.loads(text[start:])
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    cp: SignedCheckpoint | Checkpoint
    if "sig" in data:
        if data.get("v") != VERSION:
            raise ValueError(f"unknown checkpoint version {data.get('v')!r}")
        cp = SignedCheckpoint(int(data["seq"]), str(data["head"]), str(data["time"]), str(data["key_id"]),
                              str(data["by"]), str(data["sig"]))
        seq, digest = cp.seq, cp.head
    else:
        cp = Checkpoint(int(data["seq"]), str(data["hash"]))
        seq, digest = cp.seq, cp.hash
    if seq < 0 or len(digest) != 64:
        raise ValueError("impossible sequence number or head")
    return cp


@dataclass
class CheckpointLines:
    """What a checkpoint file holds: anchors whose signatures verified, and problems (each names file:line)."""

    anchors: list[Checkpoint]
    problems: list[str]

    @property
    def newest(self) -> Checkpoint | None:
        return max(self.anchors, key=lambda a: a.seq, default=None)


PublicKeys = Callable[[str], Sequence[Ed25519PublicKey]]  # key id -> the keys that may have signed it


def keyring_public_keys(keyring: Keyring) -> PublicKeys:
    def lookup(key_id: str) -> Sequence[Ed25519PublicKey]:
        key = keyring.get(key_id)
        return [key.public_key] if key is not None else []
    return lookup


def public_keys_from_hex(texts: Iterable[str]) -> PublicKeys:
    """An auditor's view: Ed25519 public keys (hex, as `voiceivr audit keys` prints them) without key ids, so
    a checkpoint is good if any of them verifies it."""
    keys: list[Ed25519PublicKey] = []
    for text in texts:
        raw = text.strip().removeprefix("ed25519:")
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw)))
        except ValueError:
            raise ConfigError(f"{text!r} is not an Ed25519 public key",
                              hint="give the 64 hex digits `voiceivr audit keys` prints after ed25519:") from None
    return lambda _key_id: keys


def read_checkpoints(path: Path, public_key: PublicKeys, *, allow_unsigned: bool) -> CheckpointLines:
    """Every line of ``path`` checked. A file that does not exist holds nothing; a file in which no line is a
    checkpoint is not a checkpoint file (one clear error); a bad line among good ones is a problem (tampering)."""
    try:
        with path.open("r", encoding="utf-8") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)  # no half-written line from a writer mid-append
            text = f.read()
    except FileNotFoundError:
        return CheckpointLines([], [])
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise VoiceivrError(f"{path}: cannot read checkpoints: {reason}") from None
    out = CheckpointLines([], [])
    parsed = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            cp = _parse(line)
        except (ValueError, KeyError, TypeError) as exc:
            out.problems.append(f"{where}: not a checkpoint ({exc})")
            continue
        parsed += 1
        if isinstance(cp, Checkpoint):
            if allow_unsigned:
                out.anchors.append(Checkpoint(cp.seq, cp.hash, f"{where} (unsigned)"))
            else:
                out.problems.append(f"{where}: an unsigned checkpoint where only signed ones are written")
            continue
        candidates = public_key(cp.key_id)
        if not candidates:
            out.problems.append(f"{where}: signed with key {cp.key_id}, which is not in the keyring")
        elif not any(cp.signature_ok(pk) for pk in candidates):
            out.problems.append(f"{where}: its signature does not verify (the checkpoint was altered or forged)")
        else:
            out.anchors.append(cp.anchor(where))
    if text.strip() and parsed == 0:
        raise NotACheckpointFile(
            f"{path}: not a checkpoint file",
            hint="expected JSON lines as written to audit.checkpoint_file or by `voiceivr audit checkpoint -o FILE`",
        )
    return out


# ------------------------------------------------------------------------------------------------- sinks


def append_line(path: Path, line: str) -> None:
    """Append one whole line and make it durable. Many processes may append to the same file at once."""
    data = line.encode("utf-8")
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        # O_APPEND puts every write at the end; the lock also keeps a reader from seeing half a line and keeps
        # lines whole on file systems that would interleave concurrent appends.
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:  # the new directory entry must survive a crash too
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def parse_syslog_address(text: str) -> str | tuple[str, int]:
    """``/dev/log`` (a local socket path) or ``host:port`` (UDP)."""
    if text.startswith("/"):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"audit.checkpoint_syslog = {text!r} is neither a socket path nor host:port",
            hint="use /dev/log for the local syslog daemon, or e.g. loghost.example.net:514 (UDP)",
        )
    return host.strip("[]"), int(port)


def send_syslog(address: str | tuple[str, int], line: str) -> None:
    message = f"<{_SYSLOG_PRI}>{SYSLOG_TAG}[{os.getpid()}]: {line.strip()}".encode()
    if isinstance(address, str):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.send(message)
        return
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.sendto(message, address)


@dataclass(frozen=True)
class CheckpointSink:
    """Where checkpoints go: a file, and syslog if configured."""

    path: Path
    syslog: str = ""

    def write(self, cp: SignedCheckpoint) -> None:
        line = cp.line()
        try:
            append_line(self.path, line)
        except OSError as exc:
            raise VoiceivrError(f"{self.path}: cannot append the audit checkpoint: {exc.strerror or exc}",
                                hint="audit.checkpoint_file must name a file in a directory this user may "
                                "write") from None
        if self.syslog:
            try:
                send_syslog(parse_syslog_address(self.syslog), line)
            except OSError as exc:
                # the file has it; a syslog outage must not stop appends
                log.warning("could not send the audit checkpoint to syslog",
                            extra={"syslog": self.syslog, "error": exc.strerror or str(exc)})


# --------------------------------------------------------------------------------------------- automatic

HeadReader = Callable[[], "tuple[int, str] | None"]


class Checkpointer:
    """Signs and writes checkpoints of the committed head for one process, off the appending thread.

    ``noted(seq)`` is all an append costs: it records that rows were appended and wakes the writer thread when
    ``seq`` is a multiple of ``every_rows`` (so the whole trail, not each process, is checkpointed every
    ``every_rows`` rows). The thread also wakes every ``every_s`` seconds while rows are waiting, and stops when
    none are (the next append starts it again). ``read_head`` returns the committed head after checking its
    link, so a forged head is never signed.

    An append notes its row before its transaction commits, so the head the thread reads may not include it
    yet: after a wake-up for row ``k * every_rows`` the thread looks again every ``RETRY_S`` until that row is
    committed (at most ``MAX_RETRIES`` times: a rolled-back row never will be, and the next append reuses its
    sequence number). Rows noted but never seen committed through ``MAX_STALE`` periods are given up on.
    """

    RETRY_S = 0.02
    MAX_RETRIES = 50
    MAX_STALE = 3

    def __init__(self, sink: CheckpointSink, key: Callable[[], AuditKey], read_head: HeadReader,
                 every_rows: int, every_s: float) -> None:
        self.sink = sink
        self._key = key
        self._read_head = read_head
        self.every_rows = every_rows
        self.every_s = every_s
        self._lock = threading.Lock()  # guards the counters and the thread handle
        self._write_lock = threading.Lock()  # one checkpoint at a time
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        # Counted in appends, not sequence numbers: a rolled-back row's number is taken by the next append.
        self._appended = 0  # appends this process noted
        self._settled = 0  # ...of which a checkpoint covers (or that were given up on as rolled back)
        self._highest = 0  # highest sequence number this process appended
        self._covered = 0  # highest sequence number this process has checkpointed
        self._target = 0  # a multiple of every_rows this process appended, not yet covered (0: none)
        self.last: SignedCheckpoint | None = None
        self.errors = 0

    @property
    def pending(self) -> bool:
        return self._appended > self._settled

    def noted(self, seq: int) -> None:
        due = bool(self.every_rows) and seq % self.every_rows == 0
        with self._lock:
            self._appended += 1
            self._highest = max(self._highest, seq)
            if due:
                self._target = max(self._target, seq)
            if self._thread is None or self._pid != os.getpid():  # none yet, or inherited through fork
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="audit-checkpoints", daemon=True)
                self._thread.start()
        if due:
            self._wake.set()

    def _run(self) -> None:
        retries = stale = 0
        while True:
            with self._lock:
                if self._target and retries >= self.MAX_RETRIES:
                    self._target, retries = 0, 0  # that row was rolled back (or is stuck): stop chasing it
                chasing = bool(self._target)
            timeout = self.RETRY_S if chasing and retries else (self.every_s if self.every_s > 0 else None)
            woken = self._wake.wait(timeout)
            self._wake.clear()
            with self._lock:
                if not self.pending:
                    self._thread = None
                    return
                goal = self._target  # a wake-up may have just set it
            written = self._write_logged(goal)
            with self._lock:
                chasing = bool(self._target)
            retries = retries + 1 if chasing else 0
            stale = 0 if written or chasing or woken else stale + 1
            if stale >= self.MAX_STALE:  # appends noted but never seen committed: rolled back
                with self._lock:
                    self._settled = self._appended
                stale = 0

    def _write_logged(self, goal: int) -> bool:
        try:
            return self.flush(goal) is not None
        except Exception as exc:  # the thread must outlive a database or disk hiccup
            self.errors += 1
            log.error("could not write an audit checkpoint",
                      extra={"error": f"{type(exc).__name__}: {exc}"[:300], "path": str(self.sink.path)})
            return False

    def flush(self, goal: int = 0) -> SignedCheckpoint | None:
        """Checkpoint the committed head now if this process appended since its last checkpoint and the head
        moved past that checkpoint (and reached ``goal``). Returns the checkpoint written, if any."""
        with self._write_lock:
            with self._lock:
                if not self.pending:
                    return None
                appended, highest = self._appended, self._highest
            head = self._read_head()
            if head is None or head[0] <= self._covered or head[0] < goal:
                return None  # nothing new committed yet
            cp = self.write(head)
            with self._lock:
                self._covered = max(self._covered, head[0])
                if head[0] >= highest:  # every row this process had appended is under it
                    self._settled = max(self._settled, appended)
                if self._target and self._target <= self._covered:
                    self._target = 0
            return cp

    def write(self, head: tuple[int, str]) -> SignedCheckpoint:
        cp = SignedCheckpoint.sign(self._key(), head[0], head[1])
        self.sink.write(cp)
        self.last = cp
        log.debug("audit checkpoint written", extra={"audit_seq": cp.seq, "path": str(self.sink.path)})
        return cp
