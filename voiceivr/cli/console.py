"""``voiceivr console``: run the admins' web console; add, list and disable its admins."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

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




def start_beside_serve() -> ConsoleChild:
    """``voiceivr serve --console``: the console in a child process (``voiceivr console``, the same settings from
    the same environment), so neither can stall the other; the caller stops it with :meth:`ConsoleChild.stop`."""
    return ConsoleChild()


class ConsoleChild:
    """The console beside ``voiceivr serve``. If it stops on its own (its port is taken, the database is out of
    date), a line says so at once; the IVR carries on answering calls."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "voiceivr", "console"], env=env)
        self._stopping = threading.Event()
        threading.Thread(target=self._watch, name="console-watch", daemon=True).start()

    def _watch(self) -> None:
        code = self.proc.wait()
        if not self._stopping.is_set():
            click.echo(f"voiceivr: the console stopped (exit code {code}; its message is above); the IVR carries "
                       "on answering calls", err=True)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
