"""Reading a SIP-edge recording's JSON (format ``voiceivr-recording/1``, docs/recordings.md) for replay.

The file may come from anywhere (a colleague's bug report, a copy edited by hand), so every field replay
uses is checked before it is used, and a wrong one is a :class:`ReplayInputError` naming the file, the field
and what was expected, never a traceback: the document must be an object; ``wav`` a file name in the same
folder (not a path that leads elsewhere); ``sip`` an object (its ``remote_media`` too); ``events`` a list of
at most :data:`MAX_EVENTS` objects; in the events replay plays (``dtmf``, ``media_moved``,
``dialog_replaced``), ``t`` a number of seconds within the audio's longest possible duration, ``digit`` one
DTMF key, ``remote`` an object with a text host and a port. Other event types are skipped unread, as the
format asks of readers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voiceivr.audio.wav import MAX_DURATION_S
from voiceivr.call import events as ev
from voiceivr.errors import VoiceivrError

RECORDING_FORMAT = "voiceivr-recording/1"
# A recording's JSON is a few kB: SIP facts and one small object per key press or media change. 4 MB is
# ~40,000 events; a call of two hours (the longest WAV replay reads) with a key press a second has 7,200.
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_EVENTS = 20_000
DTMF_KEYS = frozenset("0123456789*#ABCD")
PLAYED = ("dtmf", "media_moved", "dialog_replaced")


class ReplayInputError(VoiceivrError):
    """The file given to replay is not a call recording or caller WAV we can read."""


def read_recording(path: Path, *, beside_wav: bool = False) -> dict[str, Any] | None:
    """The recording document at ``path``; None if the file is JSON but not a voiceivr recording, or (for the
    JSON found ``beside_wav`` given to replay) not JSON at all: some other file that happens to sit there."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise ReplayInputError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_JSON_BYTES:
        raise ReplayInputError(f"{path}: over {MAX_JSON_BYTES // (1024 * 1024)} MB; a recording's JSON is a few kB")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[... nested past the parser's stack
        if beside_wav:
            return None
        why = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ReplayInputError(f"{path}: not a readable recording ({why})") from None
    if not isinstance(doc, dict) or doc.get("format") != RECORDING_FORMAT:
        return None
    _check(doc, path)
    return doc


def wav_beside(doc: dict[str, Any], path: Path) -> Path:
    """The recording's WAV: its ``wav`` field, a file name in the JSON's own folder."""
    name = doc.get("wav")
    if name in (None, ""):
        return path.with_suffix(".wav")
    if not isinstance(name, str) or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise ReplayInputError(f"{path}: wav must be the name of a file beside the recording, got {_shown(name)}",
                               hint="recordings name their WAV without a folder, e.g. <call_id>.wav")
    return path.with_name(name)


def sip_facts(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc.get("sip") or {})


def control_events(doc: dict[str, Any]) -> list[tuple[float, ev.SystemEvent]]:
    """The events replay posts to the call session, at their times (the document is already checked)."""
    out: list[tuple[float, ev.SystemEvent]] = []
    for e in doc.get("events") or []:
        kind = e.get("type")
        if kind not in PLAYED:
            continue
        t = float(e.get("t", 0.0))
        if kind == "dtmf":
            if "digit" not in e:
                continue  # a key pressed during secret input: docs/recordings.md, the PCI-style pause
            out.append((t, ev.DtmfDigit(t, digit=e["digit"], method="replay")))
        elif kind == "media_moved":
            remote = e.get("remote") or {}
            out.append((t, ev.MediaMoved(t, address=f"{remote.get('host', '')}:{remote.get('port', '')}")))
        else:
            out.append((t, ev.DialogReplaced(t, reason="replaces")))
    return out


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(doc: dict[str, Any], path: Path) -> None:
    def bad(where: str, expected: str, value: Any) -> ReplayInputError:
        return ReplayInputError(f"{path}: {where} must be {expected}, got {_shown(value)}",
                                hint="docs/recordings.md describes the format")

    wav_beside(doc, path)
    sip = doc.get("sip")
    if sip is not None:
        if not isinstance(sip, dict):
            raise bad("sip", "an object", sip)
        for key in ("sip_call_id", "local_tag", "remote_tag"):
            if sip.get(key) is not None and not isinstance(sip[key], str):
                raise bad(f"sip.{key}", "text", sip[key])
        _check_address(sip.get("remote_media"), "sip.remote_media", bad)
    events = doc.get("events")
    if events is None:
        return
    if not isinstance(events, list):
        raise bad("events", "a list", events)
    if len(events) > MAX_EVENTS:
        raise ReplayInputError(f"{path}: {len(events):,} events; a recording has at most {MAX_EVENTS:,}")
    for i, e in enumerate(events):
        where = f"events[{i}]"
        if not isinstance(e, dict):
            raise bad(where, "an object", e)
        kind = e.get("type")
        if kind not in PLAYED:
            continue
        t = e.get("t", 0.0)
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise bad(f"{where}.t", "a number of seconds", t)
        if not 0 <= t <= MAX_DURATION_S:
            raise bad(f"{where}.t", f"between 0 and {MAX_DURATION_S} seconds", t)
        if kind == "dtmf":
            digit = e.get("digit")
            if "digit" not in e and e.get("secret") is True:
                continue  # masked: its key is not in the recording
            if not isinstance(digit, str) or digit not in DTMF_KEYS:
                raise bad(f"{where}.digit", "one key of 0-9 * # A-D", digit)
        elif kind == "media_moved":
            _check_address(e.get("remote"), f"{where}.remote", bad)


def _check_address(value: Any, where: str, bad: Callable[[str, str, Any], ReplayInputError]) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise bad(where, "an object with host and port", value)
    host, port = value.get("host", ""), value.get("port", 0)
    if not isinstance(host, str) or len(host) > 255:
        raise bad(f"{where}.host", "a host name or address", host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise bad(f"{where}.port", "a port number (0-65535)", port)
