"""Who is signing in, behind a reverse proxy: the address the console throttles wrong passwords by.

Without ``console.trusted_proxies`` (the default) it is the TCP peer, and ``X-Forwarded-For`` is ignored: anyone
can write that header. With it, a request whose peer is a trusted proxy is attributed to the nearest address
in ``X-Forwarded-For`` that is not itself a trusted proxy, read from the right (each proxy appends the address
it got the request from; what is further left was written by the client and may be forged). A malformed entry
ends the walk at the last address a trusted proxy vouched for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from voiceivr.errors import VoiceivrError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(entries: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.5``, ``10.1.0.0/16``, ``::1`` as networks; a bad entry is an error naming it and the setting."""
    out = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise VoiceivrError(f"console.trusted_proxies: not an IP address or network: {entry!r}",
                                hint="give addresses or networks, comma-separated, e.g. 127.0.0.1,10.0.0.0/8") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in proxies)


def client_address(peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """The address a request is attributed to (see the module's docstring). ``forwarded_for``: every
    ``X-Forwarded-For`` header of the request, in order."""
    if not peer:
        return "unknown"
    ip = _ip(peer)
    if not proxies or ip is None or not _trusted(ip, proxies):
        return peer
    hops = [h for header in forwarded_for for h in header.split(",")]
    client = str(ip)
    for hop in reversed(hops):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break
        client = str(hop_ip)
        if not _trusted(hop_ip, proxies):
            break
    return client[:64]
