"""The backends file: HTTP services an admin connects, and the actions and identity checks they answer.

A node names one such file (setting ``plugins.backends``); its actions join the action registry beside the
enabled plugins' actions, so a dialplan names them like any other (docs/integration.md, "HTTP backends")::

    backends:
      core:
        url: https://core.example.com/voiceivr     # base URL; paths below are appended
        secret: {env: CORE_WEBHOOK_SECRET}         # or {file: /etc/voiceivr/core.secret}; never the secret here
        timeout_s: 2                               # per request (connect + reply)
        retries: 1                                 # more tries after a timeout, 5xx or refused connection
        health: /health                            # GET, for `voiceivr backend check`
    identity:                                      # optional: the safe path's questions about a caller
      backend: core
      totp: /identity/totp                         # optional: POST, checks an authenticator code
    actions:
      get_balance:
        backend: core
        risk: low
        requires_login: true
        params: {account: str}
        path: /actions/get_balance                 # POST, signed (voiceivr.actions.webhooks)
        reply: {balance: money, account: {type: str, required: false}}
        failure: I couldn't reach the account system; let me connect you to someone.

Loading checks all of it, reporting every problem as ``file:line:col: message`` (the dialplan's own format).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiceivr import yamlpos
from voiceivr.actions.registry import PARAM_TYPES
from voiceivr.errors import VoiceivrError
from voiceivr.yamlpos import Mark, MDict, Problem

DEFAULT_FAILURE = "I couldn't reach the account system; let me connect you to someone."
MIN_SECRET_BYTES = 16  # an HMAC key shorter than this is guessable offline from one signed request
MAX_REPLY_BYTES = 1024 * 1024
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
METHODS = ("POST", "PUT")


class BackendsInvalid(VoiceivrError):
    """The backends file has problems; each is ``file:line:col: message``."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(str(problems[0]) if problems else "invalid backends file",
                         hint=f"{len(problems)} problem(s); `voiceivr dialplan validate` lists them all")
        self.problems = problems


@dataclass(frozen=True)
class BreakerSpec:
    failures: int = 5  # consecutive failures that open the circuit
    cooldown_s: float = 30.0  # how long it stays open before one trial request (half-open)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    url: str  # base URL, no trailing slash
    secret: bytes = field(repr=False)
    secret_ref: str  # "env:NAME" or "file:PATH": where the secret came from (shown, never the secret)
    timeout_s: float = 2.0
    retries: int = 1
    health: str = "/health"
    test: str = "/voiceivr/test"
    max_reply_bytes: int = MAX_REPLY_BYTES
    breaker: BreakerSpec = BreakerSpec()


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    required: bool = True
    secret: bool = False
    description: str = ""


@dataclass(frozen=True)
class ReplyField:
    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class ActionSpec:
    name: str
    backend: str
    risk: str
    params: tuple[ParamSpec, ...]
    path: str
    method: str = "POST"
    reply: tuple[ReplyField, ...] = ()
    failure: str = DEFAULT_FAILURE
    timeout_s: float | None = None  # None: the backend's
    retries: int | None = None
    requires_login: bool = False
    authenticates: bool = False
    description: str = ""
    readback: str = ""


@dataclass(frozen=True)
class IdentitySpec:
    backend: str
    totp: str = ""  # path of the TOTP check; empty: no caller has TOTP as far as the safe path knows


@dataclass(frozen=True)
class BackendsFile:
    path: str
    backends: dict[str, BackendSpec]
    actions: tuple[ActionSpec, ...]
    identity: IdentitySpec | None = None


# Fields an authenticating action's reply may carry for the identity provider (voiceivr.actions.webhooks).
IDENTITY_REPLY = {"principal": "str", "phone_on_file": "str", "totp_enrolled": "bool"}


