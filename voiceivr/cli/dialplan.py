"""``voiceivr dialplan``: schema, validate, simulate, publish, list, show."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import click

from voiceivr.app import AppContext, pass_app
from voiceivr.dialplan.simulate import SimInput
from voiceivr.errors import VoiceivrError


@click.group()
def dialplan() -> None:
    """Check, try and publish the YAML call flows in dialplans/ (format: dialplans/README.md)."""


@dialplan.command()
def schema() -> None:
    """Print the JSON Schema of a dialplan file."""
    from voiceivr.dialplan.schema import dialplan_schema

    click.echo(json.dumps(dialplan_schema(), indent=2))


@dialplan.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def validate(app: AppContext, files: tuple[Path, ...]) -> None:
    """Check dialplans against the actions of the enabled plugins and the backends file (plugins.backends, checked
    too); print every problem as FILE:LINE:COL: MESSAGE and exit 1 if there is any."""
    from voiceivr.actions.backends import BackendsInvalid
    from voiceivr.actions.catalog import plugin_registry
    from voiceivr.dialplan.loader import DialplanInvalid, check_text, read_source

    try:
        registry = plugin_registry(app.settings)
    except BackendsInvalid as exc:  # the backends file (plugins.backends): every problem, as for a dialplan
        for p in exc.problems:
            click.echo(str(p))
        raise SystemExit(1) from None
    bad = 0
    for f in files:
        try:
            text = read_source(f)
        except DialplanInvalid as exc:
            for p in exc.problems:
                click.echo(str(p))
            bad += 1
            continue
        plan, problems = check_text(text, str(f), registry)
        for p in problems:
            click.echo(str(p))
        if problems:
            bad += 1
        elif plan is not None:
            click.echo(f"{f}: ok ({plan.name}: {len(plan.nodes)} nodes, {len(plan.intents)} intents, "
                       f"{len(plan.slots)} slots)")
    if bad:
        raise SystemExit(1)


class TierList(click.ParamType):
    """``--tiers 0,1``: router tiers, each 0-3 (the dialplan.tiers setting's range), at least one."""

    name = "TIERS"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        if not all(p.isdigit() and int(p) <= 3 for p in parts):
            self.fail(f"{value!r} is not a list of router tiers: give numbers 0-3 separated by commas, e.g. 0,1",
                      param, ctx)
        return [int(p) for p in parts]


DTMF_KEYS = frozenset("0123456789*#")


def _parse_steps(args: list[str]) -> list[SimInput]:
    steps: list[SimInput] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--say", "--dtmf"):
            if i + 1 >= len(args):
                raise click.UsageError(f"{a} needs a value")
            steps.append(_step("say" if a == "--say" else "dtmf", args[i + 1]))
            i += 2
        elif a.startswith("--say=") or a.startswith("--dtmf="):
            k, v = a[2:].split("=", 1)
            steps.append(_step(k, v))
            i += 1
        elif a == "--no-input":
            steps.append(SimInput("no_input"))
            i += 1
        elif a == "--hangup":
            steps.append(SimInput("hangup"))
            i += 1
        else:
            raise click.UsageError(f"unexpected {a!r}: use --say TEXT, --dtmf DIGITS, --no-input, --hangup")
    return steps


class CallStart(click.ParamType):
    """A date, or a date and time (an offset optional): what ``datetime.fromisoformat`` reads."""

    name = "YYYY-MM-DD[THH:MM[+HH:MM]]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip()
        try:
            if len(text) == 10:  # a date alone: midday, so the date is the same in every zone around it
                return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(12, 0))
            return dt.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not a date (2026-12-24) or a date and time (2026-12-24T16:30, "
                      "2026-12-24T16:30-05:00)", param, ctx)


def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found is a KeyError; "../x" a ValueError
        raise click.BadParameter(f"unknown time zone {name!r}; use an IANA name such as America/New_York") from None


def _call_start(when: dt.datetime | None, zone: dt.tzinfo) -> dt.datetime | None:
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def _step(kind: str, value: str) -> SimInput:
    if kind == "dtmf" and (not value or not set(value) <= DTMF_KEYS):
        raise click.UsageError(f"--dtmf {value!r}: keys are 0-9, * and #")
    return SimInput("say" if kind == "say" else "dtmf", value)


