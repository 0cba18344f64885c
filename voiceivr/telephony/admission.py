"""Who may place a call, and how many: SIP admission of new INVITEs.

The rules (docs/sip-edge.md "Admission"), checked in this order for every new INVITE:

1. **allow-list** (``sip.allowed_sources``; empty = anyone): a source outside it gets ``403 Forbidden``.
2. **digest authentication** (``sip.auth_user``): Kamailio only, ``407`` challenge (see kamailio.cfg.in).
3. **INVITE rate** (``sip.source_max_invites`` per ``sip.source_invite_window_s``): beyond it ``503 Service
   Unavailable`` with ``Retry-After`` = the rest of the window. The sender is the one to back off, which is
   what 503 + Retry-After tells a UA (RFC 3261 21.5.4); every INVITE of the window counts, refused ones too,
   so a source that keeps hammering stays refused until it pauses.
4. **concurrent calls** (``sip.source_max_calls``): one more gets ``486 Busy Here``. Not 503: a proxy that
   gets a 503 stops sending us *every* call for Retry-After seconds (RFC 3261 21.5.4), while the condition is
   one caller's, and 486 is the per-call "not able to take another call" that goes back to that caller alone.

``sip.trusted_proxies`` (the trunk or PBX in front of us) pass 2-4: a trunk carries every caller from one
address, so a per-source limit would cap the whole service.

Behind Kamailio (``voiceivr serve``'s normal layout) Kamailio applies all four, counting across every worker
(dialog profiles for calls, an htable for the rate: kamailio.cfg.in, route ADMIT). A worker behind it only
re-checks the allow-list (cheap, and a 403 is never retried on another worker); counting there would see one
worker's share and, worse, a 486 from a worker makes Kamailio try the next one. Without Kamailio the one
worker is the front door and :class:`Admission` applies 1, 3 and 4 itself (digest authentication needs
Kamailio: ``voiceivr serve`` refuses to start with ``sip.auth_user`` set and no Kamailio).

Every refusal is counted in ``voiceivr_sip_refused_total{reason}``; the labels never carry an address.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from voiceivr import metrics
from voiceivr.errors import ConfigError
from voiceivr.settings import SipSettings
from voiceivr.telephony.sipmsg import address_in, host_of, parse_networks

# A source table bigger than this (a flood from many addresses) drops the entries of past windows at once.
_MAX_SOURCES = 65536


@dataclass(frozen=True)
class Refusal:
    """How to answer an INVITE that is not admitted."""

    status: int
    phrase: str
    reason: str  # the metric label: forbidden_source, source_rate, source_calls
    retry_after_s: int = 0

    def header(self) -> tuple[str, str] | None:
        return ("Retry-After", str(self.retry_after_s)) if self.retry_after_s else None


FORBIDDEN = Refusal(403, "Forbidden", "forbidden_source")
BUSY = Refusal(486, "Busy Here", "source_calls")


def check_settings(sip: SipSettings) -> None:
    """The admission settings, each with a one-line error naming it."""
    for name in ("allowed_sources", "trusted_proxies"):
        try:
            parse_networks(getattr(sip, name))
        except ValueError as exc:
            raise ConfigError(f"sip.{name}: {exc}", hint="give IP addresses or CIDR networks, comma-separated") \
                from None
    if sip.source_max_calls < 0:
        raise ConfigError(f"sip.source_max_calls = {sip.source_max_calls}: must be 0 (no limit) or more")
    if sip.source_max_invites < 0:
        raise ConfigError(f"sip.source_max_invites = {sip.source_max_invites}: must be 0 (no limit) or more")
    if not 1 <= sip.source_invite_window_s <= 3600:
        raise ConfigError(f"sip.source_invite_window_s = {sip.source_invite_window_s}: must be 1-3600")


class Admission:
    """The admission rules of one worker's edge. Used on its SIP thread only (no locking)."""

    def __init__(self, sip: SipSettings, count_limits: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_settings(sip)
        self._allowed = parse_networks(sip.allowed_sources)
        self._trusted = parse_networks(sip.trusted_proxies)
        self._max_calls = sip.source_max_calls if count_limits else 0
        self._max_invites = sip.source_max_invites if count_limits else 0
        self._window = sip.source_invite_window_s
        self._retry_after_full = sip.retry_after_s
        self._clock = clock
        self._invites: dict[str, tuple[int, int]] = {}  # source host -> (window number, INVITEs in it)

    def check(self, source: str, calls_from: Callable[[str], int]) -> Refusal | None:
        """Admit a new INVITE from ``source`` (host:port) or say how to refuse it. ``calls_from(host)``: the
        calls from that host this edge carries now."""
        host = host_of(source)
        trusted = address_in(host, self._trusted)
        if self._allowed and not trusted and not address_in(host, self._allowed):
            return self._refuse(FORBIDDEN)
        if trusted:
            return None
        if self._max_invites:
            refusal = self._count_invite(host)
            if refusal is not None:
                return self._refuse(refusal)
        if self._max_calls and calls_from(host) >= self._max_calls:
            return self._refuse(BUSY)
        return None

    def refuse_full(self) -> Refusal:
        """Every call slot is taken: 503 + Retry-After (sip.retry_after_s), counted as no_capacity."""
        return self._refuse(Refusal(503, "Service Unavailable", "no_capacity", self._retry_after_full))

    def _count_invite(self, host: str) -> Refusal | None:
        now = self._clock()
        window = int(now // self._window)
        seen_window, count = self._invites.get(host, (window, 0))
        if seen_window != window:
            count = 0
        count += 1
        if len(self._invites) >= _MAX_SOURCES and host not in self._invites:
            self._invites = {h: wc for h, wc in self._invites.items() if wc[0] == window}
        self._invites[host] = (window, count)
        if count <= self._max_invites:
            return None
        left = max(1, math.ceil((window + 1) * self._window - now))
        return Refusal(503, "Service Unavailable", "source_rate", left)

    @staticmethod
    def _refuse(refusal: Refusal) -> Refusal:
        metrics.SIP_REFUSED.labels(refusal.reason).inc()
        return refusal
