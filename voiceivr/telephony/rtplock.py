"""The RTP source lock: a call's RTP and RTCP sockets take packets from the call's media peer only.

pjmedia (the pjsua2 2.15.1 wheel) takes RTP from any address. Ten packets in a row from a new source and the
stream switches its remote address: it decodes what the newcomer sends (RFC 4733 digits included, so a
stranger who found the port keys into a logged-in call) and sends our audio to it. The wheel has no switch to
turn that off (``PJMEDIA_UDP_NO_SRC_ADDR_CHECKING`` is a transport option pjsua never sets).

The kernel has one: a UDP socket that is ``connect()``-ed receives datagrams from its peer only (the rest are
dropped, the sender gets ICMP port unreachable), and Linux still honours ``sendto()`` with an explicit
address on it, which is how pjmedia sends. pjmedia owns the socket; we find its descriptor (the socket's
inode in ``/proc/net/udp`` matched against ``/proc/self/fd``), ``connect()`` a duplicate of it (the
association lives in the socket, shared by both descriptors) and close the duplicate.

Who the peer is (:class:`SourceLock`, decided on the SIP thread, never on the media thread):

- the first source RTP arrives from within ``sip.rtp_latch_s`` of the media starting: normally the address in
  the caller's SDP; behind a NAT the address the NAT mapped it to (symmetric RTP). A source other than the
  SDP's is reported as a media move, like a re-INVITE: the call's privileges drop (none yet, this early;
  if the caller has logged in by then, the login is void) and the audit trail records it;
- nothing arrived by then: the SDP's address;
- a re-INVITE that moves the media (the edge reports it, the gate drops privileges): its new SDP address;
- any source seen that is not the locked one (the lock is off, or could not be applied) is a media move too.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from voiceivr.call.handler import MediaAddress
from voiceivr.errors import VoiceivrError

log = logging.getLogger(__name__)

PROC_UDP = (Path("/proc/net/udp"), Path("/proc/net/udp6"))
PROC_FDS = Path("/proc/self/fd")
_UNSPECIFIED = frozenset({"", "0.0.0.0", "::"})


class RtpLockError(VoiceivrError):
    """A media socket could not be locked to its peer (the call goes on with pjmedia's own latching)."""


# ------------------------------------------------------------------------------------------- addresses


def parse_address(text: str) -> MediaAddress | None:
    """``host:port`` or ``[v6]:port`` as pjsua2 prints it; None for an empty or unset one (``0.0.0.0:0``)."""
    host, sep, port = (text or "").strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or int(port) == 0 or host in _UNSPECIFIED:
        return None
    return MediaAddress(host, int(port))


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


# ----------------------------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class ProcUdpSocket:
    host: str
    port: int
    inode: int


def _hex_address(text: str) -> tuple[str, int]:
    """``0100007F:0FA0`` (IPv4) or 32 hex digits + port (IPv6): the address words are in host byte order."""
    hex_host, _, hex_port = text.partition(":")
    raw = bytes.fromhex(hex_host)
    if len(raw) not in (4, 16):
        raise ValueError(f"address {text!r} is neither IPv4 nor IPv6")
    host_bytes = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(host_bytes)), int(hex_port, 16)


