"""SIP edge settings: the endpoint, admission, transports, media and pjsip's logging."""

from __future__ import annotations

from dataclasses import dataclass

from voiceivr.settings.fields import setting


@dataclass
class SipSettings:
    host: str = setting("0.0.0.0", "Address `voiceivr serve` listens on for SIP (the public side; --host overrides).")
    port: int = setting(5060, "Public SIP port, UDP (and TCP when sip.tcp is on); --port overrides.", min=1, max=65535)
    public_address: str = setting(
        "", "Address written into Contact and SDP when the box sits behind NAT; empty means the bound address."
    )
    tcp: bool = setting(False, "Also accept SIP over TCP on the public port (UDP is always on).")
    workers: int = setting(
        2, "Worker processes `voiceivr serve` runs behind Kamailio (--workers overrides).", min=1, max=256
    )
    calls_per_worker: int = setting(
        4, "Concurrent calls one worker carries, 1-4 (the pjsua2 wheel's hard limit is 4; 1 isolates every call).",
        min=1, max=4,
    )
    worker_port_base: int = setting(
        0, "First internal SIP port of the workers (127.0.0.1, one port each). 0 picks free ports at start.",
        min=0, max=65535,
    )
    handler: str = setting(
        "voiceivr.live:handler_factory",
        "The call session: `package.module:factory`, called once per worker with the settings; it returns the "
        "CallHandler that runs each call (voiceivr/call/handler.py).",
    )
    trusted_proxies: list[str] = setting(
        [],
        "IPs or networks (comma-separated) of the trunk or PBX in front of us: their P-Asserted-Identity is "
        "believed, and they are always allowed and exempt from digest authentication and the per-source limits "
        "(sip.source_max_calls, sip.source_max_invites). Empty trusts nobody.",
    )
    codecs: list[str] = setting(
        ["PCMU/8000/1", "PCMA/8000/1", "G722/16000/1"],
        "Codecs offered and accepted, best first; every other codec of pjsua2 is disabled.",
    )
    media_rate: int = setting(
        8000, "Sample rate of the audio the call session sees (8000 or 16000); pjsua2 resamples each codec to it.",
        choices=(8000, 16000),
    )
    resampler_quality: int = setting(
        6, "pjmedia resampler/codec quality 5-10 (at 4 a 5 kHz tone aliased).", min=5, max=10
    )
    jb_min_pre_ms: int = setting(
        -1, "Jitter buffer: least audio held before playing (ms; -1 is pjsip's default). Each 20 ms here is 20 ms "
        "more voice-to-voice and barge-in delay; raise it for lossy or jittery trunks.",
        min=-1, max=1000,
    )
    jb_max_pre_ms: int = setting(
        -1, "Jitter buffer: most audio held before playing (ms; -1 is pjsip's default).", min=-1, max=1000
    )
    jb_init_ms: int = setting(-1, "Jitter buffer: initial prefetch (ms; -1 is pjsip's default).", min=-1, max=1000)
    rtp_port_min: int = setting(
        0, "First UDP port for RTP; 0 lets pjsua2 choose. Workers split the range.", min=0, max=65535
    )
    rtp_port_max: int = setting(
        0, "Last UDP port for RTP (with rtp_port_min); open this range in the firewall.", min=0, max=65535
    )
    rtp_timeout_s: float = setting(
        30.0, "Hang up a call after this many seconds without RTP from the caller (not while on hold); 0 = never.",
        min=0, max=3600,
    )
    no_media_timeout_s: float = setting(
        10.0, "Hang up an answered call whose media never started after this long.", min=1, max=600
    )
    srtp: str = setting("off", "SRTP (SDES): off, optional or mandatory.", choices=("off", "optional", "mandatory"))
    rtp_source_lock: bool = setting(
        True, "Take a call's RTP and RTCP from its media peer only (the kernel drops the rest). Off leaves "
        "pjmedia's latching, where ten packets in a row from anyone take the stream over; a source change is "
        "a media move either way (privileges dropped, audited). See docs/sip-edge.md."
    )
    rtp_latch_s: float = setting(
        2.0, "For this long after media starts the first RTP source may differ from the SDP address (symmetric "
        "RTP behind a NAT; counted as a media move); then only the SDP address. 0 = the SDP address only.",
        min=0, max=30,
    )
    srtp_require_tls: bool = setting(
        True, "Offer/accept SRTP keys only on SIP over TLS (SDES keys travel in the SDP); false allows plain UDP."
    )
    tls_port: int = setting(
        0, "SIP over TLS (1.2) on this port of each worker; 0 = off. Needs cert and key.", min=0, max=65535
    )
    tls_cert_file: str = setting("", "PEM certificate for SIP over TLS.")
    tls_key_file: str = setting("", "PEM private key for SIP over TLS.", secret=True)
    tls_ca_file: str = setting("", "PEM CA list to verify TLS peers; empty = do not verify.")
    register_uri: str = setting(
        "", "Registrar of a SIP trunk to REGISTER with (sip:trunk.example.net); empty = no registration."
    )
    register_aor: str = setting("", "Address of record to register (sip:user@trunk.example.net).")
    register_user: str = setting("", "Digest user name for the trunk.")
    register_password: str = setting("", "Digest password for the trunk.", secret=True)
    register_realm: str = setting("*", "Digest realm; * answers any realm.")
    register_expires_s: int = setting(300, "REGISTER expiry asked for.", min=60, max=86400)
    retry_after_s: int = setting(5, "Retry-After (seconds) sent with 503 when every worker is full.", min=1, max=3600)
    health_interval_s: int = setting(2, "Kamailio pings each worker with OPTIONS this often (seconds).", min=1, max=60)
    drain_timeout_s: float = setting(
        60.0,
        "On SIGTERM `voiceivr serve` drains: new calls get 503 (Kamailio answers OPTIONS with 503 too, so a front "
        "dispatcher moves traffic to other nodes), current calls go on for at most this long, then the rest are hung "
        "up and it exits. 0 = hang up at once. A second SIGTERM, or SIGINT, stops at once.",
        min=0.0, max=86400.0,
    )
    call_lease_s: float = setting(
        15.0,
        "Each serving process renews a lease in the database every fifth of this; when a process is not heard of "
        "for this long (kill -9, a lost node) any live process marks its open calls as outcome \"lost\" "
        "(voiceivr_calls_total{outcome=\"lost\"}, `voiceivr stats`). Keep it above any stall of a live process.",
        min=2.0, max=3600.0,
    )
    flood_limit: int = setting(
        500, "Kamailio drops requests from one source IP beyond this many per 2 s (pike module); 0 = no limit.",
        min=0, max=1_000_000,
    )
    allowed_sources: list[str] = setting(
        [],
        "IPs or networks (CIDR, comma-separated) that may place calls; an INVITE from anywhere else gets 403 "
        "Forbidden (at Kamailio, or at the worker without it). Empty: anyone. sip.trusted_proxies are always allowed.",
    )
    auth_user: str = setting(
        "",
        "Digest user name every INVITE must present at Kamailio (407 challenge, realm sip.auth_realm); empty: no "
        "digest authentication. sip.trusted_proxies are exempt. Needs Kamailio (sip.kamailio = auto or yes).",
    )
    auth_password: str = setting("", "Digest password for sip.auth_user (Kamailio keeps only its MD5 HA1).",
                                 secret=True)
    auth_realm: str = setting("voiceivr", "Digest realm of the INVITE challenge (letters, digits, . - _).")
    source_max_calls: int = setting(
        4,
        "Calls one source IP may have up at once, across all workers; one more gets 486 Busy Here. 0 = no limit. "
        "sip.trusted_proxies are exempt (a trunk carries every caller from one address).",
        off=0, min=1, max=1000,
    )
    source_max_invites: int = setting(
        20,
        "New INVITEs one source IP may send per sip.source_invite_window_s; beyond it 503 Service Unavailable with "
        "Retry-After (the rest of the window). 0 = no limit. sip.trusted_proxies are exempt.",
        off=0, min=1, max=100_000,
    )
    source_invite_window_s: int = setting(60, "The window of sip.source_max_invites, seconds.", min=1, max=3600)
    kamailio: str = setting(
        "auto", "Run Kamailio in front of the workers: auto (when installed), yes (required) or no (one worker).",
        choices=("auto", "yes", "no"),
    )
    kamailio_binary: str = setting("kamailio", "Kamailio executable.")
    nameservers: list[str] = setting(
        [], "DNS servers (IPs) for pjsip's own resolver, for trunks named by hostname; empty uses the system's "
        "resolver, which blocks the SIP thread while it waits. Give IP addresses to avoid DNS altogether."
    )
    gil_switch_interval_ms: float = setting(
        1.0, "sys.setswitchinterval in workers: how soon a busy Python thread hands the GIL to the media "
        "clock thread (Python's default 5 ms let a pure-Python loop delay frames by up to 88 ms; 1 ms kept them "
        "under 32 ms; scripts/bench_media_gaps.py).",
        min=0.1, max=100,
    )
    pjsip_log_level: int = setting(1, "pjsip's own log level 0-6 (goes to the voiceivr.pjsip logger).", min=0, max=6)
