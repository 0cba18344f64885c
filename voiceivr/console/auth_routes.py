"""The console's sign-in and sign-out: the login form with its own CSRF token (a double-submit cookie), the
throttled password check, and the session cookie."""

from __future__ import annotations

import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from voiceivr.console import accounts
from voiceivr.console.accounts import Admin, LoginRefused, Session
from voiceivr.console.http import (
    COOKIE,
    LOGIN_COOKIE,
    SECURITY_HEADERS,
    client_address,
    console_of,
    form_of,
    needs,
    page,
    same_origin,
    token_ok,
)

# --- sign in / out ----------------------------------------------------------------------------------------


async def login_form(request: Request, message: str = "", status: int = 200, name: str = "") -> Response:
    token = secrets.token_urlsafe(32)
    response = page(request, "login.html", status, login_token=token, message=message, name=name)
    _set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


async def login_get(request: Request) -> Response:
    return await login_form(request)


async def login_post(request: Request) -> Response:
    console = console_of(request)
    form = await form_of(request)
    if not same_origin(request) or not token_ok(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")):
        return await login_form(request, "The sign-in form expired or came from another site: try again.", 403)
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    try:
        admin: Admin = await run_in_threadpool(accounts.authenticate, console.engine, name, password,
                                               client_address(request), console.throttle)
    except LoginRefused as exc:
        status = 429 if "too many" in str(exc) else 401
        response = await login_form(request, str(exc), status, name=name[:64])
        if exc.retry_after_s:
            response.headers["Retry-After"] = str(int(exc.retry_after_s + 0.999))
        return response
    session = await run_in_threadpool(accounts.open_session, console.engine, admin, client_address(request),
                                      console.settings.console.session_hours)
    response = RedirectResponse("/dialplans", status_code=303, headers=SECURITY_HEADERS)
    _set_cookie(request, response, COOKIE, session.token, max_age=int(console.settings.console.session_hours * 3600))
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=console_of(request).settings.console.secure_cookies)


@needs("viewer")
async def logout(request: Request, session: Session) -> Response:
    await run_in_threadpool(accounts.close_session, console_of(request).engine, session.token)
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response