def parse_proc_udp(text: str) -> list[ProcUdpSocket]:
    """The bound UDP sockets listed in a ``/proc/net/udp`` or ``/proc/net/udp6`` table (header skipped; a
    line that does not parse is skipped too: the kernel's format is the authority, not us)."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            host, port = _hex_address(fields[1])
            out.append(ProcUdpSocket(host, port, int(fields[9])))
        except ValueError:
            continue
    return out


def socket_inodes(fd_dir: Path = PROC_FDS) -> dict[int, int]:
    """inode -> file descriptor for every socket this process holds (``socket:[inode]`` links)."""
    out: dict[int, int] = {}
    for entry in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / entry)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            out[int(target[8:-1])] = int(entry)
    return out


def udp_socket_fds(local: MediaAddress, tables: tuple[Path, ...] = PROC_UDP, fd_dir: Path = PROC_FDS) -> list[int]:
    """Descriptors of this process's UDP sockets bound to ``local`` (normally one)."""
    listed: list[ProcUdpSocket] = []
    for table in tables:
        try:
            listed += parse_proc_udp(table.read_text())
        except OSError:
            continue
    if not listed and not any(t.exists() for t in tables):
        raise RtpLockError(f"{tables[0]} is not readable: is /proc mounted?")
    mine = socket_inodes(fd_dir)
    return [mine[s.inode] for s in listed
            if s.port == local.port and s.inode in mine
            and (s.host in _UNSPECIFIED or local.host in _UNSPECIFIED or _same_host(s.host, local.host))]


def connect_udp(local: MediaAddress, peer: MediaAddress) -> None:
    """Make the UDP socket bound to ``local`` (pjmedia's) take datagrams from ``peer`` only."""
    for fd in udp_socket_fds(local):
        sock = _udp_socket(fd, local.port)
        if sock is None:
            continue
        with sock:  # closes our duplicate only; pjmedia's descriptor and the socket stay open
            try:
                sock.connect((peer.host, peer.port))
            except OSError as exc:
                raise RtpLockError(f"cannot lock the media socket {local.host}:{local.port} to "
                                   f"{peer.host}:{peer.port}: {exc.strerror or exc}") from None
        return
    raise RtpLockError(f"no UDP socket of this process is bound to {local.host}:{local.port}")


