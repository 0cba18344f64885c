"""Reading a raw SIP message (RFC 3261 section 7): start line, headers, body.

pjsua2 hands the INVITE over as text (``prm.rdata.wholeMsg``); the facts the call brain needs (Call-ID,
tags, From, P-Asserted-Identity, the offered media address) are read here. pjsip has already parsed and
accepted the message, so this parser is lenient: it never raises on odd input, it returns what it found.
Compact header forms (``i:``, ``f:``, ``t:``...) and folded lines are understood.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# RFC 3261 7.3.3 and later RFCs' compact forms.
COMPACT_FORMS = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Headers whose value may be a comma-separated list of name-addrs (RFC 3261 7.3.1; RFC 3325 for PAI).
_LIST_HEADERS = frozenset({"p-asserted-identity", "contact", "route", "record-route"})


def canonical_name(name: str) -> str:
    """Lower-case header name with the compact form expanded."""
    lowered = name.strip().lower()
    return COMPACT_FORMS.get(lowered, lowered)


@dataclass(frozen=True)
class NameAddr:
    """``"Display" <sip:user@host>;tag=x`` split into its parts."""

    display: str
    uri: str
    params: dict[str, str]

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")


@dataclass
class SipMessage:
    start_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)  # (canonical name, value), in order
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return not self.start_line.upper().startswith("SIP/")

    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0] if self.is_request else ""

    @property
    def request_uri(self) -> str:
        parts = self.start_line.split()
        return parts[1] if self.is_request and len(parts) >= 2 else ""

    def get(self, name: str, default: str = "") -> str:
        """First value of a header (any spelling, compact form included)."""
        wanted = canonical_name(name)
        for key, value in self.headers:
            if key == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, list headers split at top-level commas."""
        wanted = canonical_name(name)
        values: list[str] = []
        for key, value in self.headers:
            if key == wanted:
                values.extend(split_list(value) if wanted in _LIST_HEADERS else [value])
        return values


def parse_message(raw: str | bytes) -> SipMessage:
    """Split a SIP message into start line, unfolded headers and body. Never raises."""
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    head, body = data, b""
    for blank in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(blank)
        if idx >= 0:
            head, body = data[:idx], data[idx + len(blank) :]
            break
    lines = head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)  # RFC 3261 7.5: leading CRLFs are ignored
    msg = SipMessage(start_line=lines[0].strip() if lines else "")
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        elif line.strip():
            unfolded.append(line)
    for header in unfolded:
        name, sep, text = header.partition(":")
        if sep:
            msg.headers.append((canonical_name(name), text.strip()))
    msg.body = body
    return msg


def _unquoted(value: str) -> Iterator[tuple[int, str]]:
    """(index, character) of every character outside quoted strings (RFC 3261 quoted-pair aware)."""
    quoted = escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted:
            yield i, ch


def split_list(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and angle brackets."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in _unquoted(value):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        key, _, val = item.partition("=")
        params[key.strip().lower()] = val.strip().strip('"')
    return params


def parse_name_addr(value: str) -> NameAddr:
    """Parse a From/To/Contact/PAI value. Without ``<>``, parameters after the URI belong to the header."""
    value = value.strip()
    lt = next((i for i, ch in _unquoted(value) if ch == "<"), -1)
    if lt >= 0:
        gt = value.find(">", lt)
        if gt < 0:
            gt = len(value)
        display = value[:lt].strip()
        if display.startswith('"') and display.endswith('"') and len(display) >= 2:
            display = re.sub(r"\\(.)", r"\1", display[1:-1])  # RFC 3261 quoted-pair
        uri = value[lt + 1 : gt].strip()
        return NameAddr(display=display, uri=uri, params=_parse_params(value[gt + 1 :]))
    uri, _, rest = value.partition(";")
    return NameAddr(display="", uri=uri.strip(), params=_parse_params(rest))


def accepts_sdp(accept: str) -> bool:
    """Whether an Accept header value admits ``application/sdp`` (RFC 3261 20.1: absent means it does)."""
    if not accept.strip():
        return True
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in ("application/sdp", "application/*", "*/*"):
            return True
    return False


def host_of(address: str) -> str:
    """``"192.0.2.1:5060"`` -> ``"192.0.2.1"``; ``"[::1]:5060"`` -> ``"::1"``."""
    address = address.strip()
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else address[1:]
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address


def parse_networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Trusted-proxy entries (``10.0.0.5``, ``10.1.0.0/16``) as networks; raises ValueError naming a bad one."""
    networks = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return networks


def address_in(address: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(host_of(address))
    except ValueError:
        return False
    return any(ip in net for net in networks)


# ------------------------------------------------------------------------------------------------- SDP


@dataclass(frozen=True)
class SdpAudio:
    host: str
    port: int
    direction: str  # sendrecv, sendonly, recvonly, inactive
    payload_types: tuple[str, ...]


_MEDIA = re.compile(r"^m=(\w+)\s+(\d+)(?:/\d+)?\s+(\S+)\s*(.*)$")


def parse_sdp_audio(body: bytes | str) -> SdpAudio | None:
    """The first audio stream of an SDP body: where to send RTP and in which direction. None if absent."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    session_host, session_dir = "", "sendrecv"
    media_host, media_dir = "", ""
    port = -1
    pts: tuple[str, ...] = ()
    section = "session"  # "session", "audio" (the first audio m= line), or "other"
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("m="):
            if section == "audio":
                break  # first audio stream only
            match = _MEDIA.match(line)
            if match and match.group(1) == "audio" and port < 0:
                section, port, pts = "audio", int(match.group(2)), tuple(match.group(4).split())
            else:
                section = "other"
        elif line.startswith("c="):
            parts = line[2:].split()
            host = parts[2].split("/")[0] if len(parts) >= 3 else ""
            if section == "session":
                session_host = host
            elif section == "audio":
                media_host = host
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            if section == "session":
                session_dir = line[2:]
            elif section == "audio":
                media_dir = line[2:]
    if port < 0:
        return None
    return SdpAudio(host=media_host or session_host, port=port, direction=media_dir or session_dir,
                    payload_types=pts)
