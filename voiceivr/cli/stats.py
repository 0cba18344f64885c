"""``voiceivr stats``: the command and its output; the figures are :func:`voiceivr.stats.compute_stats`."""

from __future__ import annotations

import datetime as dt
import json

import click

from voiceivr.app import AppContext, pass_app
from voiceivr.errors import VoiceivrError
from voiceivr.stats import compute_stats, parse_when


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.0f}"  # NaN: no samples


@click.command()
@click.option("--since", default="24h", show_default=True, help="Start: ISO time or a span ago (30m, 2h, 7d).")
@click.option("--until", default=None, help="End: ISO time or a span ago (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def stats(app: AppContext, since: str, until: str | None, as_json: bool) -> None:
    """Latency per stage, outcomes, barge-ins, breaches and cost of the calls in a time range."""
    start = parse_when(since)
    end = parse_when(until) if until else dt.datetime.now(dt.UTC)
    if end <= start:
        raise VoiceivrError(f"--until ({end.isoformat()}) is not after --since ({start.isoformat()})")
    report = compute_stats(app.ready_engine(), start, end)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
        return
    click.echo(f"calls {report['calls']} from {report['since']} to {report['until']}")
    click.echo("outcomes: " + (", ".join(f"{k} {v}" for k, v in sorted(report["outcomes"].items())) or "none"))
    bd = report["barge_in_decision_ms"]
    click.echo(f"barge-ins {report['barge_ins']} (decision p50 {_fmt(bd['p50'])} ms, p95 {_fmt(bd['p95'])} ms), "
               f"errors {report['errors']}, lost {report['lost']}, resolved tasks {report['resolved_tasks']}")
    click.echo(f"{'stage':<10} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'breaches':>9}")
    for stage, s in report["stages"].items():
        click.echo(f"{stage:<10} {s['count']:>6} {_fmt(s['p50']):>8} {_fmt(s['p95']):>8} {s['breaches']:>9}")
    es = report["engine_seconds"]
    click.echo(f"engine-seconds: total {es['total']}, per call {es['per_call']}, "
               f"per resolved task {es['per_resolved_task']}")
    _by_version(report["by_version"])


def _by_version(rows: list[dict[str, object]]) -> None:
    """Outcomes per dialplan version, side by side: count and share of the version's calls."""
    if not rows:
        return
    names = sorted({k for r in rows for k in r["outcomes"]})  # type: ignore[attr-defined]
    click.echo("outcomes per dialplan version:")
    click.echo(f"{'version':<22} {'calls':>6} " + " ".join(f"{n[:14]:>14}" for n in names)
               + f" {'tasks/call':>10} {'dur p50 s':>9}")
    for r in rows:
        outcomes: dict[str, int] = r["outcomes"]  # type: ignore[assignment]
        share: dict[str, float] = r["outcome_share"]  # type: ignore[assignment]
        cells = " ".join(f"{f'{outcomes[n]} ({share[n]:.0%})' if n in outcomes else '-':>14}" for n in names)
        dur: dict[str, float] = r["duration_s"]  # type: ignore[assignment]
        click.echo(f"{str(r['label'])[:22]:<22} {r['calls']:>6} {cells} {r['resolved_per_call']:>10} "
                   f"{_fmt(dur['p50']):>9}")