def _udp_socket(fd: int, port: int) -> socket.socket | None:
    """A duplicate of ``fd`` as a socket object, if it still is a UDP socket bound to ``port`` (pjmedia may
    have closed it, and the number been reused, since /proc was read)."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        if not stat.S_ISSOCK(os.fstat(dup).st_mode):
            os.close(dup)
            return None
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None
    try:
        if sock.type == socket.SOCK_DGRAM and sock.getsockname()[1] == port:
            return sock
    except OSError:
        pass
    sock.close()
    return None


# ----------------------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class LockStep:
    """What the edge records (and, for ``moved``, tells the call) after :meth:`SourceLock.observe`."""

    kind: Literal["locked", "moved", "failed"]
    channel: Literal["rtp", "rtcp"]
    address: MediaAddress
    how: str = ""  # moved: "latched" (before the lock) or "switched" (past it); failed: the reason


Connect = Callable[[MediaAddress, MediaAddress], None]


@dataclass
class SourceLock:
    """The lock of one call's audio stream. SIP thread only.

    ``enforce`` off (``sip.rtp_source_lock = false``) keeps the decisions and the media-move reports but
    leaves the sockets as pjmedia made them.
    """

    negotiated: MediaAddress | None  # RTP address of the peer's SDP
    negotiated_rtcp: MediaAddress | None
    local: MediaAddress | None  # our RTP socket
    local_rtcp: MediaAddress | None
    deadline: float  # when, with no RTP seen, the lock falls back to the SDP address
    enforce: bool = True
    connect: Connect = connect_udp
    latch_s: float = 0.0
    rtp_peer: MediaAddress | None = None  # the one source we take RTP from, once decided
    rtcp_peer: MediaAddress | None = None
    _stale: MediaAddress | None = None  # the last source before a re-INVITE: not news until it changes
    _failed: set[str] = field(default_factory=set)

    @classmethod
    def start(cls, negotiated: MediaAddress | None, negotiated_rtcp: MediaAddress | None,
              local: MediaAddress | None, local_rtcp: MediaAddress | None, now: float, latch_s: float,
              enforce: bool = True, connect: Connect = connect_udp) -> SourceLock:
        return cls(negotiated, negotiated_rtcp, local, local_rtcp, now + latch_s, enforce, connect, latch_s)

    def pending(self, now: float) -> bool:
        """Still waiting for the first RTP within the latch window (the edge looks more often meanwhile). Past
        the window a lock without an SDP address to fall back on (``c=0.0.0.0``) waits at the normal pace."""
        return self.rtp_peer is None and self.local is not None and now <= self.deadline

    def observe(self, local: MediaAddress | None, local_rtcp: MediaAddress | None, source: MediaAddress | None,
                rtcp_source: MediaAddress | None, now: float) -> list[LockStep]:
        """One look at the stream: our sockets, and where the last RTP and RTCP packets came from."""
        steps: list[LockStep] = []
        if local != self.local:
            # Our side made new sockets (a re-INVITE that re-created the media): a new lock, from scratch.
            self.local, self.local_rtcp = local, local_rtcp
            self.rtp_peer = self.rtcp_peer = self._stale = None
            self.deadline = now + self.latch_s
        if self.local is None:
            return steps
        if source is not None and source == self._stale:
            source = None
        else:
            self._stale = None
        if self.rtp_peer is None:
            # Within the latch window the first source wins; after it, only the SDP's address (latch_s = 0:
            # never anything else).
            target = source if now < self.deadline else (self.negotiated or source)
            if target is None:
                return steps
            if self.negotiated is not None and target != self.negotiated:
                # Symmetric RTP behind a NAT (or a stranger who was first): it counts as a media move.
                steps.append(LockStep("moved", "rtp", target, "latched"))
            self.rtp_peer = target
            steps += self._apply("rtp", self.local, target)
        elif source is not None and source != self.rtp_peer:
            # Only possible when the kernel is not filtering (lock off or not applied): pjmedia may have
            # switched to this source, so whatever it keys or hears from now on is someone else's.
            steps.append(LockStep("moved", "rtp", source, "switched"))
            self.rtp_peer = source
        if self.rtcp_peer is None and self.local_rtcp is not None and self.rtp_peer is not None:
            rtcp = None
            if rtcp_source is not None and _same_host(rtcp_source.host, self.rtp_peer.host):
                rtcp = rtcp_source
            elif self.rtp_peer == self.negotiated:
                rtcp = self.negotiated_rtcp
            # Else: RTP was latched behind a NAT; RTCP's mapped port is unknown until its first packet from
            # that host (RTCP carries reports only, no audio or digits).
            if rtcp is not None:
                self.rtcp_peer = rtcp
                steps += self._apply("rtcp", self.local_rtcp, rtcp)
        return steps

    def renegotiated(self, rtp: MediaAddress | None, rtcp: MediaAddress | None, local: MediaAddress | None,
                     local_rtcp: MediaAddress | None, source_now: MediaAddress | None) -> list[LockStep]:
        """A re-INVITE moved the peer's media (the edge has reported that move): lock onto the new SDP
        address at once. ``source_now`` is the last source seen, still the old peer: not news."""
        if rtp is None:  # c=0.0.0.0 (old-style hold) names no peer: keep the lock where it is
            return []
        self.negotiated, self.negotiated_rtcp = rtp, rtcp
        self.local, self.local_rtcp = local, local_rtcp
        self._stale = source_now if source_now != rtp else None
        steps: list[LockStep] = []
        if self.local is not None:
            self.rtp_peer = rtp
            steps += self._apply("rtp", self.local, rtp)
        if self.local_rtcp is not None and rtcp is not None:
            self.rtcp_peer = rtcp
            steps += self._apply("rtcp", self.local_rtcp, rtcp)
        return steps

    def _apply(self, channel: Literal["rtp", "rtcp"], local: MediaAddress, peer: MediaAddress) -> list[LockStep]:
        if not self.enforce:
            return []
        try:
            self.connect(local, peer)
        except RtpLockError as exc:
            if channel in self._failed:
                return []
            self._failed.add(channel)
            return [LockStep("failed", channel, peer, str(exc))]
        return [LockStep("locked", channel, peer)]
