"""The ``voiceivr`` command.

Each area's commands are a module of this package (``voiceivr/cli/<area>.py``), registered here; the
enabled plugins add theirs (``voiceivr <plugin> ...``, :mod:`voiceivr.cli.plugins`).
Errors an operator can meet (bad settings, database down, broken dialplan) print one line saying what is
wrong and, on the next, what to do; the exit code is non-zero; there is no traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy.exc import DBAPIError, OperationalError

from voiceivr import __version__, logs
from voiceivr.app import AppContext, pass_app
from voiceivr.errors import VoiceivrError


def report_error(message: str, hint: str | None) -> None:
    click.echo(f"voiceivr: error: {message}", err=True)
    if hint:
        click.echo(f"voiceivr: hint: {hint}", err=True)


class VoiceivrGroup(click.Group):
    """Turns the errors we expect into one readable line and a non-zero exit code, and mounts the commands of
    the enabled plugins (entry point group ``voiceivr.commands``) as ``voiceivr <plugin> ...``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from voiceivr.cli.plugins import mounted_names

        return sorted({*super().list_commands(ctx), *mounted_names(set(self.commands))})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        from voiceivr.cli.plugins import plugin_command

        return plugin_command(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VoiceivrError as exc:
            report_error(str(exc), exc.hint)
            sys.exit(exc.exit_code)
        except DBAPIError as exc:
            # Trouble connecting, or a connection option the driver refuses (?PASSWORD=, a typo): no statement
            # was running. A failing statement is a bug in voiceivr and keeps its traceback.
            if not isinstance(exc, OperationalError) and exc.statement is not None:
                raise
            from voiceivr.db.engine import describe_operational_error

            app = ctx.find_object(AppContext)
            url = app.settings.database_url() if app else "?"
            err = describe_operational_error(url, exc)
            report_error(str(err), err.hint)
            sys.exit(1)


@click.group(cls=VoiceivrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="voiceivr")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """voiceivr: a voice agent that answers phone calls.

    Low-risk requests run at once (the fast path); money movement and identity changes go through a safe
    path of read-back confirmation, an out-of-band code bound to the exact action, and a tamper-evident
    audit trail.
    """
    app = ctx.ensure_object(AppContext)
    try:
        logs.configure(app.settings.log.level, app.settings.log.json)
    except VoiceivrError:
        logs.configure()  # the command itself will report the configuration error


@cli.group()
def config() -> None:
    """Show the effective settings."""


@config.command("show")
@click.option("--docs", is_flag=True, help="Also print what each setting means.")
@pass_app
def config_show(app: AppContext, docs: bool) -> None:
    """Every setting, its value and where it came from (default, voiceivr.toml, or VOICEIVR_* environment).

    Secrets (passwords in URLs, tokens) are masked.
    """
    _, info = app.loaded
    width = max(len(i.name) for i in info)
    section = None
    for item in info:
        if item.section != section:
            if section is not None:
                click.echo("")
            click.echo(f"[{item.section}]")
            section = item.section
        click.echo(f"{item.name:<{width}} = {item.shown_value():<40} ({item.source})")
        if docs and item.doc:
            click.echo(f"{'':<{width}}   # {item.doc}")
        if docs and item.bounds is not None:
            click.echo(f"{'':<{width}}   # valid: {item.bounds.describe()}")


def _register() -> None:
    from voiceivr.cli.actions import backend
    from voiceivr.cli.audit import AFTER_DB_UPGRADE, audit
    from voiceivr.cli.console import console
    from voiceivr.cli.db import after_upgrade, db
    from voiceivr.cli.dialplan import dialplan
    from voiceivr.cli.plugins import plugins
    from voiceivr.cli.policy import flags, sms
    from voiceivr.cli.replay import replay
    from voiceivr.cli.speech import speak, transcribe
    from voiceivr.cli.stats import stats
    from voiceivr.cli.telephony import call, serve, serve_worker

    cli.add_command(db)
    after_upgrade.extend(AFTER_DB_UPGRADE)  # db sits below audit: the audit trail's steps after an upgrade
    cli.add_command(audit)
    cli.add_command(dialplan)
    cli.add_command(console)
    cli.add_command(plugins)
    cli.add_command(stats)
    cli.add_command(replay)
    cli.add_command(speak)
    cli.add_command(transcribe)
    cli.add_command(sms)
    cli.add_command(flags)
    cli.add_command(serve)
    cli.add_command(serve_worker)
    cli.add_command(call)
    cli.add_command(backend)


_register()


def main() -> None:
    cli(prog_name="voiceivr")
