"""Actions answered by an admin's HTTP service: signed requests, bounded replies, a circuit breaker per
backend, and failures the caller understands. The caller identity such a service answers is
:class:`voiceivr.policy.identity.HttpIdentity`, over the same :class:`Backend` (its signed requests).

The contract (docs/integration.md, "HTTP backends"; JSON Schemas in ``voiceivr/actions/schemas/``):

* ``POST {url}{path}`` with a JSON body ``{"action", "params", "principal", "call_id", "idempotency_key",
  "audit_seq"}`` and the headers ``Voiceivr-Signature: t=UNIX,v1=HEX`` (HMAC-SHA256 with the backend's
  secret over ``"{t}." + body``, as Stripe signs webhooks), ``Idempotency-Key`` (the runner's key: the same on
  every retry and after a restart), ``Voiceivr-Call-Id`` and ``Voiceivr-Audit-Seq`` (the committed
  write-ahead ``action.intent`` row this request belongs to).
* Reply ``200`` with a JSON object holding the declared fields: success. ``422`` with ``{"error": "..."}``:
  a refusal the caller may hear ("There isn't enough money in that account."); any other ``4xx``: a refusal
  the caller hears as the declared prompt. ``5xx``: nothing was done, try again. A repeated
  ``Idempotency-Key`` must get the first answer and do nothing.

What the caller hears when it goes wrong is the action's declared ``failure`` prompt. Whether the action may
have happened decides how the run is recorded: a refused connection, an open circuit or a 5xx did nothing
(``failed``); a timeout, a reset, or a 200 whose body is garbage, too large or not the declared shape may have
acted (``unknown``: the runner settles it by calling again with the same key).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from voiceivr import injection, metrics
from voiceivr.actions.backends import ActionSpec, BackendsFile, BackendSpec
from voiceivr.actions.registry import (
    Action,
    ActionContext,
    ActionError,
    ActionOutcomeUnknown,
    Param,
    value_has_type,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Voiceivr-Signature"
MAX_SPOKEN_ERROR = 300  # characters of a backend's refusal the caller may hear; longer is not a sentence
_CHUNK = 64 * 1024

# Outcomes of one request (the label of voiceivr_backend_requests_total).
OK, REFUSED = "ok", "refused"
NOT_SENT = ("connect_error", "circuit_open", "http_5xx")  # the backend did nothing
MAYBE_ACTED = ("timeout", "reset", "bad_json", "too_large", "bad_schema", "http_other", "injection_flagged")
RETRYABLE = ("connect_error", "timeout", "reset", "http_5xx")


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Voiceivr-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, *, now: float | None = None, tolerance_s: int = 300) -> bool:
    """What a backend does with the header (the same code is in docs/integration.md): the MAC matches and the
    timestamp is within ``tolerance_s`` of now, so a captured request cannot be replayed later."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


class BackendFailure(Exception):
    """One request that did not give a usable answer. ``outcome`` is one of NOT_SENT or MAYBE_ACTED; the
    message never holds the request body (it may hold a PIN)."""

    def __init__(self, outcome: str, detail: str = "") -> None:
        super().__init__(f"{outcome}: {detail}" if detail else outcome)
        self.outcome, self.detail = outcome, detail


@dataclass(frozen=True)
class Reply:
    status: int
    data: Any  # parsed JSON


