"""``voiceivr sms fake-server`` and ``voiceivr flags list|clear``."""

from __future__ import annotations

import importlib
import threading
from typing import Any

import click

from voiceivr.app import AppContext, pass_app


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
    # The Messages API stand-in is a harness (voiceivr/sim/): named here, never imported by the core.
    twilio_fake: Any = importlib.import_module("voiceivr.sim.twilio_fake")

    ps = app.settings.policy

    def show(msg: Any) -> None:
        click.echo(f"SMS to {msg.to}: {msg.body}")

    fake = twilio_fake.FakeTwilio(ps.twilio_account_sid or "AC" + "0" * 32, ps.twilio_auth_token or "fake-auth-token",
                      port=port, on_send=show)
    with fake:
        click.echo(f"Messages API fake on {fake.base_url} (account {fake.account_sid}, token {fake.auth_token}); "
                   "Ctrl-C stops it")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


@click.group()
def flags() -> None:
    """Principals flagged for review (too many wrong codes): high-risk actions are refused for them until a
    person clears the flag."""


@flags.command("list")
@click.option("--all", "include_cleared", is_flag=True, help="Also list flags already cleared.")
@click.argument("principal", required=False)
@pass_app
def list_flags(app: AppContext, include_cleared: bool, principal: str | None) -> None:
    """The flags in force (of PRINCIPAL, or everyone's)."""
    from voiceivr.policy.flags import PrincipalFlags

    rows = PrincipalFlags(app.ready_engine()).list(principal, include_cleared=include_cleared)
    if not rows:
        click.echo("no flags")
    for f in rows:
        cleared = f"; cleared {f.cleared_at:%Y-%m-%d %H:%M} by {f.cleared_by}" if f.cleared_at else ""
        click.echo(f"{f.principal}: {f.reason} at {f.flagged_at:%Y-%m-%d %H:%M:%S} (call {f.call_id or '-'}){cleared}")


@flags.command("clear")
@click.argument("principal")
@click.option("--by", required=True, help="Who clears it (kept with the flag and in the audit trail).")
@click.option("--reason", default="", help="Why (kept in the audit trail).")
@pass_app
def clear_flags(app: AppContext, principal: str, by: str, reason: str) -> None:
    """Clear PRINCIPAL's flags in force (audited as policy.flag_cleared)."""
    from voiceivr.policy.flags import PrincipalFlags

    n = PrincipalFlags(app.ready_engine()).clear(principal, by=by, reason=reason)
    click.echo(f"{principal}: {n} flag(s) cleared" if n else f"{principal}: no flag in force")
