"""The demo bank as someone else's HTTP service: the webhook contract of docs/integration.md, from the backend's
side, with the standard library only (no voiceivr import: it is what a contact centre would write).

    python -m voiceivr.demo.backend --port 8099 --secret-file var/bank-backend.secret

It verifies every request's signature (``Voiceivr-Signature``, HMAC-SHA256 over ``"{t}." + body``, at most
five minutes old), runs each ``Idempotency-Key`` once (a repeat gets the first answer, whatever its body) and
answers the actions ``dialplans/bank_http.backends.yaml`` declares: login (account + PIN, with its own lockout),
opening_hours, get_balance, transfer_funds, change_address, block_card, and the TOTP check. State is in memory:
a restart forgets transfers and keys (a real core system keeps both in its database).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOLERANCE_S = 300
MAX_BODY = 64 * 1024
WRONG_PINS_BEFORE_LOCK = 5


class Refused(Exception):
    """A refusal the caller may hear (HTTP 422 with {"error": message})."""


def verify_signature(secret: bytes, body: bytes, header: str, now: float | None = None) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def totp_at(secret_b32: str, step: int) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s steps), as every authenticator app computes it."""
    key = base64.b32decode(secret_b32)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


@dataclass
class Customer:
    id: str
    name: str
    phone: str
    pin: str
    totp_secret: str | None
    accounts: dict[str, tuple[str, int]]  # kind -> (number, balance cents)
    payees: tuple[str, ...]
    cards: dict[str, str]  # last4 -> status
    address: str
    wrong_pins: int = 0


def demo_customers(totp_secret: str) -> dict[str, Customer]:
    """The demo plugin's two customers (voiceivr.demo.actions.DEMO_CUSTOMERS), with Alice's TOTP secret."""
    return {c.id: c for c in (
        Customer("c-1001", "Alice Martin", "+15555550101", "1234", totp_secret,
                 {"checking": ("10000001", 250_000), "savings": ("10000002", 1_000_000)},
                 ("mom", "landlord"), {"4242": "active", "5151": "active"}, "12 Oak Street, Springfield"),
        Customer("c-1002", "Bob Chen", "+15555550102", "4321", None,
                 {"checking": ("20000001", 15_025), "savings": ("20000002", 0)},
                 ("landlord",), {"1881": "active"}, "7 Elm Court, Shelbyville"),
    )}


@dataclass
class Bank:
    customers: dict[str, Customer]
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # idempotency key -> first reply
    executions: dict[str, int] = field(default_factory=dict)  # key -> times an action ran (must stay 1)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_account(self, number: str) -> Customer | None:
        return next((c for c in self.customers.values()
                     if any(n == number for n, _ in c.accounts.values())), None)

    def handle(self, key: str, name: str, params: dict[str, Any], principal: str | None) -> tuple[int, dict[str, Any]]:
        """Run ``name`` once for ``key``: a repeated key gets the first answer and runs nothing."""
        with self.lock:  # one at a time: money moves and the key is recorded atomically
            if key in self.answers:
                return self.answers[key]
            action = ACTIONS.get(name)
            if action is None:
                answer: tuple[int, dict[str, Any]] = (404, {"error": f"no action {name}"})
            else:
                self.executions[key] = self.executions.get(key, 0) + 1
                try:
                    answer = (200, action(self, params, principal))
                except Refused as exc:
                    answer = (422, {"error": str(exc)})
            self.answers[key] = answer
            return answer


def _customer(bank: Bank, principal: str | None) -> Customer:
    if principal is None or principal not in bank.customers:
        raise Refused("I need to identify you first.")
    return bank.customers[principal]


def login(bank: Bank, params: dict[str, Any], principal: str | None) -> dict[str, Any]:
    c = bank.by_account(str(params.get("account_number", "")))
    if c is None:
        raise Refused("I couldn't verify those details.")
    if c.wrong_pins >= WRONG_PINS_BEFORE_LOCK:
        raise Refused("This account is locked after too many wrong PINs. Please speak to an agent.")
    if not hmac.compare_digest(str(params.get("pin", "")), c.pin):
        c.wrong_pins += 1
        raise Refused("I couldn't verify those details.")
    c.wrong_pins = 0
    return {"principal": c.id, "name": c.name.split()[0], "phone_on_file": c.phone,
            "totp_enrolled": c.totp_secret is not None}


def opening_hours(bank: Bank, params: dict[str, Any], principal: str | None) -> dict[str, Any]:
    now = dt.datetime.now()
    is_open = now.weekday() < 5 and 8 <= now.hour < 20
    return {"hours": "Monday to Friday, 8 AM to 8 PM", "open_now": "open" if is_open else "closed"}


