"""A contact centre's own plugin package written as an installed distribution (a ``*.dist-info`` with
``entry_points.txt``, first on sys.path), as pip would leave it: the plugin and identity tests install it."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from voiceivr import plugins as pl

ACME = '''
"""A contact centre's own plugin: an order desk."""
import click
from voiceivr.actions.registry import Action, ActionError, Param
from voiceivr.policy.identity import Contact, totp_step


def lookup_order(params, ctx):
    if params["order"] == "404":
        raise ActionError("I can't find that order.")
    return {"status": "shipped"}


def refund(params, ctx):
    return {"reference": "R-" + ctx.idempotency_key[-6:]}


def actions(settings):
    return [
        Action("lookup_order", "low", (Param("order", "digits"),), lookup_order, returns={"status": "str"},
               description="Where an order is."),
        Action("refund", "high", (Param("order", "digits"), Param("amount", "money")), refund,
               returns={"reference": "str"}, requires_login=True, readback="refund {amount} on order {order}"),
    ]


class AcmeIdentity:
    def contact(self, principal, login):
        return Contact(principal, login.get("phone"), False)

    def verify_totp(self, principal, code, at, window):
        return None


def identity(settings, engine):
    """Acme's customer directory."""
    return AcmeIdentity()


@click.group("acme")
def cli():
    """Acme's own commands."""


@cli.command()
def hello():
    click.echo("hello from acme")
'''


def fake_distribution(tmp: Path, monkeypatch: pytest.MonkeyPatch, name: str = "acme", *, actions: bool = True,
                      identity: bool = False, commands: bool = False, source: str = ACME,
                      extra: dict[str, str] | None = None, dist: str = "acme-ivr") -> Path:
    """An installed distribution ``dist`` declaring plugin ``name`` (module acme_ivr), first on sys.path."""
    root = tmp / f"site-{dist}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "acme_ivr.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    groups = {**({pl.ACTIONS: "acme_ivr:actions"} if actions else {}),
              **({pl.IDENTITY: "acme_ivr:identity"} if identity else {}),
              **({pl.COMMANDS: "acme_ivr:cli"} if commands else {}), **(extra or {})}
    (info / "entry_points.txt").write_text("".join(f"[{g}]\n{name} = {v}\n\n" for g, v in groups.items()))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "acme_ivr", raising=False)
    monkeypatch.setattr(pl, "_cache", None)  # read the entry points again; the ones before come back afterwards
    return root
