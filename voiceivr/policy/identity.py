"""What the safe path asks about a caller, and who answers: the identity provider of an enabled plugin.

The safe path needs three things about an authenticated principal, and asks nothing else:

* the **phone on file**, where SMS codes go (never the calling number: From and P-Asserted-Identity are not
  authenticators);
* whether the principal has **TOTP** enrolled, and whether a code they key is valid now -- a question for the
  provider, which may keep the secret where it is (an HTTP backend cannot hand it over);
* nothing about flags or lockouts: those are the core's (``principal_flags``, ``login_lockouts``,
  ``code_failures``, ``totp_used_steps``), keyed by principal, so every provider gets the same limits.

Login itself is an action registered with ``authenticates=True`` (a plugin's, or later an HTTP backend's):
its success returns ``{"principal": ...}``. Right then the gate hands the provider that whole result
(:meth:`IdentityProvider.contact`), so a login reply may carry the contact details (an HTTP backend answers
"principal, phone on file, TOTP enrolled" in one round trip) or the provider may look them up. The gate keeps
the answer for the rest of that login.

A plugin registers a factory under the entry point group ``voiceivr.identity``::

    def provider(settings: Settings, engine: Engine | None) -> IdentityProvider: ...

``plugins.identity`` picks one when several enabled plugins have one. With none, high-risk actions are
refused (no code can be sent), low-risk ones still run.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pyotp
from sqlalchemy.engine import Engine

from voiceivr.errors import ConfigError, VoiceivrError
from voiceivr.settings import Settings

if TYPE_CHECKING:  # the backends file is imported when it is used, as the plugins are
    from voiceivr.actions.backends import IdentitySpec
    from voiceivr.actions.webhooks import Backend

log = logging.getLogger(__name__)

TOTP_STEP_S = 30  # RFC 6238's default, which every authenticator app uses


@dataclass(frozen=True)
class Contact:
    """What the safe path may know about a principal for the rest of a login."""

    principal: str
    phone_on_file: str | None = None  # E.164; None: SMS codes are not offered
    totp_enrolled: bool = False  # True: TOTP codes are offered, and checked with verify_totp


class IdentityUnavailable(VoiceivrError):
    """The provider cannot answer now (its backend is down or too slow). Not a wrong code: nothing is counted
    against the caller, and the gate says it cannot check the code."""


@runtime_checkable
class IdentityProvider(Protocol):
    def contact(self, principal: str, login: Mapping[str, Any]) -> Contact | None:
        """Called once per login, right after an authenticating action succeeded for ``principal``, with that
        action's whole result. None: the provider does not know the principal (no code can be sent). May
        raise :class:`IdentityUnavailable`."""

    def verify_totp(self, principal: str, code: str, at: dt.datetime, window: int) -> int | None:
        """The TOTP time step (unix time // 30) at which the 6-digit ``code`` is the principal's, trying the
        ``window`` steps either side of ``at`` (``policy.totp_valid_window``); None when it is not. Only
        compares: the core counts wrong codes and keeps the matched step so a code is accepted once. May raise
        :class:`IdentityUnavailable`."""


IdentityFactory = Callable[[Settings, Engine | None], IdentityProvider]


def totp_step(secret: str, code: str, at: dt.datetime, window: int) -> int | None:
    """For providers that hold TOTP secrets: the step within ``window`` of ``at`` whose code is ``code``."""
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_STEP_S)
    current = int(at.timestamp()) // TOTP_STEP_S
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(totp.at(step * TOTP_STEP_S), code):
            return step
    return None


def identity_plugin(settings: Settings) -> str | None:
    """The name of the enabled plugin whose identity provider the safe path uses, or None (no plugin has one)."""
    from voiceivr import plugins as pl

    pl.check_names(settings.plugins.enabled)
    having = [n for n in settings.plugins.enabled if pl.entry_point(pl.IDENTITY, n) is not None]
    chosen = settings.plugins.identity
    if chosen:
        if chosen not in settings.plugins.enabled:
            raise ConfigError(f"plugins.identity is {chosen!r}, which plugins.enabled does not list",
                              hint=f"enabled: {', '.join(settings.plugins.enabled) or 'none'}")
        if chosen not in having:
            raise ConfigError(f"plugins.identity is {chosen!r}, which has no identity provider "
                              "(no voiceivr.identity entry point)",
                              hint=f"enabled plugins with one: {', '.join(having) or 'none'}")
        return chosen
    if len(having) > 1:
        raise ConfigError(f"several enabled plugins have an identity provider ({', '.join(having)})",
                          hint="choose one with plugins.identity")
    return having[0] if having else None


BACKENDS = "backends"  # plugins.identity naming the backends file's identity instead of a plugin's


def _backends_identity(settings: Settings) -> IdentityProvider | None:
    if not settings.plugins.backends:
        return None
    from voiceivr.actions.webhooks import node

    loaded = node(settings.plugins.backends)
    spec = loaded.spec.identity
    return HttpIdentity(spec, loaded.backends[spec.backend]) if spec else None


def enabled_identity(settings: Settings, engine: Engine | None) -> IdentityProvider | None:
    """The identity provider of this node: the backends file's (``plugins.backends`` with an ``identity``
    section) or an enabled plugin's (see :func:`identity_plugin`); ``plugins.identity`` chooses when both
    have one."""
    from voiceivr import plugins as pl

    http = _backends_identity(settings)
    if settings.plugins.identity == BACKENDS:
        if http is None:
            raise ConfigError("plugins.identity is 'backends', but the backends file declares no identity",
                              hint="add an 'identity:' section to plugins.backends, or name a plugin")
        return http
    name = identity_plugin(settings)
    if http is not None:
        if name is not None and not settings.plugins.identity:
            raise ConfigError(f"both the backends file and plugin {name!r} answer identity questions",
                              hint="choose one with plugins.identity ('backends' or the plugin's name)")
        if name is None:
            return http
    if name is None:
        return None
    factory = pl.load(pl.IDENTITY, name)
    if not callable(factory):
        raise pl.describe_error(name, pl.IDENTITY, "is not callable; it must be a function "
                                "(settings, engine) -> IdentityProvider")
    try:
        provider = factory(settings, engine)
    except VoiceivrError:
        raise
    except Exception as exc:
        raise pl.describe_error(name, pl.IDENTITY, f"raised {type(exc).__name__}: {exc}") from None
    if not isinstance(provider, IdentityProvider):
        raise pl.describe_error(name, pl.IDENTITY, f"made a {type(provider).__name__}, which lacks contact() "
                                "or verify_totp()")
    return provider


class HttpIdentity:
    """:class:`IdentityProvider` over a backend of the backends file (:mod:`voiceivr.actions.webhooks`, which
    signs the requests): the login reply names the phone on file and whether TOTP is enrolled (one round trip);
    a TOTP code is checked by a signed request, so the secret stays with the backend."""

    def __init__(self, spec: IdentitySpec, backend: Backend) -> None:
        self.spec, self.backend = spec, backend

    def contact(self, principal: str, login: Mapping[str, Any]) -> Contact | None:
        phone = login.get("phone_on_file")
        phone = phone if isinstance(phone, str) and phone.startswith("+") and phone[1:].isdigit() else None
        return Contact(principal, phone, bool(self.spec.totp) and login.get("totp_enrolled") is True)

    def verify_totp(self, principal: str, code: str, at: dt.datetime, window: int) -> int | None:
        if not self.spec.totp:
            return None
        from voiceivr.actions.webhooks import BackendFailure

        key = f"totp-{uuid.uuid4().hex}"
        payload = {"action": "identity.verify_totp", "params": {"principal": principal, "code": code,
                                                                "at": at.isoformat(), "window": window},
                   "principal": principal, "call_id": "", "idempotency_key": key, "audit_seq": None}
        try:
            reply = self.backend.signed_post(self.spec.totp, payload, key=key, call_id="", audit_seq=None,
                                             timeout=self.backend.spec.timeout_s, what="identity.verify_totp")
        except BackendFailure as exc:
            raise IdentityUnavailable(f"backend {self.backend.name!r}: {exc.outcome}") from None
        step = reply.data.get("step") if reply.status == 200 and isinstance(reply.data, dict) else "bad"
        if step is None:
            return None
        if not isinstance(step, int) or isinstance(step, bool):
            raise IdentityUnavailable(f"backend {self.backend.name!r}: the TOTP reply is not {{\"step\": int|null}}")
        return step


class LoginContacts:
    """One call's answers from the identity provider: the :class:`Contact` learnt at each login, kept until the
    binding changes (the gate clears them with its logins). A provider that fails leaves no contact, so a
    high-risk action is refused rather than its code sent somewhere unchecked; the failure is audited."""

    def __init__(self, provider: IdentityProvider | None, call_id: str,
                 audit: Callable[[str, Mapping[str, Any]], Any]) -> None:
        self.provider, self.call_id, self._audit = provider, call_id, audit
        self._contacts: dict[str, Contact] = {}

    def learn(self, principal: str, login: Mapping[str, Any]) -> None:
        self._contacts.pop(principal, None)
        if self.provider is None:
            return
        try:
            contact = self.provider.contact(principal, login)
        except Exception as exc:  # a provider's outage or bug must not end the call
            log.warning("identity provider failed", extra={"call_id": self.call_id, "error": type(exc).__name__})
            self._audit("policy.identity_unavailable", {"principal": principal, "step": "contact",
                                                        "error": type(exc).__name__,
                                                        "expected": isinstance(exc, IdentityUnavailable)})
            return
        if contact is not None and contact.principal == principal:
            self._contacts[principal] = contact

    def get(self, principal: str | None) -> Contact | None:
        return self._contacts.get(principal) if principal is not None else None

    def clear(self) -> None:
        self._contacts.clear()

    def totp_check(self, principal: str) -> Callable[[str, dt.datetime, int], int | None] | None:
        """What the code book calls to compare a TOTP code: the provider's answer, or IdentityUnavailable."""
        provider = self.provider
        if provider is None or not (contact := self._contacts.get(principal)) or not contact.totp_enrolled:
            return None

        def check(code: str, at: dt.datetime, window: int) -> int | None:
            try:
                return provider.verify_totp(principal, code, at, window)
            except IdentityUnavailable:
                raise
            except Exception as exc:  # a provider's bug is an outage to the caller, never a verified code
                log.error("identity provider failed to check a TOTP code",
                          extra={"call_id": self.call_id, "error": type(exc).__name__})
                raise IdentityUnavailable(f"identity provider raised {type(exc).__name__}") from None

        return check
