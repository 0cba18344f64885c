"""The demo plugin's commands, mounted as ``voiceivr demo ...`` (entry point ``voiceivr.commands = demo``):
``seed`` and ``balances`` for its bank, ``abuse`` for the abuse simulation against it."""

from __future__ import annotations

import sys

import click

from voiceivr.cli.app import AppContext, pass_app


@click.group()
def demo() -> None:
    """The demo bank behind dialplans/bank.yaml (the demo plugin): its customers, and the abuse simulation."""


@demo.command("abuse")
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
@click.option("--database", "database_url", metavar="URL",
              help="Run on this database (migrated, seeded with the demo bank) so the audit rows can be inspected; "
              "default: a scratch SQLite database removed afterwards. Never your production database.")
@click.option("--only", multiple=True, metavar="SCENARIO", help="Run only these scenarios (repeatable).")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@pass_app
def abuse(app: AppContext, as_json: bool, database_url: str | None, only: tuple[str, ...], list_only: bool) -> None:
    """Call the demo bank (dialplans/bank.yaml) with a catalogue of attacks and legitimate flows, through
    symbolic audio and the real call session, dialplan engine and safe path.

    Each call goes through the call session, the dialplan engine (router tiers as dialplan.tiers says, no
    LLM) and the safe path, and is scored from the database. Exits 1 if any attack got through (or left
    without the audit evidence it must leave) or any legitimate flow failed. SMS codes go to a local
    Messages API fake started for the run: nothing leaves the machine.
    """
    from voiceivr.sim.abuse import catalogue, scorecard_json
    from voiceivr.sim.abuse import simulate as run

    if list_only:
        for sc in catalogue():
            click.echo(f"{sc.name:<36} {sc.kind:<6} {sc.description}")
        return
    known = {sc.name for sc in catalogue()}
    unknown = sorted(set(only) - known)
    if unknown:
        raise click.BadParameter(f"unknown scenario(s): {', '.join(unknown)}; see --list", param_hint="--only")
    card = run(database_url, list(only) or None, tiers=[t for t in app.settings.dialplan.tiers if t != 3])
    click.echo(scorecard_json(card) if as_json else card.text())
    if not card.ok:
        sys.exit(1)


@demo.command()
@pass_app
def seed(app: AppContext) -> None:
    """Load the demo customers (idempotent). Prints their account numbers and demo PINs."""
    from voiceivr.demo.actions import DEMO_CUSTOMERS
    from voiceivr.demo.actions import seed as do_seed

    added = do_seed(app.ready_engine())
    for c in DEMO_CUSTOMERS:
        state = "added" if c.id in added else "already there"
        accts = ", ".join(f"{kind} {number}" for number, kind, _ in c.accounts)
        click.echo(f"{c.id} {c.name} ({state}): {accts}; demo PIN {c.pin}; phone on file {c.phone}; "
                   f"TOTP {'yes' if c.totp else 'no'}")


@demo.command()
@pass_app
def balances(app: AppContext) -> None:
    """Every demo account and its balance."""
    from voiceivr.demo.actions import balances as get

    for r in get(app.ready_engine()):
        cents = int(r["balance_cents"])
        click.echo(f"{r['id']:<8} {r['name']:<14} {r['kind']:<9} {r['number']}  ${cents // 100:,}.{cents % 100:02d}")