@dialplan.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole trace as JSON.")
@click.option("--tiers", type=TierList(), default=None,
              help="Router tiers, e.g. 0,1 (default: the dialplan.tiers setting).")
@click.option("--today", type=CallStart(), default=None,
              help="When the call starts: YYYY-MM-DD for date slots (12:00 for business hours), or "
                   "YYYY-MM-DDTHH:MM[+HH:MM] for schedule: nodes too.")
@click.option("--tz", "zone", default="UTC", show_default=True, callback=lambda _c, _p, v: _zone(v),
              help="The time zone of a --today without an offset (an IANA name, e.g. America/New_York).")
@click.pass_context
def simulate(ctx: click.Context, file: Path, as_json: bool, tiers: list[int] | None, today: dt.datetime | None,
             zone: dt.tzinfo) -> None:
    """Run a text conversation through the engine, in order:

    voiceivr dialplan simulate FILE --say "what's my balance" --dtmf 10000001 --dtmf 1234 --say savings

    Steps: --say TEXT, --dtmf DIGITS (one collection, e.g. a whole account number), --no-input, --hangup.
    Actions are the enabled plugins' and run against the configured database (voiceivr db upgrade; the demo
    plugin's data: voiceivr demo seed). High-risk actions
    need the safe path (voiceivr.policy); without it they are refused, never faked.
    """
    from voiceivr.actions.catalog import plugin_registry
    from voiceivr.dialplan import simulate as sim
    from voiceivr.dialplan.gates import gate_for
    from voiceivr.dialplan.loader import load_file
    from voiceivr.dialplan.router import make_router
    from voiceivr.policy.gate import SessionBinding

    app: AppContext = ctx.ensure_object(AppContext)
    steps = _parse_steps(list(ctx.args))
    registry = plugin_registry(app.settings)
    plan = load_file(file, registry)
    s = app.settings.dialplan
    tier_list = tiers or list(s.tiers)
    router = make_router(plan, tier_list, embedding_model=s.embedding_model, embedding_threads=s.embedding_threads,
                         llm_url=s.llm_url, llm_model=s.llm_model, llm_api_key=s.llm_api_key,
                         llm_timeout_s=s.llm_timeout_s)
    db = None
    note = ""
    try:
        db = app.ready_engine()
    except VoiceivrError as exc:
        note = f"note: no database ({exc}); actions that need one will fail"
    call_id = str(uuid.uuid4())
    gate = gate_for(registry, db, SessionBinding(call_id=call_id), settings=app.settings)
    now = _call_start(today, zone)
    result = sim.run(plan, steps, gate=gate, router=router, call_id=call_id, today=now.date() if now else None,
                     now=now, registry=registry)
    from voiceivr.policy.lowrisk import NO_SAFE_PATH, LowRiskOnlyGate

    if isinstance(gate, LowRiskOnlyGate):
        note = (note + "\n" if note else "") + f"note: {NO_SAFE_PATH}"
    if as_json:
        out = result.to_json()
        if note:
            out["note"] = note
        click.echo(json.dumps(out, indent=2))
        return
    if note:
        click.echo(note, err=True)
    for e in result.events:
        line = sim.describe(e)
        if line:
            click.echo(line)
    if result.unused_inputs:
        click.echo(f"({result.unused_inputs} input(s) not used: the call had ended)")
    click.echo(f"call {result.ended or 'still open when the inputs ran out'}")