class CircuitBreaker:
    """After ``failures`` consecutive failures, fail fast for ``cooldown_s``; then let one trial request through
    (half-open): its success closes the circuit, its failure opens it again. So a dead backend costs the first
    few callers the timeout, not every caller."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until: float | None = None
        self._trial = False  # a half-open trial request is in flight

    @property
    def state(self) -> str:
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "open" if self.clock() < self._open_until or self._trial else "half_open"

    def allow(self) -> bool:
        with self._lock:
            if self._open_until is None:
                return True
            if self.clock() < self._open_until or self._trial:
                return False
            self._trial = True
            return True

    def record(self, ok: bool) -> None:
        with self._lock:
            self._trial = False
            if ok:
                self._consecutive, self._open_until = 0, None
                return
            self._consecutive += 1
            if self._open_until is not None or self._consecutive >= self.failures:
                self._open_until = self.clock() + self.cooldown_s


class Backend:
    """One declared backend: signs requests, reads bounded replies, keeps its circuit breaker. Thread-safe (a
    connection per request: the loopback or LAN connect costs well under a millisecond)."""

    def __init__(self, spec: BackendSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.breaker = CircuitBreaker(spec.breaker.failures, spec.breaker.cooldown_s, clock)
        url = urlsplit(spec.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")

    @property
    def name(self) -> str:
        return self.spec.name

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], timeout: float,
                *, what: str) -> Reply:
        """One request within ``timeout`` seconds overall; :class:`BackendFailure` unless a reply was read.
        Counted in the breaker and in /metrics under ``what`` (an action name, "health", ...)."""
        if not self.breaker.allow():
            self._count(what, "circuit_open", 0.0)
            raise BackendFailure("circuit_open", f"backend {self.name!r} failed repeatedly; waiting out its cool-down")
        started = time.monotonic()
        try:
            reply = self._exchange(method, path, body, headers, timeout)
        except BackendFailure as exc:
            self.breaker.record(False)
            self._count(what, exc.outcome, time.monotonic() - started)
            raise
        self.breaker.record(reply.status < 500)
        self._count(what, OK if reply.status < 400 else (REFUSED if reply.status < 500 else "http_5xx"),
                    time.monotonic() - started)
        return reply

    def _exchange(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], timeout: float
                  ) -> Reply:
        deadline = time.monotonic() + timeout
        conn = self._connection(timeout)
        try:
            try:
                conn.connect()
            except TimeoutError:  # nothing was sent: as good as refused
                raise BackendFailure("connect_error", "no connection within the timeout") from None
            except OSError as exc:  # refused, unreachable, name unknown
                raise BackendFailure("connect_error", type(exc).__name__) from None
            try:
                conn.request(method, self._prefix + path, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = self._read_capped(resp, deadline)
            except TimeoutError:
                raise BackendFailure("timeout", f"no reply within {timeout:g} s") from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                raise BackendFailure("reset", type(exc).__name__) from None
        finally:
            conn.close()
        if resp.status >= 500:
            raise BackendFailure("http_5xx", f"HTTP {resp.status}")
        if not data:
            return Reply(resp.status, None)
        try:
            return Reply(resp.status, json.loads(data))
        except (ValueError, UnicodeDecodeError):
            if resp.status >= 400:
                return Reply(resp.status, None)  # a refusal without a usable message: the declared prompt
            raise BackendFailure("bad_json", f"HTTP {resp.status} with a body that is not JSON") from None

    def _read_capped(self, resp: http.client.HTTPResponse, deadline: float) -> bytes:
        """The body, read in chunks so a 10 MB (or endless) reply is cut at the cap, not held in memory, and a
        reply trickled byte by byte still ends at the deadline."""
        cap = self.spec.max_reply_bytes
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > cap:
            raise BackendFailure("too_large", f"Content-Length {length} over the cap of {cap} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError
            chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > cap:
                raise BackendFailure("too_large", f"reply over the cap of {cap} bytes")
            chunks.append(chunk)

    def signed_post(self, path: str, payload: Mapping[str, Any], *, key: str, call_id: str,
                    audit_seq: int | None, timeout: float, method: str = "POST", what: str) -> Reply:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.spec.secret, body, int(time.time())),
            "Idempotency-Key": key,
            "Voiceivr-Call-Id": call_id,
            "Voiceivr-Audit-Seq": "" if audit_seq is None else str(audit_seq),
            "User-Agent": "voiceivr-webhook/1",
        }
        return self.request(method, path, body, headers, timeout, what=what)

    def _count(self, what: str, outcome: str, seconds: float) -> None:
        metrics.BACKEND_REQUESTS.labels(self.name, outcome).inc()
        if outcome not in ("circuit_open",):
            metrics.BACKEND_LATENCY.labels(self.name).observe(seconds)
        log.info("backend request", extra={"backend": self.name, "what": what, "outcome": outcome,
                                           "ms": round(seconds * 1000, 1)})


def request_body(action: str, params: Mapping[str, Any], ctx: ActionContext) -> dict[str, Any]:
    return {"action": action, "params": dict(params), "principal": ctx.principal, "call_id": ctx.call_id,
            "idempotency_key": ctx.idempotency_key, "audit_seq": ctx.intent_seq}


class HttpAction:
    """The ``run`` of one declared action: tries the backend (retries keep the same idempotency key), checks
    the reply against the declared fields, scans text the caller may hear, and turns every failure into the
    declared prompt."""

    def __init__(self, spec: ActionSpec, backend: Backend, sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec, self.backend, self._sleep = spec, backend, sleep
        self.timeout = spec.timeout_s if spec.timeout_s is not None else backend.spec.timeout_s
        self.retries = spec.retries if spec.retries is not None else backend.spec.retries

    def __call__(self, params: Mapping[str, Any], ctx: ActionContext) -> Mapping[str, Any]:
        # The runner's key when the gate runs it; a fresh one for harnesses that call actions directly.
        key = ctx.idempotency_key or f"adhoc-{uuid.uuid4().hex}"
        body = request_body(self.spec.name, params, ActionContext(
            ctx.call_id, ctx.principal, None, ctx.now, key, None, ctx.intent_seq))
        failure: BackendFailure | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(min(0.05 * 2 ** (attempt - 1), 0.5))
            try:
                reply = self.backend.signed_post(self.spec.path, body, key=key, call_id=ctx.call_id,
                                                 audit_seq=ctx.intent_seq, timeout=self.timeout,
                                                 method=self.spec.method, what=self.spec.name)
            except BackendFailure as exc:
                failure = exc
                if exc.outcome in RETRYABLE:
                    continue
                break
            return self._result(reply)
        assert failure is not None
        self._fail(failure)

    def _result(self, reply: Reply) -> Mapping[str, Any]:
        if reply.status >= 400:  # only a 422 is a refusal meant for the caller; 401, 404 are set-up faults
            message = reply.data.get("error") if isinstance(reply.data, dict) and reply.status == 422 else None
            self._refuse(message, reply.status)
        if reply.status != 200:
            self._fail(BackendFailure("http_other", f"HTTP {reply.status}"))
        if not isinstance(reply.data, dict):
            self._fail(BackendFailure("bad_schema", "the reply is not a JSON object"))
        out: dict[str, Any] = {}
        for f in self.spec.reply:
            if f.name not in reply.data or reply.data[f.name] is None:
                if f.required:
                    self._fail(BackendFailure("bad_schema", f"reply lacks {f.name!r}"))
                continue
            value = reply.data[f.name]
            if not value_has_type(value, f.type):
                self._fail(BackendFailure("bad_schema", f"reply field {f.name!r} is not {f.type}"))
            if isinstance(value, str) and (found := injection.scan(value)).flagged:
                self._fail(BackendFailure("injection_flagged", f"reply field {f.name!r}: "
                                                               f"{', '.join(found.categories)}"))
            out[f.name] = value
        return out  # fields the admin did not declare are dropped: nothing undeclared reaches the call

    def _refuse(self, message: Any, status: int) -> NoReturn:
        """A 4xx: the backend said no. Its message is said to the caller only if it is short text that the
        injection filter passes (it is external content); else the declared prompt."""
        details = {"backend": self.backend.name, "outcome": REFUSED, "status": status}
        if isinstance(message, str) and 0 < len(message.strip()) <= MAX_SPOKEN_ERROR:
            found = injection.scan(message)
            if not found.flagged:
                raise ActionError(message.strip(), details=details)
            details |= {"outcome": "injection_flagged", "categories": list(found.categories)}
            log.warning("backend refusal flagged by the injection filter",
                        extra={"backend": self.backend.name, "action": self.spec.name})
        raise ActionError(self.spec.failure, details=details)

    def _fail(self, failure: BackendFailure) -> NoReturn:
        details = {"backend": self.backend.name, "outcome": failure.outcome, "detail": failure.detail}
        if failure.outcome in NOT_SENT:
            raise ActionError(self.spec.failure, details=details)
        raise ActionOutcomeUnknown(self.spec.failure, details=details)


def build_actions(spec: BackendsFile, backends: Mapping[str, Backend]) -> list[Action]:
    """The declared actions as registry actions. Every one ``dedupes``: the contract obliges a backend to answer
    a repeated idempotency key with its first answer."""
    out = []
    for a in spec.actions:
        out.append(Action(
            a.name, "high" if a.risk == "high" else "low",
            tuple(Param(p.name, p.type, p.required, p.secret, p.description) for p in a.params),  # type: ignore[arg-type]
            HttpAction(a, backends[a.backend]),
            returns={f.name: f.type for f in a.reply},  # type: ignore[misc]
            requires_login=a.requires_login, authenticates=a.authenticates,
            description=a.description or f"HTTP {a.method} {a.backend}{a.path}", readback=a.readback, dedupes=True,
        ))
    return out


@dataclass
class Node:
    """One node's backends file, loaded: the backends (each with its breaker) and their actions. Its identity
    section is answered over the same backends by :class:`voiceivr.policy.identity.HttpIdentity`."""

    spec: BackendsFile
    backends: dict[str, Backend]
    actions: list[Action]


_nodes: dict[tuple[str, int], Node] = {}
_nodes_lock = threading.Lock()


def node(path: str) -> Node:
    """The backends file at ``path``, loaded once per process (per version of the file), so the action registry
    and the identity provider share one breaker per backend."""
    import os

    from voiceivr.actions.backends import load_backends

    try:
        version = os.stat(path).st_mtime_ns
    except OSError:
        version = 0  # load_backends reports it
    with _nodes_lock:
        if (path, version) not in _nodes:
            spec = load_backends(path)
            backends = {name: Backend(b) for name, b in spec.backends.items()}
            _nodes[(path, version)] = Node(spec, backends, build_actions(spec, backends))
        return _nodes[(path, version)]
