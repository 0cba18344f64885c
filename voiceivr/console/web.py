"""The console's HTTP side, put together here: a Starlette app of server-rendered pages (Jinja2, autoescaped)
and two JSON endpoints the editor's script calls (validate, simulate). The routes live in ``auth_routes``,
``dialplan_routes`` and ``call_routes``; what they share, and the checks below, in :mod:`voiceivr.console.http`.

Security, in the order a request meets it (docs/console.md):
- a body larger than :data:`MAX_BODY` is refused before it is read in full (413);
- every page but /login and /static needs a session: an HttpOnly, SameSite=Strict cookie holding a random token
  whose SHA-256 the database keeps (``Secure`` with the console.secure_cookies setting);
- every POST needs the session's CSRF token (a form field or the X-CSRF-Token header), and a foreign Origin is
  refused; the sign-in form has a token of its own (a double-submit cookie);
- each route names the least role it needs (viewer < editor < publisher) and refuses the others (403);
- responses carry a Content-Security-Policy that allows only this app's own script and style, and are never
  cached; every value on a page is escaped by Jinja2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from voiceivr.actions.registry import ActionRegistry
from voiceivr.console import drafts
from voiceivr.console.auth_routes import login_get, login_post, logout
from voiceivr.console.call_routes import audit, call_page, call_recording, calls, stats_page
from voiceivr.console.dialplan_routes import (
    api_simulate,
    api_validate,
    api_whatif,
    dialplan_list,
    dialplan_page,
    home,
    publish,
    rollback,
    split,
    whatif_audio,
)
from voiceivr.console.http import HERE, MAX_BODY, BodyLimit, Console
from voiceivr.console.proxies import parse_proxies
from voiceivr.settings import Settings


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _lifespan(console: Console) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        console.simulator.close()  # its scratch database

    return lifespan


def make_app(settings: Settings, engine: Engine, registry: ActionRegistry) -> ASGIApp:
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                            trim_blocks=True, lstrip_blocks=True)
    templates.filters["when"] = _when
    console = Console(settings, engine, registry, drafts.Simulator(settings, registry), templates,
                      trusted_proxies=parse_proxies(settings.console.trusted_proxies))
    app = Starlette(routes=[
        Route("/", home),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/dialplans", dialplan_list),
        Route("/dialplans/{name}", dialplan_page),
        Route("/dialplans/{name}/publish", publish, methods=["POST"]),
        Route("/dialplans/{name}/rollback", rollback, methods=["POST"]),
        Route("/dialplans/{name}/split", split, methods=["POST"]),
        Route("/api/validate", api_validate, methods=["POST"]),
        Route("/api/simulate", api_simulate, methods=["POST"]),
        Route("/api/whatif", api_whatif, methods=["POST"]),
        Route("/whatif/audio/{clip}", whatif_audio),
        Route("/calls", calls),
        Route("/calls/{call_id}", call_page),
        Route("/calls/{call_id}/recording.wav", call_recording),
        Route("/audit", audit),
        Route("/stats", stats_page),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ], lifespan=_lifespan(console))
    app.state.console = console
    return BodyLimit(app, MAX_BODY)