@dialplan.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--by", "published_by", default="", help="Who publishes it (kept with the version).")
@click.option("--note", default="", help="Why (kept with the version; the console shows it).")
@pass_app
def publish(app: AppContext, file: Path, published_by: str, note: str) -> None:
    """Validate FILE and store it as the new live version for new calls (refused if it has any problem)."""
    from voiceivr.actions.catalog import plugin_registry
    from voiceivr.dialplan.loader import DialplanInvalid, read_source
    from voiceivr.dialplan.store import publish as do_publish

    engine = app.ready_engine()
    try:
        res = do_publish(engine, read_source(file), str(file), plugin_registry(app.settings), published_by,
                         note)
    except DialplanInvalid as exc:
        for p in exc.problems:
            click.echo(str(p), err=True)
        raise VoiceivrError(f"{file}: not published ({len(exc.problems)} problem(s)); the live version is unchanged",
                            hint="fix the problems above, then publish again") from None
    v = res.version
    if res.created:
        click.echo(f"published {v.name} version {v.version} (id {v.id}, sha256 {v.sha256[:12]}): live for new calls")
    else:
        click.echo(f"{v.name} version {v.version} is already live with this exact content (sha256 {v.sha256[:12]})")


@dialplan.command("list")
@click.argument("name", required=False)
@pass_app
def list_cmd(app: AppContext, name: str | None) -> None:
    """Published versions (the newest of each name is live)."""
    from voiceivr.dialplan.store import list_versions

    rows = list_versions(app.ready_engine(), name)
    if not rows:
        click.echo("no published dialplans (voiceivr dialplan publish FILE)")
        return
    newest: dict[str, int] = {}
    for r in rows:
        newest[r.name] = max(newest.get(r.name, 0), r.version)
    for r in rows:
        live = "  live" if newest[r.name] == r.version else ""
        click.echo(f"{r.name:<16} v{r.version:<4} id {r.id:<5} {r.sha256[:12]}  "
                   f"{r.published_at:%Y-%m-%d %H:%M:%S}  {r.published_by or '-'}{live}"
                   + (f"  ({r.note})" if r.note else ""))


@dialplan.command()
@click.argument("name")
@click.option("--version", "version", type=int, default=None, help="A version number (default: the live one).")
@pass_app
def show(app: AppContext, name: str, version: int | None) -> None:
    """Print a published version's YAML, exactly as published."""
    from voiceivr.dialplan.store import get_version

    v = get_version(app.ready_engine(), name, version)
    when = v.published_at.strftime("%Y-%m-%d %H:%M:%S")
    click.echo(f"# {v.name} version {v.version} (id {v.id}), sha256 {v.sha256}, published {when} "
               f"by {v.published_by or '-'}")
    click.echo(v.source, nl=not v.source.endswith("\n"))


@dialplan.command()
@click.argument("name")
@click.option("--version", "version", type=int, default=None, help="The published version that gets a share.")
@click.option("--percent", type=click.IntRange(1, 99), default=None, help="Its share of new calls (1-99).")
@click.option("--clear", is_flag=True, help="End the split: every new call runs the live version.")
@click.option("--by", "by", default="cli", show_default=True, help="Who makes the change (in the audit trail).")
@click.option("--note", default="", help="Why (in the audit trail).")
@pass_app
def split(app: AppContext, name: str, version: int | None, percent: int | None, clear: bool, by: str,
          note: str) -> None:
    """Show, set or clear the A/B split of NAME's new calls: --version 7 --percent 20 gives version 7 to 20 %
    of new calls (the same callers every time: a hash of their number), the live version to the rest."""
    from voiceivr.dialplan.split import clear_split, get_split, set_split

    engine = app.ready_engine()
    if clear:
        if version is not None or percent is not None:
            raise click.UsageError("--clear takes no --version or --percent")
        done = clear_split(engine, name, actor=by, note=note)
        click.echo(f"{name}: split cleared; every new call runs the live version" if done else f"{name}: no split")
        return
    if version is None and percent is None:
        s = get_split(engine, name)
        click.echo(f"{name}: no split; every new call runs the live version" if s is None else
                   f"{name}: version {s.version} gets {s.percent} % of new calls, the live version the rest "
                   f"(set {s.set_at:%Y-%m-%d %H:%M} by {s.set_by or '-'})")
        return
    if version is None or percent is None:
        raise click.UsageError("give both --version and --percent (or --clear)")
    s = set_split(engine, name, version, percent, actor=by, note=note)
    click.echo(f"{name}: version {s.version} now gets {s.percent} % of new calls, the live version the rest")
