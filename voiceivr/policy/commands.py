"""``voiceivr simulate abuse`` and ``voiceivr sms fake-server``."""

from __future__ import annotations

import sys
import threading

import click

from voiceivr.app import AppContext, pass_app


@click.group()
def simulate() -> None:
    """Run scripted calls through the call logic (symbolic audio, real session, engine and safe path)."""


@simulate.command("abuse")
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
@click.option("--database", "database_url", metavar="URL",
              help="Run on this database (migrated, seeded with the demo bank) so the audit rows can be inspected; "
              "default: a scratch SQLite database removed afterwards. Never your production database.")
@click.option("--only", multiple=True, metavar="SCENARIO", help="Run only these scenarios (repeatable).")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@pass_app
def abuse(app: AppContext, as_json: bool, database_url: str | None, only: tuple[str, ...], list_only: bool) -> None:
    """Call the demo bank (dialplans/bank.yaml) with a catalogue of attacks and legitimate flows.

    Each call goes through the call session, the dialplan engine (router tiers as dialplan.tiers says, no
    LLM) and the safe path, and is scored from the database. Exits 1 if any attack got through (or left
    without the audit evidence it must leave) or any legitimate flow failed. SMS codes go to a local
    Messages API fake started for the run: nothing leaves the machine.
    """
    from voiceivr.policy.abuse import catalogue, scorecard_json
    from voiceivr.policy.abuse import simulate as run

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


@click.group()
def sms() -> None:
    """SMS codes: the local stand-in for the Messages API."""


@sms.command("fake-server")
@click.option("--port", default=8089, show_default=True, type=click.IntRange(0, 65535))
@pass_app
def fake_server(app: AppContext, port: int) -> None:
    """Serve a Messages API on 127.0.0.1 that prints each SMS it "sends" (for the offline demo).

    Point voiceivr at it with policy.twilio_base_url=http://127.0.0.1:PORT and the account SID and auth
    token it prints.
    """
    from voiceivr.policy.twilio_fake import FakeMessage, FakeTwilio

    ps = app.settings.policy

    def show(msg: FakeMessage) -> None:
        click.echo(f"SMS to {msg.to}: {msg.body}")

    fake = FakeTwilio(ps.twilio_account_sid or "AC" + "0" * 32, ps.twilio_auth_token or "fake-auth-token",
                      port=port, on_send=show)
    with fake:
        click.echo(f"Messages API fake on {fake.base_url} (account {fake.account_sid}, token {fake.auth_token}); "
                   "Ctrl-C stops it")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
