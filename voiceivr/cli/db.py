"""``voiceivr db``: create, migrate and inspect the database."""

from __future__ import annotations

from collections.abc import Callable

import click
from sqlalchemy.engine import Engine

from voiceivr.app import AppContext, pass_app
from voiceivr.db import migrate
from voiceivr.db.engine import check_connection, redacted
from voiceivr.db.roles import create_app_role, refresh_grants_if_role_exists

# Steps run after every `voiceivr db upgrade`, in order: each gets the engine and returns a line to print (or
# None). The wiring (voiceivr/cli/__init__.py) adds the audit trail's (voiceivr.cli.audit.AFTER_DB_UPGRADE): db sits
# below audit and does not import it.
AfterUpgrade = Callable[[Engine], str | None]
after_upgrade: list[AfterUpgrade] = []


@click.group()
def db() -> None:
    """Create, migrate and inspect the database (SQLite by default, PostgreSQL by URL)."""


@db.command()
@click.argument("revision", default="heads")
@pass_app
def upgrade(app: AppContext, revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest of the core and of every enabled plugin)."""
    engine = app.engine()
    check_connection(engine)
    plugins = app.settings.plugins.enabled
    before = migrate.describe_current(engine)
    migrate.upgrade(engine, revision, plugins)
    after = migrate.describe_current(engine)
    for step in after_upgrade:
        note = step(engine)
        if note:
            click.echo(note)
    if refresh_grants_if_role_exists(engine, app.settings.audit.app_role):
        click.echo(f"grants refreshed for role {app.settings.audit.app_role}")
    url = redacted(app.settings.database_url())
    if before == after:
        click.echo(f"{url}: already at {after}")
    else:
        click.echo(f"{url}: {before or 'empty'} -> {after}")


@db.command()
@click.argument("revision")
@pass_app
def downgrade(app: AppContext, revision: str) -> None:
    """Migrate the database down to REVISION (`base` removes every voiceivr table, plugins' included;
    BRANCH@base one plugin's, e.g. demo@base)."""
    engine = app.engine()
    check_connection(engine)
    before = migrate.describe_current(engine)
    migrate.downgrade(engine, revision, app.settings.plugins.enabled)
    after = migrate.describe_current(engine)
    click.echo(f"{redacted(app.settings.database_url())}: {before or 'empty'} -> {after or 'empty'}")


@db.command()
@pass_app
def current(app: AppContext) -> None:
    """Print the database's revisions (the core's, and each plugin branch's) and whether they are the newest."""
    engine = app.engine()
    check_connection(engine)
    applied = migrate.applied_revisions(engine, app.settings.plugins.enabled)
    heads = migrate.head_revisions(app.settings.plugins.enabled)
    missing = [h for h in heads if h not in applied]
    state = "up to date" if not missing else f"behind: newest is {', '.join(heads)}, run `voiceivr db upgrade`"
    click.echo(f"{migrate.describe_current(engine)} ({state})")


@db.command()
@pass_app
def history(app: AppContext) -> None:
    """List the migrations, the core's then each installed plugin's branch, oldest first."""
    for rev, down, message in migrate.history(app.settings.plugins.enabled):
        click.echo(f"{rev}  (after {down or 'base'})  {message.splitlines()[0] if message else ''}")


@db.command("check")
@pass_app
def check(app: AppContext) -> None:
    """Exit 1 if the database schema differs from the models, the core's and the enabled plugins' (a
    migration is missing)."""
    engine = app.ready_engine()
    diff = migrate.schema_diff(engine, app.settings.plugins.enabled)
    if diff:
        for item in diff:
            click.echo(f"differs: {item}")
        raise SystemExit(1)
    click.echo("schema matches the models")


@db.command("create-app-role")
@click.option("--role", default=None, help="Role name (default: the audit.app_role setting).")
@click.option("--password", default=None, help="Password for the role (omit with trust/peer auth).")
@pass_app
def create_role(app: AppContext, role: str | None, password: str | None) -> None:
    """Create the least-privilege PostgreSQL role the application connects as.

    Run it as the database owner after `voiceivr db upgrade`. The role may only INSERT and SELECT on
    audit_events and owns nothing, so it cannot UPDATE, DELETE, TRUNCATE or disable the triggers.
    """
    engine = app.ready_engine()
    name = role or app.settings.audit.app_role
    created = create_app_role(engine, name, password)
    click.echo(f"role {name} {'created' if created else 'already existed'}; grants applied")
