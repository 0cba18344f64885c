"""``voiceivr console``: run the admins' web console; add, list and disable its admins."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import click

from voiceivr.app import AppContext, pass_app


@click.group(invoke_without_command=True)
@click.option("--host", default=None, help="Address to listen on (default: the console.host setting).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on (default: the console.port setting, 8088).")
@click.pass_context
def console(ctx: click.Context, host: str | None, port: int | None) -> None:
    """The web console for admins: dialplans (edit, validate, simulate, publish, roll back), calls, audit.

    Without a subcommand, serve it (http://127.0.0.1:8088 by default). On the first start with no admin at
    all it creates `admin` (role publisher) and prints its password once. docs/console.md says more.
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from voiceivr.actions.catalog import plugin_registry
    from voiceivr.console.accounts import ensure_first_admin
    from voiceivr.console.web import make_app

    app: AppContext = ctx.ensure_object(AppContext)
    engine = app.ready_engine()
    password = ensure_first_admin(engine)
    if password is not None:
        click.echo("console: no admin yet; created 'admin' (publisher) with the password below. It is shown "
                   "this once: keep it, or set another with `voiceivr console add-user admin --role publisher`.")
        click.echo(f"console: admin password: {password}")
    s = app.settings.console
    host, port = host or s.host, port or s.port
    click.echo(f"console: http://{host}:{port}/", err=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not s.secure_cookies:
        click.echo("console: warning: listening beyond this machine over plain HTTP; passwords and session "
                   "cookies cross the network in clear. Put TLS in front and set console.secure_cookies = true.",
                   err=True)
    uvicorn.run(make_app(app.settings, engine, plugin_registry(app.settings)), host=host, port=port,
                log_level="warning", access_log=False, server_header=False)


@console.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "editor", "publisher"]), required=True,
              help="viewer: read; editor: also validate and simulate drafts; publisher: also publish, roll back "
                   "and split.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_app
def add_user(app: AppContext, name: str, role: str, password_stdin: bool) -> None:
    """Create admin NAME, or give an existing one a new role and password (which ends their sessions)."""
    from voiceivr.console.accounts import add_user as do_add

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    admin = do_add(app.ready_engine(), name, role, password, by="cli")
    click.echo(f"console admin {admin.name}: role {admin.role}")


@console.command("users")
@pass_app
def users(app: AppContext) -> None:
    """List the console's admins and their roles."""
    from voiceivr.console.accounts import list_users

    rows = list_users(app.ready_engine())
    if not rows:
        click.echo("no console admins (voiceivr console add-user NAME --role publisher)")
    for name, role, disabled in rows:
        click.echo(f"{name:<32} {role:<10}{'  disabled' if disabled else ''}")


@console.command("disable-user")
@click.argument("name")
@pass_app
def disable_user(app: AppContext, name: str) -> None:
    """Disable admin NAME and end their sessions (add-user enables them again, with a new password)."""
    from voiceivr.console.accounts import disable_user as do_disable

    do_disable(app.ready_engine(), name, by="cli")
    click.echo(f"console admin {name}: disabled")




def start_beside_serve() -> subprocess.Popen[bytes]:
    """``voiceivr serve --console``: the console in a child process (``voiceivr console``, the same settings from
    the same environment), so neither can stall the other; the caller stops it with :func:`stop_beside_serve`."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "voiceivr", "console"], env=env)


def stop_beside_serve(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def console_failed(proc: subprocess.Popen[bytes], within_s: float = 0.0) -> int | None:
    """The console's exit code if it has already stopped (e.g. its port is taken), waiting up to ``within_s``."""
    deadline = time.monotonic() + within_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc.poll()
