"""A local stand-in for Twilio's Messages API, for tests and the offline demo.

It speaks enough of the real API for the real ``twilio`` client: ``POST`` and ``GET``
``/2010-04-01/Accounts/{AccountSid}/Messages.json`` (form fields ``To``, ``From``, ``Body``; basic auth with
the account SID and auth token; Twilio-shaped JSON bodies and errors). It binds 127.0.0.1 only.

Faults can be queued for the next sends, so tests can see what the sender does when the provider
misbehaves:

``500`` / ``503``               an error, nothing sent
``500_after_send``              the message *was* sent, but the answer is a 500 (ambiguous to the client)
``429``                         rate limited (``Retry-After: 1``), nothing sent
``hang``                        no answer until the client gives up, nothing sent
``hang_after_send``             the message is sent, then no answer until the client gives up

``messages`` holds what was "sent"; ``attempts`` counts every POST that reached the server.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

FAULTS = ("500", "503", "500_after_send", "429", "hang", "hang_after_send")


@dataclass
class FakeMessage:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    date_created: dt.datetime

    def as_json(self) -> dict[str, Any]:
        created = email.utils.format_datetime(self.date_created, usegmt=True)
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "api_version": "2010-04-01",
            "date_created": created,
            "date_updated": created,
            "date_sent": created,
            "messaging_service_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}.json",
            "subresource_uris": {},
        }


@dataclass
class FakeState:
    account_sid: str
    auth_token: str
    hang_s: float
    messages: list[FakeMessage] = field(default_factory=list)
    attempts: int = 0
    faults: deque[str] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    on_send: Callable[[FakeMessage], None] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("twilio fake: " + format, *args)

    @property
    def state(self) -> FakeState:
        return self.server.state

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(
            status,
            {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
             "status": status},
            headers,
        )

    def _route(self) -> str | None:
        parts = urlsplit(self.path).path.strip("/").split("/")
        # 2010-04-01 / Accounts / {sid} / Messages.json
        if len(parts) == 4 and parts[0] == "2010-04-01" and parts[1] == "Accounts" and parts[3] == "Messages.json":
            return parts[2]
        return None

    def _authorised(self, sid: str) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (
            user == sid == self.state.account_sid
            and secrets.compare_digest(password.encode(), self.state.auth_token.encode())
        )

    def do_GET(self) -> None:
        sid = self._route()
        if sid is None:
            self._error(404, 20404, "The requested resource was not found")
            return
        if not self._authorised(sid):
            self._error(401, 20003, "Authenticate")
            return
        query = parse_qs(urlsplit(self.path).query)
        to = query.get("To", [None])[0]
        size = int(query.get("PageSize", ["50"])[0])
        with self.state.lock:
            found = [m for m in reversed(self.state.messages) if to is None or m.to == to][:size]
        self._send_json(200, {
            "messages": [m.as_json() for m in found],
            "end": max(len(found) - 1, 0), "first_page_uri": self.path, "next_page_uri": None, "page": 0,
            "page_size": size, "previous_page_uri": None, "start": 0, "uri": self.path,
        })

    def do_POST(self) -> None:
        sid = self._route()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        if sid is None:
            self._error(404, 20404, "The requested resource was not found")
            return
        if not self._authorised(sid):
            self._error(401, 20003, "Authenticate")
            return
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        with self.state.lock:
            self.state.attempts += 1
            fault = self.state.faults.popleft() if self.state.faults else None
        if fault in ("500", "503"):
            self._error(int(fault), 20500, "Internal Server Error")
            return
        if fault == "429":
            self._error(429, 20429, "Too Many Requests", {"Retry-After": "1"})
            return
        if fault == "hang":
            self.state.stop.wait(self.state.hang_s)
            self.close_connection = True
            return
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to.startswith("+") or not to[1:].isdigit():
            self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            return
        if not from_:
            self._error(400, 21603, "The 'From' phone number is required.")
            return
        if not body:
            self._error(400, 21602, "Message body is required.")
            return
        msg = FakeMessage("SM" + secrets.token_hex(16), sid, to, from_, body, dt.datetime.now(dt.UTC))
        with self.state.lock:
            self.state.messages.append(msg)
        if self.state.on_send is not None:
            self.state.on_send(msg)
        if fault == "500_after_send":
            self._error(500, 20500, "Internal Server Error")
            return
        if fault == "hang_after_send":
            self.state.stop.wait(self.state.hang_s)
            self.close_connection = True
            return
        self._send_json(201, msg.as_json())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState


class FakeTwilio:
    """``with FakeTwilio() as fake: ...`` -- a Messages API on 127.0.0.1 at ``fake.base_url``."""

    def __init__(
        self,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "fake-auth-token",
        *,
        port: int = 0,
        hang_s: float = 3.0,
        on_send: Callable[[FakeMessage], None] | None = None,
    ) -> None:
        self.state = FakeState(account_sid, auth_token, hang_s, on_send=on_send)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, name="twilio-fake", daemon=True)

    @property
    def account_sid(self) -> str:
        return self.state.account_sid

    @property
    def auth_token(self) -> str:
        return self.state.auth_token

    @property
    def base_url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    @property
    def messages(self) -> list[FakeMessage]:
        with self.state.lock:
            return list(self.state.messages)

    @property
    def attempts(self) -> int:
        return self.state.attempts

    def fail_next(self, *faults: str) -> None:
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; known: {', '.join(FAULTS)}")
        with self.state.lock:
            self.state.faults.extend(faults)

    def start(self) -> FakeTwilio:
        self._thread.start()
        return self

    def close(self) -> None:
        self.state.stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