class _Checker:
    """Collects problems with their positions while reading the parsed YAML."""

    def __init__(self, filename: str, base_dir: Path) -> None:
        self.filename, self.base_dir = filename, base_dir
        self.problems: list[Problem] = []

    def bad(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(self.filename, mark.line, mark.col, message))

    def mapping(self, parent: MDict, key: str, *, required: bool = False) -> MDict | None:
        value = parent.get(key)
        if value is None:
            if required:
                self.bad(parent.mark, f"missing {key!r}")
            return None
        if not isinstance(value, MDict):
            self.bad(parent.value_mark(key), f"{key!r} must be a mapping")
            return None
        return value

    def text(self, parent: MDict, key: str, default: str | None = None) -> str | None:
        value = parent.get(key, default)
        if value is None:
            self.bad(parent.mark, f"missing {key!r}")
            return None
        if not isinstance(value, str) or not value.strip():
            self.bad(parent.value_mark(key), f"{key!r} must be text")
            return None
        return value.strip()

    def number(self, parent: MDict, key: str, default: float, lo: float, hi: float, *, integer: bool = False
               ) -> float:
        value = parent.get(key, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (not integer or isinstance(value, int))
        if not ok or not lo <= value <= hi:
            kind = "a whole number" if integer else "a number"
            self.bad(parent.value_mark(key), f"{key!r} must be {kind} from {lo:g} to {hi:g}, got {value!r}")
            return default
        return value

    def flag(self, parent: MDict, key: str) -> bool:
        value = parent.get(key, False)
        if not isinstance(value, bool):
            self.bad(parent.value_mark(key), f"{key!r} must be true or false")
            return False
        return value

    def path(self, parent: MDict, key: str, default: str | None = None) -> str:
        value = self.text(parent, key, default)
        if value is not None and not value.startswith("/"):
            self.bad(parent.value_mark(key), f"{key!r} must be a path starting with '/', got {value!r}")
        return value or ""

    def unknown_keys(self, m: MDict, known: tuple[str, ...], what: str) -> None:
        for key in m:
            if key not in known:
                self.bad(m.key_mark(key), f"unknown key {key!r} in {what} (known: {', '.join(known)})")

    def name(self, parent: MDict, key: str, what: str) -> bool:
        if not isinstance(key, str) or not NAME_RE.fullmatch(key):
            self.bad(parent.key_mark(key), f"{what} name {key!r} must be lowercase letters, digits and _")
            return False
        return True


def load_backends(path: str | Path, *, environ: dict[str, str] | None = None) -> BackendsFile:
    """The backends file at ``path``, checked; :class:`BackendsInvalid` lists every problem."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BackendsInvalid([Problem(str(p), 1, 1, f"cannot read: {exc.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BackendsInvalid([Problem(str(p), 1, 1, "not UTF-8 text")]) from None
    return parse_backends(text, str(p), base_dir=p.parent, environ=environ)


def parse_backends(text: str, filename: str, *, base_dir: Path | None = None,
                   environ: dict[str, str] | None = None) -> BackendsFile:
    c = _Checker(filename, base_dir or Path("."))
    try:
        doc, yaml_problems = yamlpos.load(text)
    except yamlpos.YamlSyntaxError as exc:
        raise BackendsInvalid([Problem(filename, exc.mark.line, exc.mark.col, exc.message)]) from None
    for yp in yaml_problems:
        c.bad(yp.mark, yp.message)
    if not isinstance(doc, MDict):
        raise BackendsInvalid([Problem(filename, 1, 1, "a backends file is a mapping with 'backends' and 'actions'")])
    c.unknown_keys(doc, ("backends", "actions", "identity"), "the backends file")
    env = os.environ if environ is None else environ
    backends: dict[str, BackendSpec] = {}
    for name, m in (c.mapping(doc, "backends", required=True) or {}).items():
        spec = _backend(c, doc["backends"], name, m, env)
        if spec is not None:
            backends[name] = spec
    actions = []
    raw_actions = c.mapping(doc, "actions", required=True) or MDict()
    for name, m in raw_actions.items():
        spec_a = _action(c, raw_actions, name, m, backends)
        if spec_a is not None:
            actions.append(spec_a)
    identity = None
    if (im := c.mapping(doc, "identity")) is not None:
        c.unknown_keys(im, ("backend", "totp"), "identity")
        backend = c.text(im, "backend")
        if backend is not None and backend not in backends and backend not in (doc.get("backends") or {}):
            c.bad(im.value_mark("backend"), f"unknown backend {backend!r} (declared: {', '.join(backends) or 'none'})")
        totp = c.path(im, "totp") if "totp" in im else ""
        if not any(a.authenticates for a in actions):
            c.bad(im.mark, "identity needs an action with 'authenticates: true' (the login whose reply names the "
                           "principal, phone_on_file and totp_enrolled)")
        identity = IdentitySpec(backend or "", totp)
    if c.problems:
        raise BackendsInvalid(sorted(c.problems, key=lambda p: (p.line, p.col)))
    return BackendsFile(filename, backends, tuple(actions), identity)


def _backend(c: _Checker, parent: MDict, name: str, m: Any, env: Any) -> BackendSpec | None:
    if not c.name(parent, name, "backend"):
        return None
    if not isinstance(m, MDict):
        c.bad(parent.value_mark(name), f"backend {name!r} must be a mapping")
        return None
    c.unknown_keys(m, ("url", "secret", "timeout_s", "retries", "health", "test", "max_reply_bytes", "breaker"),
                   f"backend {name!r}")
    url = c.text(m, "url") or ""
    if url and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
        c.bad(m.value_mark("url"), f"'url' must be an http:// or https:// URL without query, got {url!r}")
    secret, ref = _secret(c, m, name, env)
    breaker = BreakerSpec()
    if (bm := c.mapping(m, "breaker")) is not None:
        c.unknown_keys(bm, ("failures", "cooldown_s"), "breaker")
        breaker = BreakerSpec(int(c.number(bm, "failures", 5, 1, 1000, integer=True)),
                              c.number(bm, "cooldown_s", 30.0, 0.1, 3600))
    return BackendSpec(
        name, url.rstrip("/"), secret, ref,
        timeout_s=c.number(m, "timeout_s", 2.0, 0.05, 60),
        retries=int(c.number(m, "retries", 1, 0, 5, integer=True)),
        health=c.path(m, "health", "/health"),
        test=c.path(m, "test", "/voiceivr/test"),
        max_reply_bytes=int(c.number(m, "max_reply_bytes", MAX_REPLY_BYTES, 1024, 64 * MAX_REPLY_BYTES, integer=True)),
        breaker=breaker,
    )


def _secret(c: _Checker, m: MDict, backend: str, env: Any) -> tuple[bytes, str]:
    """The signing secret, from an environment variable or a file: a secret written in the YAML would be in
    every copy, diff and backup of the configuration."""
    value = m.get("secret")
    mark = m.value_mark("secret")
    if isinstance(value, str):
        c.bad(mark, f"backend {backend!r}: write where the secret is ({{env: NAME}} or {{file: PATH}}), "
                    "never the secret itself")
        return b"", ""
    if not isinstance(value, MDict) or len(value) != 1 or next(iter(value)) not in ("env", "file"):
        c.bad(mark if value is not None else m.mark, f"backend {backend!r} needs 'secret: {{env: NAME}}' or "
                                                     "'secret: {file: PATH}'")
        return b"", ""
    kind, where = next(iter(value.items()))
    if not isinstance(where, str) or not where:
        c.bad(value.value_mark(kind), f"secret {kind} must be a name")
        return b"", ""
    if kind == "env":
        raw = env.get(where)
        if raw is None:
            c.bad(value.value_mark(kind), f"backend {backend!r}: environment variable {where} is not set")
            return b"", f"env:{where}"
        secret = raw.strip().encode()
    else:
        path = Path(where) if Path(where).is_absolute() else c.base_dir / where
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            c.bad(value.value_mark(kind), f"backend {backend!r}: cannot read secret file {path}: {exc.strerror}")
            return b"", f"file:{where}"
    if len(secret) < MIN_SECRET_BYTES:
        c.bad(value.value_mark(kind), f"backend {backend!r}: the secret must be at least {MIN_SECRET_BYTES} bytes "
                                      f"(got {len(secret)}); e.g. `python -c 'import secrets; "
                                      "print(secrets.token_hex(32))'`")
    return secret, f"{kind}:{where}"


_ACTION_KEYS = ("backend", "risk", "params", "path", "method", "reply", "failure", "timeout_s", "retries",
                "requires_login", "authenticates", "description", "readback")


def _action(c: _Checker, parent: MDict, name: str, m: Any, backends: dict[str, BackendSpec]) -> ActionSpec | None:
    if not c.name(parent, name, "action"):
        return None
    if not isinstance(m, MDict):
        c.bad(parent.value_mark(name), f"action {name!r} must be a mapping")
        return None
    c.unknown_keys(m, _ACTION_KEYS, f"action {name!r}")
    backend = c.text(m, "backend") or ""
    if backend and backend not in backends:
        c.bad(m.value_mark("backend"), f"action {name!r}: unknown backend {backend!r} "
                                       f"(declared: {', '.join(backends) or 'none'})")
    risk = m.get("risk")
    if risk not in ("low", "high"):
        c.bad(m.value_mark("risk") if "risk" in m else m.mark, f"action {name!r}: 'risk' must be low or high")
    method = str(m.get("method", "POST")).upper()
    if method not in METHODS:
        c.bad(m.value_mark("method"), f"action {name!r}: 'method' must be one of {', '.join(METHODS)} (the "
                                      "request has a signed body)")
    params = _params(c, m, name)
    reply = _reply(c, m, name)
    authenticates = c.flag(m, "authenticates")
    if authenticates and not any(f.name == "principal" and f.required and f.type == "str" for f in reply):
        c.bad(m.value_mark("reply") if "reply" in m else m.mark,
              f"action {name!r} authenticates, so its reply must declare 'principal: str' (required)")
    for f in reply:
        if f.name in IDENTITY_REPLY and authenticates and f.type != IDENTITY_REPLY[f.name]:
            c.bad(m.mark, f"action {name!r}: reply field {f.name!r} must be {IDENTITY_REPLY[f.name]}")
    failure = c.text(m, "failure", DEFAULT_FAILURE) or DEFAULT_FAILURE
    timeout = c.number(m, "timeout_s", 0, 0.05, 60) if "timeout_s" in m else None
    retries = int(c.number(m, "retries", 0, 0, 5, integer=True)) if "retries" in m else None
    description = str(m.get("description", ""))
    readback = str(m.get("readback", ""))
    return ActionSpec(name, backend, str(risk), params, c.path(m, "path"), method, reply, failure, timeout, retries,
                      c.flag(m, "requires_login"), authenticates, description, readback)


def _typed(c: _Checker, parent: MDict, key: str, value: Any, what: str, extra: tuple[str, ...]
           ) -> tuple[str, MDict] | None:
    """``name: type`` or ``name: {type: ..., <extra keys>}``."""
    if isinstance(value, str):
        value_m = MDict()
        value_m.mark, value_m.key_marks, value_m.value_marks = parent.value_mark(key), {}, {}
        ptype = value
    elif isinstance(value, MDict):
        c.unknown_keys(value, ("type", *extra), what)
        ptype, value_m = str(value.get("type", "")), value
    else:
        c.bad(parent.value_mark(key), f"{what} must be a type ({', '.join(PARAM_TYPES)}) or a mapping with 'type'")
        return None
    if ptype not in PARAM_TYPES:
        c.bad(value_m.value_mark("type") if isinstance(value, MDict) else parent.value_mark(key),
              f"{what}: unknown type {ptype!r} (known: {', '.join(PARAM_TYPES)})")
        return None
    return ptype, value_m


def _params(c: _Checker, m: MDict, action: str) -> tuple[ParamSpec, ...]:
    out = []
    for pname, value in (c.mapping(m, "params") or MDict()).items():
        if not c.name(m["params"], pname, "parameter"):
            continue
        typed = _typed(c, m["params"], pname, value, f"action {action!r} parameter {pname!r}",
                       ("required", "secret", "description"))
        if typed is not None:
            ptype, pm = typed
            out.append(ParamSpec(pname, ptype, pm.get("required", True) is not False, pm.get("secret") is True,
                                 str(pm.get("description", ""))))
    return tuple(out)


def _reply(c: _Checker, m: MDict, action: str) -> tuple[ReplyField, ...]:
    out = []
    for fname, value in (c.mapping(m, "reply") or MDict()).items():
        if not c.name(m["reply"], fname, "reply field"):
            continue
        typed = _typed(c, m["reply"], fname, value, f"action {action!r} reply field {fname!r}", ("required",))
        if typed is not None:
            out.append(ReplyField(fname, typed[0], typed[1].get("required", True) is not False))
    return tuple(out)
