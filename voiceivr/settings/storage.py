"""Where things are kept: the var directory, the database, the audit trail, logs and recordings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voiceivr.settings.fields import setting


@dataclass
class PathSettings:
    var_dir: Path = setting(Path("var"), "Where the SQLite database, recordings and caches live.")


@dataclass
class DatabaseSettings:
    url: str = setting(
        "",
        "SQLAlchemy URL. Empty means an SQLite file at <var_dir>/voiceivr.sqlite3. "
        "PostgreSQL: postgresql+psycopg://USER@HOST:PORT/DB.",
        secret=True,
    )
    connect_timeout_s: float = setting(5.0, "How long to wait for the database before giving up.", min=0.5, max=300)
    echo: bool = setting(False, "Log every SQL statement (debugging only).")


@dataclass
class AuditSettings:
    app_role: str = setting(
        "voiceivr_app",
        "PostgreSQL role the application connects as; `voiceivr db create-app-role` creates it with "
        "INSERT/SELECT only on audit_events.",
    )
    key: str = setting(
        "",
        "Keys of the audit chain's HMAC, comma-separated, oldest first, each at least 32 characters; the last "
        "one MACs new rows, earlier ones only verify older rows. Every node sharing the database needs the same "
        "keys; the database never holds them. Empty: read audit.key_file.",
        secret=True,
    )
    key_file: str = setting(
        "",
        "File of audit chain keys, one per line, oldest first (the last is current). Empty: <var_dir>/audit-key, "
        "generated (mode 0600) on the first append if missing -- fine for one node only.",
    )
    checkpoint_file: str = setting(
        "",
        "Append-only file of signed checkpoints (one JSON line each), somewhere the database's owner cannot "
        "write; `audit verify` checks the trail against it. Empty: <var_dir>/audit-checkpoints.jsonl.",
    )
    checkpoint_every_rows: int = setting(
        100, "Write a signed checkpoint each time the trail reaches a multiple of this many rows (0: never by count).",
        off=0, min=1, max=1_000_000,
    )
    checkpoint_every_s: float = setting(
        30.0, "...and at least this often (seconds) while a process appends rows (0: never by time).",
        off=0, min=0.05, max=86400,
    )
    checkpoint_syslog: str = setting(
        "", "Also send each checkpoint to syslog: /dev/log (a local socket) or host:port (UDP). Empty: off."
    )


@dataclass
class LogSettings:
    level: str = setting(
        "INFO", "Log level: DEBUG, INFO, WARNING, ERROR.", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    json: bool = setting(False, "One JSON object per log line instead of key=value text.")


@dataclass
class RecordingSettings:
    enabled: bool = setting(True, "Record every call: stereo WAV (caller left, agent right) + JSON events.")
    dir: str = setting("", "Where recordings go; empty means <var_dir>/recordings.")
