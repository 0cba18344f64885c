"""``voiceivr audit``: verify, checkpoint, read and export the tamper-evident audit trail."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import click
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from voiceivr.app import AppContext, pass_app
from voiceivr.audit.chain import AuditTrail, canonical_time
from voiceivr.audit.records import AuditRecord
from voiceivr.errors import ConfigError


@click.group()
def audit() -> None:
    """The keyed, hash-chained, append-only audit trail and its signed checkpoints."""


@audit.command()
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also hold the trail against the checkpoints in this file (written by `voiceivr audit checkpoint -o`, "
    "a copy of the checkpoint file, or checkpoint lines taken from syslog). Repeatable.",
)
@pass_app
def verify(app: AppContext, checkpoint_files: tuple[Path, ...]) -> None:
    """Walk the whole chain and check every checkpoint of audit.checkpoint_file (and --checkpoint files).

    Exit 0 if intact; exit 1 naming the first forged, altered or missing row, or the checkpoint the trail no
    longer reaches. Needs the audit key (audit.key / audit.key_file).
    """
    report = AuditTrail(app.ready_engine()).verify(checkpoint_files=checkpoint_files)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    if report.ok:
        click.echo(report.summary())
        return
    click.echo(report.summary(), err=True)
    sys.exit(1)


@audit.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also append the signed checkpoint to this file (keep it where the database cannot reach).")
@pass_app
def checkpoint(app: AppContext, output: Path | None) -> None:
    """Sign the head of the trail now and append it to audit.checkpoint_file (workers also do this on their own,
    every audit.checkpoint_every_rows rows and audit.checkpoint_every_s seconds)."""
    trail = AuditTrail(app.ready_engine())
    cp = trail.checkpoint(also_to=output)
    click.echo(f"seq {cp.seq} hash {cp.head}")
    places = [str(p) for p in (trail.config.checkpoint_file, output) if p is not None]
    click.echo(f"signed with key {cp.key_id} at {cp.time}; written to {' and '.join(places) or 'nowhere'}")


@audit.command()
@pass_app
def keys(app: AppContext) -> None:
    """List the audit keys by id, with the Ed25519 public key each signs checkpoints with (give these to an
    auditor: they check checkpoints, they cannot make one)."""
    from voiceivr.audit.config import AuditConfig

    keyring = AuditConfig.from_settings(app.settings, automatic=False).keys()
    for key in keyring.keys:
        mark = "  (current)" if key is keyring.current else ""
        click.echo(f"{key.key_id}  ed25519:{key.public_hex()}{mark}")


@audit.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", "public_keys", multiple=True, metavar="HEX",
              help="Check signatures with this Ed25519 public key (from `voiceivr audit keys`) instead of the "
              "audit key; repeatable. An auditor needs nothing else.")
@pass_app
def checkpoints(app: AppContext, file: Path | None, public_keys: tuple[str, ...]) -> None:
    """Check the signature of every checkpoint in FILE (default: audit.checkpoint_file); print the newest.

    Exit 1 if any line is not a checkpoint or its signature does not verify.
    """
    from voiceivr.audit.checkpoints import keyring_public_keys, public_keys_from_hex, read_checkpoints
    from voiceivr.audit.config import AuditConfig

    config = AuditConfig.from_settings(app.settings, automatic=False)
    path = file or config.checkpoint_file
    if path is None:
        raise ConfigError("no checkpoint file", hint="name one, or set audit.checkpoint_file")
    lookup = public_keys_from_hex(public_keys) if public_keys else keyring_public_keys(config.keys())
    lines = read_checkpoints(path, lookup, allow_unsigned=False)
    for problem in lines.problems:
        click.echo(problem, err=True)
    newest = lines.newest
    click.echo(f"{path}: {len(lines.anchors)} checkpoint(s) with good signatures, {len(lines.problems)} bad"
               + (f"; newest seq {newest.seq} hash {newest.hash} {newest.source}" if newest else ""))
    if lines.problems:
        sys.exit(1)


@audit.command()
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(min=1))
@pass_app
def tail(app: AppContext, count: int) -> None:
    """Print the newest rows."""
    for r in AuditTrail(app.ready_engine()).tail(count):
        click.echo(
            f"{r.seq:>8}  {canonical_time(r.created_at)}  {r.kind:<24} {r.actor:<10} "
            f"call={r.call_id or '-'}  {r.payload}"
        )


@audit.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--since-seq", default=0, type=click.IntRange(min=0), help="Only rows after this sequence.")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-")
@pass_app
def export(app: AppContext, fmt: str, since_seq: int, output: TextIO) -> None:
    """Write every row, with its links and key ids, one JSON object per line (a verifier holding the key, or an
    auditor comparing heads with signed checkpoints, can recheck it)."""
    for r in AuditTrail(app.ready_engine()).rows(since_seq=since_seq):
        output.write(json.dumps(r.as_dict(), ensure_ascii=False, sort_keys=True) + "\n")


# --- after `voiceivr db upgrade` (the wiring hands these to voiceivr.cli.db.after_upgrade) ---------------


def _make_audit_key_note(engine: Engine) -> str | None:
    made = _make_audit_key(engine)
    if made is None:
        return None
    return f"generated the audit key {made} (one node; nodes sharing the database need the same key)"


def _seal_legacy_audit_rows_note(engine: Engine) -> str | None:
    sealed = _seal_legacy_audit_rows(engine)
    if sealed is None:
        return None
    return (f"audit trail: {sealed.seq - 1} legacy SHA-256 rows sealed by keyed row {sealed.seq} "
            f"(key {sealed.key_id})")


def _make_audit_key(engine: Engine) -> Path | None:
    """An unconfigured single node gets its audit key now rather than at its first append, so `audit verify`
    works from the start and no worker races to make it."""
    from voiceivr.audit.config import binding_for

    config = binding_for(engine).config
    if not config.generate_key or config.key_file is None or config.key_file.exists():
        return None
    config.keys(create=True)
    return config.key_file


def _seal_legacy_audit_rows(engine: Engine) -> AuditRecord | None:
    """Right after the keyed chain arrives (0005), vouch for the rows written before it: a keyed row whose MAC
    covers the last legacy link, before anyone else can append a legacy row that would then be vouched for."""
    if "key_id" not in {c["name"] for c in sa.inspect(engine).get_columns("audit_events")}:
        return None  # upgraded to a revision before 0005
    from voiceivr.audit.chain import seal_legacy_rows

    return seal_legacy_rows(engine)


AFTER_DB_UPGRADE: tuple[Callable[[Engine], str | None], ...] = (_make_audit_key_note, _seal_legacy_audit_rows_note)
