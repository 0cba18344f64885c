"""The console's HTTP side: a Starlette app of server-rendered pages (Jinja2, autoescaped) and two JSON
endpoints the editor's script calls (validate, simulate).

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

import dataclasses
import datetime as dt
import hmac
import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voiceivr.actions.registry import ActionRegistry
from voiceivr.console import accounts, drafts, views, whatif
from voiceivr.console.accounts import Admin, LoginRefused, Session, Throttle
from voiceivr.dialplan.loader import DialplanInvalid
from voiceivr.errors import VoiceivrError
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

    @property
    def throttle(self) -> Throttle:
        c = self.settings.console
        return Throttle(c.login_free_failures, c.login_max_delay_s)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def page(request: Request, template: str, status: int = 200, session: Session | None = None,
         **values: Any) -> HTMLResponse:
    html = _console(request).templates.get_template(template).render(
        admin=session.admin if session else None, csrf=session.csrf if session else "", **values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's cross-site request (browsers send Origin with every POST)
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _token_ok(given: str | None, expected: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters, which a forged token may have.
    return bool(given) and bool(expected) and hmac.compare_digest(str(given).encode(), expected.encode())


Handler = Callable[[Request, Session], Awaitable[Response]]


def needs(role: str) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """The route needs a session with at least ``role``; a POST also needs its CSRF token."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            console = _console(request)
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
    if not _same_origin(request):
        raise Refused(403, "refused: the request came from another site (Origin does not match)")
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await _form(request)
        given = str(form.get("csrf", ""))
    if not _token_ok(given, session.csrf):
        raise Refused(403, "refused: missing or wrong CSRF token (reload the page and try again)")


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=20, max_part_size=MAX_BODY)


# --- sign in / out ----------------------------------------------------------------------------------------


async def login_form(request: Request, message: str = "", status: int = 200, name: str = "") -> Response:
    token = secrets.token_urlsafe(32)
    response = page(request, "login.html", status, login_token=token, message=message, name=name)
    _set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


async def login_get(request: Request) -> Response:
    return await login_form(request)


async def login_post(request: Request) -> Response:
    console = _console(request)
    form = await _form(request)
    if not _same_origin(request) or not _token_ok(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")):
        return await login_form(request, "The sign-in form expired or came from another site: try again.", 403)
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    try:
        admin: Admin = await run_in_threadpool(accounts.authenticate, console.engine, name, password,
                                               _address(request), console.throttle)
    except LoginRefused as exc:
        status = 429 if "too many" in str(exc) else 401
        response = await login_form(request, str(exc), status, name=name[:64])
        if exc.retry_after_s:
            response.headers["Retry-After"] = str(int(exc.retry_after_s + 0.999))
        return response
    session = await run_in_threadpool(accounts.open_session, console.engine, admin, _address(request),
                                      console.settings.console.session_hours)
    response = RedirectResponse("/dialplans", status_code=303, headers=SECURITY_HEADERS)
    _set_cookie(request, response, COOKIE, session.token, max_age=int(console.settings.console.session_hours * 3600))
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=_console(request).settings.console.secure_cookies)


@needs("viewer")
async def logout(request: Request, session: Session) -> Response:
    await run_in_threadpool(accounts.close_session, _console(request).engine, session.token)
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response


# --- dialplans --------------------------------------------------------------------------------------------


@needs("viewer")
async def home(request: Request, session: Session) -> Response:
    return RedirectResponse("/dialplans", status_code=303, headers=SECURITY_HEADERS)


@needs("viewer")
async def dialplan_list(request: Request, session: Session) -> Response:
    names = await run_in_threadpool(views.dialplan_names, _console(request).engine)
    return page(request, "dialplans.html", session=session, names=names,
                live_name=_console(request).settings.dialplan.live_name)


@needs("viewer")
async def dialplan_page(request: Request, session: Session) -> Response:
    console = _console(request)
    name = request.path_params["name"]
    versions = await run_in_threadpool(views.versions_of, console.engine, name)
    if not versions:
        raise Refused(404, "no published dialplan of that name")
    wanted = request.query_params.get("from", "")
    start = next((v for v in versions if str(v.version) == wanted), versions[-1])
    calls = await run_in_threadpool(whatif.recordings, console.settings, 20)
    return page(request, "dialplan.html", session=session, name=name, versions=list(reversed(versions)),
                live=versions[-1], draft=start.source, draft_from=start.version, recordings=calls,
                whatif_calls=console.settings.console.whatif_calls,
                flash=_flash(name, request.query_params), problems=[], note="")


