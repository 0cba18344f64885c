"""`voiceivr db create-app-role` run as a database owner that is not a superuser, as the deploy guide has it,
on the real PostgreSQL server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from tests.support.postgres import PG_ADMIN_URL, pg_admin_engine
from voiceivr.cli import cli

pytestmark = pytest.mark.postgres


@pytest.fixture
def owner_url() -> Iterator[tuple[str, str]]:
    """A database owned by a new role with CREATEROLE but without superuser; the URL connects as that role."""
    admin = pg_admin_engine()
    suffix = uuid.uuid4().hex[:10]
    owner, db, app = f"vivr_owner_{suffix}", f"vivr_roles_{suffix}", f"vivr_app_{suffix}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {owner} LOGIN CREATEROLE NOSUPERUSER")
        conn.exec_driver_sql(f'CREATE DATABASE "{db}" OWNER {owner}')
    url = make_url(PG_ADMIN_URL).set(username=owner, password=None, database=db)
    try:
        yield url.render_as_string(hide_password=False), app
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {app}")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {owner}")
        admin.dispose()


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"VOICEIVR_DATABASE_URL": url})


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier (RFC 7677, as PostgreSQL stores it) was made from ``password``."""
    _, rest = verifier.split("$", 1)
    params, keys = rest.split("$")
    iterations, salt = params.split(":")
    stored_key = base64.b64decode(keys.split(":")[0])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


def attributes(app: str) -> tuple[bool, ...]:
    admin = pg_admin_engine()
    try:
        with admin.connect() as conn:
            return tuple(conn.execute(sa.text("SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls "
                                              "FROM pg_roles WHERE rolname = :r"), {"r": app}).one())
    finally:
        admin.dispose()


def as_admin(statement: str) -> None:
    admin = pg_admin_engine()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        admin.dispose()


def test_create_app_role_twice_as_an_owner_without_superuser(owner_url: tuple[str, str]) -> None:
    url, app = owner_url
    assert run(url, "db", "upgrade").exit_code == 0
    first = run(url, "db", "create-app-role", "--role", app)
    assert first.exit_code == 0, first.output
    assert f"role {app} created" in first.output
    # The second run restated NOSUPERUSER ... NOBYPASSRLS, which only a superuser may: a traceback.
    again = run(url, "db", "create-app-role", "--role", app)
    assert again.exit_code == 0, again.output
    assert f"role {app} already existed; grants applied" in again.output
    assert attributes(app) == (True, False, False, False, False)
    # An attribute the owner may clear is cleared.
    as_admin(f"ALTER ROLE {app} CREATEDB")
    assert run(url, "db", "create-app-role", "--role", app).exit_code == 0
    assert attributes(app) == (True, False, False, False, False)
    # A role someone made a superuser cannot be fixed by the owner: one clear line, and it stays as it was.
    as_admin(f"ALTER ROLE {app} SUPERUSER")
    refused = run(url, "db", "create-app-role", "--role", app)
    assert refused.exit_code == 2 and "Traceback" not in refused.output, refused.output
    assert f"voiceivr: error: cannot set up role {app}: must be superuser" in refused.output
    assert "database owner" in refused.output
    assert attributes(app)[1] is True


def test_create_app_role_sets_the_password_as_a_verifier(owner_url: tuple[str, str]) -> None:
    # `ALTER ROLE ... PASSWORD :p` was a syntax error (no bound parameters there) that printed the password in
    # its traceback. Now the password goes as a SCRAM verifier made on the client.
    url, app = owner_url
    password = "it's $1 'secret'"
    assert run(url, "db", "upgrade").exit_code == 0
    result = run(url, "db", "create-app-role", "--role", app, "--password", password)
    assert result.exit_code == 0, result.output
    admin = pg_admin_engine()
    try:
        with admin.connect() as conn:
            stored = conn.execute(sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": app}).scalar()
    finally:
        admin.dispose()
    assert stored.startswith("SCRAM-SHA-256$") and scram_matches(stored, password)
    assert not scram_matches(stored, "wrong")
