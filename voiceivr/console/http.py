"""What every console route shares, and the security a request meets before its handler (docs/console.md):
the body limit, the security headers, the :class:`Console` state, pages, and :func:`needs` (a session with a
role, and the CSRF token of a POST). The routes are in ``auth_routes``, ``dialplan_routes`` and ``call_routes``;
the app is put together in :mod:`voiceivr.console.web`."""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceivr.actions.registry import ActionRegistry
from voiceivr.console import accounts, drafts, proxies, views
from voiceivr.console.accounts import Session, Throttle
from voiceivr.settings import Settings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
COOKIE = "voiceivr_console"
LOGIN_COOKIE = "voiceivr_console_login"  # the sign-in form's CSRF token (there is no session yet)
# A form-encoded draft may take up to three bytes per character of the dialplan's limit.
MAX_BODY = 3 * drafts.MAX_DRAFT_BYTES + 64 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class BodyLimit:
    """Refuses a request body over ``limit`` bytes, by its Content-Length or as it streams in, before the app
    parses any of it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await self.too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except TooLarge:
            await self.too_large(scope, receive, send)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = (f"Refused: the request is larger than {self.limit:,} bytes. A dialplan may be at most "
                f"{drafts.MAX_DRAFT_BYTES:,} bytes; nothing was stored.")
        await Response(text, status_code=413, media_type="text/plain; charset=utf-8",
                       headers=SECURITY_HEADERS)(scope, receive, send)


class TooLarge(Exception):
    pass


SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send "Origin: null" on POSTs
    "Cache-Control": "no-store",
}


class Clips:
    """The agent's audio of recent what-ifs, in memory, each under a random id and for the admin who ran it; the
    oldest go when there are more than ``keep``."""

    def __init__(self, keep: int = 40) -> None:
        self.keep = keep
        self._clips: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, owner: str, wav: bytes) -> str:
        clip_id = secrets.token_urlsafe(16)
        with self._lock:
            self._clips[clip_id] = (owner, wav)
            while len(self._clips) > self.keep:
                self._clips.popitem(last=False)
        return clip_id

    def get(self, owner: str, clip_id: str) -> bytes | None:
        with self._lock:
            found = self._clips.get(clip_id)
        return found[1] if found is not None and found[0] == owner else None


@dataclass
class Console:
    """What every request handler shares."""

    settings: Settings
    engine: Engine
    registry: ActionRegistry
    simulator: drafts.Simulator
    templates: Environment
    # One what-if at a time: each replays calls through the whole pipeline, and the box also answers calls.
    whatif_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    clips: Clips = dataclasses.field(default_factory=Clips)
    trusted_proxies: tuple[proxies.Network, ...] = ()  # console.trusted_proxies, parsed
    audit_status: views.AuditStatus = dataclasses.field(default_factory=views.AuditStatus)

    @property
    def throttle(self) -> Throttle:
        c = self.settings.console
        return Throttle(c.login_free_failures, c.login_max_delay_s)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def client_address(request: Request) -> str:
    """The address wrong passwords are counted by: the peer, or behind a trusted proxy the client it names."""
    return proxies.client_address(request.client.host if request.client else None,
                                  request.headers.getlist("x-forwarded-for"), console_of(request).trusted_proxies)


def page(request: Request, template: str, status: int = 200, session: Session | None = None,
         **values: Any) -> HTMLResponse:
    html = console_of(request).templates.get_template(template).render(
        admin=session.admin if session else None, csrf=session.csrf if session else "", **values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's cross-site request (browsers send Origin with every POST)
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def token_ok(given: str | None, expected: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters, which a forged token may have.
    return bool(given) and bool(expected) and hmac.compare_digest(str(given).encode(), expected.encode())


Handler = Callable[[Request, Session], Awaitable[Response]]


def needs(role: str) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """The route needs a session with at least ``role``; a POST also needs its CSRF token."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            console = console_of(request)
            token = request.cookies.get(COOKIE, "")
            session = await run_in_threadpool(accounts.session_for, console.engine, token)
            wants_json = request.url.path.startswith("/api/")
            try:
                if session is None:
                    if wants_json:
                        raise Refused(401, "not signed in (or the session ended): sign in again")
                    return RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
                if request.method == "POST":
                    await _require_csrf(request, session)
                if not session.admin.may(role):
                    raise Refused(403, f"refused: this needs the {role} role; {session.admin.name} is a "
                                       f"{session.admin.role}")
                return await handler(request, session)
            except Refused as exc:
                if wants_json:
                    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=SECURITY_HEADERS)
                return page(request, "refused.html", exc.status, session, message=exc.message)

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


async def _require_csrf(request: Request, session: Session) -> None:
    if not same_origin(request):
        raise Refused(403, "refused: the request came from another site (Origin does not match)")
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await form_of(request)
        given = str(form.get("csrf", ""))
    if not token_ok(given, session.csrf):
        raise Refused(403, "refused: missing or wrong CSRF token (reload the page and try again)")


async def form_of(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=20, max_part_size=MAX_BODY)


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    return body


def text_field(body: dict[str, Any] | FormData, key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise Refused(400, f"{key} must be text")
    return value.replace("\r\n", "\n")
