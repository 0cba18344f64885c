"""``voiceivr demo abuse``: the abuse simulation as a command of the demo plugin.

The entry point ``voiceivr.commands = demo`` names the group here: the demo bank's own group
(:mod:`voiceivr.demo.commands`: ``seed``, ``balances``) with ``abuse`` added, so the bank never imports the
simulation that exercises it.
"""

from __future__ import annotations

import sys

import click

from voiceivr.app import AppContext, pass_app
from voiceivr.demo.commands import demo

__all__ = ["demo"]


@click.command("abuse")
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


demo.add_command(abuse)
