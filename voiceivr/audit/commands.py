"""``voiceivr audit``: verify, checkpoint, read and export the tamper-evident audit trail."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

import click

from voiceivr.app import AppContext, pass_app
from voiceivr.audit.chain import AuditTrail, Checkpoint, canonical_time


@click.group()
def audit() -> None:
    """The hash-chained, append-only audit trail."""


@audit.command()
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint written earlier by `voiceivr audit checkpoint -o`; also detects a truncated or "
    "rewritten tail.",
)
@pass_app
def verify(app: AppContext, checkpoint_file: Path | None) -> None:
    """Walk the whole chain. Exit 0 if intact; exit 1 naming the first bad sequence number."""
    checkpoint = Checkpoint.load(checkpoint_file) if checkpoint_file else None
    report = AuditTrail(app.ready_engine()).verify(checkpoint)
    if report.ok:
        click.echo(report.summary())
        if checkpoint is not None:
            click.echo(f"checkpoint seq {checkpoint.seq} matches")
        return
    click.echo(report.summary(), err=True)
    sys.exit(1)


@audit.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the head to this file (keep it somewhere the database cannot reach).")
@pass_app
def checkpoint(app: AppContext, output: Path | None) -> None:
    """Print the head of the trail (sequence number and hash)."""
    head = AuditTrail(app.ready_engine()).head()
    click.echo(f"seq {head.seq} hash {head.hash}")
    if output:
        head.save(output)
        click.echo(f"written to {output}")


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
    """Write every row, with its hashes, one JSON object per line (an outside verifier can recheck it)."""
    for r in AuditTrail(app.ready_engine()).rows(since_seq=since_seq):
        output.write(json.dumps(r.as_dict(), ensure_ascii=False, sort_keys=True) + "\n")
