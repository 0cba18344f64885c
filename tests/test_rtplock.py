"""The RTP source lock (voiceivr/telephony/rtplock.py): /proc parsing, the kernel filter on real sockets, and
who the lock lets in, step by step. The lock inside live calls: tests/sip/test_sip_media_hijack.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from voiceivr.call.handler import MediaAddress
from voiceivr.telephony.rtplock import (
    LockStep,
    RtpLockError,
    SourceLock,
    connect_udp,
    parse_address,
    parse_proc_udp,
    socket_inodes,
    udp_socket_fds,
)

# Lines as Linux 6.x prints them (header, an IPv4 socket bound to 127.0.0.1:4002 and one on 0.0.0.0:43444).
PROC_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
10289: 0100007F:0FA2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 58209 2 00000000a8eefd8d 0
   62: 00000000:A9B4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 58194 2 0000000009934127 0
 4519: 0100007F:7918 0100007F:0FA0 01 00000000:00000000 00:00000000 00000000     0        0 109945 2 0000000076850da3 0
garbage line
"""
PROC_UDP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when \
retrnsmt   uid  timeout inode ref pointer drops
 7126: 00000000000000000000000001000000:8347 00000000000000000000000000000000:0000 07 00000000:00000000 \
00:00000000 00000000     0        0 122432 2 00000000ba433015 0
"""

SDP = MediaAddress("203.0.113.5", 40000)
SDP_RTCP = MediaAddress("203.0.113.5", 40001)
NAT = MediaAddress("198.51.100.7", 61000)
STRANGER = MediaAddress("192.0.2.66", 5004)
LOCAL = MediaAddress("127.0.0.1", 4002)
LOCAL_RTCP = MediaAddress("127.0.0.1", 4003)


def test_addresses_as_pjsua2_prints_them() -> None:
    assert parse_address("127.0.0.1:4000") == MediaAddress("127.0.0.1", 4000)
    assert parse_address("[::1]:4000") == MediaAddress("::1", 4000)
    for unset in ("", "0.0.0.0:0", "0.0.0.0:4000", ":0", "127.0.0.1", "host:port"):
        assert parse_address(unset) is None, unset


def test_proc_net_udp_tables_parse_into_address_port_and_inode() -> None:
    assert [(s.host, s.port, s.inode) for s in parse_proc_udp(PROC_UDP)] == [
        ("127.0.0.1", 4002, 58209), ("0.0.0.0", 43444, 58194), ("127.0.0.1", 31000, 109945)]
    assert [(s.host, s.port, s.inode) for s in parse_proc_udp(PROC_UDP6)] == [("::1", 33607, 122432)]
    assert parse_proc_udp("") == [] and parse_proc_udp("header only\n") == []


def test_socket_lookup_through_proc_finds_this_process_own_socket(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        inode = next(i for i, fd in socket_inodes().items() if fd == s.fileno())
        assert udp_socket_fds(MediaAddress("127.0.0.1", port)) == [s.fileno()]
        # The same lookup against fixed tables: only sockets this process holds count.
        table = tmp_path / "udp"
        table.write_text(PROC_UDP.splitlines()[0] + "\n"
                         f" 1: 0100007F:{port:04X} 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 "
                         f"{inode} 2 0 0\n"
                         f" 2: 0100007F:{port:04X} 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 "
                         "999999999 2 0 0\n")
        assert udp_socket_fds(MediaAddress("127.0.0.1", port), tables=(table,)) == [s.fileno()]
        assert udp_socket_fds(MediaAddress("127.0.0.2", port), tables=(table,)) == []
    with pytest.raises(RtpLockError, match="not readable"):
        udp_socket_fds(MediaAddress("127.0.0.1", port), tables=(tmp_path / "missing",))


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """pjmedia's socket (ours), the call's peer and a stranger, on 127.0.0.1."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
    yield socks[0], socks[1], socks[2]
    for s in socks:
        s.close()


