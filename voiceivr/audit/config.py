"""Which keys and which checkpoint sink the audit trail of an engine uses.

Appends happen deep inside transactions (``append_in_transaction(conn, ...)``), far from the settings, so the
audit configuration is attached to the engine: the wiring that makes a production engine from settings binds
it (:func:`bind`; ``AppContext`` for the CLI, the call handler for workers), and a scratch engine (replay, the
abuse simulation) binds its own so it never writes into the real checkpoint file. An engine nobody bound uses
this process's keys (``load_settings()``) and no checkpoint file at all.
"""

from __future__ import annotations

import atexit
import logging
import secrets
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from voiceivr.audit.checkpoints import Checkpointer, CheckpointSink, HeadReader
from voiceivr.audit.keys import KEY_FILE, Keyring, generate_key_file, read_key_file
from voiceivr.errors import ConfigError
from voiceivr.settings import Settings, load_settings

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "audit-checkpoints.jsonl"


@dataclass
class AuditConfig:
    """Keys and checkpoints for one trail. ``keyring`` set: these keys; else ``key_text`` (audit.key), else
    ``key_file`` (generated there on first append only when ``generate_key`` -- the unconfigured default)."""

    keyring: Keyring | None = None
    key_text: str = ""
    key_file: Path | None = None
    generate_key: bool = False
    checkpoint_file: Path | None = None
    syslog: str = ""
    every_rows: int = 0
    every_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, automatic: bool = True) -> AuditConfig:
        a = settings.audit
        var_dir = Path(settings.paths.var_dir)
        if a.checkpoint_every_rows < 0 or a.checkpoint_every_s < 0:
            raise ConfigError("audit.checkpoint_every_rows and audit.checkpoint_every_s must be 0 or more",
                              hint="0 turns that trigger off")
        return cls(
            key_text=a.key,
            key_file=Path(a.key_file) if a.key_file else var_dir / KEY_FILE,
            generate_key=not a.key and not a.key_file,
            checkpoint_file=Path(a.checkpoint_file) if a.checkpoint_file else var_dir / CHECKPOINT_FILE,
            syslog=a.checkpoint_syslog,
            every_rows=a.checkpoint_every_rows if automatic else 0,
            every_s=a.checkpoint_every_s if automatic else 0.0,
        )

    @property
    def automatic(self) -> bool:
        return self.checkpoint_file is not None and (self.every_rows > 0 or self.every_s > 0)

    def keys(self, *, create: bool = False) -> Keyring:
        """The keyring. ``create``: an unconfigured single node makes its key on first append; verifying never
        does (a new key would only make every row fail), it says which setting to fill in instead."""
        if self.keyring is not None:
            return self.keyring
        with self._lock:
            if self.keyring is None:
                if self.key_text:
                    texts = [t.strip() for t in self.key_text.split(",") if t.strip()]
                    self.keyring = Keyring.from_secrets(texts, "audit.key")
                elif self.key_file is None:
                    raise ConfigError("no audit key configured", hint="set audit.key or audit.key_file")
                elif create and self.generate_key and not self.key_file.exists():
                    self.keyring = generate_key_file(self.key_file)
                else:
                    self.keyring = read_key_file(self.key_file)
            return self.keyring

    def sink(self) -> CheckpointSink | None:
        return CheckpointSink(self.checkpoint_file, self.syslog) if self.checkpoint_file is not None else None


def scratch_config(var_dir: Path, *, own_key: bool = True, every_rows: int = 100, every_s: float = 30.0
                   ) -> AuditConfig:
    """For a scratch database (a replay, a simulation): checkpoints into ``var_dir``, never the configured file;
    ``own_key``: a random key of its own (nothing will verify this trail later with the real key), else this
    process's key (someone will inspect the database with `voiceivr audit`)."""
    keyring = (Keyring.from_secrets([secrets.token_urlsafe(48)], "scratch") if own_key
               else AuditConfig.from_settings(load_settings()[0]).keys(create=True))
    return AuditConfig(keyring=keyring, checkpoint_file=Path(var_dir) / CHECKPOINT_FILE, every_rows=every_rows,
                       every_s=every_s)


@dataclass
class Binding:
    config: AuditConfig
    checkpointer: Checkpointer | None = None

    def ensure_checkpointer(self, read_head: HeadReader) -> Checkpointer | None:
        with _bindings_lock:  # two threads' first appends must not make two checkpointers
            if self.checkpointer is None and self.config.automatic:
                sink = self.config.sink()
                assert sink is not None
                self.checkpointer = Checkpointer(sink, lambda: self.config.keys(create=True).current, read_head,
                                                 self.config.every_rows, self.config.every_s)
                _live_checkpointers.add(self.checkpointer)
        return self.checkpointer


_bindings: weakref.WeakKeyDictionary[Engine, Binding] = weakref.WeakKeyDictionary()
_bindings_lock = threading.Lock()
_live_checkpointers: weakref.WeakSet[Checkpointer] = weakref.WeakSet()


def root_engine(engine: Any) -> Engine:
    # engine.execution_options(...) makes an OptionEngine that shares the pool; bind and look up its parent
    while hasattr(engine, "_proxied"):
        engine = engine._proxied
    return engine


def bind(engine: Engine, config: AuditConfig | Settings) -> Binding:
    """Give ``engine``'s trail these keys and this checkpoint sink (replacing any earlier binding)."""
    if isinstance(config, Settings):
        config = AuditConfig.from_settings(config)
    binding = Binding(config)
    with _bindings_lock:
        old = _bindings.get(root_engine(engine))
        _bindings[root_engine(engine)] = binding
    if old is not None and old.checkpointer is not None:
        _live_checkpointers.discard(old.checkpointer)
        _flush_logged(old.checkpointer)
    return binding


def binding_for(engine: Engine) -> Binding:
    root = root_engine(engine)
    binding = _bindings.get(root)
    if binding is not None:
        return binding
    with _bindings_lock:
        binding = _bindings.get(root)
        if binding is None:
            # this process's keys; no checkpoint file, neither written nor read: an engine made outside the
            # wiring (a test, a tool on a scratch database) must not meet the checkpoints of the real trail
            config = AuditConfig.from_settings(load_settings()[0], automatic=False)
            config.checkpoint_file = None
            binding = Binding(config)
            _bindings[root] = binding
    return binding


def release(engine: Engine) -> None:
    """Before a scratch database goes away: checkpoint what is pending, then forget the engine's binding (so the
    exit-time flush does not reach for a database that no longer exists)."""
    with _bindings_lock:
        binding = _bindings.pop(root_engine(engine), None)
    if binding is not None and binding.checkpointer is not None:
        _live_checkpointers.discard(binding.checkpointer)
        _flush_logged(binding.checkpointer)


def _flush_logged(checkpointer: Checkpointer) -> None:
    try:
        checkpointer.flush()
    except Exception as exc:  # report, and carry on: a stop must not fail for a checkpoint
        log.error("could not write the final audit checkpoint",
                  extra={"error": f"{type(exc).__name__}: {exc}"[:300], "path": str(checkpointer.sink.path)})


def flush_all() -> None:
    """Checkpoint what this process appended since its last checkpoint (at exit, so a clean stop leaves no
    unsigned tail)."""
    for checkpointer in list(_live_checkpointers):
        _flush_logged(checkpointer)


atexit.register(flush_all)
