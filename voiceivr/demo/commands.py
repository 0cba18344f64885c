"""The demo bank's commands: ``voiceivr demo seed`` and ``voiceivr demo balances``.

The plugin's command group is mounted from :mod:`voiceivr.sim.abuse.commands` (entry point ``voiceivr.commands =
demo``), which adds ``abuse``, the abuse simulation against this bank: the simulation uses the bank, so the bank's
own code does not import the simulation."""

from __future__ import annotations

import click

from voiceivr.app import AppContext, pass_app


@click.group()
def demo() -> None:
    """The demo bank behind dialplans/bank.yaml (the demo plugin): its customers, and the abuse simulation."""


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