def _addr(s: socket.socket) -> MediaAddress:
    host, port = s.getsockname()
    return MediaAddress(host, port)


def test_a_locked_socket_takes_datagrams_from_its_peer_only_and_still_sends_anywhere(
        sockets: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    media, peer, stranger = sockets
    connect_udp(_addr(media), _addr(peer))
    assert media.getpeername() == peer.getsockname()
    stranger.sendto(b"stranger", media.getsockname())
    peer.sendto(b"peer", media.getsockname())
    data, source = media.recvfrom(100)
    assert (data, source) == (b"peer", peer.getsockname())  # the stranger's datagram was dropped by the kernel
    with pytest.raises(TimeoutError):
        media.recvfrom(100)
    media.sendto(b"to the stranger", stranger.getsockname())  # pjmedia sends with sendto: still allowed
    assert stranger.recvfrom(100)[0] == b"to the stranger"
    # A re-INVITE moves the peer: the same socket is re-locked onto the new address.
    connect_udp(_addr(media), _addr(stranger))
    stranger.sendto(b"new peer", media.getsockname())
    assert media.recvfrom(100)[0] == b"new peer"


def test_locking_a_port_this_process_does_not_hold_is_an_error(
        sockets: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    media, peer, _ = sockets
    free = _addr(media)
    media.close()
    with pytest.raises(RtpLockError, match=f"no UDP socket of this process is bound to 127.0.0.1:{free.port}"):
        connect_udp(free, _addr(peer))


# ------------------------------------------------------------------------------------ the decision


class Connects:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[MediaAddress, MediaAddress]] = []
        self.fail = fail

    def __call__(self, local: MediaAddress, peer: MediaAddress) -> None:
        if self.fail:
            raise RtpLockError("no UDP socket of this process is bound to 127.0.0.1:4002")
        self.calls.append((local, peer))


def _lock(latch_s: float = 2.0, enforce: bool = True, fail: bool = False) -> tuple[SourceLock, Connects]:
    connects = Connects(fail)
    lock = SourceLock.start(SDP, SDP_RTCP, LOCAL, LOCAL_RTCP, now=100.0, latch_s=latch_s, enforce=enforce,
                            connect=connects)
    return lock, connects


def _look(lock: SourceLock, source: MediaAddress | None, at: float, rtcp: MediaAddress | None = None,
          local: MediaAddress = LOCAL) -> list[LockStep]:
    return lock.observe(local, MediaAddress(local.host, local.port + 1), source, rtcp, at)


def test_rtp_from_the_sdp_address_locks_rtp_and_rtcp_there() -> None:
    lock, connects = _lock()
    assert lock.pending(100.05) and _look(lock, None, 100.05) == []  # nothing arrived yet: wait
    assert _look(lock, SDP, 100.1) == [LockStep("locked", "rtp", SDP), LockStep("locked", "rtcp", SDP_RTCP)]
    assert connects.calls == [(LOCAL, SDP), (LOCAL_RTCP, SDP_RTCP)]
    assert not lock.pending(100.2)
    assert _look(lock, SDP, 130.0) == []  # the same source: nothing to do, nothing connected again
    assert len(connects.calls) == 2


def test_behind_a_nat_the_first_source_is_latched_and_that_counts_as_a_media_move() -> None:
    lock, connects = _lock()
    assert _look(lock, NAT, 100.2) == [LockStep("moved", "rtp", NAT, "latched"), LockStep("locked", "rtp", NAT)]
    # RTCP's mapped port is unknown until RTCP comes from that host; a stranger's RTCP does not lock it.
    assert _look(lock, NAT, 100.5, rtcp=STRANGER) == []
    rtcp = MediaAddress(NAT.host, 61001)
    assert _look(lock, NAT, 105.0, rtcp=rtcp) == [LockStep("locked", "rtcp", rtcp)]
    assert connects.calls == [(LOCAL, NAT), (LOCAL_RTCP, rtcp)]


def test_no_rtp_within_the_latch_window_locks_the_sdp_address() -> None:
    lock, _ = _lock(latch_s=2.0)
    assert _look(lock, None, 101.9) == []
    assert _look(lock, None, 102.0) == [LockStep("locked", "rtp", SDP), LockStep("locked", "rtcp", SDP_RTCP)]
    # Someone sending after that is a switch, not a latch (only if the kernel let it through: lock off).
    assert _look(lock, STRANGER, 103.0) == [LockStep("moved", "rtp", STRANGER, "switched")]


def test_latch_s_zero_takes_the_sdp_address_whoever_sends_first() -> None:
    lock, connects = _lock(latch_s=0.0)
    assert _look(lock, STRANGER, 100.0) == [LockStep("locked", "rtp", SDP), LockStep("locked", "rtcp", SDP_RTCP)]
    assert connects.calls[0] == (LOCAL, SDP)


def test_a_source_past_the_lock_is_a_move_reported_once_per_change() -> None:
    lock, connects = _lock(enforce=False)  # sip.rtp_source_lock = false: pjmedia's own latching decides
    assert _look(lock, SDP, 100.1) == []  # nothing is connected, and the SDP address is no news
    assert connects.calls == []
    assert _look(lock, STRANGER, 110.0) == [LockStep("moved", "rtp", STRANGER, "switched")]
    assert _look(lock, STRANGER, 110.5) == []
    assert _look(lock, SDP, 111.0) == [LockStep("moved", "rtp", SDP, "switched")]  # and back: a move again


def test_a_reinvite_relocks_onto_its_new_address_and_the_old_source_is_not_news() -> None:
    lock, connects = _lock()
    _look(lock, SDP, 100.1)
    moved, moved_rtcp = MediaAddress("203.0.113.9", 42000), MediaAddress("203.0.113.9", 42001)
    steps = lock.renegotiated(moved, moved_rtcp, LOCAL, LOCAL_RTCP, source_now=SDP)
    assert steps == [LockStep("locked", "rtp", moved), LockStep("locked", "rtcp", moved_rtcp)]
    assert connects.calls[-2:] == [(LOCAL, moved), (LOCAL_RTCP, moved_rtcp)]
    assert _look(lock, SDP, 120.0) == []  # the last packet before the re-INVITE, still shown: not a switch
    assert _look(lock, moved, 120.5) == []
    assert _look(lock, SDP, 121.0) == [LockStep("moved", "rtp", SDP, "switched")]  # now it is one
    # c=0.0.0.0 (old-style hold) names nobody: the lock stays.
    assert lock.renegotiated(None, None, LOCAL, LOCAL_RTCP, source_now=SDP) == []
    assert lock.rtp_peer == SDP


def test_new_local_sockets_start_a_new_lock() -> None:
    lock, connects = _lock()
    _look(lock, SDP, 100.1)
    fresh = MediaAddress("127.0.0.1", 4010)
    assert _look(lock, None, 150.0, local=fresh) == []  # a new latch window from now
    assert lock.pending(150.0) and not lock.pending(152.5)
    assert _look(lock, SDP, 150.1, local=fresh)[0] == LockStep("locked", "rtp", SDP)
    assert connects.calls[-2] == (fresh, SDP)


def test_a_lock_that_cannot_be_applied_is_reported_once_and_the_move_checks_go_on() -> None:
    lock, _ = _lock(fail=True)
    steps = _look(lock, SDP, 100.1)
    assert [(s.kind, s.channel) for s in steps] == [("failed", "rtp"), ("failed", "rtcp")]
    assert "no UDP socket" in steps[0].how
    assert _look(lock, STRANGER, 101.0) == [LockStep("moved", "rtp", STRANGER, "switched")]
    lock.renegotiated(SDP, SDP_RTCP, LOCAL, LOCAL_RTCP, source_now=STRANGER)  # failures are not repeated
    assert _look(lock, SDP, 102.0) == []