def get_balance(bank: Bank, params: dict[str, Any], principal: str | None) -> dict[str, Any]:
    c = _customer(bank, principal)
    kind = str(params.get("account", ""))
    if kind not in c.accounts:
        raise Refused(f"You don't have a {kind} account with us.")
    return {"balance": c.accounts[kind][1], "account": kind}


def transfer_funds(bank: Bank, params: dict[str, Any], principal: str | None) -> dict[str, Any]:
    c = _customer(bank, principal)
    amount, source, dest = int(params["amount"]), str(params.get("from") or "checking"), str(params["to"])
    if amount <= 0:
        raise Refused("The amount must be more than zero.")
    if source == dest:
        raise Refused("The two accounts are the same.")
    if source not in c.accounts:
        raise Refused(f"You don't have a {source} account with us.")
    if dest not in c.accounts and dest not in c.payees:
        raise Refused(f"You don't have a saved payee called {dest}.")
    number, balance = c.accounts[source]
    if balance < amount:
        raise Refused(f"There isn't enough money in your {source} account.")
    c.accounts[source] = (number, balance - amount)
    if dest in c.accounts:
        c.accounts[dest] = (c.accounts[dest][0], c.accounts[dest][1] + amount)
    return {"reference": "T" + secrets.token_hex(4).upper(), "balance": balance - amount}


def change_address(bank: Bank, params: dict[str, Any], principal: str | None) -> dict[str, Any]:
    c = _customer(bank, principal)
    c.address = str(params["address"])
    return {"address": c.address}


def block_card(bank: Bank, params: dict[str, Any], principal: str | None) -> dict[str, Any]:
    c = _customer(bank, principal)
    last4 = str(params["card_last4"])
    if last4 not in c.cards:
        raise Refused("I couldn't find a card of yours ending in those digits.")
    already = c.cards[last4] == "blocked"
    c.cards[last4] = "blocked"
    return {"card": last4, "already_blocked": already}


ACTIONS: dict[str, Callable[[Bank, dict[str, Any], str | None], dict[str, Any]]] = {
    "login": login, "opening_hours": opening_hours, "get_balance": get_balance,
    "transfer_funds": transfer_funds, "change_address": change_address, "block_card": block_card,
}


def verify_totp(bank: Bank, params: dict[str, Any]) -> dict[str, Any]:
    c = bank.customers.get(str(params.get("principal")))
    code = str(params.get("code", ""))
    if c is None or c.totp_secret is None:
        return {"step": None}
    now = int(dt.datetime.fromisoformat(str(params["at"])).timestamp()) // 30
    window = int(params.get("window", 1))
    matched = [s for s in range(now - window, now + window + 1) if hmac.compare_digest(totp_at(c.totp_secret, s), code)]
    return {"step": matched[0] if matched else None}


def handler_for(bank: Bank, secret: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # bodies hold PINs: log nothing by default
            pass

        def _reply(self, status: int, data: dict[str, Any]) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"ok": True})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._reply(413, {"error": "body too large or empty"})
                return
            body = self.rfile.read(length)
            if not verify_signature(secret, body, self.headers.get("Voiceivr-Signature", "")):
                self._reply(401, {"error": "bad signature"})
                return
            request = json.loads(body)
            key = self.headers.get("Idempotency-Key", "")
            if not key or key != request.get("idempotency_key"):
                self._reply(400, {"error": "Idempotency-Key missing or not the body's"})
                return
            if self.path == "/voiceivr/test":
                self._reply(200, {"ok": True})
            elif self.path == "/identity/totp":
                self._reply(200, verify_totp(bank, request.get("params") or {}))
            elif self.path.startswith("/actions/"):
                name = self.path.removeprefix("/actions/")
                status, data = bank.handle(key, name, request.get("params") or {}, request.get("principal"))
                self._reply(status, data)
            else:
                self._reply(404, {"error": "not found"})

    return Handler


def make_server(secret: bytes, totp_secret: str, host: str = "127.0.0.1", port: int = 0
                ) -> tuple[ThreadingHTTPServer, Bank]:
    bank = Bank(demo_customers(totp_secret))
    server = ThreadingHTTPServer((host, port), handler_for(bank, secret))
    server.daemon_threads = True
    return server, bank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--secret-file", type=Path, required=True, help="the shared signing secret (voiceivr's too)")
    ap.add_argument("--totp-secret", default=base64.b32encode(secrets.token_bytes(20)).decode(),
                    help="Alice's authenticator secret (base32); printed at start")
    args = ap.parse_args()
    server, _ = make_server(args.secret_file.read_bytes().strip(), args.totp_secret, args.host, args.port)
    print(f"demo bank backend on http://{args.host}:{server.server_address[1]} (Alice's TOTP secret "
          f"{args.totp_secret})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
