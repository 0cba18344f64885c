"""What one SIP edge is built from: :class:`EdgeConfig` (the ``sip`` settings plus where the process binds),
its checks, and the names other parts share without loading pjsua2 (the call limit of the wheel, the source
header our Kamailio writes, :class:`SipEdgeError`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voiceivr.errors import ConfigError, VoiceivrError
from voiceivr.settings import SipSettings
from voiceivr.telephony.sipmsg import parse_networks

PJSUA_MAX_CALLS = 4  # compiled into the pjsua2-python wheel
SOURCE_HEADER = "X-Voiceivr-Source"


class SipEdgeError(VoiceivrError):
    """The SIP edge could not start (port taken, bad TLS files, bad settings)."""


@dataclass
class EdgeConfig:
    """What one pjsua2 endpoint needs: the ``sip`` settings plus where this process binds."""

    sip: SipSettings
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (the test caller)
    media_host: str | None = None  # where RTP binds; None: same as host
    front_proxy: str = ""  # IP of our own Kamailio: its X-Voiceivr-Source header names the real sender
    accept_refer: bool = False  # follow a REFER from the far end (the test caller, like a phone); never a server
    tls_client: bool = False  # a TLS transport for outgoing sips:/transport=tls calls (the test caller)
    credentials: tuple[str, str] | None = None  # digest user, password for calls we place (the test caller)
    register: bool = True  # REGISTER to sip.register_uri if set (behind Kamailio only worker 0 does)
    contact: str = ""  # Contact to register (behind Kamailio: the dispatcher's public address)
    recordings_dir: Path | None = None
    max_calls: int = PJSUA_MAX_CALLS
    rtp_port_min: int = 0
    rtp_port_max: int = 0
    name: str = "voiceivr"

    def check(self) -> None:
        s = self.sip
        if not 1 <= self.max_calls <= PJSUA_MAX_CALLS:
            raise ConfigError(
                f"sip.calls_per_worker = {self.max_calls}: must be 1-{PJSUA_MAX_CALLS}",
                hint="the pjsua2 wheel carries at most 4 calls per process; add workers (--workers) instead",
            )
        if s.media_rate not in (8000, 16000):
            raise ConfigError(f"sip.media_rate = {s.media_rate}: must be 8000 or 16000")
        if not 5 <= s.resampler_quality <= 10:
            raise ConfigError(f"sip.resampler_quality = {s.resampler_quality}: must be 5-10 (4 and below alias)")
        if not 0 <= s.rtp_latch_s <= 30:
            raise ConfigError(f"sip.rtp_latch_s = {s.rtp_latch_s}: must be 0-30 seconds")
        if s.srtp not in ("off", "optional", "mandatory"):
            raise ConfigError(f"sip.srtp = {s.srtp!r}: must be off, optional or mandatory")
        if s.tls_port and not (s.tls_cert_file and s.tls_key_file):
            raise ConfigError("sip.tls_port is set but sip.tls_cert_file / sip.tls_key_file are not")
        try:
            parse_networks(s.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"sip.trusted_proxies: {exc}") from None
