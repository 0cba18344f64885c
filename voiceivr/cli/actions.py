"""``voiceivr backend check FILE``: is each backend of a backends file reachable, and does it accept our
signature? For the admin wiring one up, before a caller finds out."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import click

from voiceivr.actions.backends import BackendsInvalid, load_backends
from voiceivr.actions.webhooks import Backend, BackendFailure

_WHY = {
    401: "the backend refused the signature: is its secret the one this file names?",
    403: "the backend refused the signature: is its secret the one this file names?",
    404: "no such path on the backend",
}


@click.group()
def backend() -> None:
    """HTTP backends (the plugins.backends file)."""


def _line(name: str, what: str, ok: bool, detail: str) -> None:
    click.echo(f"{name:<16} {what:<12} {'ok' if ok else 'FAILED'}  {detail}")


def _health(b: Backend) -> bool:
    started = time.monotonic()
    try:
        reply = b.request("GET", b.spec.health, None, {"User-Agent": "voiceivr-backend-check/1"}, b.spec.timeout_s,
                          what="health")
    except BackendFailure as exc:
        _line(b.name, "health", False, f"GET {b.spec.url}{b.spec.health}: {exc}")
        return False
    ms = (time.monotonic() - started) * 1000
    ok = 200 <= reply.status < 300
    _line(b.name, "health", ok, f"GET {b.spec.health}: HTTP {reply.status} in {ms:.0f} ms"
          + ("" if ok else f" ({_WHY.get(reply.status, 'not a 2xx')})"))
    return ok


def _signed(b: Backend) -> bool:
    key = f"check-{uuid.uuid4().hex}"
    payload: dict[str, object] = {"action": "voiceivr.test", "params": {}, "principal": None,
               "call_id": "backend-check",
               "idempotency_key": key, "audit_seq": None}
    started = time.monotonic()
    try:
        reply = b.signed_post(b.spec.test, payload, key=key, call_id="backend-check", audit_seq=None,
                              timeout=b.spec.timeout_s, what="test")
    except BackendFailure as exc:
        _line(b.name, "signed test", False, f"POST {b.spec.url}{b.spec.test}: {exc}")
        return False
    ms = (time.monotonic() - started) * 1000
    ok = reply.status == 200
    _line(b.name, "signed test", ok, f"POST {b.spec.test}: HTTP {reply.status} in {ms:.0f} ms"
          + ("" if ok else f" ({_WHY.get(reply.status, 'expected 200')})"))
    return ok


@backend.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Check FILE, then call each backend's health endpoint (GET) and send it a signed test request (POST to its
    'test' path, 200 expected). Prints a line per check; exits 1 if any failed."""
    try:
        spec = load_backends(file)
    except BackendsInvalid as exc:
        for p in exc.problems:
            click.echo(str(p))
        raise SystemExit(1) from None
    results = []
    for b in spec.backends.values():
        client = Backend(b)
        results += [_health(client), _signed(client)]
    actions = len(spec.actions)
    click.echo(f"{file}: {len(spec.backends)} backend(s), {actions} action(s), identity "
               f"{'from ' + spec.identity.backend if spec.identity else 'not declared'}")
    if not all(results):
        raise SystemExit(1)