def _flash(name: str, q: Mapping[str, str]) -> str:
    """What the last publish or rollback did, worded here: a link cannot make the page say anything else."""
    def number(key: str) -> str:
        value = q.get(key, "")
        return value if value.isdigit() and len(value) < 10 else ""

    if number("published"):
        return f"published {name} version {number('published')}"
    if number("unchanged"):
        return f"{name} version {number('unchanged')} is already live with this exact content"
    if number("rolled_back_to") and number("now"):
        return f"rolled back to version {number('rolled_back_to')}: now version {number('now')}"
    return ""


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    return body


def _text_field(body: dict[str, Any] | FormData, key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise Refused(400, f"{key} must be text")
    return value.replace("\r\n", "\n")


@needs("editor")
async def api_validate(request: Request, session: Session) -> Response:
    console = _console(request)
    text = _text_field(await _json(request), "text")
    try:
        problems = await run_in_threadpool(drafts.problems_of, text, console.registry)
    except drafts.DraftRefused as exc:
        return JSONResponse({"refused": str(exc)}, status_code=413, headers=SECURITY_HEADERS)
    return JSONResponse({"problems": [views.problem_json(p) for p in problems]}, headers=SECURITY_HEADERS)


@needs("editor")
async def api_simulate(request: Request, session: Session) -> Response:
    console = _console(request)
    body = await _json(request)
    text, script = _text_field(body, "text"), _text_field(body, "script")
    try:
        result = await run_in_threadpool(console.simulator.run, text, script)
    except DialplanInvalid as exc:
        return JSONResponse({"problems": [views.problem_json(p) for p in exc.problems]}, status_code=422,
                            headers=SECURITY_HEADERS)
    except drafts.DraftRefused as exc:
        return JSONResponse({"refused": str(exc) + (f" ({exc.hint})" if exc.hint else "")}, status_code=400,
                            headers=SECURITY_HEADERS)
    return JSONResponse({"lines": result.lines, "ended": result.ended}, headers=SECURITY_HEADERS)


@needs("editor")
async def api_whatif(request: Request, session: Session) -> Response:
    console = _console(request)
    body = await _json(request)
    text, name = _text_field(body, "text"), _text_field(body, "name")
    chosen = body.get("calls") or []
    if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
        raise Refused(400, "calls must be a list of call ids")
    try:
        problems = await run_in_threadpool(drafts.problems_of, text, console.registry)
    except drafts.DraftRefused as exc:
        return JSONResponse({"refused": str(exc)}, status_code=413, headers=SECURITY_HEADERS)
    if problems:
        return JSONResponse({"problems": [views.problem_json(p) for p in problems]}, status_code=422,
                            headers=SECURITY_HEADERS)
    versions = await run_in_threadpool(views.versions_of, console.engine, name)
    if not versions:
        raise Refused(404, "no published dialplan of that name to compare with")
    known = await run_in_threadpool(whatif.recordings, console.settings, 200)
    # Only recordings found in the recording directory: a call id is never turned into a path.
    picked = [r for r in known if r.call_id in set(chosen)][:whatif.MAX_CHOSEN] if chosen \
        else known[:console.settings.console.whatif_calls]
    if not picked:
        raise Refused(404, "no recorded calls to replay (voiceivr serve records calls in recording.dir)")
    if not console.whatif_lock.acquire(blocking=False):
        raise Refused(429, "another what-if is running: try again when it has finished")
    try:
        diffs = await run_in_threadpool(whatif.compare, console.settings, versions[-1].source, text, picked)
    finally:
        console.whatif_lock.release()
    calls = []
    for d in diffs:
        out = d.to_json()
        for side, wav in (("live", d.live_audio), ("draft", d.draft_audio)):
            out[f"{side}_audio"] = f"/whatif/audio/{console.clips.add(session.admin.name, wav)}" if wav else ""
        calls.append(out)
    return JSONResponse({"live_version": versions[-1].version, "calls": calls}, headers=SECURITY_HEADERS)


@needs("editor")
async def whatif_audio(request: Request, session: Session) -> Response:
    wav = _console(request).clips.get(session.admin.name, request.path_params["clip"])
    if wav is None:
        raise Refused(404, "no such clip (clips of a what-if are kept for its admin, for the last 40 only)")
    return Response(wav, media_type="audio/wav", headers=SECURITY_HEADERS)


@needs("publisher")
async def publish(request: Request, session: Session) -> Response:
    console = _console(request)
    form = await _form(request)
    text, note = _text_field(form, "text"), _text_field(form, "note")
    name = request.path_params["name"]
    try:
        result = await run_in_threadpool(drafts.publish_draft, console.engine, text, console.registry,
                                         session.admin, note)
    except (DialplanInvalid, drafts.DraftRefused) as exc:
        problems = exc.problems if isinstance(exc, DialplanInvalid) else []
        versions = await run_in_threadpool(views.versions_of, console.engine, name)
        return page(request, "dialplan.html", 422, session, name=name, versions=list(reversed(versions)),
                    live=versions[-1] if versions else None, draft=text, draft_from=None, flash="", note=note,
                    recordings=[], whatif_calls=console.settings.console.whatif_calls,
                    problems=[views.problem_json(p) for p in problems],
                    error="Not published: " + (f"{len(problems)} problem(s) below" if problems else str(exc))
                          + "; the live version is unchanged.")
    except VoiceivrError as exc:
        raise Refused(409, f"not published: {exc}") from None
    v = result.version
    done = "published" if result.created else "unchanged"
    return RedirectResponse(f"/dialplans/{quote(v.name)}?{done}={v.version}", status_code=303,
                            headers=SECURITY_HEADERS)


@needs("publisher")
async def rollback(request: Request, session: Session) -> Response:
    console = _console(request)
    form = await _form(request)
    name = request.path_params["name"]
    version = str(form.get("version", ""))
    if not version.isdigit():
        raise Refused(400, "choose a version to roll back to")
    try:
        result = await run_in_threadpool(drafts.rollback_to, console.engine, name, int(version), console.registry,
                                         session.admin, _text_field(form, "note"))
    except VoiceivrError as exc:
        raise Refused(409, f"not rolled back: {exc}") from None
    v = result.version
    return RedirectResponse(f"/dialplans/{quote(v.name)}?rolled_back_to={version}&now={v.version}",
                            status_code=303, headers=SECURITY_HEADERS)


# --- calls and audit --------------------------------------------------------------------------------------


@needs("viewer")
async def calls(request: Request, session: Session) -> Response:
    where = views.CallFilter.from_query(request.query_params)
    rows = await run_in_threadpool(views.recent_calls, _console(request).engine, 200, where)
    outcomes = await run_in_threadpool(views.call_outcomes, _console(request).engine)
    return page(request, "calls.html", session=session, calls=rows, where=where, outcomes=outcomes)


@needs("viewer")
async def call_page(request: Request, session: Session) -> Response:
    call_id = request.path_params["call_id"]
    found = await run_in_threadpool(views.call_detail, _console(request).engine, call_id)
    if found is None:
        raise Refused(404, "no call with that id")
    recorded = await run_in_threadpool(whatif.recording_of, _console(request).settings, call_id)
    return page(request, "call.html", session=session, call=found[0], turns=found[1], recorded=recorded is not None)


@needs("viewer")
async def call_recording(request: Request, session: Session) -> Response:
    path = await run_in_threadpool(whatif.recording_of, _console(request).settings, request.path_params["call_id"])
    if path is None:
        raise Refused(404, "this call has no recording")
    try:
        wav = await run_in_threadpool(whatif.playable_wav, path)
    except VoiceivrError as exc:
        raise Refused(409, f"the recording cannot be read: {exc}") from None
    return Response(wav, media_type="audio/wav", headers=SECURITY_HEADERS)


@needs("viewer")
async def stats_page(request: Request, session: Session) -> Response:
    from voiceivr.console import charts
    from voiceivr.stats import compute_stats, parse_when

    console = _console(request)
    since_text = request.query_params.get("since", "24h").strip()[:32] or "24h"
    error = ""
    try:
        since = parse_when(since_text)
    except (VoiceivrError, ValueError, OverflowError):
        error, since_text = f"{since_text!r} is not a time: give e.g. 1h, 24h, 7d or 2026-12-01; showing 24h", "24h"
        since = parse_when(since_text)
    figures = await run_in_threadpool(compute_stats, console.engine, since, dt.datetime.now(dt.UTC))
    return page(request, "stats.html", session=session, stats=figures, since=since_text, error=error,
                latency=charts.latency_chart(figures, console.settings.budget),
                outcomes=charts.outcome_chart(figures))


@needs("viewer")
async def audit(request: Request, session: Session) -> Response:
    report, rows = await run_in_threadpool(views.audit_view, _console(request).engine, 200)
    return page(request, "audit.html", session=session, report=report, rows=rows)


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
    console = Console(settings, engine, registry, drafts.Simulator(settings, registry), templates)
    app = Starlette(routes=[
        Route("/", home),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/dialplans", dialplan_list),
        Route("/dialplans/{name}", dialplan_page),
        Route("/dialplans/{name}/publish", publish, methods=["POST"]),
        Route("/dialplans/{name}/rollback", rollback, methods=["POST"]),
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
