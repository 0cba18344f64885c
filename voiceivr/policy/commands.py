"""``voiceivr sms fake-server``."""

from __future__ import annotations

import threading

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
